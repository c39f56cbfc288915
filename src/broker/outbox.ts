/**
 * The outbox (SPEC 6): a Redis stream written by the scripts in the same
 * atomic step as the change. The drainer reads entries in commit order,
 * publishes them and acknowledges them (XDEL). A stream entry may stand for two
 * outbox entries with the same id (a change and the command it implies). Only
 * one drainer should publish at a time: take the lease first (acquireOutboxLease).
 * A record Kafka refuses for good (too large for the topic) is moved to a second,
 * capped stream (deadLetterOutbox) so the ones after it are published.
 */
import type { Redis } from 'ioredis';
import { decodeCause, decodeJob } from './codec.js';
import type { BrokerKeys } from './keys.js';
import type { JobState, OutboxPayload } from './types.js';

export type OutboxType = 'job.changed' | 'job.created' | 'job.cancel_requested';

export interface OutboxEntry {
  /** Stream id; pass the last one seen as `afterId` and to ackOutbox. */
  id: string;
  jobId: string;
  /** The job's version when the entry was written (per-job sequence). */
  version: number;
  /** The job's attempt (a retry is announced as job.created with attempt > 1). */
  attempt: number;
  type: OutboxType;
  payload: OutboxPayload;
}

/** One stream entry: one outbox entry, or two when it also stands for a command (`_a`). */
/** A stream entry's fields: `_`-prefixed meta fields apart from the job's own. */
function splitFields(fields: string[]): { meta: Record<string, string>; h: Record<string, string> } {
  const meta: Record<string, string> = {};
  const h: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const k = fields[i] as string;
    if (k.startsWith('_')) meta[k] = fields[i + 1] as string;
    else h[k] = fields[i + 1] as string;
  }
  return { meta, h };
}

function decodeEntry(id: string, fields: string[]): OutboxEntry[] {
  const { meta, h } = splitFields(fields);
  const jobId = meta._j;
  const type = meta._t as OutboxType | undefined;
  if (!jobId || !type) return [];
  const job = decodeJob(jobId, h, meta._s, {});
  if (!job) return [];
  const cause = meta._c ? decodeCause(JSON.parse(meta._c)) : undefined;
  const entry = (t: OutboxType): OutboxEntry => {
    const payload: OutboxEntry['payload'] = { job };
    if (t === 'job.changed') {
      payload.from = (meta._f as JobState | undefined) ?? null;
      if (meta._o) payload.to = meta._o as JobState;
      if (meta._d) payload.detail = JSON.parse(meta._d) as Record<string, unknown>;
    }
    if (cause) payload.cause = cause;
    return { id, jobId, version: job.version, attempt: job.attempt, type: t, payload };
  };
  const out = [entry(type)];
  if (meta._a) out.push(entry(meta._a as OutboxType));
  return out;
}

export async function readOutbox(
  redis: Redis,
  keys: BrokerKeys,
  afterId: string,
  count: number,
): Promise<OutboxEntry[]> {
  const start = afterId === '' || afterId === '0' || afterId === '0-0' ? '-' : `(${afterId}`;
  const rows = await redis.xrange(keys.outbox, start, '+', 'COUNT', Math.max(1, Math.min(count, 10_000)));
  const out: OutboxEntry[] = [];
  for (const [id, fields] of rows) out.push(...decodeEntry(id, fields));
  return out;
}

export async function ackOutbox(redis: Redis, keys: BrokerKeys, ids: string[]): Promise<void> {
  if (ids.length > 0) await redis.xdel(keys.outbox, ...new Set(ids));
}

/** How many dead-lettered records the dead stream keeps (the oldest are trimmed). */
export const OUTBOX_DEAD_MAX = 1000;

/**
 * KEYS outbox, dead; ARGV id, reason, refused types (comma list), now ms, max length.
 * Copies the record with `_id`, `_reason`, `_refused`, `_at` added, then deletes it
 * from the outbox, in one step. Returns 0 when the record is no longer in the outbox.
 */
const DEAD_LETTER_LUA = `
local rows = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #rows == 0 then return 0 end
local f = rows[1][2]
local n = #f
f[n + 1] = '_id'; f[n + 2] = ARGV[1]
f[n + 3] = '_reason'; f[n + 4] = ARGV[2]
f[n + 5] = '_refused'; f[n + 6] = ARGV[3]
f[n + 7] = '_at'; f[n + 8] = ARGV[4]
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[5], '*', unpack(f))
redis.call('XDEL', KEYS[1], ARGV[1])
return 1`;

/**
 * Move the outbox record `id` to the dead stream (`<prefix>:outbox:dead`) with the reason
 * Kafka gave and the types it refused, and acknowledge it. False when it was already gone.
 */
export async function deadLetterOutbox(
  redis: Redis,
  keys: BrokerKeys,
  id: string,
  reason: string,
  refused: OutboxType[],
  now: number,
): Promise<boolean> {
  const moved = await redis.eval(
    DEAD_LETTER_LUA,
    2,
    keys.outbox,
    keys.outboxDead,
    id,
    reason,
    refused.join(','),
    now,
    OUTBOX_DEAD_MAX,
  );
  return moved === 1;
}

export interface DeadOutboxRecord {
  /** The record's id in the outbox: its time part dates the change. */
  outboxId: string;
  reason: string;
  /** The types Kafka refused; the record's other entries were published. */
  refused: OutboxType[];
  /** When it was dead-lettered (ms). */
  at: number;
  /** What the record stood for, decoded as readOutbox decodes it. */
  entries: OutboxEntry[];
}

/** The dead-lettered records, oldest first (at most `count`). */
export async function readDeadOutbox(
  redis: Redis,
  keys: BrokerKeys,
  count = 100,
): Promise<DeadOutboxRecord[]> {
  const rows = await redis.xrange(keys.outboxDead, '-', '+', 'COUNT', Math.max(1, Math.min(count, 10_000)));
  return rows.map(([, fields]) => {
    const { meta } = splitFields(fields);
    const outboxId = meta._id ?? '';
    return {
      outboxId,
      reason: meta._reason ?? '',
      refused: (meta._refused ? meta._refused.split(',') : []) as OutboxType[],
      at: Number(meta._at),
      entries: decodeEntry(outboxId, fields),
    };
  });
}

const LEASE_LUA = `
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`;

/** Take or renew the drain lease for `owner`; false while another owner holds it. */
export async function acquireOutboxLease(
  redis: Redis,
  keys: BrokerKeys,
  owner: string,
  ttlMs: number,
): Promise<boolean> {
  return (await redis.eval(LEASE_LUA, 1, keys.outboxLease, owner, ttlMs)) === 1;
}

export async function releaseOutboxLease(redis: Redis, keys: BrokerKeys, owner: string): Promise<void> {
  await redis.eval(
    `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`,
    1,
    keys.outboxLease,
    owner,
  );
}
