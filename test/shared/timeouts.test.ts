import { afterEach, describe, expect, it, vi } from 'vitest';
import { settledWithin, withTimeout } from '../../src/shared/timeouts.js';

const never = new Promise<never>(() => {});

describe('timeouts', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('withTimeout passes the answer or the failure on, and rejects with the message when late', async () => {
    await expect(withTimeout(Promise.resolve(7), 1000, 'late')).resolves.toBe(7);
    await expect(withTimeout(Promise.reject(new Error('boom')), 1000, 'late')).rejects.toThrow('boom');
    vi.useFakeTimers();
    const late = withTimeout(never, 1000, 'no answer within 1 s');
    const seen = late.catch((err: Error) => err.message);
    await vi.advanceTimersByTimeAsync(999);
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(await seen).toBe('no answer within 1 s');
    expect(vi.getTimerCount()).toBe(0);
  });

  it('settledWithin resolves when the promise settles either way, or when the time is up', async () => {
    vi.useFakeTimers();
    await expect(settledWithin(Promise.reject(new Error('boom')), 1000)).resolves.toBeUndefined();
    expect(vi.getTimerCount()).toBe(0); // its timer cleared
    let done = false;
    const waiting = settledWithin(never, 500).then(() => {
      done = true;
    });
    await vi.advanceTimersByTimeAsync(499);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await waiting;
    expect(done).toBe(true);
  });
});
