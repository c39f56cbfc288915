/**
 * Produce -> visible latency at a steady rate (default 1,000 events/s for 10 s): log
 * chunks produced to the events topic, timed until the broker's notification for the
 * stored chunk arrives (what /wait and the SSE streams see). Baseline in the same run:
 * kafkajs produce -> consume latency of the same traffic with a read-only consumer.
 * Target: p99 <= 50 ms.
 *
 *   npx tsx bench/ingest-latency.ts     (BENCH_RATE events/s, BENCH_SECONDS, BENCH_JOBS)
 */
import { randomUUID } from 'node:crypto';
import type { JobEvent } from '../src/broker/types.js';
import { EventsConsumer } from '../src/consumers/events-consumer.js';
import { encodeStructured } from '../src/consumers/formats/index.js';
import { createConsumer, createProducer } from '../src/shared/kafka.js';
import { benchWorld, fmt, logger, percentile, runningJobs } from './ingest-common.js';

const RATE = Number(process.env.BENCH_RATE ?? 1000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const M = Number(process.env.BENCH_JOBS ?? 200);
/** Messages per send: 10 every 10 ms at 1,000/s (a producer's linger, as client libraries batch). */
const PER_TICK = Number(process.env.BENCH_PER_SEND ?? 10);

const w = await benchWorld(6);
try {
  const jobs = await runningJobs(w.broker, M, 'lat');
  const producer = createProducer(w.kafka);
  await producer.connect();

  /** Produce at the steady rate; `sent` gets each message's send time under its key. */
  async function steadyTraffic(tag: string, sent: Map<string, number>, seqBase: number) {
    const total = RATE * SECONDS;
    const tickMs = (PER_TICK / RATE) * 1000;
    const start = performance.now();
    const inflight: Promise<unknown>[] = [];
    for (let i = 0; i < total; i += PER_TICK) {
      const due = start + (i / PER_TICK) * tickMs;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const messages = [];
      for (let k = i; k < Math.min(total, i + PER_TICK); k++) {
        const jobId = jobs[k % M]!;
        const seq = seqBase + Math.floor(k / M);
        const ev: JobEvent = {
          kind: 'log',
          jobId,
          id: `${tag}-${k}`,
          source: `bench-${tag}`,
          type: 'dev.extjob.log.v1',
          seq,
          chunk: Buffer.from(`line ${seq}\n`),
        };
        sent.set(`${jobId}/${seq}`, performance.now());
        messages.push(encodeStructured(ev));
      }
      inflight.push(producer.send({ topic: w.topics.events, acks: -1, messages }));
    }
    await Promise.all(inflight);
    return total;
  }

  function report(name: string, lat: number[]) {
    lat.sort((a, b) => a - b);
    console.log(
      `${name}: n=${lat.length} p50=${fmt(percentile(lat, 50))} ms p99=${fmt(percentile(lat, 99))} ms max=${fmt(lat[lat.length - 1] ?? Number.NaN)} ms`,
    );
    return percentile(lat, 99);
  }

  // extjob: produce -> applied in Redis and announced (notification published by the script).
  const ourLat: number[] = [];
  {
    const sent = new Map<string, number>();
    const sub = w.redis.duplicate();
    sub.on('message', (_ch: string, msg: string) => {
      const now = performance.now();
      const n = JSON.parse(msg) as { id: string; kind: string; seq?: number };
      if (n.kind !== 'log' || n.seq === undefined) return;
      const t = sent.get(`${n.id}/${n.seq}`);
      if (t !== undefined) ourLat.push(now - t);
    });
    await sub.subscribe(w.broker.keys.notify);
    const consumer = new EventsConsumer({
      kafka: w.kafka,
      producer,
      sink: w.broker,
      topicPrefix: w.prefix,
      groupId: `bench-lat-ours-${randomUUID()}`,
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
    await consumer.start();
    await ready;
    await new Promise((r) => setTimeout(r, 1000)); // fetch sessions settle after the join
    const total = await steadyTraffic('ours', sent, 0);
    const deadline = Date.now() + 60_000;
    while (ourLat.length < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await consumer.stop();
    await sub.quit();
    report('  extjob batch processing time (apply + DLQ + commit)', batchMs);
    console.log(`  batches: ${sizes.length}, mean size ${fmt(sizes.reduce((a, b) => a + b, 0) / Math.max(1, sizes.length))}`);
  }

  // Baseline, after ours on the same topic: a new read-only group starting at the end.
  const baseLat: number[] = [];
  {
    const sent = new Map<string, number>();
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
        const now = performance.now();
        for (const m of batch.messages) {
          const ce = JSON.parse(m.value!.toString()) as { subject: string; data: { seq: number } };
          const t = sent.get(`${ce.subject}/${ce.data.seq}`);
          if (t !== undefined) baseLat.push(now - t);
        }
      },
    });
    await ready;
    await new Promise((r) => setTimeout(r, 1000)); // fetch sessions settle after the join
    const total = await steadyTraffic('base', sent, 1_000_000);
    const deadline = Date.now() + 30_000;
    while (baseLat.length < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await c.disconnect();
  }

  console.log(`steady ${RATE} events/s for ${SECONDS} s, ${M} jobs`);
  report('baseline kafkajs produce->consume', baseLat);
  const p99 = report('extjob produce->visible (applied in Redis, notified)', ourLat);
  console.log(`target p99 <= 50 ms: ${p99 <= 50 ? 'met' : 'NOT met'}`);
  await producer.disconnect();
} finally {
  await w.close();
}
