/**
 * A Redis that answers but refuses writes for now (out of memory under noeviction, a
 * demoted primary), on a private redis-server: reads still work in a process that
 * starts then, workers pause instead of spinning, and a READONLY answer makes the
 * service's connections connect again (to the new primary behind the same name).
 */
import { Redis } from 'ioredis';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { JobBroker } from '../../src/broker/index.js';
import { type LocalRedis, startRedis } from '../../src/cli/local/redis.js';
import { redisOptions } from '../../src/cli/service.js';
import { loadConfig } from '../../src/shared/config.js';
import { pauseWhileRefused } from '../../src/shared/redis.js';
import { BROKER_DEFAULTS } from '../helpers/broker-defaults.js';
import { waitFor } from './helpers.js';

async function redisServer(): Promise<LocalRedis> {
  const r = await startRedis({ args: ['--save', '', '--appendonly', 'no'] });
  onTestFinished(() => r.stop());
  return r;
}

function client(url: string): Redis {
  const c = new Redis(url, redisOptions(loadConfig({ EXTJOB_REDIS_URL: url })));
  onTestFinished(() => c.disconnect());
  return c;
}

describe('drill: Redis refusing writes', () => {
  it('a process started while Redis is out of memory still reads jobs and logs', async () => {
    const r = await redisServer();
    const first = new JobBroker({ redis: client(r.url), prefix: 'oom', defaults: BROKER_DEFAULTS });
    await first.createJob({ id: 'j1', name: 'n' });
    const admin = client(r.url);
    await admin.config('SET', 'maxmemory-policy', 'noeviction');
    await admin.config('SET', 'maxmemory', '1');
    // a new process: its client has not loaded the library, and Redis refuses the load
    const later = new JobBroker({ redis: client(r.url), prefix: 'oom', defaults: BROKER_DEFAULTS });
    expect(await later.getJob('j1')).toMatchObject({ id: 'j1', state: 'pending' });
    expect(await later.readLog('j1')).toMatchObject({ chunks: [], gaps: [] });
    await expect(later.createJob({ id: 'j2', name: 'n' })).rejects.toMatchObject({
      code: 'EXTJOB_REDIS_UNAVAILABLE',
      message: expect.stringMatching(/Redis refused for now \(OOM/),
    });
    await admin.config('SET', 'maxmemory', '0');
    expect((await later.createJob({ id: 'j2', name: 'n' })).created).toBe(true);
  });

  it('connects again when a failover demotes the primary it reached', async () => {
    const [a, b] = [await redisServer(), await redisServer()];
    const c = client(a.url);
    await c.set('k', '1');
    const reconnects = vi.fn();
    c.on('reconnecting', reconnects);
    // a becomes a replica of b: its clients' writes are refused READONLY
    await client(a.url).replicaof('127.0.0.1', new URL(b.url).port);
    await expect(c.set('k', '2')).rejects.toThrow(/READONLY/);
    await waitFor(() => reconnects.mock.calls.length > 0, { what: 'a reconnect' });
    // other errors leave the connection alone
    expect(redisOptions(loadConfig({})).reconnectOnError(new Error('OOM command not allowed'))).toBe(false);
  });

  it('the timer worker pauses while Redis is out of memory instead of spinning', async () => {
    const r = await redisServer();
    const lines = { warn: 0, error: 0 };
    const logger = {
      warn: () => lines.warn++,
      error: () => lines.error++,
      info: () => {},
      debug: () => {},
      child: () => logger,
    };
    const broker = new JobBroker({
      redis: client(r.url),
      prefix: 'spin',
      defaults: BROKER_DEFAULTS,
      logger: logger as never,
      timers: { retentionSweepMs: 200 }, // a timer due all the time
    });
    onTestFinished(() => broker.close());
    await broker.startTimers();
    const admin = client(r.url);
    await admin.config('SET', 'maxmemory-policy', 'noeviction');
    await admin.config('SET', 'maxmemory', '1');
    await new Promise((res) => setTimeout(res, 3000));
    const commands = Number(/total_commands_processed:(\d+)/.exec(await admin.info('stats'))?.[1]);
    await new Promise((res) => setTimeout(res, 2000));
    const later = Number(/total_commands_processed:(\d+)/.exec(await admin.info('stats'))?.[1]);
    await admin.config('SET', 'maxmemory', '0');
    // a warning or two a pause, not thousands of errors; Redis is left alone meanwhile
    expect(lines.error).toBeLessThan(10);
    expect(lines.warn).toBeLessThan(20);
    expect(later - commands).toBeLessThan(2000);
  });

  it('pauses a worker whose Redis refuses commands, warning once a pause', async () => {
    vi.useFakeTimers();
    onTestFinished(() => {
      vi.useRealTimers();
    });
    const worker = { pause: vi.fn(async () => {}), resume: vi.fn(), closing: undefined as unknown };
    const warn = vi.fn();
    const paused = pauseWhileRefused(worker, warn, 5000);
    const oom = new Error('OOM command not allowed when used memory > maxmemory');
    for (let i = 0; i < 1000; i++) expect(paused(oom)).toBe(true);
    expect(paused(new Error('ECONNREFUSED'))).toBe(false);
    expect([worker.pause.mock.calls.length, warn.mock.calls.length]).toEqual([1, 1]);
    vi.advanceTimersByTime(5000);
    expect(worker.resume).toHaveBeenCalledTimes(1);
    paused(new Error("READONLY You can't write against a read only replica."));
    expect(worker.pause).toHaveBeenCalledTimes(2);
    // closed meanwhile: not started again
    worker.closing = Promise.resolve();
    vi.advanceTimersByTime(5000);
    expect(worker.resume).toHaveBeenCalledTimes(1);
  });
});
