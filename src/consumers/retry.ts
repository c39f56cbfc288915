/**
 * Waiting out a Redis or Kafka outage without giving up on good events: retry with
 * capped exponential backoff while the caller still owns the work. Whether an error
 * is worth retrying is read from its `retriable` flag (ExtjobError and KafkaJS errors
 * both carry one); an error without the flag is treated as retriable, because
 * dead-lettering a good event cannot be undone while a stall shows in the lag metric.
 */
import { withTimeout } from '../shared/timeouts.js';

export const isPermanent = (err: unknown): boolean =>
  typeof err === 'object' && err !== null && (err as { retriable?: unknown }).retriable === false;

/**
 * Kafka error types by which the broker refuses the records themselves: sending them
 * again cannot succeed, and other records are not affected. CORRUPT_MESSAGE is retriable
 * for the client (a checksum that failed in transit), so it is only met here once the
 * client's own retries gave up on it. Other permanent errors (authorization, required
 * acks, unsupported versions) refuse every record alike: those are retried, never
 * dead-lettered.
 */
const REFUSED_RECORDS: ReadonlySet<string> = new Set([
  'MESSAGE_TOO_LARGE',
  'RECORD_LIST_TOO_LARGE',
  'INVALID_RECORD',
  'CORRUPT_MESSAGE',
]);

/** The innermost error of a `cause` chain (the client wraps errors once its retries give up). */
export function rootCause(err: unknown): { retriable?: unknown; type?: unknown; message?: unknown } {
  let e = err as
    | { cause?: unknown; retriable?: unknown; type?: unknown; message?: unknown }
    | null
    | undefined;
  for (let depth = 0; depth < 8 && e?.cause && typeof e.cause === 'object'; depth++) e = e.cause as typeof e;
  return e && typeof e === 'object' ? e : {};
}

/** The Kafka protocol error type (MESSAGE_TOO_LARGE, ...) behind an error, if any. */
export function kafkaErrorType(err: unknown): string | undefined {
  const type = rootCause(err).type;
  return typeof type === 'string' ? type : undefined;
}

/** The refusal type when Kafka refused the records for good; undefined for anything else. */
export function refusedBy(err: unknown): string | undefined {
  const type = kafkaErrorType(err);
  return type && REFUSED_RECORDS.has(type) ? type : undefined;
}

export interface RetryControl {
  /** False once the work is no longer ours (the partition was revoked or lost). */
  stillOwned(): boolean;
  /**
   * True once the caller is stopping: work under way is finished (each operation is
   * tried), but an outage is not waited out.
   */
  stopping?(): boolean;
  /** Keep the group membership alive while waiting; false when that failed (rebalance). */
  keepAlive(): Promise<boolean>;
  onRetry?(attempt: number, delayMs: number, err: unknown): void;
  initialDelayMs?: number;
  maxDelayMs?: number;
}

export const ABORTED = Symbol('aborted');

export function backoffMs(attempt: number, initial = 100, max = 5000): number {
  const base = Math.min(max, initial * 2 ** Math.min(attempt - 1, 20));
  return Math.round(base / 2 + Math.random() * (base / 2));
}

/**
 * Run `op` until it succeeds or fails permanently (the error is thrown); ABORTED when
 * the work stopped being ours while waiting.
 */
export async function retrying<T>(op: () => Promise<T>, ctl: RetryControl): Promise<T | typeof ABORTED> {
  for (let attempt = 1; ; attempt++) {
    if (!ctl.stillOwned() || (attempt > 1 && ctl.stopping?.())) return ABORTED;
    try {
      return await op();
    } catch (err) {
      if (isPermanent(err)) throw err;
      const delay = backoffMs(attempt, ctl.initialDelayMs, ctl.maxDelayMs);
      ctl.onRetry?.(attempt, delay, err);
      if (!(await pause(delay, ctl))) return ABORTED;
    }
  }
}

/** Sleep in slices of at most a second, keeping membership alive; false when aborted. */
async function pause(ms: number, ctl: RetryControl): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    const left = until - Date.now();
    if (left <= 0) return true;
    await new Promise((r) => setTimeout(r, Math.min(left, 1000)));
    if (!ctl.stillOwned() || ctl.stopping?.() || !(await ctl.keepAlive())) return false;
  }
}

/**
 * A call still under way after a while: the Redis client holds calls while it
 * reconnects, so an outage shows as a call that does not end rather than an error.
 * Thrown by `stillWaiting` so that the wait is retried (counted, logged, membership
 * kept, given up when the work stops being ours) on the same call, not a new one.
 */
export class StillWaiting extends Error {
  readonly retriable = true;
}

/** `call`, or StillWaiting once `ms` passed without its end (the call goes on). */
export const stillWaiting = <T>(call: Promise<T>, ms: number, what: string): Promise<T> =>
  withTimeout(call, ms, () => new StillWaiting(`${what} did not answer for ${ms / 1000} s`));
