/**
 * What every integration test needs: the run's Kafka and Redis, names of its own
 * (key prefix, topics, consumer group) so tests never interfere, and waiting for a
 * condition with a deadline instead of sleeping.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { inject, onTestFinished } from 'vitest';
import { createKafka } from '../../src/shared/kafka.js';

export { dropKeys, keysWithPrefix } from './keys.js';

export const kafkaBrokers = (): string[] => inject('kafkaBrokers');
export const redisUrl = (): string => inject('redisUrl');

/** A name of this test's own: `<kind>-<uuid>`. */
export const unique = (kind: string): string => `${kind}-${randomUUID()}`;

/**
 * Names for one test: Redis key prefix, topic prefix, consumer group. Key prefixes
 * start with the run's id: the run removes its keys at the end (global-setup.ts).
 */
export function isolation() {
  const id = `${inject('runId')}-${randomUUID().slice(0, 12)}`;
  return { keyPrefix: `t-${id}`, topicPrefix: `t-${id}`, group: `g-${id}` };
}

/** A Redis client closed when the test finishes. */
export function redisClient(opts: { maxRetriesPerRequest?: number | null } = {}): Redis {
  const client = new Redis(redisUrl(), { maxRetriesPerRequest: opts.maxRetriesPerRequest ?? 3 });
  onTestFinished(async () => {
    await client.quit().catch(() => client.disconnect());
  });
  return client;
}

/** A kafkajs client on the run's broker. */
export const testKafka = (clientId = unique('test')) => createKafka({ brokers: kafkaBrokers(), clientId });

/**
 * Resolve with the first truthy value `check` returns; reject with the last value or
 * error when `timeoutMs` passes. Polls every `intervalMs`.
 */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  { timeoutMs = 10_000, intervalMs = 25, what = 'condition' } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${String(last)}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
