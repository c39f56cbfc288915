/**
 * Live streams of one job over SSE. Both subscribe to the job's wake-ups before the
 * first read, send what is stored after the client's Last-Event-ID, then send more on
 * each wake-up; they end (event `end`) once the job is terminal and everything stored
 * up to then was sent.
 *
 * - log: one `chunk` event per log chunk, id = seq, data {seq, text | base64, late?}.
 *   Resume sends chunks with seq > Last-Event-ID. The stream remembers the holes it
 *   passed (and, on resume, the holes below Last-Event-ID open when it connects); a
 *   chunk that fills one later is sent as a `filled` event without an id, so the
 *   client's Last-Event-ID never moves back. Each wake-up reads only the remembered
 *   holes the log's current gaps show as (partly) filled.
 * - events: one `history` event per history entry, id = its index (0-based); resume
 *   sends entries after Last-Event-ID. `progress` events (no id) carry the job's
 *   progress when it changes.
 */
import { isTerminal, type Job, type JobState } from '../broker/types.js';
import { ExtjobError } from '../shared/errors.js';
import { chunkJson } from './log-format.js';
import { PassedHoles } from './log-holes.js';
import { type NotifyHub, Wakeups } from './notify-hub.js';
import type { BrokerPort, LogPage } from './ports.js';
import type { SseStream } from './sse.js';

const PAGE = 500;
/** Longest a stream waits for a wake-up before it re-reads anyway (a safety net, not polling). */
const IDLE_RECHECK_MS = 60_000;

export async function mustGetJob(broker: Pick<BrokerPort, 'getJob'>, id: string): Promise<Job> {
  const job = await broker.getJob(id);
  if (!job) throw new ExtjobError('EXTJOB_JOB_NOT_FOUND', `no job "${id}"`);
  return job;
}

/** Where a log stream starts: a seq of an attempt (default: the job's current one). */
export interface LogPosition {
  attempt?: number;
  seq: number;
}

/** A chunk's SSE id: its seq in the first attempt, `<attempt>:<seq>` in later ones. */
export const chunkId = (attempt: number, seq: number): string =>
  attempt === 1 ? String(seq) : `${attempt}:${seq}`;

/**
 * Where a log stream resumes after the chunk a Last-Event-ID names (`<attempt>:`, the
 * id of an `attempt` event: that attempt's log from its start); undefined for none.
 */
export function logResumePoint(raw: string | undefined): LogPosition | undefined {
  const m = raw === undefined ? null : /^(?:(\d{1,4}):(?=\d*$))?(\d{0,15})$/.exec(raw.trim());
  if (!m || (m[1] === undefined && m[2] === '')) return undefined;
  const attempt = m[1] === undefined ? 1 : Number(m[1]);
  return attempt >= 1 ? { attempt, seq: m[2] === '' ? 0 : Number(m[2]) + 1 } : undefined;
}

export async function streamLog(
  broker: Pick<BrokerPort, 'getJob' | 'readLog'>,
  hub: NotifyHub,
  id: string,
  sse: SseStream,
  from: LogPosition,
  resumed = false,
): Promise<void> {
  let state: JobState | undefined;
  let stateChanged = false;
  const wakeups = new Wakeups(hub, id, (n) => {
    state = n.state;
    if (n.kind === 'state') stateChanged = true;
    return n.kind === 'log' || n.kind === 'state';
  });
  let holes = new PassedHoles();
  let attempt = 1; // the attempt whose log is being sent
  const read = async (fromSeq: number, limit: number) => {
    const page = await broker.readLog(id, { fromSeq, limit, attempt });
    if (!page) throw new ExtjobError('EXTJOB_JOB_NOT_FOUND', `no job "${id}"`);
    return page;
  };
  /** Send the chunks that filled remembered holes since the last look. */
  const sendFilled = async (gaps: [number, number][]) => {
    for (const range of holes.changed(gaps)) {
      const [, hi] = range;
      const sent: number[] = [];
      let from = range[0];
      while (from <= hi && !sse.closed) {
        const page = await read(from, Math.min(PAGE, hi - from + 1));
        const inRange = page.chunks.filter((c) => c.seq >= from && c.seq <= hi);
        for (const c of inRange) {
          await sse.send('filled', { ...chunkJson(c), filled: true });
          sent.push(c.seq);
        }
        const last = inRange[inRange.length - 1];
        if (!last || inRange.length < page.chunks.length) break;
        from = last.seq + 1;
      }
      holes.filled(range, sent);
    }
  };
  try {
    let job = await mustGetJob(broker, id);
    state = job.state;
    attempt = from.attempt ?? job.attempt;
    let next = from.seq;
    // an id of an attempt this job has not reached is another job's (the id was
    // reused after retention): nothing of this job's log was sent yet
    if (attempt > job.attempt) {
      attempt = job.attempt;
      next = 0;
    }
    // Holes below Last-Event-ID still open at the first read: the client has not seen them.
    let watchBelow = resumed;
    let sentAny = false;
    while (!sse.closed) {
      const terminal = isTerminal(state);
      // About to end: the job as it ended (a retry may have begun a later attempt).
      if (terminal && !isTerminal(job.state)) job = await mustGetJob(broker, id);
      let page: LogPage;
      do {
        page = await read(next, PAGE);
        if (watchBelow) watchGaps(holes, page.gaps, 0, next - 1);
        watchBelow = false;
        for (const c of page.chunks) {
          if (c.seq < next) continue;
          // Seqs skipped since the last chunk sent are holes; before the first one, only
          // what the log reports as gaps is (seqs below its first chunk are none).
          if (sentAny) holes.passed(next, c.seq - 1);
          else watchGaps(holes, page.gaps, next, c.seq - 1);
          sentAny = true;
          await sse.send('chunk', chunkJson(c), chunkId(attempt, c.seq));
          next = c.seq + 1;
        }
        next = Math.max(next, page.nextSeq);
      } while (page.more && !sse.closed);
      await sendFilled(page.gaps);
      if (attempt < job.attempt) {
        // A retry began a new log, from seq 0; the old one is complete (events of an
        // older attempt are stale), so its holes are forgotten. One attempt at a time:
        // the job may be several retries on (wake-ups coalesce, a client resumes late).
        attempt += 1;
        next = 0;
        sentAny = false;
        holes = new PassedHoles(holes.unwatched);
        // its id resumes at the new log's start: a client reconnecting later is not
        // told of the attempt again
        sse.send('attempt', { attempt }, `${attempt}:`);
        continue;
      }
      if (terminal) {
        sse.send('end', {
          state,
          attempt,
          complete: page.complete,
          nextSeq: next,
          gaps: page.gaps,
          unwatched: holes.unwatched,
          ...(page.truncated ? { truncated: page.truncated } : {}),
        });
        return;
      }
      const n = await wakeups.next(IDLE_RECHECK_MS, sse.signal);
      // the client left (or the server is stopping): no more reads, Redis may be closing
      if (sse.closed) break;
      if (n === 'resync' || n === undefined || stateChanged) {
        stateChanged = false;
        job = await mustGetJob(broker, id);
        state = job.state;
      }
    }
  } finally {
    wakeups.close(); // the caller ends the stream: after an error, with an error event
  }
}

/** Watch the parts of `gaps` (ascending) that lie within [lo, hi]. */
function watchGaps(holes: PassedHoles, gaps: [number, number][], lo: number, hi: number): void {
  for (const [glo, ghi] of gaps) {
    if (glo > hi) break;
    if (ghi >= lo) holes.passed(Math.max(glo, lo), Math.min(ghi, hi));
  }
}

export async function streamEvents(
  broker: Pick<BrokerPort, 'getJob' | 'history'>,
  hub: NotifyHub,
  id: string,
  sse: SseStream,
  afterIndex: number,
): Promise<void> {
  let progressChanged = false;
  const wakeups = new Wakeups(hub, id, (n) => {
    if (n.kind === 'progress') progressChanged = true;
    return n.kind !== 'log';
  });
  try {
    let sent = afterIndex;
    let job = await mustGetJob(broker, id);
    let lastProgress = JSON.stringify(job.progress ?? null);
    sse.send('job', job);
    while (!sse.closed) {
      const history = await broker.history(id);
      if (!history) throw new ExtjobError('EXTJOB_JOB_NOT_FOUND', `no job "${id}"`);
      for (let i = sent + 1; i < history.length && !sse.closed; i++) await sse.send('history', history[i], i);
      sent = Math.max(sent, history.length - 1);
      if (isTerminal(job.state)) {
        sse.send('end', { state: job.state, exitCode: job.exitCode ?? null, version: job.version });
        return;
      }
      const n = await wakeups.next(IDLE_RECHECK_MS, sse.signal);
      if (sse.closed) return;
      const before = job.state;
      job = await mustGetJob(broker, id);
      const p = JSON.stringify(job.progress ?? null);
      if ((progressChanged || n === 'resync') && p !== lastProgress) {
        sse.send('progress', job.progress ?? {});
        lastProgress = p;
      }
      progressChanged = false;
      if (job.state !== before) sse.send('job', job);
    }
  } finally {
    wakeups.close(); // the caller ends the stream: after an error, with an error event
  }
}
