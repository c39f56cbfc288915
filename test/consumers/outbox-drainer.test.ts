/**
 * The outbox drainer on the real Kafka broker and the real broker: changes and
 * commands published as CloudEvents keyed by job id, in order per job, acknowledged
 * only after Kafka acknowledged them, and one drainer at a time across processes.
 */
import { describe, expect, it, onTestFinished } from 'vitest';
import { OutboxDrainer } from '../../src/consumers/outbox-drainer.js';
import { createConsumer } from '../../src/shared/kafka.js';
import { redisClient, unique, waitFor } from '../helpers/index.js';
import { brokerWorld, kafkaWorld, quietLogger } from './support.js';

interface Seen {
  topic: string;
  key: string;
  ce: {
    id: string;
    type: string;
    subject: string;
    extjobseq: number;
    data: { to?: string; from?: string | null };
  };
}

async function watch(w: Awaited<ReturnType<typeof kafkaWorld>>) {
  const seen: Seen[] = [];
  const c = createConsumer(w.kafka, { groupId: unique('watch'), maxWaitTimeInMs: 100 });
  await c.connect();
  await c.subscribe({ topics: [w.topics.changes, w.topics.commands], fromBeginning: true });
  await c.run({
    eachMessage: async ({ topic, message }) => {
      seen.push({ topic, key: message.key!.toString(), ce: JSON.parse(message.value!.toString()) });
    },
  });
  onTestFinished(() => c.disconnect());
  return seen;
}

describe('outbox drainer (real Kafka, real Redis)', () => {
  it('publishes changes and commands in order per job and empties the outbox', async () => {
    const w = await kafkaWorld(3);
    const { broker } = await brokerWorld(w.names.keyPrefix);
    const sub = redisClient();
    const drainer = new OutboxDrainer({
      source: broker,
      producer: w.producer,
      topicPrefix: w.names.topicPrefix,
      logger: quietLogger(),
      wakeup: { subscriber: sub, channel: broker.keys.notify },
    });
    await drainer.start();
    onTestFinished(() => drainer.stop());
    const seen = await watch(w);

    const jobs = Array.from({ length: 10 }, (_, i) => `out-${i}`);
    for (const id of jobs) await broker.createJob({ id, name: id });
    for (const id of jobs)
      await broker.applyEvents([
        { kind: 'accepted', jobId: id, id: `${id}-a`, source: 't', type: 'dev.extjob.accepted.v1' },
      ]);
    for (const id of jobs.slice(0, 5)) await broker.cancelJob(id, { kind: 'api', caller: 'test' });
    for (const id of jobs.slice(5))
      await broker.applyEvents([
        {
          kind: 'finished',
          jobId: id,
          id: `${id}-f`,
          source: 't',
          type: 'dev.extjob.finished.v1',
          exitCode: 0,
        },
      ]);

    // per job: created command, changes none->pending->running->(canceling|passed), plus cancel command
    await waitFor(() => seen.length >= 10 * 4 + 5, {
      timeoutMs: 20_000,
      what: `all messages (have ${seen.length})`,
    });
    await waitFor(async () => (await broker.outboxPending()) === 0, { what: 'an empty outbox' });
    for (const id of jobs) {
      const changes = seen.filter((s) => s.topic === w.topics.changes && s.key === id);
      expect(changes.every((s) => s.ce.type === 'dev.extjob.job.changed.v1' && s.ce.subject === id)).toBe(
        true,
      );
      const seqs = changes.map((s) => s.ce.extjobseq);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      const cancel = jobs.indexOf(id) < 5;
      expect(changes.map((s) => s.ce.data.to)).toEqual([
        'pending',
        'running',
        cancel ? 'canceling' : 'passed',
      ]);
      const commands = seen
        .filter((s) => s.topic === w.topics.commands && s.key === id)
        .map((s) => s.ce.type);
      expect(commands).toEqual(
        cancel
          ? ['dev.extjob.job.created.v1', 'dev.extjob.job.cancel_requested.v1']
          : ['dev.extjob.job.created.v1'],
      );
    }
    expect(new Set(seen.map((s) => s.ce.id)).size).toBe(seen.length);
  });

  it('lets only one of two drainers publish, and hands over when the leader stops', async () => {
    const w = await kafkaWorld(1);
    const { broker } = await brokerWorld(w.names.keyPrefix);
    const make = () =>
      new OutboxDrainer({
        source: broker,
        producer: w.producer,
        topicPrefix: w.names.topicPrefix,
        logger: quietLogger(),
        leaseMs: 2000,
        idleMs: 50,
      });
    const a = make();
    const b = make();
    await a.start();
    await waitFor(() => a.isLeader(), { what: 'a leads' });
    await b.start();
    onTestFinished(async () => {
      await a.stop();
      await b.stop();
    });
    const seen = await watch(w);
    await broker.createJob({ id: 'lease-1', name: 'x' });
    await waitFor(() => seen.length >= 2, { what: 'first job published' });
    expect(b.isLeader()).toBe(false);
    await a.stop();
    await waitFor(() => b.isLeader(), { timeoutMs: 5000, what: 'b takes over' });
    await broker.createJob({ id: 'lease-2', name: 'y' });
    await waitFor(() => seen.length >= 4, { what: 'second job published' });
    expect(seen.map((s) => s.key)).toEqual(['lease-1', 'lease-1', 'lease-2', 'lease-2'].sort());
  });
});
