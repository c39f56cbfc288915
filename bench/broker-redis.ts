/**
 * A private redis-server for benchmarks (clean memory numbers, no noise from
 * other users of a shared Redis). Falls back to nothing: callers decide.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import type { BrokerDefaults } from '../src/broker/index.js';
import { brokerDefaults } from '../src/cli/service.js';
import { loadConfig } from '../src/shared/config.js';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

export async function privateRedis(): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--maxmemory-policy',
      'noeviction',
    ],
    { stdio: 'ignore' },
  );
  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => {});
    try {
      await r.connect();
      await r.ping();
      r.disconnect();
      break;
    } catch {
      r.disconnect();
      if (Date.now() > deadline) throw new Error('redis-server did not start');
      await new Promise((res) => setTimeout(res, 50));
    }
  }
  return {
    url,
    stop: async () => {
      child.kill('SIGTERM');
    },
  };
}

/** Delete every key under `prefix` (SCAN: benchmarks and tests only). */
export async function dropPrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) await redis.unlink(...keys);
  } while (cursor !== '0');
}

/** Broker defaults of every benchmark: production's (deadlines and retention far beyond a run). */
export const BENCH_DEFAULTS: BrokerDefaults = brokerDefaults(loadConfig({}));

/**
 * Calls fn on consecutive windows of `width` items, `depth` windows in flight at a
 * time (1: one after the other). With depth > 1 the client prepares a window while
 * Redis runs the previous one, as the events consumer does with several partitions.
 */
export async function inWindows<T>(
  items: T[],
  width: number,
  fn: (batch: T[]) => Promise<unknown>,
  depth = 1,
): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const start = next;
      next += width;
      await fn(items.slice(start, start + width));
    }
  };
  await Promise.all(Array.from({ length: depth }, lane));
}

export async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0);
}
