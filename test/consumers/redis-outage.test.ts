/**
 * Redis goes away while events arrive: the consumer must wait and retry, never
 * dead-letter the good events, and apply them once Redis is back. The broker talks to
 * the real Redis through a TCP relay that the test cuts and restores.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { describe, expect, it, onTestFinished } from 'vitest';
import { JobBroker } from '../../src/broker/index.js';
import { startRedis } from '../../src/cli/local/redis.js';
import { encodeStructured } from '../../src/consumers/formats/index.js';
import { BROKER_DEFAULTS } from '../helpers/broker-defaults.js';
import { redisUrl, waitFor } from '../helpers/index.js';
import { kafkaWorld } from './support.js';

/** A TCP relay to Redis that can be cut (listener closed, connections destroyed) and restored. */
async function relay() {
  const target = new URL(redisUrl());
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const open = () =>
    new Promise<void>((resolve) => {
      server = createServer((client) => {
        const upstream = connect(Number(target.port || 6379), target.hostname);
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('close', () => sockets.delete(s));
          s.on('error', () => s.destroy());
        }
        client.pipe(upstream).pipe(client);
      });
      server.listen(port, '127.0.0.1', () => {
        port = (server!.address() as { port: number }).port;
        resolve();
      });
    });
  const cut = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server!.close(() => resolve());
    });
  await open();
  onTestFinished(() => cut().catch(() => {}));
  return { url: () => `redis://127.0.0.1:${port}`, cut, restore: open };
}

describe('Redis outage', () => {
  // a client whose calls fail while it reconnects, and one that holds them (the service's)
  it.each([
    ['fail', 1],
    ['are held', null],
  ] as const)(
    'pauses and retries instead of dead-lettering, then applies everything (calls %s)',
    async (_, maxRetriesPerRequest) => {
      const w = await kafkaWorld(1);
      const r = await relay();
      const redis = new Redis(r.url(), { maxRetriesPerRequest, retryStrategy: () => 100 });
      redis.on('error', () => {});
      onTestFinished(() => redis.disconnect());
      const broker = new JobBroker({ redis, prefix: w.names.keyPrefix, defaults: BROKER_DEFAULTS });
      const direct = new Redis(redisUrl());
      onTestFinished(async () => {
        const keys = await direct.keys(`${w.names.keyPrefix}:*`);
        if (keys.length) await direct.del(...keys);
        direct.disconnect();
      });
      await broker.createJob({ id: 'outage', name: 'outage' });
      const consumer = await w.startConsumer(broker, {
        retryInitialMs: 50,
        retryMaxMs: 300,
        lagCheckMs: 1000,
      });
      const retries: string[] = [];
      consumer.instrumentation.on('retry', (x) => retries.push(x.operation));
      const lags: number[] = [];
      consumer.instrumentation.on('lag', (x) => lags.push(x.lag));

      await r.cut();
      await w.produce([
        encodeStructured({
          kind: 'accepted',
          jobId: 'outage',
          id: 'a',
          source: 's',
          type: 'dev.extjob.accepted.v1',
        }),
        encodeStructured({
          kind: 'log',
          jobId: 'outage',
          id: 'l',
          source: 's',
          type: 'dev.extjob.log.v1',
          seq: 0,
          chunk: Buffer.from('x'),
        }),
        encodeStructured({
          kind: 'finished',
          jobId: 'outage',
          id: 'f',
          source: 's',
          type: 'dev.extjob.finished.v1',
          exitCode: 0,
        }),
      ]);
      // held calls count as a retry each 5 s they wait
      await waitFor(() => retries.length >= 2, { timeoutMs: 20_000, what: 'retries while Redis is away' });
      expect(retries.every((op) => op === 'apply')).toBe(true);
      // the lag of the waiting batch, asked of Kafka: the three events not applied
      await waitFor(() => lags.includes(3), { timeoutMs: 20_000, what: `the lag while waiting (${lags})` });
      await r.restore();
      await waitFor(async () => (await broker.getJob('outage').catch(() => undefined))?.state === 'passed', {
        timeoutMs: 45_000,
        what: `the job passed after Redis came back (retries: ${retries.length})`,
      });
      const dlq = await w.admin.fetchTopicOffsets(w.topics.dlq);
      expect(dlq.map((p) => p.high)).toEqual(['0']);
      expect((await broker.readLog('outage', {}))!.chunks).toHaveLength(1);
      await waitFor(() => lags.at(-1) === 0, { what: `no lag once applied (${lags})` });
    },
  );

  it('waits while Redis refuses writes (out of memory), then applies everything', async () => {
    const w = await kafkaWorld(1);
    const server = await startRedis();
    onTestFinished(() => server.stop());
    const redis = new Redis(server.url);
    onTestFinished(() => redis.disconnect());
    const broker = new JobBroker({ redis, prefix: w.names.keyPrefix, defaults: BROKER_DEFAULTS });
    await broker.createJob({ id: 'oom', name: 'oom' });
    const consumer = await w.startConsumer(broker, { retryInitialMs: 50, retryMaxMs: 300 });
    const retries: string[] = [];
    consumer.instrumentation.on('retry', (x) => retries.push(x.error));

    await redis.config('SET', 'maxmemory-policy', 'noeviction');
    await redis.config('SET', 'maxmemory', '1');
    const base = { jobId: 'oom', source: 's' } as const;
    await w.produce([
      encodeStructured({ ...base, kind: 'accepted', id: 'a', type: 'dev.extjob.accepted.v1' }),
      encodeStructured({ ...base, kind: 'finished', id: 'f', type: 'dev.extjob.finished.v1', exitCode: 0 }),
    ]);
    await waitFor(() => retries.length >= 3, {
      timeoutMs: 20_000,
      what: 'retries while Redis refuses writes',
    });
    expect(retries[0]).toMatch(/EXTJOB_REDIS_UNAVAILABLE: .*OOM/);
    await redis.config('SET', 'maxmemory', '0');
    await waitFor(async () => (await broker.getJob('oom'))?.state === 'passed', {
      timeoutMs: 30_000,
      what: 'the job passed once Redis took writes again',
    });
    const dlq = await w.admin.fetchTopicOffsets(w.topics.dlq);
    expect(dlq.map((p) => p.high)).toEqual(['0']);
  });
});
