/** `extjob get ID`: one job. */
import type { Job } from '../../broker/types.js';
import { CLIENT_HELP, CLIENT_OPTIONS, clientFrom, EXIT, reportError } from '../client.js';

export const getHelp = `Usage: extjob get ID [--json]

Shows one job: state, exit code, progress, timestamps, labels.
${CLIENT_HELP}`;

export const getOptions = { ...CLIENT_OPTIONS } as const;

export function describeJob(job: Job): string {
  const rows: [string, string | undefined][] = [
    ['id', job.id],
    ['name', job.name],
    ['state', job.state + (job.forced ? ' (forced)' : '')],
    ['attempt', String(job.attempt)],
    ['exit code', job.exitCode === undefined ? undefined : String(job.exitCode)],
    ['error', job.error ? `${job.error.type}: ${job.error.message}` : undefined],
    ['executor', job.executor],
    [
      'progress',
      job.progress
        ? [
            job.progress.phase,
            job.progress.percent !== undefined ? `${job.progress.percent}%` : '',
            job.progress.message,
          ]
            .filter(Boolean)
            .join(' ')
        : undefined,
    ],
    ['summary', job.summary],
    ['details', job.detailsUrl],
    [
      'labels',
      Object.entries(job.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ') || undefined,
    ],
    ['created', job.createdAt],
    ['accepted', job.acceptedAt],
    ['heartbeat', job.lastHeartbeatAt],
    ['finished', job.finishedAt],
  ];
  return rows
    .filter(([, v]) => v !== undefined && v !== '')
    .map(([k, v]) => `${k.padEnd(10)} ${v}`)
    .join('\n');
}

export async function get(values: Record<string, unknown>, positionals: string[]): Promise<number> {
  const [id, ...extra] = positionals;
  if (!id || extra.length > 0) {
    process.stderr.write(`extjob get: expected one job id\n\n${getHelp}\n`);
    return EXIT.usage;
  }
  try {
    const job = await clientFrom(values).json<Job>(`/v1/jobs/${encodeURIComponent(id)}`);
    process.stdout.write(values.json ? `${JSON.stringify(job)}\n` : `${describeJob(job)}\n`);
    return EXIT.ok;
  } catch (err) {
    return reportError('get', err);
  }
}
