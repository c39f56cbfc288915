/**
 * Field schemas shared by the event formats: bounds on every string and number an
 * executor can send, and the one place zod issues become a DLQ detail.
 */
import { z } from 'zod';
import { EXIT_CODE_MAX, EXIT_CODE_MIN, JOB_ID_PATTERN } from '../../broker/types.js';

/** RFC 3339 date-time, as CloudEvents `time` and CDEvents `timestamp` use. */
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-](\d{2}):(\d{2}))$/;

/**
 * An RFC 3339 date-time naming a real instant: Date.parse alone takes February 30 for
 * March 1, so the day must exist in its month and the clock fields be in range. A
 * leap second (second 60 of 23:59 UTC, RFC 3339 5.7) is one, which Date.parse refuses.
 */
function isRealDateTime(s: string): boolean {
  const m = RFC3339.exec(s);
  if (!m) return false;
  const [y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0] = m.slice(1, 7).map(Number);
  const [oh, om] = [Number(m[9] ?? 0), Number(m[10] ?? 0)];
  const offset = (m[8]?.[0] === '-' ? -1 : 1) * (oh * 60 + om);
  const leap = sec === 60 && (((h * 60 + mi - offset) % 1440) + 1440) % 1440 === 1439;
  const day = new Date(Date.UTC(y, mo - 1, d)); // rolls a day its month lacks over
  return (
    day.getUTCMonth() === mo - 1 &&
    day.getUTCDate() === d &&
    h <= 23 &&
    mi <= 59 &&
    (sec <= 59 || leap) &&
    oh <= 23 &&
    om <= 59 &&
    !Number.isNaN(Date.parse(leap ? `${s.slice(0, 17)}59${s.slice(19)}` : s))
  );
}

export const MAX_ATTEMPT = 1000;
export const MAX_SEQ = 2 ** 31 - 1;

export const jobId = z.string().regex(JOB_ID_PATTERN, 'must be 1-128 characters of [A-Za-z0-9._:-]');
export const eventId = z.string().min(1).max(256);
export const eventSource = z.string().min(1).max(1024);
export const eventType = z.string().min(1).max(256);
export const timestamp = z
  .string()
  .max(64)
  .regex(RFC3339, 'must be an RFC 3339 date-time')
  .refine(isRealDateTime, 'must be a real date-time');
/** What `timestamp` accepts, without zod. */
export const isTimestamp = (v: unknown): v is string =>
  typeof v === 'string' && v.length <= 64 && isRealDateTime(v);
export const attempt = z.int().min(1).max(MAX_ATTEMPT);
export const seq = z.int().min(0).max(MAX_SEQ);
export const exitCode = z.int().min(EXIT_CODE_MIN).max(EXIT_CODE_MAX);
/** An absolute http(s) URL of at most 2048 characters. */
export function isHttpUrl(v: unknown): boolean {
  if (typeof v !== 'string' || v.length > 2048) return false;
  try {
    const u = new URL(v);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}
export const httpUrl = z.string().max(2048).refine(isHttpUrl, 'must be an absolute http(s) URL');
export const shortText = z.string().max(256);
export const message = z.string().max(1024);
export const longText = z.string().max(4096);
export const jobError = z.strictObject({ type: z.string().min(1).max(128), message: longText });
export const progress = z.strictObject({
  percent: z.number().min(0).max(100).optional(),
  phase: z.string().max(128).optional(),
  message: message.optional(),
});

/** "data.exitCode: Too small: ..." from the first zod issue. */
export function describeIssues(error: z.ZodError, prefix: string): string {
  const issue = error.issues[0];
  if (!issue) return `${prefix} is invalid`;
  const path = [prefix, ...issue.path.map(String)].filter(Boolean).join('.');
  const more = error.issues.length > 1 ? ` (and ${error.issues.length - 1} more problems)` : '';
  return `${path}: ${issue.message}${more}`;
}
