/**
 * What the ingest benchmarks share: a Kafka broker (EXTJOB_KAFKA_BROKERS, or a private
 * local one started for the run), Redis (EXTJOB_REDIS_URL, or a private redis-server so
 * nobody else's commands queue in front of ours) under a key prefix of the run's own,
 * topics of its own, and cleanup of all of it.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { PerformanceObserver } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { createRegistry, instrumentMetrics } from '../src/api/metrics.js';
import { JobBroker } from '../src/broker/index.js';
import type { JobEvent } from '../src/broker/types.js';
import { startKafka } from '../src/cli/local/kafka.js';
import { startRedis } from '../src/cli/local/redis.js';
import type { Instrumentation } from '../src/consumers/instrumentation.js';
import { provisionTopics } from '../src/consumers/topics.js';
import { topicNames } from '../src/shared/config.js';
import { createKafka } from '../src/shared/kafka.js';
import { createLogger } from '../src/shared/logger.js';
import { BENCH_DEFAULTS, dropPrefix } from './broker-redis.js';

export const logger = createLogger({ level: process.env.BENCH_LOG_LEVEL ?? 'warn', name: 'bench' });

export async function benchWorld(partitions = 6) {
  const local = process.env.EXTJOB_KAFKA_BROKERS
    ? undefined
    : await startKafka({ log: (m) => console.error(`[kafka] ${m}`) });
  const brokers = process.env.EXTJOB_KAFKA_BROKERS?.split(',') ?? local!.brokers;
  const id = randomUUID().slice(0, 8);
  const prefix = `bench-${id}`;
  const kafka = createKafka({ brokers, clientId: `bench-${id}` }, logger);
  const admin = kafka.admin();
  await admin.connect();
  await provisionTopics(admin, { prefix, partitions, replication: 1, logger });
  const localRedis = process.env.EXTJOB_REDIS_URL ? undefined : await startRedis();
  const redis = new Redis(process.env.EXTJOB_REDIS_URL ?? localRedis!.url);
  const broker = new JobBroker({
    redis,
    prefix,
    defaults: BENCH_DEFAULTS,
    logger,
  });
  const topics = topicNames(prefix);
  const kafkaPid = local?.pid;
  return {
    /**
     * CPU seconds used so far by this process, and by Redis and the Kafka broker when
     * the run started them (a shared one also works for others: left out).
     */
    async cpu(): Promise<CpuSample> {
      const own = process.cpuUsage();
      const sample: CpuSample = { node: (own.user + own.system) / 1e6, gc: gcSeconds(), ...mainThread() };
      if (localRedis) {
        const info = await redis.info('cpu');
        const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1]);
        sample.redis = field('used_cpu_user') + field('used_cpu_sys');
      }
      if (kafkaPid !== undefined) sample.kafka = cpuSeconds(`/proc/${kafkaPid}`);
      return sample;
    },
    kafka,
    brokers,
    prefix,
    topics,
    redis,
    broker,
    async close() {
      await broker.close().catch(() => {});
      await admin.deleteTopics({ topics: Object.values(topics) }).catch(() => {});
      await admin.disconnect();
      await dropPrefix(redis, `${prefix}:`);
      await redis.quit();
      await localRedis?.stop();
      await local?.stop();
    },
  };
}

/**
 * The service's metrics on a consumer and its broker, as `extjob serve` wires them, so
 * the benchmark pays for the per-event counters too. Returns the function that stops them.
 */
export function serviceMetrics(broker: JobBroker, consumer: Instrumentation): () => void {
  return instrumentMetrics(createRegistry(), { broker, consumers: consumer });
}

/** Create `m` jobs and mark them running (so every later event is a plain effect). */
export async function runningJobs(broker: JobBroker, m: number, tag: string): Promise<string[]> {
  const ids = Array.from({ length: m }, (_, i) => `${tag}-${i}`);
  for (let i = 0; i < ids.length; i += 100)
    await Promise.all(ids.slice(i, i + 100).map((id) => broker.createJob({ id, name: id })));
  const accepted: JobEvent[] = ids.map((id) => ({
    kind: 'accepted',
    jobId: id,
    id: `${id}-acc`,
    source: 'bench',
    type: 'dev.extjob.accepted.v1',
  }));
  for (let i = 0; i < accepted.length; i += 500) await broker.applyEvents(accepted.slice(i, i + 500));
  return ids;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export const fmt = (n: number, digits = 1) => n.toFixed(digits);

/** The middle value; of an even count, the mean of the two middle ones. */
export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export interface CpuSample {
  node: number;
  /** Seconds the main thread was paused by garbage collection (V8's pauses, as perf_hooks reports them). */
  gc: number;
  /** This process's main thread: CPU seconds, and seconds it was ready to run but waited for a core. */
  main?: number;
  waited?: number;
  redis?: number;
  kafka?: number;
}

/** CPU used between two samples, in microseconds per event, and in all. */
export function cpuPerEvent(from: CpuSample, to: CpuSample, events: number) {
  const per = (a?: number, b?: number) =>
    a === undefined || b === undefined ? undefined : ((b - a) * 1e6) / events;
  const out = {
    node: per(from.node, to.node)!,
    redis: per(from.redis, to.redis),
    kafka: per(from.kafka, to.kafka),
  };
  return { ...out, total: out.node + (out.redis ?? 0) + (out.kafka ?? 0) };
}

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** utime + stime of a process (all its threads) or of one thread, from its /proc stat file, in seconds. */
function cpuSeconds(dir: string): number | undefined {
  try {
    const stat = readFileSync(`${dir}/stat`, 'utf8');
    // fields after the command name (which may hold spaces) in parentheses
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

/**
 * This process's main thread (its task id is the pid): CPU seconds, and seconds spent
 * ready to run but waiting for a core (schedstat's second field, in ns). Nothing where
 * /proc does not tell.
 */
function mainThread(): { main: number; waited: number } | Record<string, never> {
  const dir = `/proc/${process.pid}/task/${process.pid}`;
  try {
    const main = cpuSeconds(dir);
    const waited = Number(readFileSync(`${dir}/schedstat`, 'utf8').split(' ')[1]) / 1e9;
    return main === undefined || !Number.isFinite(waited) ? {} : { main, waited };
  } catch {
    return {};
  }
}

/**
 * Shares of a window of `seconds` in which the main thread ran, in which it was
 * ready but waited for a core (the machine's other work had them all), and in which
 * it was paused by garbage collection (part of the time it ran).
 */
export function mainThreadShares(from: CpuSample, to: CpuSample, seconds: number) {
  const share = (a?: number, b?: number) =>
    a === undefined || b === undefined ? undefined : (b - a) / seconds;
  return {
    busy: share(from.main, to.main),
    waiting: share(from.waited, to.waited),
    gc: share(from.gc, to.gc),
  };
}

let gcTotal = 0;
const gcObserver = new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) gcTotal += entry.duration / 1000;
});
gcObserver.observe({ entryTypes: ['gc'] });

/** Garbage-collection pauses of this process so far, in seconds, with those not yet delivered. */
function gcSeconds(): number {
  for (const entry of gcObserver.takeRecords()) gcTotal += entry.duration / 1000;
  return gcTotal;
}
