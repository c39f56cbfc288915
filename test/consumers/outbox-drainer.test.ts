/**
 * The outbox drainer on the real Kafka broker and the real broker: changes and
 * commands published as CloudEvents keyed by job id, in order per job, acknowledged
 * only after Kafka acknowledged them, and one drainer at a time across processes. A
 * record Kafka refuses for good goes to the dead stream and the rest are published; an
 * outage is waited out and loses nothing.
 */
import {
  KafkaJSConnectionError,
  KafkaJSNonRetriableError,
  KafkaJSNumberOfRetriesExceeded,
  KafkaJSProtocolError,
} from 'kafkajs';
import { Registry } from 'prom-client';
import { describe, expect, it, onTestFinished } from 'vitest';
import { instrumentMetrics } from '../../src/api/metrics.js';
import type { JobBroker, JobEvent } from '../../src/broker/index.js';
import { readDeadOutbox } from '../../src/broker/outbox.js';
import { OutboxDrainer } from '../../src/consumers/outbox-drainer.js';
import { kafkaErrorType, refusedBy } from '../../src/consumers/retry.js';
import { topicNames } from '../../src/shared/config.js';
import {
  createConsumer,
  createKafka,
  createProducer,
  createTopics,
  type Producer,
} from '../../src/shared/kafka.js';
import { isolation, kafkaBrokers, redisClient, testKafka, unique, waitFor } from '../helpers/index.js';
import { brokerWorld, kafkaWorld, quietLogger } from './support.js';

interface Seen {
  topic: string;
  key: string;
  ce: {
    id: string;
    type: string;
    subject: string;
    extjobseq: number;
    extjobcreated: string;
    data: { to?: string; from?: string | null };
  };
}

async function watch(w: Pick<Awaited<ReturnType<typeof kafkaWorld>>, 'kafka' | 'topics'>) {
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

  it('tells apart two jobs that had one id (the first removed by retention)', async () => {
    const w = await kafkaWorld(1);
    const { broker } = await brokerWorld(w.names.keyPrefix, { retentionSeconds: 0.1 });
    const drainer = new OutboxDrainer({
      source: broker,
      producer: w.producer,
      topicPrefix: w.names.topicPrefix,
      logger: quietLogger(),
      idleMs: 50,
    });
    await drainer.start();
    onTestFinished(() => drainer.stop());
    const seen = await watch(w);
    const finish = (n: number) =>
      broker.applyEvents([
        {
          kind: 'finished',
          jobId: 'again',
          id: `f${n}`,
          source: 't',
          type: 'dev.extjob.finished.v1',
          exitCode: 0,
        },
      ]);
    await broker.createJob({ id: 'again', name: 'first' });
    await finish(1);
    await new Promise((r) => setTimeout(r, 200));
    expect(await broker.sweepRetention()).toBe(1);
    await broker.createJob({ id: 'again', name: 'second' });
    await finish(2);
    const changes = () => seen.filter((s) => s.topic === w.topics.changes);
    await waitFor(() => changes().length >= 6, { timeoutMs: 20_000, what: "both jobs' changes" });
    const created = [...new Set(changes().map((s) => s.ce.extjobcreated))];
    expect(created).toHaveLength(2);
    for (const c of created)
      expect(changes().flatMap((s) => (s.ce.extjobcreated === c ? [s.ce.extjobseq] : []))).toEqual([1, 2, 3]);
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

describe('Kafka errors the drainer dead-letters', () => {
  const protocol = (type: string, retriable: boolean) =>
    new KafkaJSProtocolError({ type, retriable, code: 0, message: type } as never);

  it('are refusals of the records themselves, also once the client gave up retrying them', () => {
    expect(refusedBy(protocol('MESSAGE_TOO_LARGE', false))).toBe('MESSAGE_TOO_LARGE');
    expect(refusedBy(protocol('RECORD_LIST_TOO_LARGE', false))).toBe('RECORD_LIST_TOO_LARGE');
    expect(refusedBy(protocol('INVALID_RECORD', false))).toBe('INVALID_RECORD');
    const corrupt = protocol('CORRUPT_MESSAGE', true);
    expect(refusedBy(new KafkaJSNumberOfRetriesExceeded(corrupt, { retryCount: 8, retryTime: 5000 }))).toBe(
      'CORRUPT_MESSAGE',
    );
    // What the client's retrier throws for an error it does not retry (its typings omit `cause`).
    const wrapped = Reflect.construct(KafkaJSNonRetriableError, [corrupt, { cause: corrupt }]);
    expect(refusedBy(wrapped)).toBe('CORRUPT_MESSAGE');
  });

  it('are never outages, leader changes or errors that refuse every record alike', () => {
    const down = new KafkaJSConnectionError('Connection error: ECONNREFUSED');
    // Outages end as a non-retriable "retries exceeded" error: its cause decides.
    const exceeded = new KafkaJSNumberOfRetriesExceeded(down, { retryCount: 8, retryTime: 5000 });
    expect(exceeded.retriable).toBe(false);
    expect(refusedBy(exceeded)).toBeUndefined();
    expect(refusedBy(down)).toBeUndefined();
    expect(refusedBy(protocol('NOT_LEADER_FOR_PARTITION', true))).toBeUndefined();
    expect(refusedBy(protocol('TOPIC_AUTHORIZATION_FAILED', false))).toBeUndefined();
    expect(refusedBy(protocol('INVALID_REQUIRED_ACKS', false))).toBeUndefined();
    expect(kafkaErrorType(protocol('OUT_OF_ORDER_SEQUENCE_NUMBER', false))).toBe(
      'OUT_OF_ORDER_SEQUENCE_NUMBER',
    );
    expect(refusedBy(new Error('MESSAGE_TOO_LARGE'))).toBeUndefined();
    expect(refusedBy(undefined)).toBeUndefined();
  });
});

/** The changes and commands topics of one test, made as the test asks; removed at the end. */
async function ownTopics(changesConfig: Record<string, string>) {
  const names = isolation();
  const kafka = testKafka();
  const admin = kafka.admin();
  await admin.connect();
  const topics = topicNames(names.topicPrefix);
  const producers: Producer[] = [];
  const newProducer = async () => {
    const p = createProducer(kafka);
    producers.push(p);
    await p.connect();
    return p;
  };
  onTestFinished(async () => {
    for (const p of producers) await p.disconnect().catch(() => {});
    await admin.deleteTopics({ topics: [topics.changes, topics.commands] }).catch(() => {});
    await admin.disconnect();
  });
  const create = () =>
    createTopics(admin, [
      {
        topic: topics.changes,
        numPartitions: 3,
        replicationFactor: 1,
        configEntries: Object.entries(changesConfig).map(([name, value]) => ({ name, value })),
      },
      { topic: topics.commands, numPartitions: 3, replicationFactor: 1 },
    ]);
  return { names, kafka, topics, newProducer, producers, create };
}

/** A drainer on the test's topics, counted by a metrics registry of its own. */
function drainerWithMetrics(t: Awaited<ReturnType<typeof ownTopics>>, broker: JobBroker, producer: Producer) {
  const drainer = new OutboxDrainer({
    source: broker,
    producer,
    newProducer: t.newProducer,
    topicPrefix: t.names.topicPrefix,
    logger: quietLogger(),
    idleMs: 50,
  });
  const registry = new Registry();
  instrumentMetrics(registry, { consumers: drainer });
  return { drainer, registry };
}

/** Start a drainer (with metrics) and a reader on the test's topics; resolves once the outbox is empty. */
async function drainAll(t: Awaited<ReturnType<typeof ownTopics>>, broker: JobBroker) {
  const pending = await broker.outboxPending();
  const { drainer, registry } = drainerWithMetrics(t, broker, await t.newProducer());
  const seen = await watch(t);
  await drainer.start();
  onTestFinished(() => drainer.stop());
  await waitFor(async () => (await broker.outboxPending()) === 0, {
    timeoutMs: 30_000,
    what: `an empty outbox (had ${pending})`,
  });
  return { seen, registry };
}

/** Unique messages in the order a reader that drops `extjobseq` values it has seen keeps them. */
function readerView(seen: Seen[], topic: string, key: string) {
  let last = 0;
  return seen
    .filter((s) => s.topic === topic && s.key === key)
    .filter((s) => {
      if (s.ce.extjobseq <= last) return false;
      last = s.ce.extjobseq;
      return true;
    });
}

const event = (jobId: string, kind: JobEvent['kind'], extra: Partial<JobEvent> = {}): JobEvent => ({
  kind,
  jobId,
  id: unique(kind),
  source: 'test',
  type: `dev.extjob.${kind}.v1`,
  ...extra,
});

const deadCount = async (registry: Registry) =>
  (await registry.getSingleMetric('extjob_outbox_dead_total')?.get())?.values.find(
    (v) => v.labels.reason === 'message_too_large',
  )?.value;

describe('a record Kafka refuses for good', () => {
  it('goes to the dead stream with its reason, and every later change is published', async () => {
    // Changes above 4,000 bytes are refused; the commands topic takes the usual 1 MB.
    const t = await ownTopics({ 'max.message.bytes': '4000' });
    await t.create();
    const { redis, broker } = await brokerWorld(t.names.keyPrefix);
    const small = (n: string) => Array.from({ length: 5 }, (_, i) => `${n}-${i}`);

    // One batch: small jobs, then a job whose canceling change carries a 9,000-byte
    // progress message, then more small jobs and that job's next change, small again
    // once a heartbeat replaced the progress.
    for (const id of small('before')) await broker.createJob({ id, name: id });
    await broker.createJob({ id: 'big', name: 'big' });
    await broker.applyEvents([event('big', 'accepted')]);
    await broker.applyEvents([event('big', 'heartbeat', { progress: { message: 'p'.repeat(9000) } })]);
    await broker.cancelJob('big', { kind: 'api', caller: 'test' });
    for (const id of small('after')) await broker.createJob({ id, name: id });
    await broker.applyEvents([event('big', 'heartbeat', { progress: { message: 'stopping' } })]);
    await broker.applyEvents([event('big', 'canceled')]);
    const { seen, registry } = await drainAll(t, broker);
    // 10 small jobs x (change + command), and big: 3 changes and 2 commands.
    await waitFor(() => new Set(seen.map((s) => s.ce.id)).size >= 25, {
      timeoutMs: 20_000,
      what: `all messages (have ${[...new Set(seen.map((s) => s.ce.id))].sort().join(' ')})`,
    });

    for (const id of [...small('before'), ...small('after')]) {
      expect(readerView(seen, t.topics.changes, id).map((s) => s.ce.data.to)).toEqual(['pending']);
      expect(readerView(seen, t.topics.commands, id).map((s) => s.ce.type)).toEqual([
        'dev.extjob.job.created.v1',
      ]);
    }
    // The refused change (version 3, canceling) leaves a gap; the next one is published.
    const bigChanges = readerView(seen, t.topics.changes, 'big');
    expect(bigChanges.map((s) => [s.ce.extjobseq, s.ce.data.to])).toEqual([
      [1, 'pending'],
      [2, 'running'],
      [4, 'canceled'],
    ]);
    // The command of the same record fits its topic and is published.
    expect(readerView(seen, t.topics.commands, 'big').map((s) => s.ce.type)).toEqual([
      'dev.extjob.job.created.v1',
      'dev.extjob.job.cancel_requested.v1',
    ]);

    const dead = await readDeadOutbox(redis, broker.keys);
    expect(dead).toHaveLength(1);
    expect(dead[0]!.refused).toEqual(['job.changed']);
    expect(dead[0]!.reason).toMatch(/job\.changed \(\d+ bytes to .*\.changes\): MESSAGE_TOO_LARGE/);
    expect(dead[0]!.at).toBeGreaterThan(0);
    expect(dead[0]!.entries.map((e) => [e.jobId, e.version, e.type, e.payload.to])).toEqual([
      ['big', 3, 'job.changed', 'canceling'],
      ['big', 3, 'job.cancel_requested', undefined],
    ]);
    expect(dead[0]!.entries[0]!.payload.job.progress?.message).toHaveLength(9000);
    expect(await deadCount(registry)).toBe(1);
    // The refused batch was partly written: the drainer went on with a new producer.
    expect(t.producers.length).toBeGreaterThan(1);

    // And it keeps publishing what comes next.
    await broker.createJob({ id: 'later', name: 'later' });
    await waitFor(() => seen.some((s) => s.key === 'later' && s.topic === t.topics.changes), {
      what: 'a change made afterwards',
    });
    expect(await deadCount(registry)).toBe(1);
  });

  it('is not what a backlog of large changes gets: batches stay under the topic limit, nothing twice', async () => {
    // 300 jobs of 64 labels: changes of about 17 KB, 500 outbox entries (more than 1 MB
    // a partition, the topic's default limit) waiting when the drainer starts
    const t = await ownTopics({});
    await t.create();
    const { broker } = await brokerWorld(t.names.keyPrefix);
    const labels = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`label-${i}`, 'v'.repeat(250)]));
    const ids = Array.from({ length: 300 }, (_, i) => `large-${i}`);
    for (const id of ids) await broker.createJob({ id, name: id, labels });
    const { seen, registry } = await drainAll(t, broker);
    await waitFor(() => seen.length >= 600, {
      timeoutMs: 20_000,
      what: `600 messages (have ${seen.length})`,
    });
    await new Promise((r) => setTimeout(r, 500));
    expect(seen).toHaveLength(600);
    expect(new Set(seen.map((s) => `${s.topic} ${s.ce.id}`)).size).toBe(600);
    expect(t.producers).toHaveLength(1); // never replaced after a refused batch
    expect(await deadCount(registry)).toBe(0);
  });

  it('is not what an outage looks like: missing topics are waited for and nothing is dead-lettered', async () => {
    const t = await ownTopics({});
    const { redis, broker } = await brokerWorld(t.names.keyPrefix);
    // Few client retries, so each publish fails fast with "retries exceeded" (not retriable).
    const kafka = createKafka({ brokers: kafkaBrokers(), clientId: unique('drainer'), retries: 1 });
    const producer = createProducer(kafka);
    await producer.connect();
    onTestFinished(() => producer.disconnect());
    const { drainer, registry } = drainerWithMetrics(t, broker, producer);
    let retries = 0;
    drainer.instrumentation.on('retry', () => retries++);
    await broker.createJob({ id: 'waits', name: 'waits' });
    await drainer.start();
    onTestFinished(() => drainer.stop());

    await waitFor(() => retries >= 2, { timeoutMs: 30_000, what: 'two failed publishes' });
    expect(await broker.outboxPending()).toBe(1);
    expect(await readDeadOutbox(redis, broker.keys)).toEqual([]);

    await t.create();
    const seen = await watch(t);
    await waitFor(async () => (await broker.outboxPending()) === 0, {
      timeoutMs: 30_000,
      what: 'the outbox drained once the topics exist',
    });
    await waitFor(() => seen.length >= 2, { what: 'the change and the command' });
    expect(seen.map((s) => s.ce.type).sort()).toEqual([
      'dev.extjob.job.changed.v1',
      'dev.extjob.job.created.v1',
    ]);
    expect(await readDeadOutbox(redis, broker.keys)).toEqual([]);
    expect(await deadCount(registry)).toBe(0);
  });
});
