/**
 * The dev.extjob.*.v1 event types (SPEC 5.1): their data schemas and their mapping to
 * JobEvent. Known fields are checked strictly; unknown data fields are ignored, so a
 * later v1 may add optional fields without breaking older brokers.
 */
import { z } from 'zod';
import type { EventKind, JobEvent } from '../../broker/types.js';
import type { CloudEvent } from './cloudevents-v1.js';
import { isBase64 } from './cloudevents-v1.js';
import * as f from './fields.js';
import type { Decoded } from './json-bytes.js';
import { isPlainObject } from './json-bytes.js';
import { type FormatLimits, fail } from './result.js';

export const EXTJOB_TYPES = {
  'dev.extjob.accepted.v1': 'accepted',
  'dev.extjob.heartbeat.v1': 'heartbeat',
  'dev.extjob.log.v1': 'log',
  'dev.extjob.finished.v1': 'finished',
  'dev.extjob.canceled.v1': 'canceled',
} as const satisfies Record<string, EventKind>;

export type ExtjobType = keyof typeof EXTJOB_TYPES;

export const typeOf = (kind: EventKind): ExtjobType => `dev.extjob.${kind}.v1` as ExtjobType;

export const isExtjobType = (t: string): t is ExtjobType => Object.hasOwn(EXTJOB_TYPES, t);

const schemas = {
  accepted: z.object({
    attempt: f.attempt.optional(),
    executor: f.shortText.optional(),
    detailsUrl: f.httpUrl.optional(),
    message: f.message.optional(),
  }),
  heartbeat: z.object({ attempt: f.attempt.optional(), progress: f.progress.optional() }),
  log: z.object({
    attempt: f.attempt.optional(),
    seq: f.seq,
    text: z.string().optional(),
    base64: z.string().optional(),
  }),
  finished: z.object({
    attempt: f.attempt.optional(),
    exitCode: f.exitCode,
    error: f.jobError.optional(),
    summary: f.longText.optional(),
    lastSeq: f.seq.optional(),
  }),
  canceled: z.object({ attempt: f.attempt.optional(), reason: f.message.optional() }),
} satisfies Record<EventKind, z.ZodType>;

/** Data may be left out (or null) for the types whose fields are all optional. */
const dataOptional: ReadonlySet<EventKind> = new Set(['accepted', 'heartbeat', 'canceled']);

/** Copy the defined entries of `from` onto `to` (keeps JobEvent free of undefined keys). */
function assignDefined<T extends object>(to: T, from: Partial<T>): T {
  for (const [k, v] of Object.entries(from)) if (v !== undefined) (to as Record<string, unknown>)[k] = v;
  return to;
}

export function toJobEvent(ce: CloudEvent, type: ExtjobType, limits: FormatLimits): Decoded<JobEvent> {
  const kind = EXTJOB_TYPES[type];
  if (ce.subject === undefined) return fail('invalid', 'subject (the job id) is required');
  const id = f.jobId.safeParse(ce.subject);
  if (!id.success) return fail('invalid', f.describeIssues(id.error, 'subject'));
  let data = ce.data;
  if (data === undefined || data === null) {
    if (!dataOptional.has(kind)) return fail('invalid', `data is required for ${type}`);
    data = {};
  }
  if (!isPlainObject(data)) return fail('invalid', 'data must be a JSON object');
  const parsed = schemas[kind].safeParse(data);
  if (!parsed.success) return fail('invalid', f.describeIssues(parsed.error, 'data'));
  const ev: JobEvent = { kind, jobId: id.data, id: ce.id, source: ce.source, type };
  if (ce.time !== undefined) ev.time = ce.time;
  const d = parsed.data as Record<string, unknown>;
  if (kind === 'log') {
    const chunk = decodeChunk(d.text as string | undefined, d.base64 as string | undefined, limits);
    if (!chunk.ok) return chunk;
    assignDefined(ev, { attempt: d.attempt as number | undefined, seq: d.seq as number, chunk: chunk.value });
    return { ok: true, value: ev };
  }
  return { ok: true, value: assignDefined(ev, d as Partial<JobEvent>) };
}

function decodeChunk(
  text: string | undefined,
  b64: string | undefined,
  limits: FormatLimits,
): Decoded<Buffer> {
  if ((text === undefined) === (b64 === undefined))
    return fail('invalid', 'data must have exactly one of text and base64');
  let chunk: Buffer;
  if (text !== undefined) {
    if (text.length * 3 > limits.maxChunkBytes && Buffer.byteLength(text) > limits.maxChunkBytes)
      return fail('too_large', `log chunk is over ${limits.maxChunkBytes} bytes`);
    chunk = Buffer.from(text, 'utf8');
  } else {
    const s = b64 as string;
    if (!isBase64(s)) return fail('invalid', 'data.base64 is not base64');
    chunk = Buffer.from(s, 'base64');
  }
  if (chunk.length > limits.maxChunkBytes)
    return fail(
      'too_large',
      `log chunk is ${chunk.length} bytes, more than the limit of ${limits.maxChunkBytes}`,
    );
  return { ok: true, value: chunk };
}

/** The data object of an event of this kind (the inverse of toJobEvent's data mapping). */
export function dataOf(ev: JobEvent): Record<string, unknown> {
  const d: Record<string, unknown> = {};
  const put = (k: string, v: unknown) => {
    if (v !== undefined) d[k] = v;
  };
  put('attempt', ev.attempt);
  switch (ev.kind) {
    case 'accepted':
      put('executor', ev.executor);
      put('detailsUrl', ev.detailsUrl);
      put('message', ev.message);
      break;
    case 'heartbeat':
      put('progress', ev.progress);
      break;
    case 'log': {
      put('seq', ev.seq);
      const chunk = ev.chunk ?? Buffer.alloc(0);
      const text = chunk.toString('utf8');
      if (Buffer.from(text, 'utf8').equals(chunk)) put('text', text);
      else put('base64', chunk.toString('base64'));
      break;
    }
    case 'finished':
      put('exitCode', ev.exitCode);
      put('error', ev.error);
      put('summary', ev.summary);
      put('lastSeq', ev.lastSeq);
      break;
    case 'canceled':
      put('reason', ev.reason);
      break;
  }
  return d;
}
