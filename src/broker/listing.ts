/**
 * Listing jobs newest first from the ZSET indexes (score = createdAt ms), never
 * a scan. The most selective filter picks the index (label, then executor,
 * then state; no filter merges the per-state indexes); other filters are
 * checked on the loaded jobs. The cursor is an opaque "score:id".
 */
import type { Redis } from 'ioredis';
import { ExtjobError } from '../shared/errors.js';
import type { BrokerKeys } from './keys.js';
import { JOB_STATES, type Job, type JobState } from './types.js';

export interface ListQuery {
  state?: JobState;
  executor?: string;
  label?: [string, string];
  limit?: number;
  cursor?: string;
}

export const LIST_LIMIT_MAX = 500;
const SCAN_BUDGET = 2000;

interface Entry {
  id: string;
  score: number;
}

export function encodeCursor(e: Entry): string {
  return Buffer.from(`${e.score}:${e.id}`).toString('base64url');
}

export function decodeCursor(c: string): Entry {
  const raw = Buffer.from(c, 'base64url').toString();
  const i = raw.indexOf(':');
  const score = Number(raw.slice(0, i));
  if (i <= 0 || !Number.isFinite(score)) throw new ExtjobError('EXTJOB_VALIDATION_FAILED', 'invalid cursor');
  return { score, id: raw.slice(i + 1) };
}

/** Newest-first order: score desc, then id desc (as ZRANGE REV orders ties). */
const before = (a: Entry, b: Entry) => a.score < b.score || (a.score === b.score && a.id < b.id);

async function page(redis: Redis, key: string, after: Entry | undefined, count: number): Promise<Entry[]> {
  const max = after ? String(after.score) : '+inf';
  const out: Entry[] = [];
  let offset = 0;
  for (;;) {
    const rows = await redis.zrange(key, max, '-inf', 'BYSCORE', 'REV', 'LIMIT', offset, count, 'WITHSCORES');
    for (let i = 0; i + 1 < rows.length; i += 2) {
      const e = { id: rows[i] as string, score: Number(rows[i + 1]) };
      if (!after || before(e, after)) out.push(e);
    }
    // entries tied with the cursor's score were skipped: fetch more if we came up short
    if (out.length >= count || rows.length < count * 2) return out.slice(0, count);
    offset += count;
  }
}

export async function listJobs(
  redis: Redis,
  keys: BrokerKeys,
  load: (ids: string[]) => Promise<(Job | undefined)[]>,
  q: ListQuery,
): Promise<{ jobs: Job[]; nextCursor?: string }> {
  const limit = q.limit ?? 50;
  if (!Number.isInteger(limit) || limit < 1 || limit > LIST_LIMIT_MAX)
    throw new ExtjobError('EXTJOB_VALIDATION_FAILED', `limit must be an integer from 1 to ${LIST_LIMIT_MAX}`);
  if (q.state !== undefined && !JOB_STATES.includes(q.state))
    throw new ExtjobError('EXTJOB_VALIDATION_FAILED', `unknown state ${String(q.state)}`);
  let after = q.cursor ? decodeCursor(q.cursor) : undefined;
  const index = q.label
    ? [keys.label(q.label[0], q.label[1])]
    : q.executor !== undefined
      ? [keys.executor(q.executor)]
      : q.state
        ? [keys.state(q.state)]
        : JOB_STATES.map((s) => keys.state(s));
  const matches = (j: Job) =>
    (q.state === undefined || j.state === q.state) &&
    (q.executor === undefined || j.executor === q.executor) &&
    (q.label === undefined || j.labels[q.label[0]] === q.label[1]);

  const jobs: Job[] = [];
  let scanned = 0;
  let last: Entry | undefined;
  while (jobs.length < limit && scanned < SCAN_BUDGET) {
    const want = Math.min(limit - jobs.length + 1, LIST_LIMIT_MAX + 1);
    const pages = await Promise.all(index.map((k) => page(redis, k, after, want)));
    const merged = pages
      .flat()
      .sort((a, b) => (before(a, b) ? 1 : before(b, a) ? -1 : 0))
      .slice(0, want);
    if (merged.length === 0) return { jobs };
    const loaded = await load(merged.map((e) => e.id));
    for (let i = 0; i < merged.length; i++) {
      const e = merged[i] as Entry;
      scanned++;
      const job = loaded[i];
      if (jobs.length === limit) return { jobs, nextCursor: encodeCursor(last as Entry) };
      last = e;
      if (job && matches(job)) jobs.push(job);
    }
    after = merged[merged.length - 1];
    if (merged.length < want) return { jobs };
  }
  return last ? { jobs, nextCursor: encodeCursor(last) } : { jobs };
}
