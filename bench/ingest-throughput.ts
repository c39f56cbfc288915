/**
 * End-to-end ingest throughput: N executor events for M jobs, already in the events
 * topic, consumed by the events consumer and applied to the real broker on Redis,
 * against baselines measured in the same run: a kafkajs consumer group that only
 * reads the same messages (same group settings, no processing; target >= 0.6x), and
 * the broker's own applyEvents on the same events without Kafka (the Redis ceiling).
 * Every rate is timed from the moment the group was joined to the last message.
 *
 *   npx tsx bench/ingest-throughput.ts            (BENCH_EVENTS, BENCH_JOBS to change N, M)
 */
import { randomUUID } from 'node:crypto';
import type { JobEvent } from '../src/broker/types.js';
import { EventsConsumer } from '../src/consumers/events-consumer.js';
import { encodeBinary, encodeStructured } from '../src/consumers/formats/index.js';
import { createConsumer, createProducer } from '../src/shared/kafka.js';
import { inWindows } from './broker-redis.js';
import { benchWorld, fmt, logger, runningJobs } from './ingest-common.js';

const N = Number(process.env.BENCH_EVENTS ?? 100_000);
const M = Number(process.env.BENCH_JOBS ?? 1_000);
/** Partitions handled at once, the events consumer's default; the baseline uses the same. */
const CONCURRENCY = 16;

const w = await benchWorld(6);
try {
  const jobs = await runningJobs(w.broker, M, 'tp');
  // The mix an executor sends: mostly log chunks (~100 bytes), some heartbeats, both bindings.
  const producer = createProducer(w.kafka);
  await producer.connect();
  const line = 'x'.repeat(90);
  let batch: ReturnType<typeof encodeStructured>[] = [];
  for (let i = 0; i < N; i++) {
    const jobId = jobs[i % M]!;
    const seq = Math.floor(i / M);
    const ev: JobEvent =
      seq % 10 === 9
        ? {
            kind: 'heartbeat',
            jobId,
            id: `hb-${i}`,
            source: 'bench',
            type: 'dev.extjob.heartbeat.v1',
            progress: { percent: seq % 100 },
          }
        : {
            kind: 'log',
            jobId,
            id: `log-${i}`,
            source: 'bench',
            type: 'dev.extjob.log.v1',
            seq,
            chunk: Buffer.from(`${line} ${seq}\n`),
          };
    batch.push(i % 2 ? encodeBinary(ev) : encodeStructured(ev));
    if (batch.length === 1000) {
      await producer.send({ topic: w.topics.events, acks: -1, messages: batch });
      batch = [];
    }
  }
  if (batch.length) await producer.send({ topic: w.topics.events, acks: -1, messages: batch });
  await producer.disconnect();
  console.log(`produced ${N} events for ${M} jobs`);

  // Baseline: read-only kafkajs consumer group over the same messages.
  const baseline = await (async () => {
    const c = createConsumer(w.kafka, {
      groupId: `bench-base-${randomUUID()}`,
      maxBytesPerPartition: 1024 * 1024,
    });
    let seen = 0;
    let first = 0;
    let last = 0;
    let done!: () => void;
    const finished = new Promise<void>((r) => {
      done = r;
    });
    c.on(c.events.GROUP_JOIN, () => {
      first = performance.now();
    });
    await c.connect();
    await c.subscribe({ topics: [w.topics.events], fromBeginning: true });
    await c.run({
      partitionsConsumedConcurrently: CONCURRENCY,
      eachBatch: async ({ batch: b }) => {
        seen += b.messages.length;
        last = performance.now();
        if (seen >= N) done();
      },
    });
    await finished;
    await c.disconnect();
    return (last - first) / 1000;
  })();

  // extjob: parse, apply to Redis (one pipelined call per batch), commit.
  const ours = await (async () => {
    const producer2 = createProducer(w.kafka);
    await producer2.connect();
    const consumer = new EventsConsumer({
      kafka: w.kafka,
      producer: producer2,
      sink: w.broker,
      topicPrefix: w.prefix,
      groupId: `bench-ours-${randomUUID()}`,
      logger,
      concurrency: CONCURRENCY,
    });
    let seen = 0;
    let applied = 0;
    let first = 0;
    let last = 0;
    let done!: () => void;
    const finished = new Promise<void>((r) => {
      done = r;
    });
    consumer.instrumentation.on('joined', () => {
      first = performance.now();
    });
    consumer.instrumentation.on('batch', (b) => {
      seen += b.size;
      last = performance.now();
      if (seen >= N) done();
    });
    consumer.instrumentation.on('event', (e) => {
      if (e.result === 'applied') applied++;
    });
    await consumer.start();
    await finished;
    await consumer.stop();
    await producer2.disconnect();
    if (applied !== N) console.log(`WARNING: ${applied} of ${N} events applied`);
    return (last - first) / 1000;
  })();

  // The Redis ceiling: the broker applying the same kind of events directly, in batches the
  // size of a fetched partition batch (about 3,600 here), two in flight.
  const direct = await (async () => {
    const evs: JobEvent[] = Array.from({ length: N }, (_, i) => ({
      kind: 'log',
      jobId: jobs[i % M]!,
      id: `direct-${i}`,
      source: 'bench-direct',
      type: 'dev.extjob.log.v1',
      seq: 1_000_000 + Math.floor(i / M),
      chunk: Buffer.from(`${line}\n`),
    }));
    const t0 = performance.now();
    await inWindows(evs, 3600, (batch) => w.broker.applyEvents(batch), 2);
    return (performance.now() - t0) / 1000;
  })();

  const baseRate = N / baseline;
  const ourRate = N / ours;
  console.log(`baseline kafkajs consume-only: ${fmt(baseline, 2)} s, ${fmt(baseRate, 0)} events/s`);
  console.log(`extjob ingest (parse + Redis + commit): ${fmt(ours, 2)} s, ${fmt(ourRate, 0)} events/s`);
  console.log(
    `broker applyEvents without Kafka (Redis ceiling): ${fmt(direct, 2)} s, ${fmt(N / direct, 0)} events/s`,
  );
  console.log(`ratio to kafkajs consume-only: ${fmt(ourRate / baseRate, 2)}x (target >= 0.6x)`);
  console.log(`ratio to the broker's own apply rate: ${fmt(ourRate / (N / direct), 2)}x`);
} finally {
  await w.close();
}
