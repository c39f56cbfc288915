/**
 * Reading a job's log: chunks by seq from the per-attempt ZSET of seqs and the
 * hash seq -> bytes, a range at a time (never the whole log), with gaps,
 * completeness and the truncation counters.
 */
import type { Redis } from 'ioredis';
import { ExtjobError } from '../shared/errors.js';
import type { BrokerKeys } from './keys.js';
import { isTerminal, type JobState } from './types.js';

export interface LogQuery {
  fromSeq?: number;
  limit?: number;
  maxBytes?: number;
  /** Which attempt's log (default: the current one). */
  attempt?: number;
}

export interface LogPage {
  chunks: { seq: number; data: Buffer; late?: boolean }[];
  nextSeq: number;
  complete: boolean;
  gaps: [number, number][];
  truncated?: { chunks: number; bytes: number };
}

export const LOG_LIMIT_MAX = 1000;
const DEFAULT_MAX_BYTES = 4 * 1024 * 1024;

/** Holes between stored seqs (and up to lastSeq when known), as inclusive ranges. */
async function findGaps(
  redis: Redis,
  seqKey: string,
  lastSeq: number | undefined,
): Promise<[number, number][]> {
  const [count, first, last] = await Promise.all([
    redis.zcard(seqKey),
    redis.zrange(seqKey, 0, 0, 'WITHSCORES'),
    redis.zrange(seqKey, -1, -1, 'WITHSCORES'),
  ]);
  if (count === 0) return lastSeq === undefined ? [] : [[0, lastSeq]];
  const lo = Number(first[1]);
  const hi = Number(last[1]);
  const gaps: [number, number][] = [];
  if (hi - lo + 1 !== count) {
    // walk the seqs page by page to find the holes
    let prev = lo - 1;
    for (let offset = 0; offset < count; offset += 5000) {
      const page = await redis.zrange(seqKey, offset, offset + 4999, 'WITHSCORES');
      for (let i = 1; i < page.length; i += 2) {
        const s = Number(page[i]);
        if (s > prev + 1) gaps.push([prev + 1, s - 1]);
        prev = s;
      }
    }
  }
  if (lastSeq !== undefined && lastSeq > hi) gaps.push([hi + 1, lastSeq]);
  return gaps;
}

export async function readLog(
  redis: Redis,
  keys: BrokerKeys,
  id: string,
  q: LogQuery,
): Promise<LogPage | undefined> {
  const fromSeq = q.fromSeq ?? 0;
  const limit = q.limit ?? 100;
  const maxBytes = q.maxBytes ?? DEFAULT_MAX_BYTES;
  if (!Number.isInteger(fromSeq) || fromSeq < 0)
    throw new ExtjobError('EXTJOB_VALIDATION_FAILED', 'fromSeq must be an integer >= 0');
  if (!Number.isInteger(limit) || limit < 1 || limit > LOG_LIMIT_MAX)
    throw new ExtjobError('EXTJOB_VALIDATION_FAILED', `limit must be an integer from 1 to ${LOG_LIMIT_MAX}`);
  if (!Number.isInteger(maxBytes) || maxBytes < 1)
    throw new ExtjobError('EXTJOB_VALIDATION_FAILED', 'maxBytes must be a positive integer');
  const [state, attemptRaw, lastSeqRaw, tChunks, tBytes] = await redis.hmget(
    keys.job(id),
    's',
    'a',
    'lm',
    'lT',
    'lTB',
  );
  if (!state) return undefined;
  const current = Number(attemptRaw ?? 1);
  const attempt = q.attempt ?? current;
  if (!Number.isInteger(attempt) || attempt < 1 || attempt > current)
    throw new ExtjobError('EXTJOB_VALIDATION_FAILED', `attempt must be an integer from 1 to ${current}`);
  const lastSeq = attempt === current && lastSeqRaw != null ? Number(lastSeqRaw) : undefined;
  const seqKey = keys.logSeqs(id, attempt);
  const members = await redis.zrangebyscore(seqKey, fromSeq, '+inf', 'LIMIT', 0, limit);
  const seqs = members.map((m) => ({ seq: Number.parseInt(m, 10), late: m.endsWith(':L') }));
  const data = seqs.length
    ? await redis.hmgetBuffer(keys.log(id, attempt), ...seqs.map((s) => String(s.seq)))
    : [];
  const chunks: LogPage['chunks'] = [];
  let bytes = 0;
  for (let i = 0; i < seqs.length; i++) {
    const s = seqs[i] as { seq: number; late: boolean };
    const d = data[i];
    if (!d) continue;
    if (chunks.length > 0 && bytes + d.length > maxBytes) break;
    bytes += d.length;
    chunks.push(s.late ? { seq: s.seq, data: d, late: true } : { seq: s.seq, data: d });
  }
  const lastChunk = chunks[chunks.length - 1];
  const gaps = await findGaps(redis, seqKey, lastSeq);
  const finished = attempt < current || isTerminal(state as JobState);
  const page: LogPage = {
    chunks,
    nextSeq: lastChunk ? lastChunk.seq + 1 : fromSeq,
    complete: finished && gaps.length === 0,
    gaps,
  };
  if (tChunks != null && attempt === current)
    page.truncated = { chunks: Number(tChunks), bytes: Number(tBytes ?? 0) };
  return page;
}
