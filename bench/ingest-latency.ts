/**
 * Produce -> visible latency at a steady rate (default 1,000 events/s for 10 s): log
 * chunks produced to the events topic by a separate load process (bench/ingest-load.ts,
 * wall-clock send times), timed until the broker's notification for the
 * stored chunk arrives (what /wait and the SSE streams see). The consumer runs with the
 * service's metrics listening. Baseline in the same run:
 * kafkajs produce -> consume latency of the same traffic with a read-only consumer.
 * Each side first gets WARMUP_SECONDS of the same traffic, not measured: a freshly
 * started Kafka broker and a fresh process answer the first seconds of offset commits
 * and fetches 10-20 times slower (batches of a few events took 20-50 ms instead of 3),
 * which is start-up, not the steady state this measures. One round measures both sides;
 * a p99 of 10 s of traffic moves with every stall of a busy machine, so the run reports
 * the median of the rounds' p99s (three by default). Target: p99 <= 50 ms.
 *
 *   npx tsx bench/ingest-latency.ts     (BENCH_RATE events/s, BENCH_SECONDS, BENCH_JOBS, BENCH_ROUNDS)
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { EventsConsumer } from '../src/consumers/events-consumer.js';
import { createConsumer, createProducer } from '../src/shared/kafka.js';
import { benchWorld, fmt, logger, median, percentile, runningJobs, serviceMetrics } from './ingest-common.js';

const RATE = Number(process.env.BENCH_RATE ?? 1000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const M = Number(process.env.BENCH_JOBS ?? 200);
/** Messages per send: 10 every 10 ms at 1,000/s (a producer's linger, as client libraries batch). */
const PER_TICK = Number(process.env.BENCH_PER_SEND ?? 10);
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 3);
/** Rounds of both sides; the p99s reported are the medians of the rounds'. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

const w = await benchWorld(6);
try {
  const jobs = await runningJobs(w.broker, M, 'lat');
  const producer = createProducer(w.kafka);
  await producer.connect();

  /**
   * Run the load generator (its own process) and resolve with each message's send time
   * (epoch ms) under "<jobId>/<seq>", once it has sent everything.
   */
  function steadyTraffic(tag: string, seqBase: number, seconds = SECONDS): Promise<Map<string, number>> {
    return new Promise((resolve, reject) => {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', fileURLToPath(new URL('./ingest-load.ts', import.meta.url))],
        {
          env: {
            ...process.env,
            LOAD_BROKERS: w.brokers.join(','),
            LOAD_TOPIC: w.topics.events,
            LOAD_JOBS: jobs.join(','),
            LOAD_RATE: String(RATE),
            LOAD_SECONDS: String(seconds),
            LOAD_PER_SEND: String(PER_TICK),
            LOAD_SEQ_BASE: String(seqBase),
            LOAD_TAG: tag,
          },
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.on('error', reject);
      child.on('exit', (code) => {
        if (code !== 0) return reject(new Error(`load generator exited with ${code}`));
        const sent = new Map<string, number>();
        for (const line of out.split('\n')) {
          const [k, t] = line.split(' ');
          if (k && t) sent.set(k, Number(t));
        }
        resolve(sent);
      });
    });
  }

  /** Latencies of the messages sent, from arrival times recorded under the same keys. */
  const latencies = (sent: Map<string, number>, arrived: Map<string, number>) =>
    [...arrived].flatMap(([k, t]) => (sent.has(k) ? [t - sent.get(k)!] : []));

  function report(name: string, lat: number[]) {
    lat.sort((a, b) => a - b);
    console.log(
      `${name}: n=${lat.length} p50=${fmt(percentile(lat, 50))} ms p99=${fmt(percentile(lat, 99))} ms max=${fmt(lat[lat.length - 1] ?? Number.NaN)} ms`,
    );
    return percentile(lat, 99);
  }

  const ourGroup = `bench-lat-ours-${randomUUID()}`;
  /** A seq base above every chunk sent before (a load run sends far fewer than 1M a job). */
  let lastSeqs = 0;
  const freshSeqs = () => {
    lastSeqs += 1_000_000;
    return lastSeqs;
  };

  /**
   * extjob: produce -> applied in Redis and announced (notification published by the
   * script). The same group each round: it resumes where the last round committed.
   */
  async function ours() {
    // A log notification announces the chunks stored up to its seq (a run of chunks
    // applied together is announced once): per job, [seq, arrival time] in order.
    const notes = new Map<string, [number, number][]>();
    const sub = w.redis.duplicate();
    sub.on('message', (_ch: string, msg: string) => {
      const now = performance.timeOrigin + performance.now();
      const n = JSON.parse(msg) as { id: string; kind: string; seq?: number };
      if (n.kind !== 'log' || n.seq === undefined) return;
      const list = notes.get(n.id) ?? [];
      list.push([n.seq, now]);
      notes.set(n.id, list);
    });
    /** When each sent chunk became visible: the first notification of its job at or past its seq. */
    const visible = (sent: Map<string, number>) => {
      const at = new Map<string, number>();
      for (const k of sent.keys()) {
        const cut = k.lastIndexOf('/');
        const seq = Number(k.slice(cut + 1));
        const hit = notes.get(k.slice(0, cut))?.find(([s]) => s >= seq);
        if (hit) at.set(k, hit[1]);
      }
      return at;
    };
    await sub.subscribe(w.broker.keys.notify);
    const consumer = new EventsConsumer({
      kafka: w.kafka,
      producer,
      sink: w.broker,
      topicPrefix: w.prefix,
      groupId: ourGroup,
      logger,
    });
    let joined!: () => void;
    const ready = new Promise<void>((r) => {
      joined = r;
    });
    consumer.instrumentation.on('joined', () => joined());
    const batchMs: number[] = [];
    const sizes: number[] = [];
    consumer.instrumentation.on('batch', (b) => {
      batchMs.push(b.seconds * 1000);
      sizes.push(b.size);
    });
    const stopMetrics = serviceMetrics(w.broker, consumer.instrumentation);
    await consumer.start();
    await ready;
    await new Promise((r) => setTimeout(r, 1000)); // fetch sessions settle after the join
    // seqs above every earlier chunk's (the group first catches up on the baseline's
    // traffic), so no earlier notification can stand for a measured chunk
    await steadyTraffic('ours-warmup', freshSeqs(), WARMUP_SECONDS);
    batchMs.length = 0;
    sizes.length = 0;
    const sent = await steadyTraffic('ours', freshSeqs());
    const deadline = Date.now() + 60_000;
    while (visible(sent).size < sent.size && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    const lat = latencies(sent, visible(sent));
    await consumer.stop();
    stopMetrics();
    await sub.quit();
    report('  extjob batch processing time (parse + apply + DLQ)', batchMs);
    console.log(
      `  batches: ${sizes.length}, mean size ${fmt(sizes.reduce((a, b) => a + b, 0) / Math.max(1, sizes.length))}`,
    );
    return lat;
  }

  /** Baseline: a new read-only group each round, starting at the end of the topic. */
  async function baseline() {
    const arrived = new Map<string, number>();
    const c = createConsumer(w.kafka, { groupId: `bench-lat-base-${randomUUID()}` });
    let joined!: () => void;
    const ready = new Promise<void>((r) => {
      joined = r;
    });
    c.on(c.events.GROUP_JOIN, () => joined());
    await c.connect();
    await c.subscribe({ topics: [w.topics.events], fromBeginning: false });
    await c.run({
      partitionsConsumedConcurrently: 4,
      eachBatch: async ({ batch }) => {
        const now = performance.timeOrigin + performance.now();
        for (const m of batch.messages) {
          const ce = JSON.parse(m.value!.toString()) as { subject: string; data: { seq: number } };
          arrived.set(`${ce.subject}/${ce.data.seq}`, now);
        }
      },
    });
    await ready;
    await new Promise((r) => setTimeout(r, 1000)); // fetch sessions settle after the join
    await steadyTraffic('base-warmup', freshSeqs(), WARMUP_SECONDS);
    const sent = await steadyTraffic('base', freshSeqs());
    const deadline = Date.now() + 30_000;
    while (arrived.size < sent.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await c.disconnect();
    return latencies(sent, arrived);
  }

  // Rounds alternate which side goes first, so a slow spell of the machine is shared.
  const p99s = { base: [] as number[], ours: [] as number[] };
  for (let round = 1; round <= ROUNDS; round++) {
    console.log(`round ${round} of ${ROUNDS}:`);
    const sides = round % 2 ? (['ours', 'base'] as const) : (['base', 'ours'] as const);
    const lat: { base?: number[]; ours?: number[] } = {};
    for (const side of sides) lat[side] = side === 'ours' ? await ours() : await baseline();
    p99s.base.push(report('  baseline kafkajs produce->consume', lat.base!));
    p99s.ours.push(report('  extjob produce->visible (applied in Redis, notified)', lat.ours!));
  }

  console.log(
    `\nsteady ${RATE} events/s for ${SECONDS} s after ${WARMUP_SECONDS} s not measured, ${M} jobs, ` +
      `medians of ${ROUNDS} rounds:`,
  );
  console.log(`baseline kafkajs produce->consume p99: ${fmt(median(p99s.base))} ms`);
  const p99 = median(p99s.ours);
  console.log(`extjob produce->visible p99: ${fmt(p99)} ms`);
  console.log(`target p99 <= 50 ms: ${p99 <= 50 ? 'met' : 'NOT met'}`);
  await producer.disconnect();
} finally {
  await w.close();
}
