/**
 * GET /v1/jobs/{id} throughput and latency against a baseline measured in the same run
 * on the same Redis: a bare express route that answers one HGETALL of the job's hash.
 * Target: the API serves >= 0.8x the baseline's requests per second.
 *
 * The servers run in a child process; this process only generates load (keep-alive
 * connections, fixed concurrency), alternating baseline and API rounds so drift in the
 * machine's load hits both alike.
 *
 * Redis: --redis URL or EXTJOB_REDIS_URL, or a private redis-server started for the run.
 *
 *   npx tsx bench/api-get.ts [--concurrency 32] [--seconds 3] [--rounds 3]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Agent, request } from 'node:http';
import { parseArgs } from 'node:util';

const JOBS = 1000;
const TOKEN = 'bench-read-token';

async function serve(redisUrl: string, prefix: string): Promise<void> {
  const express = (await import('express')).default;
  const { Redis } = await import('ioredis');
  const { JobBroker } = await import('../src/broker/index.js');
  const { BENCH_DEFAULTS, dropPrefix } = await import('./broker-redis.js');
  const { startApi } = await import('../src/api/index.js');
  const { createApp } = await import('../src/api/app.js');
  const { createRegistry } = await import('../src/api/metrics.js');
  const { Readiness } = await import('../src/api/readiness.js');
  const { createLogger } = await import('../src/shared/logger.js');
  const { sha256Hex } = await import('../src/shared/config.js');
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const logger = createLogger({ level: 'silent' });
  const broker = new JobBroker({
    redis,
    prefix,
    logger,
    defaults: BENCH_DEFAULTS,
  });
  for (let i = 0; i < JOBS; i += 100)
    await Promise.all(
      Array.from({ length: 100 }, (_, k) =>
        broker.createJob({
          id: `bench-${i + k}`,
          name: 'benchmark job',
          executor: 'argocd',
          labels: { pipeline: 'web', build: String(i + k), step: 'deploy' },
        }),
      ),
    );
  await broker.applyEvents(
    Array.from({ length: JOBS }, (_, i) => ({
      kind: 'accepted' as const,
      jobId: `bench-${i}`,
      id: `acc-${i}`,
      source: 'bench',
      type: 'dev.extjob.accepted.v1',
    })),
  );
  const api = await startApi({
    broker,
    redis,
    prefix,
    tokens: [{ sha256: sha256Hex(TOKEN), scopes: ['jobs:read'] }],
    insecure: false,
    logger,
  });
  const full = createApp({
    readiness: new Readiness(),
    registry: createRegistry(),
    logger,
    routers: [api.router],
  });
  const bare = express();
  // CPU time of this process, read between rounds (not part of the measured routes).
  bare.get('/cpu', (_req, res) => {
    const u = process.cpuUsage();
    res.json({ us: u.user + u.system });
  });
  bare.get('/jobs/:id', async (req, res) => {
    res.json(await redis.hgetall(broker.keys.job(String(req.params.id))));
  });
  // Diagnostic, not the baseline: the broker's read alone behind a bare route, to split
  // the API's cost into the broker's share and the HTTP layer's (auth, validation...).
  bare.get('/broker/:id', async (req, res) => {
    res.json(await broker.getJob(String(req.params.id)));
  });
  const listen = (app: ReturnType<typeof express>) =>
    new Promise<number>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve((s.address() as { port: number }).port));
    });
  const [fullPort, barePort] = await Promise.all([listen(full), listen(bare)]);
  process.stdout.write(`${JSON.stringify({ fullPort, barePort })}\n`);
  process.stdin.resume();
  process.stdin.on('end', async () => {
    await dropPrefix(redis, prefix);
    process.exit(0);
  });
}

interface Result {
  cpuUs: number;
  requests: number;
  seconds: number;
  latencies: number[];
  errors: number;
}

function cpuOf(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: '/cpu' }, (res) => {
      let b = '';
      res.on('data', (d) => {
        b += d;
      });
      res.on('end', () => resolve((JSON.parse(b) as { us: number }).us));
    })
      .on('error', reject)
      .end();
  });
}

async function load(
  port: number,
  path: (i: number) => string,
  concurrency: number,
  ms: number,
  cpuPort: number,
): Promise<Result> {
  const cpu0 = await cpuOf(cpuPort);
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const latencies: number[] = [];
  let errors = 0;
  let n = 0;
  const end = Date.now() + ms;
  const one = () =>
    new Promise<void>((resolve) => {
      const t0 = process.hrtime.bigint();
      const req = request(
        {
          host: '127.0.0.1',
          port,
          path: path(n++ % JOBS),
          agent,
          headers: { authorization: `Bearer ${TOKEN}` },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode !== 200) errors++;
            latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
            resolve();
          });
        },
      );
      req.on('error', () => {
        errors++;
        resolve();
      });
      req.end();
    });
  const t0 = Date.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) await one();
    }),
  );
  const seconds = (Date.now() - t0) / 1000;
  agent.destroy();
  const cpuUs = (await cpuOf(cpuPort)) - cpu0;
  return { cpuUs, requests: latencies.length, seconds, latencies, errors };
}

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;

function merge(rs: Result[]) {
  const lat = rs.flatMap((r) => r.latencies).sort((a, b) => a - b);
  const requests = rs.reduce((s, r) => s + r.requests, 0);
  const seconds = rs.reduce((s, r) => s + r.seconds, 0);
  return {
    rps: requests / seconds,
    p50: pct(lat, 50),
    p99: pct(lat, 99),
    errors: rs.reduce((s, r) => s + r.errors, 0),
    requests,
    cpuPerReqUs: rs.reduce((s, r) => s + r.cpuUs, 0) / requests,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      concurrency: { type: 'string', default: '32' },
      seconds: { type: 'string', default: '3' },
      rounds: { type: 'string', default: '3' },
      redis: { type: 'string' },
    },
  });
  const concurrency = Number(values.concurrency);
  const ms = Number(values.seconds) * 1000;
  const rounds = Number(values.rounds);
  // a private Redis unless one is given: nobody else's commands queue in front of ours
  const { privateRedis } = await import('./broker-redis.js');
  const given = values.redis ?? process.env.EXTJOB_REDIS_URL;
  const ownRedis = given ? undefined : await privateRedis();
  const redisUrl = given ?? ownRedis!.url;
  const prefix = `bench-${randomUUID().slice(0, 8)}`;
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', new URL(import.meta.url).pathname, 'serve', redisUrl, prefix],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const ports = await new Promise<{ fullPort: number; barePort: number }>((resolve, reject) => {
    let buf = '';
    child.stdout?.on('data', (d) => {
      buf += d;
      const line = buf.split('\n')[0];
      if (buf.includes('\n') && line) resolve(JSON.parse(line));
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  const bare = (i: number) => `/jobs/bench-${i}`;
  const api = (i: number) => `/v1/jobs/bench-${i}`;
  const cpu = ports.barePort;
  await load(ports.barePort, bare, concurrency, 1000, cpu); // warm-up
  await load(ports.fullPort, api, concurrency, 1000, cpu);
  const base: Result[] = [];
  const ours: Result[] = [];
  const brokerOnly: Result[] = [];
  for (let r = 0; r < rounds; r++) {
    base.push(await load(ports.barePort, bare, concurrency, ms, cpu));
    ours.push(await load(ports.fullPort, api, concurrency, ms, cpu));
    brokerOnly.push(await load(ports.barePort, (i) => `/broker/bench-${i}`, concurrency, ms, cpu));
  }
  child.stdin?.end();
  await new Promise((r) => child.once('exit', r));
  await ownRedis?.stop();
  const b = merge(base);
  const o = merge(ours);
  const f = (x: number) => x.toFixed(2);
  console.log(
    `GET one job, ${concurrency} connections, ${rounds} x ${ms / 1000} s per side, Redis ${redisUrl}`,
  );
  const line = (name: string, r: ReturnType<typeof merge>) =>
    console.log(
      `  ${name.padEnd(46)} ${r.rps.toFixed(0).padStart(6)} req/s  p50 ${f(r.p50)} ms  p99 ${f(r.p99)} ms  server CPU ${r.cpuPerReqUs.toFixed(0)} us/req  errors ${r.errors}`,
    );
  line('baseline (express + one HGETALL)', b);
  line('GET /v1/jobs/{id} (auth, validation, broker)', o);
  line('diagnostic: express + broker.getJob only', merge(brokerOnly));
  console.log(
    `  ratio ${(o.rps / b.rps).toFixed(2)}x req/s (target >= 0.80x); server CPU per request: API ${(o.cpuPerReqUs / b.cpuPerReqUs).toFixed(2)}x the baseline's`,
  );
  if (b.errors + o.errors > 0) process.exitCode = 1;
}

if (process.argv[2] === 'serve') await serve(process.argv[3] ?? '', process.argv[4] ?? 'bench');
else await main();
