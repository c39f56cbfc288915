/** `extjob list [--state S] [--executor E] [--label k=v] [--limit N] [--all]`. */

import { LIMITS } from '../../api/schemas.js';
import type { Job } from '../../broker/types.js';
import { CLIENT_HELP, CLIENT_OPTIONS, clientFrom, EXIT, flagNumber, reportError } from '../client.js';

export const listHelp = `Usage: extjob list [--state S] [--executor E] [--label k=v] [--limit N] [--all] [--json]

Lists jobs, newest first.

Options:
  --state S      only jobs in state S (pending, running, canceling, passed, failed,
                 canceled, timed_out, expired)
  --executor E   only jobs for executor E
  --label k=v    only jobs with that label
  --limit N      at most N jobs (default 20)
  --all          follow the cursor through every page
${CLIENT_HELP}`;

export const listOptions = {
  ...CLIENT_OPTIONS,
  state: { type: 'string' },
  executor: { type: 'string' },
  label: { type: 'string' },
  limit: { type: 'string' },
  all: { type: 'boolean' },
} as const;

export async function list(values: Record<string, unknown>, positionals: string[]): Promise<number> {
  if (positionals.length > 0) {
    process.stderr.write(`extjob list: unexpected argument "${positionals[0]}"\n\n${listHelp}\n`);
    return EXIT.usage;
  }
  const q = new URLSearchParams();
  if (typeof values.state === 'string') q.set('state', values.state);
  if (typeof values.executor === 'string') q.set('executor', values.executor);
  if (typeof values.label === 'string') {
    const eq = values.label.indexOf('=');
    if (eq <= 0) {
      process.stderr.write(`extjob list: --label "${values.label}" is not k=v\n`);
      return EXIT.usage;
    }
    q.set('label', `${values.label.slice(0, eq)}:${values.label.slice(eq + 1)}`);
  }
  const limit = values.limit === undefined ? (values.all ? 500 : 20) : flagNumber(values.limit);
  if (limit === undefined || limit < 1 || limit > LIMITS.listLimit) {
    process.stderr.write(
      `extjob list: --limit takes a whole number from 1 to ${LIMITS.listLimit}, not "${values.limit}"\n`,
    );
    return EXIT.usage;
  }
  q.set('limit', String(limit));
  const client = clientFrom(values);
  try {
    let cursor: string | undefined;
    do {
      if (cursor) q.set('cursor', cursor);
      const page = await client.json<{ jobs: Job[]; nextCursor?: string }>(`/v1/jobs?${q}`);
      for (const j of page.jobs)
        process.stdout.write(
          values.json
            ? `${JSON.stringify(j)}\n`
            : `${j.id.padEnd(36)} ${j.state.padEnd(10)} ${String(j.exitCode ?? '').padEnd(4)} ${j.createdAt}  ${j.name}\n`,
        );
      cursor = values.all ? page.nextCursor : undefined;
    } while (cursor);
    return EXIT.ok;
  } catch (err) {
    return reportError('list', err);
  }
}
