/**
 * Live streams of one job over SSE. Both subscribe to the job's wake-ups before the
 * first read, send what is stored after the client's Last-Event-ID, then send more on
 * each wake-up; they end (event `end`) once the job is terminal and everything stored
 * up to then was sent.
 *
 * - log: one `chunk` event per log chunk, id = seq, data {seq, text | base64, late?}.
 *   Resume sends chunks with seq > Last-Event-ID. A hole filled after the stream
 *   passed it is not re-sent (GET /log returns it).
 * - events: one `history` event per history entry, id = its index (0-based); resume
 *   sends entries after Last-Event-ID. `progress` events (no id) carry the job's
 *   progress when it changes.
 */
import { isTerminal, type Job, type JobState } from '../broker/types.js';
import { ExtjobError } from '../shared/errors.js';
import { chunkJson } from './log-format.js';
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
): Promise<void> {
  let state: JobState | undefined;
  const wakeups = new Wakeups(hub, id, (n) => {
    state = n.state;
    return n.kind === 'log' || n.kind === 'state';
  });
  try {
    let next = fromSeq;
    state = (await mustGetJob(broker, id)).state;
    while (!sse.closed) {
      const terminal = isTerminal(state);
      for (;;) {
        const page = await broker.readLog(id, { fromSeq: next, limit: PAGE });
        if (!page) throw new ExtjobError('EXTJOB_JOB_NOT_FOUND', `no job "${id}"`);
        for (const c of page.chunks) {
          if (c.seq < next) continue;
          sse.send('chunk', chunkJson(c), c.seq);
          next = c.seq + 1;
        }
        next = Math.max(next, page.nextSeq);
        if (page.chunks.length < PAGE || sse.closed) {
          if (terminal) {
            sse.send('end', { state, complete: page.complete, nextSeq: next, gaps: page.gaps });
            return;
          }
          break;
        }
      }
      const n = await wakeups.next(IDLE_RECHECK_MS, sse.signal);
      if (n === 'resync' || n === undefined) state = (await mustGetJob(broker, id)).state;
    }
  } finally {
    wakeups.close();
    sse.end();
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
