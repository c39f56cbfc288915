/**
 * Graceful shutdown of a real `extjob serve` child process under load: SIGTERM while
 * events stream in. The process must stop answering ready, finish and commit its
 * in-flight batch, exit 0 within EXTJOB_SHUTDOWN_TIMEOUT_SECONDS, and lose nothing:
 * every event below the committed offsets has its effect in Redis, and a second
 * process finishes the rest with each effect applied exactly once.
 */
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { JobBroker } from '../../src/broker/index.js';
import { startRedis } from '../../src/cli/local/redis.js';
import { brokerDefaults } from '../../src/cli/service.js';
import { loadConfig, topicNames } from '../../src/shared/config.js';
import { isolation, redisUrl, testKafka, unique, waitFor } from '../helpers/index.js';
import { type Service, startService } from './serve.js';
import { connectClient, createJob, event, produce } from './workload.js';

const JOBS = 40;
const CHUNKS = 25;
const SHUTDOWN_TIMEOUT_SECONDS = 10;

const cleanup: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f().catch(() => {});
});

interface Sent {
  partition: number;
  offset: number;
  jobId: string;
  kind: string;
  seq?: number;
}

/** Every message on the events topic, read back with its partition and offset. */
async function readTopic(topic: string, expected: number): Promise<Sent[]> {
  const consumer = testKafka().consumer({ groupId: unique('reader') });
  const out: Sent[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        const ev = JSON.parse(String(message.value)) as {
          type: string;
          subject: string;
          data: { seq?: number };
        };
        out.push({
          partition,
          offset: Number(message.offset),
          jobId: ev.subject,
          kind: ev.type.split('.')[2]!,
          ...(ev.data.seq !== undefined ? { seq: ev.data.seq } : {}),
        });
      },
    });
    await waitFor(() => out.length >= expected, {
      timeoutMs: 30_000,
      what: `${expected} messages read back`,
    });
  } finally {
    await consumer.disconnect();
  }
  return out;
}

describe('graceful shutdown', () => {
  it('SIGTERM under load: not ready, batch committed, exit 0 in time, nothing lost or doubled', async () => {
    const iso = isolation();
    const env = { EXTJOB_SHUTDOWN_TIMEOUT_SECONDS: String(SHUTDOWN_TIMEOUT_SECONDS) };
    const topics = topicNames(iso.topicPrefix);
    const first: Service = await startService(env, iso);
    cleanup.push(() => first.stop());
    const client = await connectClient(first.url, topics.events);
    cleanup.push(() => client.close());
    const redis = new Redis(redisUrl());
    cleanup.push(() => redis.quit());
    const broker = new JobBroker({
      redis,
      prefix: iso.keyPrefix,
      defaults: brokerDefaults(loadConfig({})),
    });

    const ids: string[] = [];
    for (let i = 0; i < JOBS; i++) ids.push((await createJob(client, { id: `sd-${i}`, name: 'deploy' })).id);
    // Each job: accepted, CHUNKS log chunks (seq 1..CHUNKS), finished; interleaved across jobs.
    const messages: ReturnType<typeof event>[] = [];
    for (const id of ids) messages.push(event(id, 'accepted'));
    for (let seq = 1; seq <= CHUNKS; seq++)
      for (const id of ids) messages.push(event(id, 'log', { seq, text: `line ${seq} of ${id}\n` }));
    for (const id of ids) messages.push(event(id, 'finished', { exitCode: 0, lastSeq: CHUNKS }));

    // A long-poll waiting when the signal comes is answered, not cut.
    await createJob(client, { id: 'sd-wait', name: 'never finishes' });
    const waiting = fetch(`${first.url}/v1/jobs/sd-wait/wait?until=terminal&timeoutSeconds=120`)
      .then(async (r) => ({
        status: r.status,
        met: r.headers.get('extjob-condition-met'),
        job: await r.json(),
      }))
      .catch((err: unknown) => ({ error: String(err) }));

    // Produce in the background, in small batches, while the service consumes.
    let produced = 0;
    const producing = (async () => {
      for (let i = 0; i < messages.length; i += 25) {
        await produce(client, messages.slice(i, i + 25));
        produced = Math.min(messages.length, i + 25);
        await new Promise((r) => setImmediate(r));
      }
    })();
    // Under load: some effects are in Redis, much is still to come.
    await waitFor(
      async () => {
        const log = await broker.readLog(ids[0]!, { fromSeq: 0, limit: 1000 });
        return (log?.chunks.length ?? 0) >= 3;
      },
      { timeoutMs: 30_000, what: 'the service to apply the first log chunks' },
    );
    expect(produced).toBeLessThan(messages.length);

    const signalled = Date.now();
    first.signal('SIGTERM');
    const readyAnswers: number[] = [];
    let exitCode: number | null | undefined;
    void first.exited.then((c) => {
      exitCode = c;
    });
    while (exitCode === undefined) {
      try {
        readyAnswers.push((await fetch(`${first.url}/readyz`, { signal: AbortSignal.timeout(2000) })).status);
      } catch {
        readyAnswers.push(0); // connection refused or reset: not ready either
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    const took = Date.now() - signalled;
    expect(exitCode, first.output().slice(-3000)).toBe(0);
    expect(await waiting).toMatchObject({
      status: 200,
      met: 'false',
      job: { id: 'sd-wait', state: 'pending' },
    });
    expect(took).toBeLessThan((SHUTDOWN_TIMEOUT_SECONDS + 5) * 1000);
    // The first answer may predate the signal's delivery; after a non-200, never 200 again.
    const firstNotReady = readyAnswers.findIndex((s) => s !== 200);
    expect(firstNotReady).toBeGreaterThanOrEqual(0);
    expect(readyAnswers.slice(firstNotReady).filter((s) => s === 200)).toEqual([]);
    expect(first.output()).toMatch(/shutting down/);

    // Committed offsets only cover effects that are durable in Redis.
    await producing;
    const admin = testKafka().admin();
    await admin.connect();
    cleanup.push(() => admin.disconnect());
    const committed = new Map<number, number>();
    for (const t of await admin.fetchOffsets({ groupId: iso.group, topics: [topics.events] }))
      for (const p of t.partitions) committed.set(p.partition, Number(p.offset));
    expect([...committed.values()].some((o) => o > 0)).toBe(true);
    const sent = await readTopic(topics.events, messages.length);
    let covered = 0;
    for (const m of sent) {
      if (m.offset >= (committed.get(m.partition) ?? -1)) continue;
      covered++;
      const job = await broker.getJob(m.jobId);
      if (m.kind === 'accepted') expect(job?.state, `${m.jobId} accepted`).not.toBe('pending');
      if (m.kind === 'finished') expect(job?.state, `${m.jobId} finished`).toBe('passed');
      if (m.kind === 'log') {
        const log = await broker.readLog(m.jobId, { fromSeq: m.seq!, limit: 1 });
        expect(log?.chunks[0]?.seq, `${m.jobId} chunk ${m.seq}`).toBe(m.seq);
      }
    }
    expect(covered).toBeGreaterThan(0);
    expect(covered).toBeLessThan(messages.length);

    // A new process picks up where the first stopped; every effect lands exactly once.
    const second = await startService(env, iso);
    cleanup.push(() => second.stop());
    await waitFor(
      async () => {
        for (const id of ids) if ((await broker.getJob(id))?.state !== 'passed') return false;
        return true;
      },
      { timeoutMs: 60_000, what: 'every job to pass' },
    );
    for (const id of ids) {
      const log = await broker.readLog(id, { fromSeq: 0, limit: 1000 });
      expect(log?.chunks.map((c) => c.seq)).toEqual(Array.from({ length: CHUNKS }, (_, i) => i + 1));
      expect(log?.chunks.map((c) => String(c.data))).toEqual(
        Array.from({ length: CHUNKS }, (_, i) => `line ${i + 1} of ${id}\n`),
      );
      const transitions = (await broker.history(id))?.filter((h) => h.kind === 'transition') ?? [];
      expect(
        transitions.map((t) => `${t.from ?? 'none'}->${t.to}`).filter((t) => t !== 'none->pending'),
      ).toEqual(['pending->running', 'running->passed']);
    }
    second.signal('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 180_000);

  it('ends within the shutdown timeout even when Redis is gone mid-batch', async () => {
    const timeoutSeconds = 3;
    const privateRedis = await startRedis();
    cleanup.push(() => privateRedis.stop());
    const iso = isolation();
    const svc = await startService(
      { EXTJOB_REDIS_URL: privateRedis.url, EXTJOB_SHUTDOWN_TIMEOUT_SECONDS: String(timeoutSeconds) },
      iso,
    );
    cleanup.push(() => svc.stop());
    const client = await connectClient(svc.url, topicNames(iso.topicPrefix).events);
    cleanup.push(() => client.close());
    const job = await createJob(client, { name: 'stranded' });
    await privateRedis.stop();
    // An event the consumer cannot apply: its batch waits for Redis.
    await produce(client, [event(job.id, 'accepted')]);
    await waitFor(() => /redis connection error/.test(svc.output()), {
      what: 'the service to notice Redis is gone',
    });

    const signalled = Date.now();
    svc.signal('SIGTERM');
    const code = await svc.exited;
    const took = Date.now() - signalled;
    // The CLI exits at most 3 s after its command returned, whatever is left open.
    expect(took).toBeLessThan((timeoutSeconds + 3 + 2) * 1000);
    if (code !== 0) {
      expect(code).toBe(1);
      expect(svc.output()).toMatch(/graceful shutdown did not finish in time/);
    }
  }, 120_000);
});
