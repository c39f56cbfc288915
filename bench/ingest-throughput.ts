/**
 * End-to-end ingest throughput: N executor events for M jobs, already in the events
 * topic, consumed by the events consumer and applied to the real broker on Redis (with
 * the service's metrics listening), against baselines measured in the same run: a
 * kafkajs consumer group that only reads the same messages (same group settings, no
 * processing; target >= 0.6x), the same group also decoding each message (its headers
 * as text, its value's JSON: what reading the events costs any consumer before it
 * checks or applies anything), and the broker's own applyEvents on the same mix of
 * events without Kafka.
 * Every rate is timed from the moment the group was joined to the last message.
 *
 * A service runs for hours, so what counts is the rate once the code is warm (JIT
 * compiled): the first round warms up all four and is not counted. Each later round
 * has a topic and jobs of its own and measures the four one after the other, so a
 * slower or faster spell of the machine touches all of them; the medians are reported.
 *
 *   npx tsx bench/ingest-throughput.ts     (BENCH_EVENTS, BENCH_JOBS, BENCH_ROUNDS to change N, M, rounds)
 */
import { randomUUID } from 'node:crypto';
import { availableParallelism } from 'node:os';
import type { JobEvent } from '../src/broker/types.js';
import { EventsConsumer } from '../src/consumers/events-consumer.js';
import { encodeBinary, encodeStructured } from '../src/consumers/formats/index.js';
import { provisionTopics } from '../src/consumers/topics.js';
import { topicNames } from '../src/shared/config.js';
import { createConsumer, createProducer } from '../src/shared/kafka.js';
import { inWindows } from './broker-redis.js';
import {
  benchWorld,
  type CpuSample,
  cpuPerEvent,
  fmt,
  logger,
  mainThreadShares,
  median,
  runningJobs,
  serviceMetrics,
} from './ingest-common.js';

const N = Number(process.env.BENCH_EVENTS ?? 100_000);
const M = Number(process.env.BENCH_JOBS ?? 1_000);
/** Measured rounds, after one warm-up round. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
/** Partitions handled at once, the events consumer's default; the baseline uses the same. */
const CONCURRENCY = 16;
const line = 'x'.repeat(90);

const w = await benchWorld(6);
const admin = w.kafka.admin();
await admin.connect();

/** Log chunks each job gets from one eventsFor (its events but every tenth). */
const CHUNKS_PER_JOB = Math.ceil(N / M) - Math.floor(Math.ceil(N / M) / 10);

/**
 * N events for the jobs, the mix an executor sends: mostly log chunks (~100 bytes of
 * text, which the consumer keeps as text), a heartbeat in ten. A job's chunks are
 * numbered on from `seqBase`, one after the other, as an executor numbers them.
 */
function eventsFor(jobs: string[], tag: string, seqBase: number): JobEvent[] {
  return Array.from({ length: N }, (_, i) => {
    const jobId = jobs[i % M]!;
    const k = Math.floor(i / M); // the job's k-th event
    return k % 10 === 9
      ? {
          kind: 'heartbeat',
          jobId,
          id: `${tag}-hb-${i}`,
          source: 'bench',
          type: 'dev.extjob.heartbeat.v1',
          progress: { percent: k % 100 },
        }
      : {
          kind: 'log',
          jobId,
          id: `${tag}-log-${i}`,
          source: 'bench',
          type: 'dev.extjob.log.v1',
          seq: seqBase + k - Math.floor(k / 10),
          chunk: `${line} ${k}\n`,
        };
  });
}

/** A topic of its own with N events for M new running jobs, half in each binding. */
async function prepare(round: number) {
  const prefix = `${w.prefix}-r${round}`;
  await provisionTopics(admin, { prefix, partitions: 6, replication: 1, logger });
  const topic = topicNames(prefix).events;
  const jobs = await runningJobs(w.broker, M, `r${round}`);
  const producer = createProducer(w.kafka);
  await producer.connect();
  const events = eventsFor(jobs, 'kafka', 0);
  for (let i = 0; i < N; i += 1000) {
    const messages = events
      .slice(i, i + 1000)
      .map((ev, k) => (k % 2 ? encodeBinary(ev) : encodeStructured(ev)));
    await producer.send({ topic, acks: -1, messages });
  }
  await producer.disconnect();
  return { prefix, topic, jobs };
}

/**
 * From the group join to the N-th message seen: the rate, and the CPU each event took
 * in that window (this process, Redis, Kafka).
 */
function stopwatch() {
  let seen = 0;
  let first = 0;
  let from: Promise<CpuSample> | undefined;
  let done!: (m: Promise<Measured>) => void;
  const measured = new Promise<Measured>((r) => {
    done = r;
  });
  return {
    joined: () => {
      first = performance.now();
      from = w.cpu();
    },
    saw: (n: number) => {
      if (seen >= N) return;
      seen += n;
      if (seen < N) return;
      const seconds = (performance.now() - first) / 1000;
      const to = w.cpu();
      done(
        Promise.all([from!, to]).then(([a, b]) => ({
          rate: N / seconds,
          cpu: cpuPerEvent(a, b, N),
          main: mainThreadShares(a, b, seconds),
        })),
      );
    },
    measured,
  };
}

interface Measured {
  rate: number;
  cpu: ReturnType<typeof cpuPerEvent>;
  main?: ReturnType<typeof mainThreadShares>;
}

/**
 * A read-only kafkajs consumer group reading the topic; with `decode`, each message's
 * headers are read as text and its value's JSON is parsed, and nothing is checked.
 */
async function consumeOnly(topic: string, decode = false): Promise<Measured> {
  const c = createConsumer(w.kafka, {
    groupId: `bench-base-${randomUUID()}`,
    maxBytesPerPartition: 1024 * 1024,
  });
  const watch = stopwatch();
  c.on(c.events.GROUP_JOIN, watch.joined);
  await c.connect();
  await c.subscribe({ topics: [topic], fromBeginning: true });
  let decoded = 0;
  await c.run({
    partitionsConsumedConcurrently: CONCURRENCY,
    eachBatch: async ({ batch: b }) => {
      if (decode)
        for (const m of b.messages) {
          for (const name in m.headers) decoded += String(m.headers[name]).length;
          if (m.value) decoded += Object.keys(JSON.parse(String(m.value))).length;
        }
      watch.saw(b.messages.length);
    },
  });
  const measured = await watch.measured;
  await c.disconnect();
  if (decode && decoded === 0) console.log('WARNING: nothing decoded');
  return measured;
}

/**
 * extjob's events consumer parsing, applying to Redis and committing the topic, with
 * the service's metrics listening.
 */
async function ingest(prefix: string): Promise<Measured> {
  const producer = createProducer(w.kafka);
  await producer.connect();
  const consumer = new EventsConsumer({
    kafka: w.kafka,
    producer,
    sink: w.broker,
    topicPrefix: prefix,
    groupId: `bench-ours-${randomUUID()}`,
    logger,
    concurrency: CONCURRENCY,
  });
  const watch = stopwatch();
  let applied = 0;
  consumer.instrumentation.on('joined', watch.joined);
  consumer.instrumentation.on('batch', (b) => watch.saw(b.size));
  // counted as the metrics count them (the consumer's per-event reports cost a listener)
  const count = ({ outcomes }: { outcomes: readonly { result: string }[] }) => {
    for (const o of outcomes) if (o.result === 'applied') applied++;
  };
  w.broker.instrumentation.on('events_applied', count);
  const stopMetrics = serviceMetrics(w.broker, consumer.instrumentation);
  await consumer.start();
  const measured = await watch.measured;
  await consumer.stop();
  stopMetrics();
  w.broker.instrumentation.off('events_applied', count);
  await producer.disconnect();
  if (applied !== N) console.log(`WARNING: ${applied} of ${N} events applied`);
  return measured;
}

/**
 * The broker's own apply rate, and the CPU it takes: the same mix of events (other ids;
 * each job's log goes on where the Kafka round left it) for the same jobs applied directly, grouped as the topic's 6 partitions group them (a sixth
 * of the jobs each) in batches the size of a fetched partition batch (about 3,600
 * here), two in flight.
 */
async function direct(jobs: string[]): Promise<Measured> {
  const partitionOf = new Map(jobs.map((id, i) => [id, i % 6]));
  const events = eventsFor(jobs, 'direct', CHUNKS_PER_JOB);
  const byPartition = [0, 1, 2, 3, 4, 5].flatMap((p) => events.filter((e) => partitionOf.get(e.jobId) === p));
  const from = await w.cpu();
  const t0 = performance.now();
  await inWindows(byPartition, 3600, (batch) => w.broker.applyEvents(batch), 2);
  const rate = N / ((performance.now() - t0) / 1000);
  return { rate, cpu: cpuPerEvent(from, await w.cpu(), N) };
}

const us = (v: number | undefined) => (v === undefined ? '-' : fmt(v));
const pct = (v: number | undefined) => (v === undefined ? '-' : `${fmt(v * 100, 0)}%`);
const mainLine = (m: Measured['main']) =>
  `busy ${pct(m?.busy)} (collecting garbage ${pct(m?.gc)}), waiting for a core ${pct(m?.waiting)}`;
const cpuLine = (c: Measured['cpu']) =>
  `node ${us(c.node)} + redis ${us(c.redis)} + kafka ${us(c.kafka)} = ${us(c.total)} us`;

try {
  // What the machine allows: every process here shares its cores, so extjob can go no
  // faster than its CPU per event spread perfectly over all of them (its ceiling).
  const cores = availableParallelism();
  const rows: { base: Measured; decoded: Measured; ours: Measured; direct: Measured; ceiling: number }[] = [];
  for (let round = 0; round <= ROUNDS; round++) {
    const { prefix, topic, jobs } = await prepare(round);
    const base = await consumeOnly(topic);
    const decoded = await consumeOnly(topic, true);
    const ours = await ingest(prefix);
    const alone = await direct(jobs);
    // the round's topics go with it (a shared Kafka keeps what is not deleted)
    await admin.deleteTopics({ topics: Object.values(topicNames(prefix)) }).catch(() => {});
    const log = await w.broker.readLog(jobs[0]!, { limit: 1000 });
    if (log?.chunks.length !== 2 * CHUNKS_PER_JOB || log.gaps.length > 0)
      console.log(
        `WARNING: a job's log holds ${log?.chunks.length} chunks, gaps ${JSON.stringify(log?.gaps)}`,
      );
    const ceiling = (cores * 1e6) / ours.cpu.total;
    const what = round === 0 ? 'warm-up (not counted)' : `round ${round}`;
    console.log(
      `${what}: consume-only ${fmt(base.rate, 0)}/s, decode-only ${fmt(decoded.rate, 0)}/s (${fmt(decoded.rate / base.rate, 2)}x), ` +
        `extjob ${fmt(ours.rate, 0)}/s (${fmt(ours.rate / base.rate, 2)}x), ` +
        `broker alone ${fmt(alone.rate, 0)}/s (extjob at ${fmt(ours.rate / alone.rate, 2)}x of it)`,
    );
    console.log(`  CPU an event: consume-only ${cpuLine(base.cpu)}; extjob ${cpuLine(ours.cpu)}`);
    console.log(`  CPU an event, broker alone: ${cpuLine(alone.cpu)}`);
    console.log(
      `  main thread: consume-only ${mainLine(base.main)}; extjob ${mainLine(ours.main)} (of the window)`,
    );
    console.log(
      `  ${cores} cores allow extjob at most ${fmt(ceiling, 0)}/s (${fmt(ceiling / base.rate, 2)}x of consume-only)`,
    );
    if (round > 0) rows.push({ base, decoded, ours, direct: alone, ceiling });
  }
  const med = (f: (r: (typeof rows)[number]) => number, digits = 2) => fmt(median(rows.map(f)), digits);
  console.log(`\nmedians of ${ROUNDS} rounds, ${N} events for ${M} jobs each:`);
  console.log(`baseline kafkajs consume-only: ${med((r) => r.base.rate, 0)} events/s`);
  console.log(
    `kafkajs consume + decode only (headers as text, JSON.parse): ${med((r) => r.decoded.rate, 0)} events/s, ` +
      `${med((r) => r.decoded.rate / r.base.rate)}x of consume-only`,
  );
  console.log(`extjob ingest (parse + Redis + commit): ${med((r) => r.ours.rate, 0)} events/s`);
  console.log(
    `broker applyEvents without Kafka: ${med((r) => r.direct.rate, 0)} events/s, ` +
      `Redis ${med((r) => r.direct.cpu.redis ?? Number.NaN, 1)} us an event`,
  );
  const ratios = rows.map((r) => r.ours.rate / r.base.rate);
  console.log(
    `ratio to kafkajs consume-only: ${med((r) => r.ours.rate / r.base.rate)}x (target >= 0.6x; ` +
      `rounds ${fmt(Math.min(...ratios), 2)}-${fmt(Math.max(...ratios), 2)})`,
  );
  console.log(`ratio to the broker's own apply rate: ${med((r) => r.ours.rate / r.direct.rate)}x`);
  console.log(
    `CPU an event: consume-only ${med((r) => r.base.cpu.total, 1)} us, extjob ${med((r) => r.ours.cpu.total, 1)} us ` +
      '(Redis and Kafka counted when this run started them)',
  );
  /** The median of the rounds' values, those it is known for. */
  const medianOf = (f: (r: (typeof rows)[number]) => number | undefined) => {
    const xs = rows.map(f).filter((x): x is number => x !== undefined && Number.isFinite(x));
    return xs.length ? median(xs) : undefined;
  };
  const share = (f: (r: (typeof rows)[number]) => number | undefined) => pct(medianOf(f));
  console.log(
    `main thread, of the window: consume-only busy ${share((r) => r.base.main?.busy)} ` +
      `(collecting garbage ${share((r) => r.base.main?.gc)}), waiting for a core ${share((r) => r.base.main?.waiting)}; ` +
      `extjob busy ${share((r) => r.ours.main?.busy)} (collecting garbage ${share((r) => r.ours.main?.gc)}), ` +
      `waiting for a core ${share((r) => r.ours.main?.waiting)}`,
  );
  // the main thread's CPU an event (busy share of the window over the rate): a ratio of
  // the two that a spell of waiting for a core moves less than the rates
  const mainUs = (m: Measured) => (m.main?.busy === undefined ? undefined : (m.main.busy / m.rate) * 1e6);
  const baseUs = medianOf((r) => mainUs(r.base));
  const oursUs = medianOf((r) => mainUs(r.ours));
  console.log(
    `main thread CPU an event: consume-only ${us(baseUs)} us, decode-only ${us(medianOf((r) => mainUs(r.decoded)))} us, ` +
      `extjob ${us(oursUs)} us; consume-only's over extjob's: ` +
      `${baseUs === undefined || oursUs === undefined ? '-' : fmt(baseUs / oursUs, 2)}`,
  );
  console.log(
    `extjob's ceiling on ${cores} cores: ${med((r) => r.ceiling / r.base.rate)}x of consume-only; ` +
      `extjob reached ${med((r) => r.ours.rate / r.ceiling)} of its ceiling`,
  );
} finally {
  await admin.disconnect();
  await w.close();
}
