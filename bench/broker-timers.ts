/**
 * Timer lateness with 100,000 armed timers: jobs whose accept timeouts fall
 * due spread over a one-minute window, all armed before the first one is due;
 * lateness = when the expiry ran minus its due time. Baseline printed beside
 * it: plain BullMQ delayed no-op jobs with the same due times, same Redis,
 * same run. Target: p99 <= 1 s.
 * Run: npx tsx bench/broker-timers.ts [timers] [window seconds]
 */
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { JobBroker } from '../src/broker/index.js';
import { BENCH_DEFAULTS, inWindows, privateRedis } from './broker-redis.js';

const N = Number(process.argv[2] ?? 100_000);
const WINDOW_MS = Number(process.argv[3] ?? 60) * 1000;
const defaults = BENCH_DEFAULTS;

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
};
const summary = (xs: number[]) =>
  `n=${xs.length} p50=${pct(xs, 50).toFixed(3)}s p99=${pct(xs, 99).toFixed(3)}s max=${pct(xs, 100).toFixed(3)}s`;

async function brokerRun(redis: Redis, leadMs: number): Promise<number[]> {
  const b = new JobBroker({ redis, prefix: 'tm', defaults, timers: { concurrency: 64 } });
  const late: number[] = [];
  b.instrumentation.on('timer_fired', (t) => {
    if (t.kind === 'accept' && t.effect === 'fired') late.push(t.lateSeconds);
  });
  const start = Date.now() + leadMs;
  const ids = Array.from({ length: N }, (_, i) => `job-${i}`);
  await inWindows(ids, 500, (batch) =>
    Promise.all(
      batch.map((id) => {
        const due = start + ((Number(id.slice(4)) * 7919) % WINDOW_MS);
        return b.createJob({ id, name: 'n', timeouts: { acceptSeconds: (due - Date.now()) / 1000 } });
      }),
    ),
  );
  const armedAt = Date.now();
  if (armedAt >= start)
    throw new Error(`creating ${N} jobs took longer than the ${leadMs} ms lead; raise it`);
  console.log(`  broker: ${N} jobs created, first timer due in ${((start - armedAt) / 1000).toFixed(1)} s`);
  await b.startTimers();
  const deadline = start + WINDOW_MS + 60_000;
  while (late.length < N && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
  const counts = await b.countsByState();
  console.log(`  broker: ${JSON.stringify(counts)}`);
  await b.close();
  return late;
}

async function bullmqRun(redis: Redis, leadMs: number): Promise<number[]> {
  const queue = new Queue('delayed', { connection: redis, prefix: 'tmb' });
  const start = Date.now() + leadMs;
  const late: number[] = [];
  const items = Array.from({ length: N }, (_, i) => start + ((i * 7919) % WINDOW_MS));
  await inWindows(items, 1000, (batch) =>
    queue.addBulk(
      batch.map((due) => ({
        name: 'x',
        data: { due },
        opts: { delay: due - Date.now(), removeOnComplete: true },
      })),
    ),
  );
  const connection = redis.duplicate({ maxRetriesPerRequest: null });
  const worker = new Worker(
    'delayed',
    async (job) => {
      late.push(Math.max(0, Date.now() - (job.data as { due: number }).due) / 1000);
    },
    { connection, prefix: 'tmb', concurrency: 64 },
  );
  const deadline = start + WINDOW_MS + 60_000;
  while (late.length < N && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
  await worker.close();
  await queue.close();
  connection.disconnect();
  return late;
}

const server = await privateRedis();
const redis = new Redis(server.url, { maxRetriesPerRequest: null });
try {
  console.log(`broker-timers: ${N} timers due over ${WINDOW_MS / 1000} s, private redis ${server.url}`);
  const base = await bullmqRun(redis, 15_000);
  console.log(`  baseline: BullMQ delayed no-op jobs lateness ${summary(base)}`);
  const ours = await brokerRun(redis, Number(process.env.LEAD_MS ?? 150_000));
  console.log(`  result:   broker accept timeouts lateness  ${summary(ours)} (target p99 <= 1 s)`);
} finally {
  redis.disconnect();
  await server.stop();
}
