/**
 * Drill 7a: 10,000 hostile messages on the events topic (random bytes, mutated valid
 * events, deep nesting, huge strings, wrong types, header garbage, tombstones), with
 * good traffic mixed in. The service must not crash or stall; every hostile message
 * must land in the DLQ with a reason and its original bytes (or an explicit note that
 * the value had to be dropped); the good traffic must be applied exactly once.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DLQ_HEADERS } from '../../src/consumers/dlq.js';
import { DLQ_REASONS } from '../../src/consumers/formats/result.js';
import { createProducer } from '../../src/shared/kafka.js';
import { testKafka } from '../helpers/index.js';
import {
  audit,
  auditBroker,
  createJobs,
  drillLine,
  isolation,
  type Plan,
  planMessages,
  readTopic,
  serve,
  serveEnv,
  topicNames,
  waitAllPassed,
} from './helpers.js';
import { type Hostile, hostileMessages } from './hostile-gen.js';

const HOSTILE = 10_000;
const digest = (v: Buffer | null) => (v === null ? 'null' : createHash('sha256').update(v).digest('hex'));

describe('drill: hostile Kafka input', () => {
  it('every bad message dead-lettered with a reason, good traffic applied, no crash, no stall', async () => {
    const names = isolation();
    const svc = await serve(serveEnv(names));
    const { broker, redis } = auditBroker(names);
    const topics = topicNames(names.topicPrefix);
    const plan: Plan = {
      jobs: await createJobs(
        svc.url,
        Array.from({ length: 30 }, (_, i) => `good-${i}`),
      ),
      heartbeats: 2,
      chunks: 8,
    };
    const good = planMessages(plan);
    const hostile = hostileMessages(HOSTILE, 20261127);
    const kinds: Record<string, number> = {};
    for (const h of hostile) kinds[h.kind] = (kinds[h.kind] ?? 0) + 1;
    // Good messages spread evenly through the hostile ones (each job's order kept).
    type Out = {
      key: Buffer | string | null;
      value: Buffer | null;
      headers?: Record<string, string | Buffer>;
    };
    const all: Out[] = [];
    const every = Math.floor(hostile.length / good.length);
    hostile.forEach((h: Hostile, i) => {
      all.push({ key: h.key, value: h.value, ...(h.headers ? { headers: h.headers } : {}) });
      if (i % every === 0 && i / every < good.length) all.push(good[i / every]!);
    });
    for (let i = Math.ceil(hostile.length / every); i < good.length; i++) all.push(good[i]!);

    const producer = createProducer(testKafka());
    await producer.connect();
    const started = Date.now();
    try {
      // Record batches stay under the topic's 1 MB limit: big messages go alone.
      let batch: Out[] = [];
      let bytes = 0;
      const flush = async () => {
        if (batch.length) await producer.send({ topic: topics.events, acks: -1, messages: batch });
        batch = [];
        bytes = 0;
      };
      for (const m of all) {
        const size = (m.value?.length ?? 0) + 20_000;
        if (bytes + size > 400_000) await flush();
        batch.push(m);
        bytes += size;
      }
      await flush();
    } finally {
      await producer.disconnect();
    }
    const producedMs = Date.now() - started;

    await waitAllPassed(broker, plan.jobs, 120_000).catch((err) => {
      throw new Error(`${(err as Error).message}\nservice output (tail):\n${svc.output().slice(-4000)}`);
    });
    const dlq = await readTopic(topics.dlq, (r) => r.length >= HOSTILE, { timeoutMs: 120_000 });
    const drainedMs = Date.now() - started;

    const sent = new Map<string, number>();
    for (const h of hostile) sent.set(digest(h.value), (sent.get(digest(h.value)) ?? 0) + 1);
    const problems: string[] = [];
    const reasons: Record<string, number> = {};
    let dropped = 0;
    for (const r of dlq) {
      const reason = r.headers[DLQ_HEADERS.reason] ?? '';
      reasons[reason] = (reasons[reason] ?? 0) + 1;
      if (!(DLQ_REASONS as readonly string[]).includes(reason))
        problems.push(`DLQ record without a known reason: ${reason}`);
      if (!r.headers[DLQ_HEADERS.detail]) problems.push(`DLQ record (${reason}) without a detail`);
      if (r.key && plan.jobs.includes(r.key)) problems.push(`good event dead-lettered: ${r.key} ${reason}`);
      if (r.headers[DLQ_HEADERS.valueDropped] !== undefined) {
        dropped++;
        continue;
      }
      const d = digest(r.value);
      const n = sent.get(d) ?? 0;
      if (n === 0) problems.push(`DLQ value not among the sent bytes (${reason}, ${r.value?.length} bytes)`);
      else sent.set(d, n - 1);
    }
    const t = await audit(broker, redis, plan, good.length);
    problems.push(...t.problems);
    const health = await fetch(`${svc.url}/healthz`);
    const ready = await fetch(`${svc.url}/readyz`);
    const line = drillLine(
      'hostile-kafka',
      { sent: good.length + HOSTILE, applied: t.applied, lost: t.lost, doubled: t.doubled },
      `${HOSTILE} hostile ${JSON.stringify(kinds)} -> ${dlq.length} in the DLQ ${JSON.stringify(reasons)}, ${dropped} with the value dropped; ${good.length} good events; produced in ${producedMs} ms, all handled in ${drainedMs} ms; healthz ${health.status}, readyz ${ready.status}`,
    );
    expect(problems.slice(0, 30), line).toEqual([]);
    expect(dlq.length, line).toBe(HOSTILE);
    expect({ lost: t.lost, doubled: t.doubled }).toEqual({ lost: 0, doubled: 0 });
    expect(svc.child.exitCode, line).toBeNull();
    expect([health.status, ready.status], line).toEqual([200, 200]);
  }, 480_000);
});
