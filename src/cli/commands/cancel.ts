/** `extjob cancel ID [--reason R]`. */
import type { Job } from '../../broker/types.js';
import { CLIENT_HELP, CLIENT_OPTIONS, clientFrom, EXIT, reportError } from '../client.js';

export const cancelHelp = `Usage: extjob cancel ID [--reason R] [--json]

Requests a cancel: a pending job is canceled at once; a running job turns canceling
until its executor acknowledges (or the cancel grace period passes).

Options:
  --reason R     why (kept in the job's history)
${CLIENT_HELP}`;

export const cancelOptions = { ...CLIENT_OPTIONS, reason: { type: 'string' } } as const;

export async function cancel(values: Record<string, unknown>, positionals: string[]): Promise<number> {
  const [id, ...extra] = positionals;
  if (!id || extra.length > 0) {
    process.stderr.write(`extjob cancel: expected one job id\n\n${cancelHelp}\n`);
    return EXIT.usage;
  }
  try {
    const body = typeof values.reason === 'string' ? { reason: values.reason } : {};
    const job = await clientFrom(values).json<Job>(`/v1/jobs/${encodeURIComponent(id)}/cancel`, {
      json: body,
    });
    process.stdout.write(values.json ? `${JSON.stringify(job)}\n` : `${job.id} ${job.state}\n`);
    return EXIT.ok;
  } catch (err) {
    return reportError('cancel', err);
  }
}
