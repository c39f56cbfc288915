/**
 * Transitions per second through the real scripts (create, accepted, finished:
 * three transitions a job, events applied in pipelined batches of 250 with two
 * batches in flight, as the events consumer has with several partitions;
 * timers armed and disarmed in BullMQ), against BullMQ's own throughput
 * processing no-op jobs (a worker with concurrency 100, its best setting here:
 * 500 is no faster, 1,000 slower), in the same run on the same private Redis.
 * Target: >= 1.0x.
 * Run: npx tsx bench/broker-throughput.ts [jobs]
 */
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { JobBroker, type JobEvent } from '../src/broker/index.js';
import { BENCH_DEFAULTS, inWindows, privateRedis } from './broker-redis.js';

const N = Number(process.argv[2] ?? 10_000);
const ROUNDS = Number(process.argv[3] ?? 3);
const WIDTH = 250;
const DEPTH = 2;
const defaults = BENCH_DEFAULTS;

async function broker(redis: Redis, prefix: string): Promise<{ transitions: number; seconds: number }> {
  const b = new JobBroker({ redis, prefix, defaults });
  let transitions = 0;
  b.instrumentation.on('job_transition', () => transitions++);
  const ids = Array.from({ length: N }, (_, i) => `job-${i}`);
  const ev = (kind: JobEvent['kind'], jobId: string, extra: Partial<JobEvent> = {}): JobEvent => ({
    kind,
    jobId,
    id: `${kind}-${jobId}`,
    source: 'bench',
    type: `dev.extjob.${kind}.v1`,
    ...extra,
  });
  const t0 = performance.now();
  await inWindows(
    ids,
    WIDTH,
    (batch) => Promise.all(batch.map((id) => b.createJob({ id, name: 'n', executor: 'x' }))),
    DEPTH,
  );
  await inWindows(ids, WIDTH, (batch) => b.applyEvents(batch.map((id) => ev('accepted', id))), DEPTH);
  await inWindows(
    ids,
    WIDTH,
    (batch) => b.applyEvents(batch.map((id) => ev('finished', id, { exitCode: 0 }))),
    DEPTH,
  );
  const seconds = (performance.now() - t0) / 1000;
  await b.close();
  return { transitions, seconds };
}

async function bullmq(redis: Redis, prefix: string): Promise<{ added: number; processed: number }> {
  const queue = new Queue('noop', { connection: redis, prefix });
  const connection = redis.duplicate({ maxRetriesPerRequest: null });
  const ids = Array.from({ length: N }, (_, i) => i);
  const t0 = performance.now();
  await inWindows(ids, 500, (b) => queue.addBulk(b.map((i) => ({ name: 'noop', data: { i } }))));
  const t1 = performance.now();
  let done = 0;
  const worker = new Worker('noop', async () => 0, { connection, prefix, concurrency: 100 });
  await new Promise<void>((resolve) => {
    worker.on('completed', () => {
      if (++done === N) resolve();
    });
  });
  const t2 = performance.now();
  await worker.close();
  await queue.close();
  connection.disconnect();
  return { added: N / ((t1 - t0) / 1000), processed: N / ((t2 - t1) / 1000) };
}

const server = await privateRedis();
const redis = new Redis(server.url, { maxRetriesPerRequest: null });
try {
  console.log(`broker-throughput: ${N} jobs a round, ${ROUNDS} rounds, private redis ${server.url}`);
  const ratios: number[] = [];
  const perJob: number[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const base = await bullmq(redis, `tpb${round}`);
    const r = await broker(redis, `tp${round}`);
    const tps = r.transitions / r.seconds;
    ratios.push(tps / base.processed);
    // job for job: a job created and finished (3 transitions) against one added and
    // processed (addBulk and the worker, each timed above)
    const bullJobs = 1 / (1 / base.added + 1 / base.processed);
    perJob.push(N / r.seconds / bullJobs);
    console.log(
      `  round ${round}: baseline BullMQ no-op jobs processed ${base.processed.toFixed(0)}/s (addBulk ${base.added.toFixed(0)}/s) | ` +
        `broker ${r.transitions} transitions in ${r.seconds.toFixed(2)} s = ${tps.toFixed(0)}/s | ratio ${(tps / base.processed).toFixed(2)}x`,
    );
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  console.log(`  result: median ${median(ratios).toFixed(2)}x BullMQ no-op processing (target >= 1.0x)`);
  console.log(
    `  diagnostic, job for job: jobs created and finished ${median(perJob).toFixed(2)}x BullMQ jobs added and processed`,
  );
} finally {
  redis.disconnect();
  await server.stop();
}
