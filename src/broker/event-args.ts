/**
 * Checks a parsed executor event against the broker's limits and builds the
 * arguments of the apply script. The wire parsers check formats; this checks
 * what the state machine needs (ids, attempt, seq, chunk size).
 */
import { hash } from 'node:crypto';
import { shortType } from './codec.js';
import { EXIT_CODE_MAX, EXIT_CODE_MIN, JOB_ID_PATTERN, type JobEvent } from './types.js';

const KINDS = new Set(['accepted', 'heartbeat', 'log', 'finished', 'canceled']);
const MAX_ATTR = 1024;
const MAX_TEXT = 64 * 1024;
const INT32 = 2_147_483_647;

const isInt = (n: unknown, min: number, max: number): n is number =>
  typeof n === 'number' && Number.isInteger(n) && n >= min && n <= max;

export interface EventCheck {
  /** Why the event cannot apply; undefined when it can. */
  invalid?: string;
  /** The chunk exceeds the per-chunk limit (a distinct reason for the DLQ). */
  tooLarge?: boolean;
}

export function checkEvent(e: JobEvent, logChunkMaxBytes: number): EventCheck {
  if (!KINDS.has(e.kind)) return { invalid: `unknown event kind ${String(e.kind)}` };
  if (typeof e.jobId !== 'string' || !JOB_ID_PATTERN.test(e.jobId)) return { invalid: 'bad job id' };
  if (typeof e.id !== 'string' || e.id.length === 0 || e.id.length > MAX_ATTR)
    return { invalid: 'bad event id' };
  if (typeof e.source !== 'string' || e.source.length === 0 || e.source.length > MAX_ATTR)
    return { invalid: 'bad event source' };
  if (e.attempt !== undefined && !isInt(e.attempt, 1, 1000))
    return { invalid: 'attempt must be an integer >= 1' };
  const badText = badTextField(e);
  if (badText) return { invalid: `bad ${badText}` };
  if (e.kind === 'log') {
    if (!isInt(e.seq, 0, INT32)) return { invalid: 'log seq must be an integer from 0 to 2^31-1' };
    const size = chunkBytes(e.chunk);
    if (size === undefined) return { invalid: 'log event without chunk bytes' };
    if (size > logChunkMaxBytes)
      return { invalid: `log chunk of ${size} bytes exceeds ${logChunkMaxBytes}`, tooLarge: true };
  }
  if (e.kind === 'finished') {
    if (!isInt(e.exitCode, EXIT_CODE_MIN, EXIT_CODE_MAX))
      return { invalid: 'finished without an integer exitCode from -2^31 to 2^32-1' };
    if (e.lastSeq !== undefined && !isInt(e.lastSeq, 0, INT32)) return { invalid: 'bad lastSeq' };
    if (e.error !== undefined && (typeof e.error?.type !== 'string' || typeof e.error?.message !== 'string'))
      return { invalid: 'error must be {type, message}' };
  }
  return VALID;
}
const VALID: EventCheck = Object.freeze({});

const isText = (v: unknown) => v === undefined || (typeof v === 'string' && v.length <= MAX_TEXT);
/** The first optional text field that is not text of at most MAX_TEXT (named reads: a loop costs more). */
function badTextField(e: JobEvent): string | undefined {
  if (!isText(e.executor)) return 'executor';
  if (!isText(e.detailsUrl)) return 'detailsUrl';
  if (!isText(e.summary)) return 'summary';
  if (!isText(e.message)) return 'message';
  if (!isText(e.reason)) return 'reason';
  return undefined;
}

/** Size in bytes of a log chunk (text counts as UTF-8); undefined when it is neither. */
function chunkBytes(chunk: unknown): number | undefined {
  if (typeof chunk === 'string') return Buffer.byteLength(chunk);
  return Buffer.isBuffer(chunk) ? chunk.length : undefined;
}

/** Dedupe key of (source, id): 64 bits of sha1, hex. */
export function dedupeKey(e: JobEvent): string {
  return hash('sha1', `${e.source}\0${e.id}`).slice(0, 16);
}

/** Text as Redis will store it: a lone UTF-16 surrogate becomes U+FFFD (cjson refuses it). */
const wellFormed = (s: string): string => (s.isWellFormed() ? s : s.toWellFormed());

/**
 * One apply_many call being built (see lua/apply_many.lua): jobs, each followed by
 * its events, packed as one JSON array. One argument instead of several per event:
 * ioredis costs more per argument than JSON.stringify does. Binary log chunks cannot
 * be JSON text: they follow as arguments of their own, which the array points at.
 */
export class ApplyCall {
  jobs = 0;
  events = 0;
  private readonly fields: (string | number)[] = [];
  private readonly chunks: Buffer[] = [];

  addJob(id: string, eventCount: number): void {
    this.fields.push(id, eventCount);
    this.jobs++;
  }

  /**
   * The event's fields: kind, attempt ('' = current), the cause's parts (event id,
   * source, short type: Lua encodes the cause only for the events that write one),
   * then its kind's own.
   */
  addEvent(e: JobEvent): void {
    const f = this.fields;
    f.push(e.kind, e.attempt ?? '', wellFormed(e.id), wellFormed(e.source), wellFormed(shortType(e.type)));
    this.events++;
    switch (e.kind) {
      case 'log': {
        // log chunks dedupe by seq, not by key; the seq goes as text, which Lua passes
        // to Redis commands as it is (a number would be formatted with %.17g each time)
        const chunk = e.chunk ?? '';
        const seq = String(e.seq ?? 0);
        if (typeof chunk === 'string') f.push(seq, wellFormed(chunk));
        else f.push(seq, this.chunks.push(chunk)); // the chunk's number among the binary ones
        return;
      }
      case 'heartbeat':
        f.push(dedupeKey(e), e.progress ? JSON.stringify(e.progress) : '');
        return;
      case 'accepted':
        f.push(dedupeKey(e), wellFormed(e.executor ?? ''), wellFormed(e.detailsUrl ?? ''));
        return;
      case 'finished':
        f.push(
          dedupeKey(e),
          e.exitCode ?? 0,
          e.error ? JSON.stringify({ type: e.error.type, message: e.error.message }) : '',
          wellFormed(e.summary ?? ''),
          e.lastSeq ?? '',
        );
        return;
      case 'canceled':
        f.push(dedupeKey(e), wellFormed(e.reason ?? ''));
        return;
    }
  }

  /** The call's arguments after the six common ones (ARGV 7 on). */
  args(dedupeWindowMs: number, logMaxBytes: number): (string | number | Buffer)[] {
    return [this.jobs, dedupeWindowMs, logMaxBytes, JSON.stringify(this.fields), ...this.chunks];
  }
}
