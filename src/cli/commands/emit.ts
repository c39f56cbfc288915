/**
 * `extjob emit ID accepted|heartbeat|log|finished|canceled ...`: what an executor (or a
 * GitOps hook) runs to report on a job, over HTTP (POST /v1/jobs/{id}/events with the
 * job's event token) or straight to Kafka. `--stdin` streams standard input as log
 * chunks with increasing seq.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { EventKind, JobEvent } from '../../broker/types.js';
import { encodeStructured, toCloudEventJson } from '../../consumers/formats/encode.js';
import { type Config, loadConfig } from '../../shared/config.js';
import { isExtjobError } from '../../shared/errors.js';
import { createKafka, createProducer, kafkaSettings, type Producer } from '../../shared/kafka.js';
import { ClientError, ClientUsageError, clientFrom, EXIT, flagNumber, reportError } from '../client.js';

export const emitHelp = `Usage: extjob emit ID accepted|heartbeat|log|finished|canceled [options]

Reports on a job as its executor: over HTTP with the job's event token (default), or
straight to Kafka (--via kafka).

Options:
  --exit-code N        finished: the exit code (default 0)
  --text T             log: the chunk's text; finished/canceled/accepted: a message
  --stdin              log: stream standard input as chunks (seq increasing from --seq)
  --seq N              log: sequence number of the (first) chunk (default 0)
  --last-seq N         finished: seq of the last log chunk (so the log can be complete)
  --attempt N          the attempt this event is for (default: the job's current one)
  --percent P          heartbeat: progress percent
  --phase P            heartbeat: progress phase
  --details-url URL    accepted: link to the executor's view of the work
  --error-type T       finished: error type (with a non-zero exit code)
  --via http|kafka     transport (default http)
  --event-token T      HTTP: the job's event token (default $EXTJOB_EVENT_TOKEN)
  --url URL            HTTP: extjob server (default $EXTJOB_URL or http://127.0.0.1:8080)
  --brokers B          Kafka: bootstrap brokers (default $EXTJOB_KAFKA_BROKERS)
  --topic-prefix P     Kafka: topic prefix (default $EXTJOB_TOPIC_PREFIX or extjob)
  --source S           CloudEvents source (default /extjob-cli/<hostname>)
  --json               print what was sent as JSON lines
  -h, --help           this help

Exit codes: 0 sent, 1 rejected, 2 usage, 69 server or Kafka unreachable.`;

export const emitOptions = {
  url: { type: 'string' },
  json: { type: 'boolean' },
  'exit-code': { type: 'string' },
  text: { type: 'string' },
  stdin: { type: 'boolean' },
  seq: { type: 'string' },
  'last-seq': { type: 'string' },
  attempt: { type: 'string' },
  percent: { type: 'string' },
  phase: { type: 'string' },
  'details-url': { type: 'string' },
  'error-type': { type: 'string' },
  via: { type: 'string' },
  'event-token': { type: 'string' },
  brokers: { type: 'string' },
  'topic-prefix': { type: 'string' },
  source: { type: 'string' },
} as const;

const KINDS: EventKind[] = ['accepted', 'heartbeat', 'log', 'finished', 'canceled'];
/** Largest chunk --stdin sends (well under the 512 KiB chunk limit). */
const STDIN_CHUNK = 64 * 1024;
/** Longest --stdin holds output before sending it. */
const STDIN_FLUSH_MS = 200;

type Send = (ev: JobEvent) => Promise<void>;

const usage = (msg: string) => {
  process.stderr.write(`extjob emit: ${msg}\n\n${emitHelp}\n`);
  return EXIT.usage;
};

function int(v: unknown, name: string, min = 0): number | undefined {
  if (v === undefined) return undefined;
  const n = flagNumber(v);
  if (n === undefined || n < min) throw new UsageError(`--${name} takes an integer >= ${min}`);
  return n;
}

class UsageError extends Error {}

export async function emit(values: Record<string, unknown>, positionals: string[]): Promise<number> {
  const [id, kind, ...extra] = positionals;
  if (!id || !kind || extra.length > 0) return usage('expected a job id and an event kind');
  if (!KINDS.includes(kind as EventKind)) return usage(`unknown event kind "${kind}" (${KINDS.join(', ')})`);
  const via = (values.via as string | undefined) ?? 'http';
  if (via !== 'http' && via !== 'kafka') return usage('--via is http or kafka');
  if (values.stdin && kind !== 'log') return usage('--stdin streams log chunks: use it with "log"');
  if (values.stdin && values.text !== undefined) return usage('give --text or --stdin, not both');
  if (kind === 'log' && !values.stdin && values.text === undefined)
    return usage('log needs --text or --stdin');

  let base: Omit<JobEvent, 'id'>;
  let seq: number;
  try {
    const attempt = int(values.attempt, 'attempt', 1);
    seq = int(values.seq, 'seq') ?? 0;
    base = {
      kind: kind as EventKind,
      jobId: id,
      source: (values.source as string | undefined) ?? `/extjob-cli/${hostname()}`,
      type: `dev.extjob.${kind}.v1`,
      time: new Date().toISOString(),
      ...(attempt !== undefined ? { attempt } : {}),
    };
    const text = values.text as string | undefined;
    switch (kind) {
      case 'accepted':
        if (text !== undefined) base.message = text;
        if (typeof values['details-url'] === 'string') base.detailsUrl = values['details-url'];
        break;
      case 'heartbeat': {
        const percent = values.percent === undefined ? undefined : flagNumber(values.percent, false);
        if (values.percent !== undefined && !(percent !== undefined && percent >= 0 && percent <= 100))
          throw new UsageError('--percent takes a number from 0 to 100');
        const progress = {
          ...(percent !== undefined ? { percent } : {}),
          ...(typeof values.phase === 'string' ? { phase: values.phase } : {}),
          ...(text !== undefined ? { message: text } : {}),
        };
        if (Object.keys(progress).length > 0) base.progress = progress;
        break;
      }
      case 'log':
        base.seq = seq;
        if (text !== undefined) base.chunk = Buffer.from(text);
        break;
      case 'finished': {
        const exitCode = values['exit-code'] === undefined ? 0 : flagNumber(values['exit-code']);
        if (exitCode === undefined) throw new UsageError('--exit-code takes an integer');
        base.exitCode = exitCode;
        const lastSeq = int(values['last-seq'], 'last-seq');
        if (lastSeq !== undefined) base.lastSeq = lastSeq;
        if (exitCode !== 0 && (text !== undefined || typeof values['error-type'] === 'string'))
          base.error = {
            type: (values['error-type'] as string | undefined) ?? 'failed',
            message: text ?? '',
          };
        else if (text !== undefined) base.summary = text;
        break;
      }
      case 'canceled':
        if (text !== undefined) base.reason = text;
        break;
    }
  } catch (err) {
    if (err instanceof UsageError) return usage(err.message);
    throw err;
  }

  let send: Send;
  let close = async () => {};
  try {
    if (via === 'http') send = httpSender(values, id);
    else {
      const k = await kafkaSender(values);
      send = k.send;
      close = k.close;
    }
  } catch (err) {
    return reportError('emit', err);
  }
  const sent = (ev: JobEvent) => {
    if (values.json) process.stdout.write(`${JSON.stringify(toCloudEventJson(ev))}\n`);
  };
  try {
    if (values.stdin) {
      await streamStdin(async (chunk) => {
        const ev: JobEvent = { ...base, id: randomUUID(), seq, chunk, time: new Date().toISOString() };
        await send(ev);
        sent(ev);
        seq++;
      });
      if (!values.json && process.stderr.isTTY) process.stderr.write(`extjob emit: next seq ${seq}\n`);
    } else {
      const ev: JobEvent = { ...base, id: randomUUID() };
      await send(ev);
      sent(ev);
    }
    return EXIT.ok;
  } catch (err) {
    return reportError('emit', err);
  } finally {
    await close();
  }
}

function httpSender(values: Record<string, unknown>, id: string): Send {
  const token = (values['event-token'] as string | undefined) ?? process.env.EXTJOB_EVENT_TOKEN;
  const client = clientFrom(
    { url: values.url, token },
    process.env,
    "no event token: pass the job's event token with --event-token or set EXTJOB_EVENT_TOKEN",
  );
  return async (ev) => {
    await client.json(`/v1/jobs/${encodeURIComponent(id)}/events`, { json: toCloudEventJson(ev) });
  };
}

async function kafkaSender(values: Record<string, unknown>): Promise<{ send: Send; close(): Promise<void> }> {
  // The service's Kafka settings (TLS, SASL), the flags before the environment; the
  // service's other settings are none of emit's business.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) => k.startsWith('EXTJOB_KAFKA_') || k.startsWith('EXTJOB_TOPIC_'),
    ),
  );
  if (typeof values.brokers === 'string') env.EXTJOB_KAFKA_BROKERS = values.brokers;
  if (typeof values['topic-prefix'] === 'string') env.EXTJOB_TOPIC_PREFIX = values['topic-prefix'];
  let config: Config;
  try {
    config = loadConfig(env);
  } catch (err) {
    if (!isExtjobError(err)) throw err;
    // a usage error, named as the user gave it
    let message = err.message;
    if (typeof values.brokers === 'string') message = message.replaceAll('EXTJOB_KAFKA_BROKERS', '--brokers');
    if (typeof values['topic-prefix'] === 'string')
      message = message.replaceAll('EXTJOB_TOPIC_PREFIX', '--topic-prefix');
    throw new ClientUsageError(message);
  }
  const brokers = config.kafkaBrokers;
  const prefix = config.topicPrefix;
  const kafka = createKafka({
    ...kafkaSettings(config),
    clientId: 'extjob-cli',
    retries: 3,
    connectionTimeoutMs: 3000,
  });
  const producer: Producer = createProducer(kafka);
  try {
    await producer.connect();
  } catch (err) {
    await producer.disconnect().catch(() => {});
    throw new ClientError(`cannot reach Kafka at ${brokers.join(',')} (${(err as Error).message})`, 0);
  }
  return {
    send: async (ev) => {
      try {
        await producer.send({ topic: `${prefix}.events`, acks: -1, messages: [encodeStructured(ev)] });
      } catch (err) {
        throw new ClientError(`Kafka did not take the event (${(err as Error).message})`, 0);
      }
    },
    close: () => producer.disconnect().catch(() => {}),
  };
}

/**
 * Read stdin and hand it on in chunks: cut at the last newline once STDIN_CHUNK bytes
 * are buffered, and flush what is buffered when no more arrives for STDIN_FLUSH_MS.
 * Chunks are sent one at a time, in order. Resolves with the number of chunks sent.
 */
export async function streamStdin(
  onChunk: (chunk: Buffer) => Promise<void>,
  input: NodeJS.ReadableStream = process.stdin,
): Promise<number> {
  let buf = Buffer.alloc(0);
  let n = 0;
  let chain = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  let failed: unknown;
  const flush = (all: boolean) => {
    while (buf.length > 0 && (all || buf.length >= STDIN_CHUNK)) {
      let cut = Math.min(buf.length, STDIN_CHUNK);
      if (!all || buf.length > STDIN_CHUNK) {
        const nl = buf.lastIndexOf(0x0a, cut - 1);
        if (nl >= 0) cut = nl + 1;
      }
      const chunk = buf.subarray(0, cut);
      buf = buf.subarray(cut);
      n++;
      chain = chain
        .then(() => (failed ? undefined : onChunk(Buffer.from(chunk))))
        .catch((err) => {
          failed ??= err;
        });
    }
  };
  for await (const data of input as AsyncIterable<Buffer | string>) {
    if (failed) break;
    buf = Buffer.concat([buf, typeof data === 'string' ? Buffer.from(data) : data]);
    flush(false);
    clearTimeout(timer);
    timer = setTimeout(() => flush(true), STDIN_FLUSH_MS);
  }
  clearTimeout(timer);
  flush(true);
  await chain;
  if (failed) throw failed;
  return n;
}
