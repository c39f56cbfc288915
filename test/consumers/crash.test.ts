/**
 * Consuming processes die: one SIGKILLed in the middle of a batch (after its Redis
 * effects, before its commit) and restarted; three sharing the partitions with one
 * SIGKILLed. Every effect must land exactly once: each job's log chunks all there and
 * no more, each transition in history once.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { JobBroker } from '../../src/broker/index.js';
import type { JobEvent } from '../../src/broker/types.js';
import { encodeBinary, encodeStructured } from '../../src/consumers/formats/index.js';
import { kafkaBrokers, redisUrl, waitFor } from '../helpers/index.js';
import { brokerWorld, kafkaWorld } from './support.js';

const CHILD = fileURLToPath(new URL('./child-consumer.ts', import.meta.url));

interface Child {
  proc: ChildProcess;
  ready: boolean;
  applied: number;
  duplicates: number;
  batches: number;
}

function startChild(
  names: { keyPrefix: string; topicPrefix: string; group: string },
  env: Record<string, string> = {},
) {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD], {
    env: {
      ...process.env,
      KAFKA_BROKERS: kafkaBrokers().join(','),
      REDIS_URL: redisUrl(),
      KEY_PREFIX: names.keyPrefix,
      TOPIC_PREFIX: names.topicPrefix,
      GROUP: names.group,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const child: Child = { proc, ready: false, applied: 0, duplicates: 0, batches: 0 };
  let buf = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line === 'ready') child.ready = true;
      const m = /^batch (\d+) (\d+)$/.exec(line);
      if (m) {
        child.batches++;
        child.applied += Number(m[1]);
        child.duplicates += Number(m[2]);
      }
    }
  });
  onTestFinished(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });
  return child;
}

const CHUNKS = 30;

/** Each job: accepted, CHUNKS log chunks, finished; alternating binding modes. */
function jobEvents(jobId: string): JobEvent[] {
  const base = { jobId, source: '/crash-test' };
  const evs: JobEvent[] = [{ ...base, kind: 'accepted', id: `${jobId}-acc`, type: 'dev.extjob.accepted.v1' }];
  for (let seq = 0; seq < CHUNKS; seq++)
    evs.push({
      ...base,
      kind: 'log',
      id: `${jobId}-log-${seq}`,
      type: 'dev.extjob.log.v1',
      seq,
      chunk: Buffer.from(`${jobId} line ${seq}\n`),
    });
  evs.push({
    ...base,
    kind: 'finished',
    id: `${jobId}-fin`,
    type: 'dev.extjob.finished.v1',
    exitCode: 0,
    lastSeq: CHUNKS - 1,
  });
  return evs;
}

async function expectExactlyOnce(broker: JobBroker, jobs: string[]) {
  for (const id of jobs) {
    const log = (await broker.readLog(id, { limit: 1000 }))!;
    expect(log.chunks.map((c) => c.seq)).toEqual([...Array(CHUNKS).keys()]);
    expect(log.chunks.map((c) => c.data.toString()).join('')).toBe(
      [...Array(CHUNKS).keys()].map((s) => `${id} line ${s}\n`).join(''),
    );
    const transitions = (await broker.history(id))!.filter((h) => h.kind === 'transition').map((h) => h.to);
    expect(transitions).toEqual(['pending', 'running', 'passed']);
  }
}

async function allPassed(broker: JobBroker, jobs: string[]) {
  const states = await Promise.all(jobs.map(async (id) => (await broker.getJob(id))?.state));
  return states.every((s) => s === 'passed');
}

describe('consumer processes crash (real Kafka, real Redis)', () => {
  it('a consumer SIGKILLed mid-batch and restarted applies each effect exactly once', async () => {
    const w = await kafkaWorld(3);
    const { broker } = await brokerWorld(w.names.keyPrefix);
    const jobs = Array.from({ length: 12 }, (_, i) => `crash-${i}`);
    for (const id of jobs) await broker.createJob({ id, name: id });
    const msgs = jobs.flatMap((id) =>
      jobEvents(id).map((e, i) => (i % 2 ? encodeBinary(e) : encodeStructured(e))),
    );
    // Many small sends make many record batches; small fetches then make many consumer batches.
    for (let i = 0; i < msgs.length; i += 8) await w.produce(msgs.slice(i, i + 8));

    // Each batch is held open after its effects, before its commit.
    const first = startChild(w.names, { HOLD_MS: '300', MAX_BYTES: '4096' });
    await waitFor(() => first.batches >= 3, {
      timeoutMs: 30_000,
      what: 'a few batches in the first process',
    });
    first.proc.kill('SIGKILL');
    const appliedBeforeKill = first.applied;
    expect(appliedBeforeKill).toBeLessThan(msgs.length);

    const second = startChild(w.names);
    await waitFor(() => allPassed(broker, jobs), { timeoutMs: 60_000, what: 'every job passed' });
    await expectExactlyOnce(broker, jobs);
    // The killed batch was replayed, and recognized as duplicates, not applied twice.
    await waitFor(() => second.duplicates > 0, { timeoutMs: 10_000, what: 'replayed duplicates' });
  }, 120_000);

  it('three consumers share the partitions; one SIGKILLed: nothing lost, nothing doubled', async () => {
    const w = await kafkaWorld(6);
    const { broker } = await brokerWorld(w.names.keyPrefix);
    const jobs = Array.from({ length: 30 }, (_, i) => `scale-${i}`);
    for (const id of jobs) await broker.createJob({ id, name: id });
    const children = [0, 1, 2].map(() => startChild(w.names, { HOLD_MS: '50', MAX_BYTES: '8192' }));
    await waitFor(() => children.every((c) => c.ready), {
      timeoutMs: 60_000,
      what: 'three consumers joined',
    });
    const all = jobs.map((id) => jobEvents(id));
    const half = Math.floor(all[0]!.length / 2);
    await w.produce(all.flatMap((evs) => evs.slice(0, half).map((e) => encodeStructured(e))));
    await waitFor(() => children.every((c) => c.batches > 0), {
      timeoutMs: 30_000,
      what: 'every consumer busy',
    });
    children[1]!.proc.kill('SIGKILL');
    await w.produce(all.flatMap((evs) => evs.slice(half).map((e) => encodeBinary(e))));
    await waitFor(() => allPassed(broker, jobs), { timeoutMs: 90_000, what: 'every job passed' });
    await expectExactlyOnce(broker, jobs);
  }, 150_000);

  it('a member stays ready through a rebalance that waits out a frozen member', async () => {
    const w = await kafkaWorld(3);
    const { broker } = await brokerWorld(w.names.keyPrefix);
    const a = await w.startConsumer(broker, { sessionTimeoutMs: 6000, heartbeatIntervalMs: 500 });
    let joins = 0;
    a.instrumentation.on('joined', () => joins++);
    const frozen = startChild(w.names);
    await waitFor(() => frozen.ready && joins === 1 && a.isReady(), {
      timeoutMs: 30_000,
      what: 'both members joined',
    });
    frozen.proc.kill('SIGSTOP'); // hung, not gone: the group waits out its session
    const third = await w.startConsumer(broker, {}, false);
    const since = Date.now();
    let notReady = 0;
    while (joins < 2) {
      if (!a.isReady()) notReady++;
      if (Date.now() - since > 30_000) throw new Error('no rebalance within 30 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    const rebalanced = Date.now() - since;
    frozen.proc.kill('SIGKILL');
    await third.stop();
    // the rebalance lasted about the frozen member's session (6 s), and `a` stayed ready
    expect(rebalanced).toBeGreaterThan(3000);
    expect(notReady).toBe(0);
  }, 60_000);
});
