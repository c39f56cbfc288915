/**
 * Event tokens: random, or derived from a caller's idempotency key and the
 * installation's secret (docs/api.md, "Event tokens"). Only a digest of either is
 * stored.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Redis } from 'ioredis';
import { redisError } from './results.js';

export const randomToken = (): string => randomBytes(32).toString('base64url');

/** Stored form of an event token: SHA-256 truncated to 128 bits (base64url, 22 chars). */
export function tokenDigest(token: string): string {
  return createHash('sha256').update(token).digest('base64url').slice(0, 22);
}

/** Whether `token` is the one whose digest is `stored` (constant time). */
export function tokenMatches(stored: string | null, token: string): boolean {
  const presented = Buffer.from(tokenDigest(token));
  const expected = Buffer.from(stored ?? '');
  return expected.length === presented.length && timingSafeEqual(expected, presented);
}

/**
 * The job id (the given one, or one derived when none was given) and the event token
 * of a create under an idempotency key. The secret is made by the first to need it
 * and read for every keyed create, not kept: were it lost (a restore, a failover), a
 * process keeping the old one would derive other ids than the rest.
 */
export async function keyedIdentity(
  redis: Redis,
  secretKey: string,
  idempotencyKey: string,
  givenId: string | undefined,
): Promise<{ id: string; token: string }> {
  const made = randomBytes(32).toString('base64url');
  let secret: string;
  try {
    const had = await redis.call('SET', secretKey, made, 'NX', 'GET');
    secret = typeof had === 'string' ? had : made;
  } catch (err) {
    throw redisError(err, 'create');
  }
  const derive = (what: string) => createHmac('sha256', secret).update(`${what}\0${idempotencyKey}`);
  const id = givenId ?? jobIdFrom(derive('job id').digest('hex'));
  return { id, token: derive(`event token\0${id}`).digest('base64url') };
}

/** A job id in the form of the generated ones (j-<UUID v4>), made of hex digits. */
function jobIdFrom(hex: string): string {
  const variant = ((Number.parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  return `j-${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}
