/**
 * Redis bytes per finished job (no log), over 100,000 jobs, from INFO memory
 * used_memory on a private redis-server:
 *   A: created -> accepted -> heartbeat -> finished(0)   (3 transitions + 1 event)
 *   B: created -> accepted -> cancel -> canceled ack     (4 transitions)
 * Baseline printed beside it: the same jobs as bare BullMQ completed jobs
 * (default removeOnComplete: false, i.e. what BullMQ keeps per finished job).
 * Target: <= 1.5 KB per job. Run: npx tsx bench/broker-memory.ts [jobs]
 */
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { JobBroker, type JobEvent } from '../src/broker/index.js';
import { BENCH_DEFAULTS, inWindows, privateRedis, usedMemory } from './broker-redis.js';

const N = Number(process.argv[2] ?? 100_000);
const defaults = BENCH_DEFAULTS;

const ev = (kind: JobEvent['kind'], jobId: string, extra: Partial<JobEvent> = {}): JobEvent => ({
  kind,
  jobId,
  id: `${kind}-${jobId}-0f9c2a`,
  source: 'urn:bench:argo',
  type: `dev.extjob.${kind}.v1`,
  ...extra,
});

async function scenario(redis: Redis, prefix: string, path: 'passed' | 'canceled'): Promise<number> {
  const broker = new JobBroker({ redis, prefix, defaults });
  const ids = Array.from({ length: N }, (_, i) => `build-${100000 + i}.deploy`);
  const before = await usedMemory(redis);
  await inWindows(ids, 200, (batch) =>
    Promise.all(
      batch.map((id) =>
        broker.createJob(
          { id, name: 'deploy', executor: 'argo', labels: { pipeline: 'web', build: id.slice(6, 12) } },
          { kind: 'api', caller: 'bench' },
        ),
      ),
    ),
  );
  await inWindows(ids, 500, (b) => broker.applyEvents(b.map((id) => ev('accepted', id))));
  if (path === 'passed') {
    await inWindows(ids, 500, (b) =>
      broker.applyEvents(b.map((id) => ev('heartbeat', id, { progress: { percent: 50 } }))),
    );
    await inWindows(ids, 500, (b) => broker.applyEvents(b.map((id) => ev('finished', id, { exitCode: 0 }))));
  } else {
    await inWindows(ids, 200, (b) =>
      Promise.all(b.map((id) => broker.cancelJob(id, { kind: 'api', caller: 'bench' }))),
    );
    await inWindows(ids, 500, (b) => broker.applyEvents(b.map((id) => ev('canceled', id))));
  }
  const withOutbox = await usedMemory(redis);
  await redis.xtrim(broker.keys.outbox, 'MAXLEN', 0); // what the drainer does (XDEL after publishing)
  const after = await usedMemory(redis);
  const counts = await broker.countsByState();
  const delayed = await redis.zcard(`${prefix}:timers:delayed`);
  await broker.close();
  console.log(
    `  ${path.padEnd(8)} jobs=${N} ${JSON.stringify(counts)} delayed timers left=${delayed}\n` +
      `           bytes/job after drain: ${((after - before) / N).toFixed(0)}  (undrained outbox: ${((withOutbox - before) / N).toFixed(0)})`,
  );
  return (after - before) / N;
}

async function bullmqBaseline(redis: Redis, prefix: string): Promise<number> {
  const queue = new Queue('baseline', { connection: redis, prefix });
  const before = await usedMemory(redis);
  const ids = Array.from({ length: N }, (_, i) => `build-${100000 + i}.deploy`);
  await inWindows(ids, 1000, (b) =>
    queue.addBulk(b.map((id) => ({ name: 'deploy', data: { id, pipeline: 'web' }, opts: { jobId: id } }))),
  );
  const connection = redis.duplicate({ maxRetriesPerRequest: null });
  const worker = new Worker('baseline', async () => 0, {
    connection,
    prefix,
    concurrency: 100,
  });
  let done = 0;
  await new Promise<void>((resolve) =>
    worker.on('completed', () => {
      if (++done === N) resolve();
    }),
  );
  const after = await usedMemory(redis);
  await worker.close();
  await queue.close();
  connection.disconnect();
  return (after - before) / N;
}

const server = await privateRedis();
const redis = new Redis(server.url, { maxRetriesPerRequest: null });
try {
  console.log(`broker-memory: ${N} jobs per scenario, private redis ${server.url}`);
  const t0 = Date.now();
  const a = await scenario(redis, 'mem-a', 'passed');
  const b = await scenario(redis, 'mem-b', 'canceled');
  const base = await bullmqBaseline(redis, 'mem-bull');
  console.log(
    `  result:   passed path ${a.toFixed(0)} B/job, 4-transition cancel path ${b.toFixed(0)} B/job (target <= 1536)`,
  );
  console.log(`  baseline: BullMQ completed no-op job ${base.toFixed(0)} B/job (same Redis, same run)`);
  console.log(`  took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
} finally {
  redis.disconnect();
  await server.stop();
}
