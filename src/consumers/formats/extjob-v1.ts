/**
 * The dev.extjob.*.v1 event types (SPEC 5.1): their data schemas and their mapping to
 * JobEvent. Known fields are checked strictly; unknown data fields are ignored, so a
 * later v1 may add optional fields without breaking older brokers.
 */
import { z } from 'zod';
import {
  type EventKind,
  EXIT_CODE_MAX,
  EXIT_CODE_MIN,
  JOB_ID_PATTERN,
  type JobEvent,
} from '../../broker/types.js';
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

export const dataSchemas = {
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

const isInt = (v: unknown, min: number, max: number): v is number =>
  Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max;
const opt = (v: unknown, check: (v: unknown) => boolean) => v === undefined || check(v);
const text =
  (max: number, min = 0) =>
  (v: unknown) =>
    typeof v === 'string' && v.length >= min && v.length <= max;
const anyText = text(Infinity);
const text256 = text(256);
const text1024 = text(1024);
const text4096 = text(4096);
const attempt = (v: unknown) => isInt(v, 1, f.MAX_ATTEMPT);
const seq = (v: unknown) => isInt(v, 0, f.MAX_SEQ);
const exitCode = (v: unknown) => isInt(v, EXIT_CODE_MIN, EXIT_CODE_MAX);
/** Only these keys, each passing its check when present, `required` present (zod's strictObject). */
const strict =
  (checks: Record<string, (v: unknown) => boolean>, required: string[] = []) =>
  (v: unknown) => {
    if (!isPlainObject(v)) return false;
    for (const k in v) if (!Object.hasOwn(checks, k) || !opt(v[k], checks[k]!)) return false;
    return required.every((k) => v[k] !== undefined);
  };
const progress = strict({
  percent: (v) => typeof v === 'number' && v >= 0 && v <= 100,
  phase: text(128),
  message: text1024,
});
const jobError = strict({ type: text(128, 1), message: text4096 }, ['type', 'message']);

/** The data fields of each kind with their checks (attempt is common to all; log: quickData). */
const QUICK: Record<Exclude<EventKind, 'log'>, [string, (v: unknown) => boolean][]> = {
  heartbeat: [
    ['attempt', attempt],
    ['progress', progress],
  ],
  accepted: [
    ['attempt', attempt],
    ['executor', text256],
    ['detailsUrl', f.isHttpUrl],
    ['message', text1024],
  ],
  finished: [
    ['attempt', attempt],
    ['exitCode', exitCode],
    ['error', jobError],
    ['summary', text4096],
    ['lastSeq', seq],
  ],
  canceled: [
    ['attempt', attempt],
    ['reason', text1024],
  ],
};

/**
 * The known fields of an event's data when its schema would accept them, checked by
 * hand (zod costs more than the rest of parsing an event); undefined otherwise, and
 * zod then says why. A property test holds the two to the same answers.
 */
export function quickData(kind: EventKind, d: Record<string, unknown>): Record<string, unknown> | undefined {
  if (kind === 'log') {
    // the bulk of traffic: its fields by name, one shape out (a loop over a table of
    // names reads and writes by computed key, which costs several times more)
    const { attempt: a, seq: s, text: t, base64: b } = d;
    return seq(s) && opt(a, attempt) && opt(t, anyText) && opt(b, anyText)
      ? { attempt: a, seq: s, text: t, base64: b }
      : undefined;
  }
  if (kind === 'finished' && d.exitCode === undefined) return undefined;
  const out: Record<string, unknown> = {};
  for (const [k, check] of QUICK[kind]) {
    const v = d[k];
    if (v === undefined) continue;
    if (!check(v)) return undefined;
    out[k] = v;
  }
  return out;
}

/** Data may be left out (or null) for the types whose fields are all optional. */
const dataOptional: ReadonlySet<EventKind> = new Set(['accepted', 'heartbeat', 'canceled']);

/** Copy the defined entries of `from` onto `to` (keeps JobEvent free of undefined keys). */
function assignDefined<T extends object>(to: T, from: Partial<T>): T {
  for (const k in from) if (from[k] !== undefined) (to as Record<string, unknown>)[k] = from[k];
  return to;
}

export function toJobEvent(ce: CloudEvent, type: ExtjobType, limits: FormatLimits): Decoded<JobEvent> {
  const kind = EXTJOB_TYPES[type];
  if (ce.subject === undefined) return fail('invalid', 'subject (the job id) is required');
  if (!JOB_ID_PATTERN.test(ce.subject)) {
    const id = f.jobId.safeParse(ce.subject); // says why
    return fail('invalid', id.success ? 'subject is not a job id' : f.describeIssues(id.error, 'subject'));
  }
  let data = ce.data;
  if (data === undefined || data === null) {
    if (!dataOptional.has(kind)) return fail('invalid', `data is required for ${type}`);
    data = {};
  }
  if (!isPlainObject(data)) return fail('invalid', 'data must be a JSON object');
  let d = quickData(kind, data);
  if (!d) {
    const parsed = dataSchemas[kind].safeParse(data);
    if (!parsed.success) return fail('invalid', f.describeIssues(parsed.error, 'data'));
    d = parsed.data as Record<string, unknown>;
  }
  const ev: JobEvent = { kind, jobId: ce.subject, id: ce.id, source: ce.source, type };
  if (ce.time !== undefined) ev.time = ce.time;
  if (kind === 'log') {
    const chunk = decodeChunk(d.text as string | undefined, d.base64 as string | undefined, limits);
    if (!chunk.ok) return chunk;
    if (d.attempt !== undefined) ev.attempt = d.attempt as number;
    ev.seq = d.seq as number;
    ev.chunk = chunk.value;
    return { ok: true, value: ev };
  }
  return { ok: true, value: assignDefined(ev, d as Partial<JobEvent>) };
}

const chunkTooLarge = (size: number, limits: FormatLimits) =>
  fail('too_large', `log chunk is ${size} bytes, more than the limit of ${limits.maxChunkBytes}`);

function decodeChunk(
  text: string | undefined,
  b64: string | undefined,
  limits: FormatLimits,
): Decoded<Buffer | string> {
  if ((text === undefined) === (b64 === undefined))
    return fail('invalid', 'data must have exactly one of text and base64');
  if (text !== undefined) {
    // kept as text (see JobEvent.chunk); a UTF-16 unit is at most 3 UTF-8 bytes
    if (text.length * 3 > limits.maxChunkBytes) {
      const size = Buffer.byteLength(text);
      if (size > limits.maxChunkBytes) return chunkTooLarge(size, limits);
    }
    return { ok: true, value: text };
  }
  if (!isBase64(b64 as string)) return fail('invalid', 'data.base64 is not base64');
  const chunk = Buffer.from(b64 as string, 'base64');
  return chunk.length > limits.maxChunkBytes
    ? chunkTooLarge(chunk.length, limits)
    : { ok: true, value: chunk };
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
      const chunk = ev.chunk ?? '';
      if (typeof chunk === 'string' || readableAsText(chunk)) put('text', chunk.toString('utf8'));
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

/**
 * Whether bytes are UTF-8 that JSON text carries in no more room than base64 would:
 * control bytes (6 characters each as \u00XX), quotes and backslashes grow in JSON,
 * and a chunk of them re-encoded as text could outgrow what Kafka takes.
 */
function readableAsText(bytes: Buffer): boolean {
  let size = 0;
  for (const b of bytes)
    size += b === 0x22 || b === 0x5c || b === 0x0a || b === 0x09 || b === 0x0d ? 2 : b < 0x20 ? 6 : 1;
  return size <= Math.ceil(bytes.length / 3) * 4 && Buffer.from(bytes.toString('utf8'), 'utf8').equals(bytes);
}
