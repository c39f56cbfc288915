/**
 * Executor events in, whatever their wire format: one Kafka message (or an HTTP body)
 * to a JobEvent or a DLQ reason. Never throws, whatever the bytes.
 */
import type { JobEvent } from '../../broker/types.js';
import { cdeventToJobEvent, isCdeventsType, looksLikeBareCdevent } from './cdevents.js';
import {
  type CloudEvent,
  findHeader,
  fromBinary,
  fromStructured,
  headerText,
  isBinaryMode,
  newSlot,
  STRUCTURED_CONTENT_TYPE,
} from './cloudevents-v1.js';
import { isExtjobType, toJobEvent } from './extjob-v1.js';
import { type Decoded, decodesTo, isJsonMediaType, isPlainObject, parseJsonBytes } from './json-bytes.js';
import { DEFAULT_LIMITS, type FormatLimits, fail, type ParseResult, type RawMessage } from './result.js';

export * from './encode.js';
export * from './result.js';
export { STRUCTURED_CONTENT_TYPE };

/** Parse one Kafka message of the events topic. */
export function parseMessage(msg: RawMessage, limits: FormatLimits = DEFAULT_LIMITS): ParseResult {
  try {
    const r = parseUnchecked(msg, limits);
    if (!r.ok) return r;
    const ev = r.value;
    const result: ParseResult = { ok: true, event: ev };
    if (msg.key !== null && msg.key !== undefined && !decodesTo(msg.key, ev.jobId)) result.keyMismatch = true;
    return result;
  } catch (err) {
    // A bug in a format module must not stop a partition: the message is dead-lettered.
    return fail(
      'invalid',
      `unexpected parser error: ${String((err as Error)?.message ?? err).slice(0, 200)}`,
    );
  }
}

function parseUnchecked(msg: RawMessage, limits: FormatLimits): Decoded<JobEvent> {
  const headers = msg.headers ?? {};
  if (isBinaryMode(msg.headers)) {
    const ce = fromBinary(msg, limits);
    return ce.ok ? fromCloudEvent(ce.value, limits) : ce;
  }
  const ctName = findHeader(headers, 'content-type');
  if (ctName !== undefined) {
    const ct = headerText(headers, ctName, limits, CONTENT_TYPE);
    if (typeof ct === 'object') return ct;
    if (ct !== undefined && !isJsonMediaType(ct))
      return fail(
        'invalid',
        `content-type "${ct.slice(0, 100)}" without ce_ headers; expected ${STRUCTURED_CONTENT_TYPE} or binary mode`,
      );
  }
  if (msg.value === null || msg.value === undefined) return fail('malformed', 'the message has no value');
  const parsed = parseJsonBytes(msg.value, limits, 'value');
  if (!parsed.ok) return parsed;
  return fromJsonValue(parsed.value, limits);
}

/** The structured binding's content type (see Slot). */
const CONTENT_TYPE = newSlot();

/** A structured event or bare CDEvent already parsed from JSON. */
function fromJsonValue(value: unknown, limits: FormatLimits): Decoded<JobEvent> {
  if (!isPlainObject(value)) return fail('invalid', 'the event must be a JSON object');
  if (looksLikeBareCdevent(value)) return cdeventToJobEvent(value);
  const ce = fromStructured(value, limits);
  return ce.ok ? fromCloudEvent(ce.value, limits) : ce;
}

function fromCloudEvent(ce: CloudEvent, limits: FormatLimits): Decoded<JobEvent> {
  const r = isExtjobType(ce.type)
    ? toJobEvent(ce, ce.type, limits)
    : isCdeventsType(ce.type)
      ? cdeventToJobEvent(ce.data, ce)
      : fail('unsupported_type', `event type "${ce.type.slice(0, 256)}" is not handled`);
  return r.ok ? r : { ...r, type: ce.type };
}

/**
 * Parse the body of POST /v1/jobs/{id}/events: a structured CloudEvent or a bare
 * CDEvent, as bytes or already-parsed JSON. The subject may be left out (the path names
 * the job); when given it must equal the path's job id.
 */
export function parseHttpEvent(
  body: Buffer | string | unknown,
  jobId: string,
  limits: FormatLimits = DEFAULT_LIMITS,
): ParseResult {
  try {
    let value: unknown = body;
    if (typeof body === 'string' || Buffer.isBuffer(body)) {
      const parsed = parseJsonBytes(body, limits, 'body');
      if (!parsed.ok) return parsed;
      value = parsed.value;
    }
    if (isPlainObject(value) && value.specversion !== undefined && (value.subject ?? null) === null)
      value = { ...value, subject: jobId };
    const r = fromJsonValue(value, limits);
    if (!r.ok) return r;
    if (r.value.jobId !== jobId)
      return fail('invalid', `the event is for job "${r.value.jobId}" but was posted for job "${jobId}"`);
    return { ok: true, event: r.value };
  } catch (err) {
    return fail(
      'invalid',
      `unexpected parser error: ${String((err as Error)?.message ?? err).slice(0, 200)}`,
    );
  }
}
