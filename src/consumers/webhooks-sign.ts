/**
 * Webhook signatures: `X-Extjob-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`
 * with `X-Extjob-Timestamp` (Unix seconds). Receivers recompute the HMAC over the raw
 * body and reject old timestamps to stop replays.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'X-Extjob-Signature';
export const TIMESTAMP_HEADER = 'X-Extjob-Timestamp';

export function sign(secret: string, timestamp: number | string, body: string | Buffer): string {
  const mac = createHmac('sha256', secret);
  mac.update(`${timestamp}.`);
  mac.update(body);
  return `sha256=${mac.digest('hex')}`;
}

/**
 * Check a delivery as a receiver would: signature over timestamp.body, and the
 * timestamp within `toleranceSeconds` of `now`.
 */
export function verify(
  secret: string,
  headers: { signature: string | undefined; timestamp: string | undefined },
  body: string | Buffer,
  { toleranceSeconds = 300, now = Date.now() }: { toleranceSeconds?: number; now?: number } = {},
): boolean {
  if (!headers.signature || !headers.timestamp || !/^\d{1,12}$/.test(headers.timestamp)) return false;
  if (Math.abs(now / 1000 - Number(headers.timestamp)) > toleranceSeconds) return false;
  const expected = Buffer.from(sign(secret, headers.timestamp, body));
  const got = Buffer.from(headers.signature);
  return expected.length === got.length && timingSafeEqual(expected, got);
}
