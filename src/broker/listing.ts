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

/**
 * Up to `count` entries of each index after `after`, newest first. All indexes are
 * read in one MULTI, so a job moving between state indexes is in exactly one of them.
 * The reads are bounded by the cursor (the rest of its millisecond, then what is
 * older), never by an offset: entries leaving or joining an index meanwhile cannot
 * shift a read past entries not listed yet.
 */
async function pages(
  redis: Redis,
  keys: string[],
  after: Entry | undefined,
  count: number,
): Promise<Entry[]> {
  const tx = redis.multi();
  for (const key of keys) {
    if (after) tx.zrange(key, after.score, after.score, 'BYSCORE', 'REV', 'WITHSCORES');
    tx.zrange(
      key,
      after ? `(${after.score}` : '+inf',
      '-inf',
      'BYSCORE',
      'REV',
      'LIMIT',
      0,
      count,
      'WITHSCORES',
    );
  }
  const replies = await tx.exec();
  const out: Entry[] = [];
  for (const [err, rows] of replies ?? []) {
    if (err) throw err;
    const list = rows as string[];
    for (let i = 0; i + 1 < list.length; i += 2) {
      const e = { id: list[i] as string, score: Number(list[i + 1]) };
      if (!after || before(e, after)) out.push(e);
    }
  }
  return out;
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
    const merged = (await pages(redis, index, after, want))
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
