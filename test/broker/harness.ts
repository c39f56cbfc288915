/**
 * A broker on the real Redis with its own random key prefix; cleanup removes
 * the prefix's keys (SCAN is fine in tests only).
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { inject } from 'vitest';
import {
  type BrokerDefaults,
  JobBroker,
  type JobBrokerOptions,
  type JobEvent,
} from '../../src/broker/index.js';
import { BROKER_DEFAULTS } from '../helpers/broker-defaults.js';

export const DEFAULTS: BrokerDefaults = BROKER_DEFAULTS;

export function redisUrl(): string {
  try {
    return inject('redisUrl') ?? 'redis://127.0.0.1:6379';
  } catch {
    return 'redis://127.0.0.1:6379';
  }
}

export interface Harness {
  broker: JobBroker;
  redis: Redis;
  prefix: string;
  /** Another broker on the same prefix (e.g. after a restart). */
  reopen(overrides?: Partial<JobBrokerOptions>): JobBroker;
  keys(): Promise<string[]>;
  cleanup(): Promise<void>;
}

export async function harness(overrides: Partial<JobBrokerOptions> = {}, tagged = false): Promise<Harness> {
  const redis = new Redis(redisUrl(), { lazyConnect: false });
  const prefix = tagged ? `{t-${randomUUID()}}` : `t-${randomUUID()}`;
  const brokers: JobBroker[] = [];
  const open = (o: Partial<JobBrokerOptions> = {}) => {
    const b = new JobBroker({ redis, prefix, defaults: DEFAULTS, ...overrides, ...o });
    brokers.push(b);
    return b;
  };
  const keys = async () => {
    const out: string[] = [];
    let cursor = '0';
    do {
      const pattern = `${prefix.replace(/[{}]/g, (c) => `\\${c}`)}:*`;
      const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      out.push(...batch);
    } while (cursor !== '0');
    return out;
  };
  return {
    broker: open(),
    redis,
    prefix,
    reopen: open,
    keys,
    async cleanup() {
      await Promise.all(brokers.map((b) => b.close()));
      const all = await keys();
      for (let i = 0; i < all.length; i += 500) await redis.unlink(...all.slice(i, i + 500));
      redis.disconnect();
    },
  };
}

let n = 0;
/** An event with a fresh id unless one is given. */
export function ev(kind: JobEvent['kind'], jobId: string, extra: Partial<JobEvent> = {}): JobEvent {
  n++;
  return { kind, jobId, id: `ev-${n}`, source: 'test', type: `dev.extjob.${kind}.v1`, ...extra };
}

/** Wait until `check` returns a truthy value, or fail after `timeoutMs`. */
export async function waitFor<T>(
  check: () => Promise<T> | T,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
