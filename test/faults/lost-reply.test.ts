/**
 * A reply lost after Redis ran the call (the connection cut in between): ioredis sends
 * the call again once it reconnects, as it does with every call it has no answer to.
 * A create sent twice that way is still the caller's own: created, with its token.
 */
import net from 'node:net';
import { Redis } from 'ioredis';
import { describe, expect, it, onTestFinished } from 'vitest';
import { JobBroker } from '../../src/broker/index.js';
import { DEFAULTS, harness, redisUrl } from '../broker/harness.js';

/**
 * A proxy to Redis that, the first time an FCALL of a function named with `marker` goes through,
 * drops what Redis answers and cuts both connections a moment later.
 */
async function cuttingProxy(marker: string): Promise<{ url: string; cuts: () => number }> {
  const target = new URL(redisUrl());
  let cuts = 0;
  let armed = true;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 6379), target.hostname);
    let cutting = false;
    client.on('data', (d) => {
      upstream.write(d);
      if (armed && d.includes('FCALL') && d.includes(marker)) {
        armed = false;
        cutting = true;
        cuts++;
        setTimeout(() => {
          client.destroy();
          upstream.destroy();
        }, 100);
      }
    });
    upstream.on('data', (d) => {
      if (!cutting) client.write(d);
    });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  onTestFinished(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { url: `redis://127.0.0.1:${(server.address() as net.AddressInfo).port}`, cuts: () => cuts };
}

describe('a reply lost after Redis ran the call', () => {
  it('a create sent again is still created, with the token the caller needs', async () => {
    const h = await harness();
    onTestFinished(() => h.cleanup());
    const proxy = await cuttingProxy('_create');
    const redis = new Redis(proxy.url, { retryStrategy: () => 50 });
    redis.on('error', () => {});
    onTestFinished(() => redis.disconnect());
    const broker = new JobBroker({ redis, prefix: h.prefix, defaults: DEFAULTS });

    const r = await broker.createJob({ id: 'lost-reply', name: 'n' });
    expect(proxy.cuts()).toBe(1);
    expect(r.created).toBe(true);
    expect(r.eventToken).toBeDefined();
    expect(await h.broker.verifyEventToken('lost-reply', r.eventToken!)).toBe(true);
    const history = await h.broker.history('lost-reply');
    expect(history?.filter((e) => e.kind === 'transition')).toHaveLength(1);
    // the same body from another call is the existing job, without a token
    const again = await h.broker.createJob({ id: 'lost-reply', name: 'n' });
    expect(again).toMatchObject({ created: false });
    expect(again.eventToken).toBeUndefined();
  });
});
