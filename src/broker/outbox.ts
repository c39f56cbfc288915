/**
 * The outbox (SPEC 6): a Redis stream written by the scripts in the same
 * atomic step as the change. The drainer reads entries in commit order,
 * publishes them and acknowledges them (XDEL). A stream entry may stand for two
 * outbox entries with the same id (a change and the command it implies). Only
 * one drainer should publish at a time: take the lease first (acquireOutboxLease).
 */
import type { Redis } from 'ioredis';
import { decodeCause, decodeJob } from './codec.js';
import type { BrokerKeys } from './keys.js';
import type { Cause, Job, JobState } from './types.js';

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
  payload: { job: Job; from?: JobState | null; to?: JobState; cause?: Cause };
}

/** One stream entry: one outbox entry, or two when it also stands for a command (`_a`). */
function decodeEntry(id: string, fields: string[]): OutboxEntry[] {
  const meta: Record<string, string> = {};
  const h: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const k = fields[i] as string;
    if (k.startsWith('_')) meta[k] = fields[i + 1] as string;
    else h[k] = fields[i + 1] as string;
  }
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
