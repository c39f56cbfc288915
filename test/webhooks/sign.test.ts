import { describe, expect, it } from 'vitest';
import { sign, verify } from '../../src/consumers/webhooks-sign.js';

describe('webhook signatures', () => {
  it('is HMAC-SHA256 over "timestamp.body" (vector computed independently)', () => {
    expect(sign('whsec', 1700000000, '{"a":1}')).toBe(
      'sha256=8ad37ba156048ae0e0a5533c75cdf26fee88b07f93cb57ee4c80adb053012032',
    );
  });

  it('verifies only the right secret, body and a fresh timestamp', () => {
    const now = 1700000000_000;
    const sig = sign('k', 1700000000, 'body');
    const h = { signature: sig, timestamp: '1700000000' };
    expect(verify('k', h, 'body', { now })).toBe(true);
    expect(verify('k2', h, 'body', { now })).toBe(false);
    expect(verify('k', h, 'bodyx', { now })).toBe(false);
    expect(verify('k', { ...h, timestamp: '1700000001' }, 'body', { now })).toBe(false);
    expect(verify('k', h, 'body', { now: now + 301_000 })).toBe(false);
    expect(verify('k', { signature: undefined, timestamp: '1' }, 'body', { now })).toBe(false);
  });
});
