/**
 * Wakeups over the hub's real Redis subscription: notifications that arrive between
 * two reads coalesce into one wake-up, which carries the newest of them.
 */
import { Redis } from 'ioredis';
import { describe, expect, it, onTestFinished } from 'vitest';
import { NotifyHub, Wakeups } from '../../src/api/notify-hub.js';
import { redisUrl, unique, waitFor } from '../helpers/index.js';

describe('Wakeups', () => {
  it('coalesces the notifications since the last read into the newest', async () => {
    const channel = unique('notify');
    const subscriber = new Redis(redisUrl());
    const publisher = new Redis(redisUrl());
    onTestFinished(() => {
      subscriber.disconnect();
      publisher.disconnect();
    });
    const hub = new NotifyHub(subscriber, channel);
    await hub.start();
    const seen: number[] = [];
    const probe = hub.watch('j1', (n) => {
      if (n !== 'resync') seen.push(n.v);
    });
    const wakeups = new Wakeups(hub, 'j1');
    // running (v2), back to pending on a retry (v3), running again (v4), before the waiter looks
    for (const [v, state] of [
      [2, 'running'],
      [3, 'pending'],
      [4, 'running'],
    ] as const)
      await publisher.publish(channel, JSON.stringify({ id: 'j1', v, state, kind: 'state' }));
    await waitFor(() => seen.length === 3, { what: 'the three notifications' });
    expect(await wakeups.next(1000)).toMatchObject({ v: 4, state: 'running' });
    expect(await wakeups.next(50)).toBeUndefined();
    probe();
    wakeups.close();
  });
});
