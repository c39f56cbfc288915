/**
 * How soon GET /v1/jobs/{id}/wait answers after the change, with many waiters held at
 * once (target: within 100 ms). Baseline in the same run on the same Redis: a bare
 * Redis subscriber receiving the broker's notification for the same change, i.e. the
 * floor any push-based design can reach.
 *
 * Redis: EXTJOB_REDIS_URL, or a private redis-server started for the run.
 *
 *   npx tsx bench/api-wait.ts [--waiters 2000] [--batch 20] [--interval-ms 50]
 */
import { randomUUID } from 'node:crypto';
import { Agent, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { createApp } from '../src/api/app.js';
import { startApi } from '../src/api/index.js';
import { createRegistry } from '../src/api/metrics.js';
import { Readiness } from '../src/api/readiness.js';
import { JobBroker } from '../src/broker/index.js';
import { createLogger } from '../src/shared/logger.js';
import { BENCH_DEFAULTS, dropPrefix, privateRedis } from './broker-redis.js';

const { values } = parseArgs({
  options: {
    waiters: { type: 'string', default: '2000' },
    batch: { type: 'string', default: '20' },
    'interval-ms': { type: 'string', default: '50' },
  },
});
const N = Number(values.waiters);
const BATCH = Number(values.batch);
/** Pause between batches: latency at a steady rate of changes, not a backlog drained at once. */
const INTERVAL = Number(values['interval-ms']);
// a private Redis unless one is given: nobody else's commands queue in front of ours
const ownRedis = process.env.EXTJOB_REDIS_URL ? undefined : await privateRedis();
const redisUrl = process.env.EXTJOB_REDIS_URL ?? ownRedis!.url;
const prefix = `bench-${randomUUID().slice(0, 8)}`;
const logger = createLogger({ level: 'silent' });
const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
const broker = new JobBroker({
  redis,
  prefix,
  logger,
  defaults: BENCH_DEFAULTS,
});
for (let i = 0; i < N; i += 200)
  await Promise.all(
    Array.from({ length: Math.min(200, N - i) }, (_, k) =>
      broker.createJob({ id: `w-${i + k}`, name: 'wait bench' }),
    ),
  );

const api = await startApi({ broker, redis, prefix, tokens: [], insecure: true, logger });
const app = createApp({
  readiness: new Readiness(),
  registry: createRegistry(),
  logger,
  routers: [api.router],
});
const server = app.listen(0, '127.0.0.1');
await new Promise((r) => server.once('listening', r));
const port = (server.address() as AddressInfo).port;

// Baseline: a bare subscriber on the same channel.
const sub = redis.duplicate();
const seen = new Map<string, number>();
sub.on('message', (_ch: string, msg: string) => {
  const m = JSON.parse(msg) as { id: string; state: string };
  if (m.state === 'passed') seen.set(m.id, performance.now());
});
await sub.subscribe(`${prefix}:notify`);

const agent = new Agent({ keepAlive: true, maxSockets: N + 10 });
const answered = new Map<string, number>();
const waits = Array.from(
  { length: N },
  (_, i) =>
    new Promise<void>((resolve, reject) => {
      const id = `w-${i}`;
      request({ host: '127.0.0.1', port, path: `/v1/jobs/${id}/wait?timeoutSeconds=120`, agent }, (res) => {
        res.resume();
        res.on('end', () => {
          answered.set(id, performance.now());
          if (res.headers['extjob-condition-met'] !== 'true') reject(new Error(`${id} answered unmet`));
          resolve();
        });
      })
        .on('error', reject)
        .end();
    }),
);
while (api.hub.size < N) await new Promise((r) => setTimeout(r, 20));

const changedAt = new Map<string, number>();
for (let i = 0; i < N; i += BATCH) {
  const ids = Array.from({ length: Math.min(BATCH, N - i) }, (_, k) => `w-${i + k}`);
  const t = performance.now();
  for (const id of ids) changedAt.set(id, t);
  await broker.applyEvents(
    ids.map((id) => ({
      kind: 'finished' as const,
      jobId: id,
      id: `f-${id}`,
      source: 'bench',
      type: 'x',
      exitCode: 0,
    })),
  );
  await new Promise((r) => setTimeout(r, INTERVAL));
}
await Promise.all(waits);
while (seen.size < N) await new Promise((r) => setTimeout(r, 10));

const lat = (m: Map<string, number>) =>
  [...changedAt].map(([id, t]) => (m.get(id) ?? Number.NaN) - t).sort((a, b) => a - b);
const pct = (a: number[], p: number) =>
  a[Math.min(a.length - 1, Math.floor((p / 100) * a.length))]!.toFixed(1);
const base = lat(seen);
const ours = lat(answered);
console.log(
  `${N} waiters held at once, jobs finished ${BATCH} at a time every ${INTERVAL} ms (${((BATCH * 1000) / INTERVAL).toFixed(0)}/s), Redis ${redisUrl}`,
);
console.log(
  `  baseline (bare subscriber gets the notification): p50 ${pct(base, 50)} ms  p99 ${pct(base, 99)} ms  max ${pct(base, 100)} ms`,
);
console.log(
  `  GET /wait answered:                               p50 ${pct(ours, 50)} ms  p99 ${pct(ours, 99)} ms  max ${pct(ours, 100)} ms`,
);
console.log(`  target: p99 within 100 ms of the change`);

agent.destroy();
server.closeAllConnections();
server.close();
await api.close();
await sub.quit();
await dropPrefix(redis, prefix);
await broker.close();
redis.disconnect();
await ownRedis?.stop();
