/**
 * `extjob create --name N [--id ID] [--label k=v]... [--executor E] [--wait]`.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { fstatSync, readlinkSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { Job, JobSpec } from '../../broker/types.js';
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
import { follow } from './wait.js';

export const createHelp = `Usage: extjob create --name N [--id ID] [--label k=v]... [--executor E] [--wait]

Creates an external job and prints its id (with --json: {job, eventToken}). Creating
the same id with the same options again is a no-op; different options fail (409).

Options:
  --name N               what the job does (required)
  --id ID                job id (1-128 of [A-Za-z0-9._:-]); default: generated
  --label k=v            a label; repeat for more (pipeline, build, step, repo, commit...)
  --executor E           who is expected to run it
  --accept-timeout S     seconds the job may stay pending (default: server's)
  --run-timeout S        seconds the job may run once accepted
  --heartbeat-timeout S  seconds a running job may stay silent (0: off)
  --notify URL           webhook for every state change; repeat for more
  --event-token-file F   write the job's event token to file F (mode 0600)
  --wait                 then follow the job and exit with its exit code (see extjob wait)
  --timeout S            with --wait: stop waiting after S seconds (exit 75)
${CLIENT_HELP}`;

export const createOptions = {
  ...CLIENT_OPTIONS,
  name: { type: 'string' },
  id: { type: 'string' },
  label: { type: 'string', multiple: true },
  executor: { type: 'string' },
  'accept-timeout': { type: 'string' },
  'run-timeout': { type: 'string' },
  'heartbeat-timeout': { type: 'string' },
  notify: { type: 'string', multiple: true },
  'event-token-file': { type: 'string' },
  wait: { type: 'boolean' },
  timeout: { type: 'string' },
} as const;

const usage = (msg: string) => {
  process.stderr.write(`extjob create: ${msg}\n\n${createHelp}\n`);
  return EXIT.usage;
};

/**
 * Where --event-token-file puts the token, made ready before the job is created: a file
 * that cannot be written fails before there is a job whose token would be lost. The
 * token goes into a new file of its own in the same directory, readable by its owner
 * only (never one that exists, nor what a symlink points to), renamed over `file` once
 * it holds the token, replacing whatever was there. A pipe or device of the user's or
 * root's (/dev/null, a FIFO) takes the token as it is: renaming over it would put a
 * file in its place. So do stdout and stderr (/dev/stdout), written to as they are
 * open, whatever they are: a redirect to a file included. Other descriptors of the
 * process (/dev/fd/3) are refused: Node keeps its own there.
 */
function tokenFile(file: string): { write(token: string): void; discard(): void } {
  const fd = ownDescriptor(file);
  if (fd === 1 || fd === 2) {
    fstatSync(fd); // not open: fails before the job is created
    return { write: (token) => writeFileSync(fd, `${token}\n`), discard: () => {} };
  }
  // another of the process's own: Node's, unless the caller opened it (it cannot tell)
  if (fd !== undefined)
    throw new Error(`descriptor ${fd} is not one to write to: give a file, /dev/stdout or /dev/stderr`);
  const st = statSync(file, { throwIfNoEntry: false });
  if (st && (st.isFIFO() || st.isCharacterDevice()) && (st.uid === 0 || st.uid === process.getuid?.()))
    return { write: (token) => writeFileSync(file, `${token}\n`), discard: () => {} };
  if (st?.isDirectory()) throw new Error('it is a directory');
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}`);
  writeFileSync(tmp, '', { mode: 0o600, flag: 'wx' });
  let kept = false;
  return {
    write: (token) => {
      writeFileSync(tmp, `${token}\n`);
      kept = true; // from here on, the token is in a file either way
      try {
        renameSync(tmp, file);
      } catch (err) {
        throw new Error(`${(err as Error).message}; the token is in ${tmp}`);
      }
    },
    discard: () => {
      if (!kept) rmSync(tmp, { force: true });
    },
  };
}

const OWN_DESCRIPTOR = /^\/(?:dev\/std(in|out|err)|dev\/fd\/(\d+)|proc\/self\/fd\/(\d+))$/;

/**
 * The descriptor a path names when it is one of this process's own (/dev/stdin,
 * /dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N, or a link to one); undefined
 * otherwise. Through the file system, /dev/stdout is a link, and with stdout
 * redirected to a file it leads to that file: the token would replace the link.
 */
export function ownDescriptor(file: string): number | undefined {
  const names = [resolve(file)];
  try {
    names.push(resolve(dirname(file), readlinkSync(file)));
  } catch {
    // not a link
  }
  for (const name of names) {
    const m = OWN_DESCRIPTOR.exec(name);
    if (m) return m[1] ? ['in', 'out', 'err'].indexOf(m[1]) : Number(m[2] ?? m[3]);
  }
  return undefined;
}

/** How long create keeps sending a create whose outcome it does not know. */
const CREATE_RETRY_MS = 20_000;

/**
 * POST /v1/jobs under an idempotency key of this run, sent again while the outcome is
 * unknown (the server unreachable, a retriable 5xx such as Redis away behind it): the
 * server may have created the job before the answer was lost, and the same key then
 * gets the same job and its event token.
 */
async function createRetrying(client: ApiClient, spec: JobSpec): Promise<{ job: Job; eventToken?: string }> {
  const key = randomUUID();
  const until = Date.now() + CREATE_RETRY_MS;
  for (let attempt = 1; ; attempt++) {
    try {
      return await client.json('/v1/jobs', { json: spec, headers: { 'idempotency-key': key } });
    } catch (err) {
      const unknown =
        err instanceof ClientError &&
        (err.status === 0 || err.problem?.retriable === true || [502, 503, 504].includes(err.status));
      const delayMs = Math.min(8000, 500 * 2 ** attempt);
      if (!unknown || Date.now() + delayMs > until) throw err;
      process.stderr.write(`extjob create: ${err.message}; sending it again in ${delayMs / 1000} s\n`);
      await new Promise((r) => setTimeout(r, delayMs));
    }
  }
}

const seconds = (v: unknown): number | undefined | null => {
  if (v === undefined) return undefined;
  const n = flagNumber(v);
  return n !== undefined && n >= 0 ? n : null;
};

export async function create(values: Record<string, unknown>, positionals: string[]): Promise<number> {
  if (positionals.length > 0) return usage(`unexpected argument "${positionals[0]}"`);
  if (typeof values.name !== 'string' || !values.name) return usage('--name is required');
  // an id generated here, in the server's form: a create sent again (createRetrying)
  // names the same job, even on a server older than idempotency keys
  const spec: JobSpec = {
    id: typeof values.id === 'string' ? values.id : `j-${randomUUID()}`,
    name: values.name,
  };
  if (typeof values.executor === 'string') spec.executor = values.executor;
  const labels = (values.label as string[] | undefined) ?? [];
  if (labels.length > 0) {
    spec.labels = {};
    for (const l of labels) {
      const eq = l.indexOf('=');
      if (eq <= 0) return usage(`--label "${l}" is not k=v`);
      spec.labels[l.slice(0, eq)] = l.slice(eq + 1);
    }
  }
  const timeouts: NonNullable<JobSpec['timeouts']> = {};
  for (const [flag, key] of [
    ['accept-timeout', 'acceptSeconds'],
    ['run-timeout', 'runSeconds'],
    ['heartbeat-timeout', 'heartbeatSeconds'],
  ] as const) {
    const s = seconds(values[flag]);
    if (s === null) return usage(`--${flag} takes whole seconds`);
    if (s !== undefined) timeouts[key] = s;
  }
  if (Object.keys(timeouts).length > 0) spec.timeouts = timeouts;
  const notify = (values.notify as string[] | undefined) ?? [];
  if (notify.length > 0) spec.notify = notify.map((url) => ({ url }));
  let timeoutMs: number | undefined;
  if (values.timeout !== undefined) {
    const s = flagNumber(values.timeout, false);
    if (s === undefined || s < 0) return usage('--timeout takes a number of seconds');
    timeoutMs = s * 1000;
  }

  const client = clientFrom(values);
  const file = values['event-token-file'];
  let token: ReturnType<typeof tokenFile> | undefined;
  if (typeof file === 'string')
    try {
      token = tokenFile(file);
    } catch (err) {
      process.stderr.write(
        `extjob create: cannot write the event token to ${file}: ${(err as Error).message}\n`,
      );
      return EXIT.usage;
    }
  let job: Job;
  try {
    const r = await createRetrying(client, spec);
    job = r.job;
    if (token && !r.eventToken) {
      process.stderr.write(
        `extjob create: job ${job.id} already existed: its event token was given when it was created, and ${file} is not written\n`,
      );
      return EXIT.failure;
    }
    if (token && r.eventToken)
      try {
        token.write(r.eventToken);
      } catch (err) {
        process.stderr.write(
          `extjob create: created ${job.id}, but could not write its event token to ${file}: ${(err as Error).message}\n`,
        );
        return EXIT.failure;
      }
    if (values.json && !values.wait) process.stdout.write(`${JSON.stringify(r)}\n`);
    else if (!values.json) {
      process.stdout.write(`${job.id}\n`);
      if (process.stderr.isTTY) process.stderr.write(`extjob: created ${job.id} (${job.state})\n`);
    }
  } catch (err) {
    return reportError('create', err);
  } finally {
    token?.discard();
  }
  if (!values.wait) return EXIT.ok;
  return follow(client, job.id, {
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    json: Boolean(values.json),
  });
}
