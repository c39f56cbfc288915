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
import type { BrokerPort } from './ports.js';
import type { SseStream } from './sse.js';

const PAGE = 500;
/** Longest a stream waits for a wake-up before it re-reads anyway (a safety net, not polling). */
const IDLE_RECHECK_MS = 60_000;

export async function mustGetJob(broker: Pick<BrokerPort, 'getJob'>, id: string): Promise<Job> {
  const job = await broker.getJob(id);
  if (!job) throw new ExtjobError('EXTJOB_JOB_NOT_FOUND', `no job "${id}"`);
  return job;
}

export async function streamLog(
  broker: Pick<BrokerPort, 'getJob' | 'readLog'>,
  hub: NotifyHub,
  id: string,
  sse: SseStream,
  fromSeq: number,
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
  const read = async (from: number, limit: number) => {
    const page = await broker.readLog(id, { fromSeq: from, limit });
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
          sse.send('filled', { ...chunkJson(c), filled: true });
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
    let next = fromSeq;
    let first = true;
    let sentAny = false;
    let job = await mustGetJob(broker, id);
    state = job.state;
    while (!sse.closed) {
      const terminal = isTerminal(state);
      for (;;) {
        const page = await read(next, PAGE);
        // Holes below Last-Event-ID still open now: the client has not seen them.
        if (first && resumed) watchGaps(holes, page.gaps, 0, fromSeq - 1);
        first = false;
        for (const c of page.chunks) {
          if (c.seq < next) continue;
          // Seqs skipped since the last chunk sent are holes; before the first one, only
          // what the log reports as gaps is (seqs below its first chunk are none).
          if (sentAny) holes.passed(next, c.seq - 1);
          else watchGaps(holes, page.gaps, next, c.seq - 1);
          sentAny = true;
          sse.send('chunk', chunkJson(c), c.seq);
          next = c.seq + 1;
        }
        next = Math.max(next, page.nextSeq);
        if (page.chunks.length < PAGE || sse.closed) {
          await sendFilled(page.gaps);
          if (terminal) {
            sse.send('end', {
              state,
              complete: page.complete,
              nextSeq: next,
              gaps: page.gaps,
              unwatched: holes.unwatched,
            });
            return;
          }
          break;
        }
      }
      const n = await wakeups.next(IDLE_RECHECK_MS, sse.signal);
      if (n === 'resync' || n === undefined || stateChanged) {
        stateChanged = false;
        const attempt = job.attempt;
        job = await mustGetJob(broker, id);
        state = job.state;
        // A retry starts a new log: the holes of the old attempt are no longer in it.
        if (job.attempt !== attempt) holes = new PassedHoles(holes.unwatched);
      }
    }
  } finally {
    wakeups.close();
    sse.end();
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
    return n.kind === 'state' || n.kind === 'progress';
  });
  try {
    let sent = afterIndex;
    let job = await mustGetJob(broker, id);
    let lastProgress = JSON.stringify(job.progress ?? null);
    sse.send('job', job);
    while (!sse.closed) {
      const history = await broker.history(id);
      if (!history) throw new ExtjobError('EXTJOB_JOB_NOT_FOUND', `no job "${id}"`);
      for (let i = sent + 1; i < history.length; i++) sse.send('history', history[i], i);
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
    wakeups.close();
    sse.end();
  }
}
