/**
 * Long-poll for a job condition. Subscribe first, then read the job: a change that
 * lands between the two is seen either by the read or as a wake-up, never missed.
 * Wake-ups whose state does not satisfy the condition cost nothing; only a matching
 * state (or a resync after a reconnect) re-reads the job.
 */
import { isTerminal, type Job, type JobState } from '../broker/types.js';
import { ExtjobError } from '../shared/errors.js';
import type { NotifyHub } from './notify-hub.js';
import { Wakeups } from './notify-hub.js';

export type WaitUntil = 'terminal' | 'running';

/** `running` holds once the job left pending (running, canceling, or already finished). */
export const conditionHolds = (until: WaitUntil, state: JobState): boolean =>
  until === 'terminal' ? isTerminal(state) : state !== 'pending';

/** Reads the job; `version` (of the change that woke the caller) lets reads be shared. */
export type JobReader = (id: string, version?: number) => Promise<Job | undefined>;

export async function waitForJob(
  read: JobReader,
  hub: NotifyHub,
  id: string,
  until: WaitUntil,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<{ job: Job; met: boolean }> {
  const deadline = Date.now() + timeoutMs;
  const wakeups = new Wakeups(hub, id, (n) => n.kind === 'state' && conditionHolds(until, n.state));
  try {
    let version: number | undefined;
    for (;;) {
      const job = await read(id, version);
      if (!job) throw new ExtjobError('EXTJOB_JOB_NOT_FOUND', `no job "${id}"`);
      if (conditionHolds(until, job.state)) return { job, met: true };
      const left = deadline - Date.now();
      // the process is stopping (no wake-up comes): answer now, as at the deadline
      if (left <= 0 || signal?.aborted || hub.stopped) return { job, met: false };
      const n = await wakeups.next(left, signal);
      if (n === undefined) {
        // Deadline or client gone: answer with the job as it is now.
        const now = await read(id);
        if (!now) throw new ExtjobError('EXTJOB_JOB_NOT_FOUND', `no job "${id}"`);
        return { job: now, met: conditionHolds(until, now.state) };
      }
      version = n === 'resync' ? undefined : n.v;
    }
  } finally {
    wakeups.close();
  }
}
