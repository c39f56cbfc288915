/** `extjob logs ID [-f]`: the job's log on stdout. */
import { CLIENT_HELP, CLIENT_OPTIONS, ClientError, clientFrom, EXIT, reportError } from '../client.js';

export const logsHelp = `Usage: extjob logs ID [-f] [--json]

Prints the job's log. With -f, keeps following it until the job finishes.
With --json, one JSON object per chunk ({seq, text | base64, late?}).

A chunk that fills a hole after -f has printed the chunks beyond it is not
printed out of place: a note on stderr names it (with --json it is printed,
flagged "filled": true). Without -f the log is printed in order.

Each attempt of a retried job has a log of its own: without -f the current
attempt's is printed; -f goes on from one attempt's log to the next, with a
note on stderr (with --json, a line {"attempt": N}).

A log that reached its size limit lost the chunks past it: a note on stderr
says how many, at the end (with --json, a line {"truncated": {chunks, bytes}}).

Options:
  -f, --follow   follow the log live (resumes after connection drops)
${CLIENT_HELP}`;

export const logsOptions = { ...CLIENT_OPTIONS, follow: { type: 'boolean', short: 'f' } } as const;

/** What the log's end (the stream's `end` event, a page) says of chunks dropped past the log limit. */
export interface LogEnd {
  truncated?: { chunks: number; bytes: number };
}

interface Chunk {
  seq: number;
  text?: string;
  base64?: string;
  filled?: boolean;
}

export async function logs(values: Record<string, unknown>, positionals: string[]): Promise<number> {
  const [id, ...extra] = positionals;
  if (!id || extra.length > 0) {
    process.stderr.write(`extjob logs: expected one job id\n\n${logsHelp}\n`);
    return EXIT.usage;
  }
  const client = clientFrom(values);
  const path = `/v1/jobs/${encodeURIComponent(id)}/log`;
  const write = (c: Chunk) =>
    process.stdout.write(
      values.json
        ? `${JSON.stringify(c)}\n`
        : c.text !== undefined
          ? c.text
          : Buffer.from(c.base64 ?? '', 'base64'),
    );
  // the log lost chunks past its limit: said once, at its end
  const truncated = ({ truncated: t }: LogEnd) => {
    if (!t) return;
    if (values.json) process.stdout.write(`${JSON.stringify({ truncated: t })}\n`);
    else process.stderr.write(truncatedNote(id, t));
  };
  try {
    if (values.follow) {
      await client.json(`/v1/jobs/${encodeURIComponent(id)}`);
      for await (const e of client.events(`${path}/stream`)) {
        if (e.event === 'chunk') write(JSON.parse(e.data) as Chunk);
        else if (e.event === 'filled') {
          const c = JSON.parse(e.data) as Chunk;
          if (values.json) write(c);
          else process.stderr.write(filledNote(id, c.seq));
        } else if (e.event === 'attempt') {
          const { attempt } = JSON.parse(e.data) as { attempt: number };
          if (values.json) process.stdout.write(`${JSON.stringify({ attempt })}\n`);
          else process.stderr.write(attemptNote(id, attempt));
        } else if (e.event === 'end') truncated(JSON.parse(e.data) as LogEnd);
        else if (e.event === 'error') throw new ClientError(JSON.parse(e.data).detail ?? 'stream error', 500);
      }
      return EXIT.ok;
    }
    let fromSeq = 0;
    for (;;) {
      const page = await client.json<{ chunks: Chunk[]; nextSeq: number } & LogEnd>(
        `${path}?fromSeq=${fromSeq}&limit=1000`,
      );
      for (const c of page.chunks) write(c);
      if (page.chunks.length === 0 || page.nextSeq <= fromSeq) {
        truncated(page);
        break;
      }
      fromSeq = page.nextSeq;
    }
    return EXIT.ok;
  } catch (err) {
    return reportError('logs', err);
  }
}

/** What `logs -f` and `wait` print on stderr for a hole filled after they passed it. */
export function filledNote(id: string, seq: number): string {
  return `extjob: log chunk ${seq} arrived after the chunks that follow it; \`extjob logs ${id}\` prints the log in order\n`;
}

/** What `logs` and `wait` print on stderr when the log lost chunks past its limit. */
export function truncatedNote(id: string, t: { chunks: number; bytes: number }): string {
  return `extjob: the log of ${id} is truncated: ${t.chunks} chunks (${t.bytes} bytes) past its size limit were dropped\n`;
}

/** What `logs -f` and `wait` print on stderr when a retry begins a new attempt's log. */
export function attemptNote(id: string, attempt: number): string {
  return `extjob: ${id} attempt ${attempt} begins; its log follows\n`;
}
