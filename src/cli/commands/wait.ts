/**
 * `extjob wait ID [--timeout S]`: follow a job until it is terminal and exit with its
 * exit code. On a terminal the log goes to stdout as it arrives and state changes and
 * progress to stderr; with --json only the final job is printed.
 */
import type { Job } from '../../broker/types.js';
import {
  type ApiClient,
  CLIENT_HELP,
  CLIENT_OPTIONS,
  ClientError,
  clientFrom,
  EXIT,
  flagNumber,
  reportError,
} from '../client.js';
import { attemptNote, filledNote, type LogEnd, truncatedNote } from './logs.js';

export const waitHelp = `Usage: extjob wait ID [--timeout S] [--json]

Follows the job's state and log live and exits with the job's exit code:
passed 0, failed its exit code (1 if none), timed_out 124, expired 125, canceled 130.
The server unreachable or failing (5xx): 69. --timeout passed first: 75 (the job
goes on).

Options:
  --timeout S    give up waiting after S seconds (default: wait as long as it takes)
  --no-log       do not print the job's log
${CLIENT_HELP}`;

export const waitOptions = {
  ...CLIENT_OPTIONS,
  timeout: { type: 'string' },
  'no-log': { type: 'boolean' },
} as const;

/** The process exit code for a finished job. */
export function exitCodeOf(job: Pick<Job, 'state' | 'exitCode'>): number {
  switch (job.state) {
    case 'passed':
      return 0;
    case 'failed':
      return job.exitCode && job.exitCode > 0 && job.exitCode < 256 ? job.exitCode : 1;
    case 'timed_out':
      return EXIT.timedOut;
    case 'expired':
      return EXIT.expired;
    case 'canceled':
      return EXIT.canceled;
    default:
      return EXIT.failure;
  }
}

const TERMINAL = new Set(['passed', 'failed', 'canceled', 'timed_out', 'expired']);

export interface FollowOptions {
  timeoutMs?: number;
  json?: boolean;
  log?: boolean;
  stdout?: NodeJS.WritableStream & { isTTY?: boolean };
  stderr?: NodeJS.WritableStream & { isTTY?: boolean };
}

/** Follow job `id` to its end; resolves with the exit code. */
export async function follow(client: ApiClient, id: string, o: FollowOptions = {}): Promise<number> {
  const stdout = o.stdout ?? process.stdout;
  const stderr = o.stderr ?? process.stderr;
  const deadline = o.timeoutMs !== undefined ? Date.now() + o.timeoutMs : Number.POSITIVE_INFINITY;
  try {
    if (o.json) {
      // Long-poll: no log, just the final job. A server that is away (restarting, a
      // 5xx) is asked again, as the live stream reconnects: 5 times in a row at most.
      let failures = 0;
      for (;;) {
        const left = Math.ceil((deadline - Date.now()) / 1000);
        const wait = Math.max(0, Math.min(300, Number.isFinite(left) ? left : 300));
        let job: Job;
        try {
          job = await client.json<Job>(
            `/v1/jobs/${encodeURIComponent(id)}/wait?until=terminal&timeoutSeconds=${wait}`,
            {},
            (wait + 30) * 1000,
          );
          failures = 0;
        } catch (err) {
          if (!(err instanceof ClientError && err.unreachable) || ++failures > 5 || Date.now() >= deadline)
            throw err;
          await new Promise((r) => setTimeout(r, Math.min(200 * 2 ** failures, 5000)));
          continue;
        }
        if (TERMINAL.has(job.state)) {
          stdout.write(`${JSON.stringify(job)}\n`);
          return exitCodeOf(job);
        }
        if (Date.now() >= deadline) {
          stdout.write(`${JSON.stringify(job)}\n`);
          return EXIT.waitTimeout;
        }
      }
    }
    return await followLive(client, id, deadline, o.log ?? true, stdout, stderr);
  } catch (err) {
    return reportError('wait', err, stderr);
  }
}

async function followLive(
  client: ApiClient,
  id: string,
  deadline: number,
  withLog: boolean,
  stdout: NodeJS.WritableStream & { isTTY?: boolean },
  stderr: NodeJS.WritableStream & { isTTY?: boolean },
): Promise<number> {
  const stop = new AbortController();
  const timer = Number.isFinite(deadline)
    ? setTimeout(() => stop.abort(), Math.max(0, deadline - Date.now()))
    : undefined;
  // Fail fast (unreachable: 69, no such job: 1) before opening the streams.
  await client.json<Job>(`/v1/jobs/${encodeURIComponent(id)}`);
  const tty = Boolean(stderr.isTTY);
  let statusLine = false;
  const clearStatus = () => {
    if (statusLine) stderr.write('\r\x1b[2K');
    statusLine = false;
  };
  const path = `/v1/jobs/${encodeURIComponent(id)}`;
  let final: Job | undefined;
  const states = (async () => {
    let last: string | undefined;
    for await (const e of client.events(`${path}/events/stream`, { signal: stop.signal })) {
      if (e.event === 'job') {
        const job = JSON.parse(e.data) as Job;
        if (job.state !== last) {
          clearStatus();
          stderr.write(`extjob: ${id} ${job.state}${job.attempt > 1 ? ` (attempt ${job.attempt})` : ''}\n`);
          last = job.state;
        }
        if (TERMINAL.has(job.state)) final = job;
      } else if (e.event === 'progress' && tty) {
        const p = JSON.parse(e.data) as { percent?: number; phase?: string; message?: string };
        const parts = [p.phase, p.percent !== undefined ? `${p.percent}%` : undefined, p.message].filter(
          Boolean,
        );
        stderr.write(`\r\x1b[2K  ${parts.join(' ').slice(0, 120)}`);
        statusLine = true;
      } else if (e.event === 'error') {
        throw new ClientError(JSON.parse(e.data).detail ?? 'stream error', 500);
      }
    }
  })();
  const log = withLog
    ? (async () => {
        for await (const e of client.events(`${path}/log/stream`, { signal: stop.signal })) {
          if (e.event === 'attempt') {
            clearStatus();
            stderr.write(attemptNote(id, (JSON.parse(e.data) as { attempt: number }).attempt));
          }
          if (e.event === 'end') {
            const { truncated } = JSON.parse(e.data) as LogEnd;
            if (truncated) {
              clearStatus();
              stderr.write(truncatedNote(id, truncated));
            }
          }
          if (e.event !== 'chunk' && e.event !== 'filled') continue;
          const c = JSON.parse(e.data) as { seq: number; text?: string; base64?: string };
          clearStatus();
          // A hole filled after later chunks were printed: named, not printed out of place.
          if (e.event === 'filled') stderr.write(filledNote(id, c.seq));
          else stdout.write(c.text !== undefined ? c.text : Buffer.from(c.base64 ?? '', 'base64'));
        }
      })()
    : Promise.resolve();
  try {
    await Promise.all([states, log]);
  } finally {
    clearTimeout(timer);
    stop.abort();
    clearStatus();
  }
  if (!final) {
    // the streams ended, or the time ran out before they said (--timeout 0): as it is now
    const now = await client.json<Job>(path);
    if (Date.now() >= deadline && !TERMINAL.has(now.state)) {
      stderr.write(`extjob wait: ${id} is not finished yet; gave up after --timeout\n`);
      return EXIT.waitTimeout;
    }
    final = now;
  }
  const finalJob = final;
  if (finalJob.state === 'failed' && finalJob.error)
    stderr.write(`extjob: ${finalJob.error.type}: ${finalJob.error.message}\n`);
  return exitCodeOf(finalJob);
}

export async function wait(values: Record<string, unknown>, positionals: string[]): Promise<number> {
  const [id, ...extra] = positionals;
  if (!id || extra.length > 0) {
    process.stderr.write(`extjob wait: expected one job id\n\n${waitHelp}\n`);
    return EXIT.usage;
  }
  let timeoutMs: number | undefined;
  if (values.timeout !== undefined) {
    const s = flagNumber(values.timeout, false);
    if (s === undefined || s < 0) {
      process.stderr.write('extjob wait: --timeout takes a number of seconds\n');
      return EXIT.usage;
    }
    timeoutMs = s * 1000;
  }
  return follow(clientFrom(values), id, {
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    json: Boolean(values.json),
    log: !values['no-log'],
  });
}
