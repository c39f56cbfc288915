/**
 * Reading a job's log: chunks by seq from the per-attempt chunk index (a run of
 * consecutive seqs and a ZSET of the others) and the hash seq -> bytes, a range at
 * a time (never the whole log), with gaps, completeness and the truncation counters.
 */
import type { Redis } from 'ioredis';
import { ExtjobError } from '../shared/errors.js';
import type { BrokerKeys } from './keys.js';
import { runScript } from './scripts.js';
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
  /** The page stopped at `limit` or `maxBytes`: more stored chunks may follow nextSeq. */
  more: boolean;
  truncated?: { chunks: number; bytes: number };
}

export const LOG_LIMIT_MAX = 1000;
const DEFAULT_MAX_BYTES = 4 * 1024 * 1024;

/**
 * An attempt's chunk index (see lua/apply_many.lua): the run of consecutive seqs
 * [lo, hi) named by the chunk hash's field `r` ("lo hi zmax"), and the seq ZSET
 * (members `<seq>`, or `<seq>:L` when stored late) for every other chunk. A seq may be
 * in both (the run grew over a chunk stored out of order). This parses the run, and
 * the run of seqs seen past the log limit ("lo hi").
 */
function parseRun(raw: string | null): [lo: number, hi: number] {
  const m = /^(\d+) (\d+)(?: -?\d+)?$/.exec(raw ?? '');
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

/**
 * The first `limit` stored seqs from `fromSeq`, in order: the run's, merged with the
 * ZSET's first `limit` members from `fromSeq`.
 */
function seqsFrom(
  run: [number, number],
  members: string[],
  fromSeq: number,
  limit: number,
): { seq: number; late: boolean }[] {
  const [lo, hi] = run;
  const out: { seq: number; late: boolean }[] = [];
  let r = Math.max(lo, fromSeq); // next seq of the run
  let m = 0;
  while (out.length < limit) {
    const z = m < members.length ? Number.parseInt(members[m]!, 10) : Number.POSITIVE_INFINITY;
    const fromRun = r < hi ? r : Number.POSITIVE_INFINITY;
    if (z === Number.POSITIVE_INFINITY && fromRun === Number.POSITIVE_INFINITY) break;
    if (z <= fromRun) {
      out.push({ seq: z, late: members[m]!.endsWith(':L') });
      m++;
      if (z === fromRun) r++;
    } else {
      out.push({ seq: fromRun, late: false });
      r++;
    }
  }
  return out;
}

/**
 * Holes between the seqs seen (stored, or dropped at the log limit: the ranges
 * `dropped` and the run [lo, hi) older versions kept), and up to lastSeq when known,
 * as inclusive ranges. The ZSET's ranges come from log_ranges.lua, which reads only
 * around its holes: every stream's wake-up asks for the gaps of a log that may hold
 * thousands of chunks.
 */
async function findGaps(
  redis: Redis,
  seqKey: string,
  run: [number, number],
  droppedRun: [number, number],
  dropped: [number, number][],
  lastSeq: number | undefined,
): Promise<[number, number][]> {
  // seqs seen as inclusive ranges
  const stored: [number, number][] = [...dropped];
  for (const [lo, hi] of [run, droppedRun]) if (hi > lo) stored.push([lo, hi - 1]);
  const ranges = (await runScript(redis, 'log_ranges', [seqKey], [])) as number[];
  for (let i = 0; i + 1 < ranges.length; i += 2) stored.push([ranges[i]!, ranges[i + 1]!]);
  if (stored.length === 0) return lastSeq === undefined ? [] : [[0, lastSeq]];
  stored.sort((a, b) => a[0] - b[0]);
  const gaps: [number, number][] = [];
  let end = stored[0]![1];
  for (const [a, b] of stored) {
    if (a > end + 1) gaps.push([end + 1, a - 1]);
    end = Math.max(end, b);
  }
  if (lastSeq !== undefined && lastSeq > end) gaps.push([end + 1, lastSeq]);
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
  const [state, attemptRaw, lastSeqRaw, tChunks, tBytes, tRun] = await redis.hmget(
    keys.job(id),
    's',
    'a',
    'lm',
    'lT',
    'lTB',
    'tR',
  );
  if (!state) return undefined;
  const current = Number(attemptRaw ?? 1);
  const attempt = q.attempt ?? current;
  if (!Number.isInteger(attempt) || attempt < 1 || attempt > current)
    throw new ExtjobError('EXTJOB_VALIDATION_FAILED', `attempt must be an integer from 1 to ${current}`);
  const logKey = keys.log(id, attempt);
  const seqKey = keys.logSeqs(id, attempt);
  // An ended attempt's dropped chunks and lastSeq moved to its chunk hash (end_attempt).
  const [[runRaw, ...ended], members, droppedRanges] = await Promise.all([
    redis.hmget(logKey, 'r', ...(attempt === current ? [] : ['T', 'TB', 'L', 'R'])),
    redis.zrangebyscore(seqKey, fromSeq, '+inf', 'LIMIT', 0, limit),
    redis.zrange(keys.logDropped(id, attempt), 0, -1), // "lo hi" ranges, at most 1000
  ]);
  const [dropped, droppedBytes, last, droppedRun] =
    attempt === current ? [tChunks, tBytes, lastSeqRaw, tRun] : ended;
  const lastSeq = last == null ? undefined : Number(last);
  const run = parseRun(runRaw ?? null);
  const seqs = seqsFrom(run, members, fromSeq, limit);
  const data = seqs.length ? await redis.hmgetBuffer(logKey, ...seqs.map((s) => String(s.seq))) : [];
  const chunks: LogPage['chunks'] = [];
  let bytes = 0;
  let more = seqs.length === limit;
  for (let i = 0; i < seqs.length; i++) {
    const s = seqs[i] as { seq: number; late: boolean };
    const d = data[i];
    if (!d) continue;
    if (chunks.length > 0 && bytes + d.length > maxBytes) {
      more = true;
      break;
    }
    bytes += d.length;
    chunks.push(s.late ? { seq: s.seq, data: d, late: true } : { seq: s.seq, data: d });
  }
  const lastChunk = chunks[chunks.length - 1];
  const droppedSeqs = droppedRanges.map((r) => r.split(' ').map(Number) as [number, number]);
  const gaps = await findGaps(redis, seqKey, run, parseRun(droppedRun ?? null), droppedSeqs, lastSeq);
  const finished = attempt < current || isTerminal(state as JobState);
  const page: LogPage = {
    chunks,
    nextSeq: lastChunk ? lastChunk.seq + 1 : fromSeq,
    complete: finished && gaps.length === 0,
    gaps,
    more,
  };
  if (dropped != null) page.truncated = { chunks: Number(dropped), bytes: Number(droppedBytes ?? 0) };
  return page;
}
