/**
 * Starts the services the tests talk to, once per run: a real single-node Kafka broker
 * (always private to the run) and Redis (EXTJOB_REDIS_URL or 127.0.0.1:6379 when it
 * answers, else a private redis-server). Tests isolate themselves by key prefix, topic
 * names and consumer group; nobody flushes a shared Redis. Every key prefix of the run
 * starts with the run's id, so the run removes its own keys at the end, and only them.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { TestProject } from 'vitest/node';
import { startKafka } from '../src/cli/local/kafka.js';
import { redisAnswers, startRedis } from '../src/cli/local/redis.js';
import { dropKeys } from './helpers/keys.js';

declare module 'vitest' {
  export interface ProvidedContext {
    kafkaBrokers: string[];
    redisUrl: string;
    /** Starts every key prefix of the run (see isolation()). */
    runId: string;
  }
}

export default async function setup(project: TestProject) {
  const started = Date.now();
  const [kafka, redis] = await Promise.all([
    startKafka({ log: (m) => console.log(`[global-setup] ${m}`) }),
    (async () => {
      const url = process.env.EXTJOB_REDIS_URL ?? 'redis://127.0.0.1:6379';
      return (await redisAnswers(url)) ? { url, stop: async () => {} } : startRedis();
    })(),
  ]);
  console.log(
    `[global-setup] Kafka ${kafka.brokers.join(',')} and Redis ${redis.url} ready in ${Date.now() - started} ms`,
  );
  project.provide('kafkaBrokers', kafka.brokers);
  project.provide('redisUrl', redis.url);
  const runId = randomUUID().slice(0, 8);
  project.provide('runId', runId);
  return async () => {
    await Promise.all([kafka.stop(), dropRunKeys(redis.url, `t-${runId}-`).then(() => redis.stop())]);
  };
}

/** Remove the keys the run's tests left under their prefixes (child processes write some too). */
async function dropRunKeys(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    await dropKeys(redis, prefix);
  } catch (err) {
    console.log(`[global-setup] could not remove the run's keys: ${String(err)}`);
  } finally {
    redis.disconnect();
  }
}
