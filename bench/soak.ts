/**
 * Bounded soak: one real `extjob serve` process under a steady load for a fixed time,
 * with a short retention so finished jobs are removed while it runs. Every sample
 * prints the service's RSS and Redis `used_memory`; at the end the slope of both after
 * retention kicked in is printed beside the baseline measured in the same run (the
 * first sample after warm-up). A flat slope means nothing accumulates.
 *
 *   npx tsx bench/soak.ts [--minutes 30] [--rate 5] [--retention 60] [--sample 10]
 *
 * --rate is jobs per second; each job gets accepted, 2 heartbeats, 5 log chunks and
 * finished (9 events). Kafka and Redis are private to the run unless EXTJOB_KAFKA_BROKERS
 * or EXTJOB_REDIS_URL are set (a shared Redis makes used_memory include others' keys).
 * Not run in CI.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import type { JobEvent } from '../src/broker/types.js';
import { startKafka } from '../src/cli/local/kafka.js';
import { startRedis } from '../src/cli/local/redis.js';
import { encodeStructured } from '../src/consumers/formats/index.js';
import { topicNames } from '../src/shared/config.js';
import { createKafka, createProducer } from '../src/shared/kafka.js';
import { dropPrefix } from './broker-redis.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    rate: { type: 'string', default: '5' },
    retention: { type: 'string', default: '60' },
    sample: { type: 'string', default: '10' },
  },
});
const minutes = Number(values.minutes);
const rate = Number(values.rate);
const retentionSeconds = Number(values.retention);
const sampleSeconds = Number(values.sample);
for (const [name, v] of Object.entries({ minutes, rate, retentionSeconds, sampleSeconds }))
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`);

const MAIN = resolve(import.meta.dirname, '../src/cli/main.ts');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

async function usedMemoryMiB(redis: Redis): Promise<number> {
  const m = /used_memory:(\d+)/.exec(await redis.info('memory'));
  return m ? Number(m[1]) / 1024 / 1024 : Number.NaN;
}

/** Least-squares slope of y over x. */
function slope(points: [number, number][]): number {
  const n = points.length;
  if (n < 2) return Number.NaN;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? Number.NaN : num / den;
}

function jobEvents(jobId: string): JobEvent[] {
  const base = { jobId, source: '/soak' };
  const evs: JobEvent[] = [{ ...base, kind: 'accepted', id: `${jobId}-a`, type: 'dev.extjob.accepted.v1' }];
  for (let i = 0; i < 5; i++) {
    evs.push({
      ...base,
      kind: 'log',
      id: `${jobId}-l${i}`,
      type: 'dev.extjob.log.v1',
      seq: i,
      chunk: Buffer.from(`${new Date().toISOString()} step ${i} of ${jobId}: ${'.'.repeat(160)}\n`),
    });
    if (i % 2 === 1)
      evs.push({
        ...base,
        kind: 'heartbeat',
        id: `${jobId}-h${i}`,
        type: 'dev.extjob.heartbeat.v1',
        progress: { percent: i * 20 },
      });
  }
  evs.push({
    ...base,
    kind: 'finished',
    id: `${jobId}-f`,
    type: 'dev.extjob.finished.v1',
    exitCode: 0,
    lastSeq: 4,
  });
  return evs;
}

async function startServe(env: Record<string, string>): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'serve'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d) => {
    out = (out + d).slice(-20_000);
  });
  child.stderr?.on('data', (d) => {
    out = (out + d).slice(-20_000);
  });
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`serve exited: ${out}`);
    const port = /"port":(\d+)/.exec(out)?.[1];
    if (port) {
      const url = `http://127.0.0.1:${port}`;
      const ready = await fetch(`${url}/readyz`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ready) return { child, url };
    }
    if (Date.now() > deadline) throw new Error(`serve did not get ready: ${out}`);
    await sleep(250);
  }
}

async function main() {
  const kafkaLocal = process.env.EXTJOB_KAFKA_BROKERS ? undefined : await startKafka();
  const brokers = process.env.EXTJOB_KAFKA_BROKERS?.split(',') ?? kafkaLocal!.brokers;
  const redisLocal = process.env.EXTJOB_REDIS_URL ? undefined : await startRedis();
  const redisUrl = process.env.EXTJOB_REDIS_URL ?? redisLocal!.url;
  const id = randomUUID().slice(0, 8);
  const prefix = `soak-${id}`;
  const svc = await startServe({
    EXTJOB_REDIS_URL: redisUrl,
    EXTJOB_KAFKA_BROKERS: brokers.join(','),
    EXTJOB_REDIS_PREFIX: prefix,
    EXTJOB_TOPIC_PREFIX: prefix,
    EXTJOB_CONSUMER_GROUP: prefix,
    EXTJOB_TOPIC_REPLICATION: '1',
    EXTJOB_RETENTION_SECONDS: String(retentionSeconds),
    EXTJOB_LATE_LOG_GRACE_SECONDS: '10',
    EXTJOB_INSECURE: 'true',
    EXTJOB_HTTP_PORT: '0',
    EXTJOB_HTTP_HOST: '127.0.0.1',
    EXTJOB_LOG_LEVEL: 'info',
  });
  const pid = svc.child.pid!;
  const redis = new Redis(redisUrl);
  const kafka = createKafka({ brokers, clientId: `soak-${id}` });
  const producer = createProducer(kafka);
  await producer.connect();
  const topic = topicNames(prefix).events;

  console.log(
    `soak: ${minutes} min, ${rate} jobs/s (${rate * 9} events/s), retention ${retentionSeconds} s, sample every ${sampleSeconds} s; serve pid ${pid}`,
  );
  console.log('t_s\trss_MiB\tredis_MiB\tjobs_created\tevents_sent\terrors');
  const started = Date.now();
  const end = started + minutes * 60_000;
  const samples: { t: number; rss: number; mem: number }[] = [];
  let created = 0;
  let sent = 0;
  let errors = 0;
  let nextSample = started;
  let tick = 0;
  while (Date.now() < end) {
    if (svc.child.exitCode !== null) throw new Error(`serve died with code ${svc.child.exitCode}`);
    // One tick per second: `rate` jobs created and driven to the end.
    const ids = Array.from({ length: rate }, (_, i) => `soak-${tick}-${i}`);
    tick++;
    const tickStart = Date.now();
    await Promise.all(
      ids.map(async (jobId) => {
        const res = await fetch(`${svc.url}/v1/jobs`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ id: jobId, name: 'soak', executor: 'soak', labels: { run: id } }),
        }).catch(() => undefined);
        if (res?.status === 201) created++;
        else errors++;
      }),
    );
    const messages = ids.flatMap((j) => jobEvents(j).map(encodeStructured));
    try {
      await producer.send({ topic, acks: -1, messages });
      sent += messages.length;
    } catch {
      errors++;
    }
    if (Date.now() >= nextSample) {
      const t = (Date.now() - started) / 1000;
      const s = { t, rss: rssMiB(pid), mem: await usedMemoryMiB(redis) };
      samples.push(s);
      console.log(
        `${t.toFixed(0)}\t${s.rss.toFixed(1)}\t${s.mem.toFixed(2)}\t${created}\t${sent}\t${errors}`,
      );
      nextSample += sampleSeconds * 1000;
    }
    await sleep(Math.max(0, 1000 - (Date.now() - tickStart)));
  }

  // Baseline: the first sample after a minute of warm-up (or the first one).
  const warm = samples.find((s) => s.t >= 60) ?? samples[0];
  // Steady state: once the first jobs have aged out (retention plus a sweep margin).
  const steadyFrom = retentionSeconds + 60;
  const steady = samples.filter((s) => s.t >= steadyFrom);
  const perMin = (pts: [number, number][]) => slope(pts) * 60;
  const rssSlope = perMin(steady.map((s) => [s.t, s.rss]));
  const memSlope = perMin(steady.map((s) => [s.t, s.mem]));
  const last = samples.at(-1);
  console.log(
    `baseline (t=${warm?.t.toFixed(0)} s): rss ${warm?.rss.toFixed(1)} MiB, redis ${warm?.mem.toFixed(2)} MiB; end (t=${last?.t.toFixed(0)} s): rss ${last?.rss.toFixed(1)} MiB, redis ${last?.mem.toFixed(2)} MiB`,
  );
  console.log(
    steady.length >= 2
      ? `slope after retention kicked in (t >= ${steadyFrom} s, ${steady.length} samples): rss ${rssSlope.toFixed(2)} MiB/min, redis ${memSlope.toFixed(3)} MiB/min`
      : `too short for a slope after retention (needs t >= ${steadyFrom} s); run longer`,
  );
  if (steady.length >= 2) {
    // RSS moves in GC sawteeth; the range says whether the slope is a trend or a tooth.
    const range = (xs: number[], d: number) => `${Math.min(...xs).toFixed(d)}..${Math.max(...xs).toFixed(d)}`;
    console.log(
      `range after retention kicked in: rss ${range(
        steady.map((s) => s.rss),
        1,
      )} MiB, redis ${range(
        steady.map((s) => s.mem),
        2,
      )} MiB`,
    );
  }
  console.log(`jobs created ${created}, events sent ${sent}, errors ${errors}`);

  await producer.disconnect();
  svc.child.kill('SIGTERM');
  await new Promise((r) => svc.child.once('exit', r));
  // its topics go too (a shared Kafka keeps what is not deleted)
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: Object.values(topicNames(prefix)) }).catch(() => {});
  await admin.disconnect();
  await dropPrefix(redis, `${prefix}:`);
  await redis.quit();
  await redisLocal?.stop();
  await kafkaLocal?.stop();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
