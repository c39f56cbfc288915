/**
 * JobEvent to a Kafka message of the events topic, in either CloudEvents binding.
 * Used by the HTTP endpoint and the CLI (`emit`), and by tests; parseMessage reads
 * back exactly what these write.
 */
import type { JobEvent } from '../../broker/types.js';
import { ExtjobError } from '../../shared/errors.js';
import { dataOf, isExtjobType, typeOf } from './extjob-v1.js';
import { DEFAULT_LIMITS, type FormatLimits } from './result.js';

export interface OutMessage {
  key: string;
  value: Buffer;
  headers: Record<string, string>;
}

/** The structured CloudEvent (as a JSON object) for an extjob event. */
export function toCloudEventJson(ev: JobEvent): Record<string, unknown> {
  const ce: Record<string, unknown> = {
    specversion: '1.0',
    id: ev.id,
    source: ev.source,
    type: isExtjob(ev) ? ev.type : typeOf(ev.kind),
    subject: ev.jobId,
  };
  if (ev.time !== undefined) ce.time = ev.time;
  ce.datacontenttype = 'application/json';
  ce.data = dataOf(ev);
  return ce;
}

const isExtjob = (ev: JobEvent) => ev.type === typeOf(ev.kind);

export function encodeStructured(ev: JobEvent): OutMessage {
  return {
    key: ev.jobId,
    value: Buffer.from(JSON.stringify(toCloudEventJson(ev))),
    headers: { 'content-type': 'application/cloudevents+json; charset=utf-8' },
  };
}

export function encodeBinary(ev: JobEvent): OutMessage {
  const headers: Record<string, string> = {
    ce_specversion: '1.0',
    ce_id: ev.id,
    ce_source: ev.source,
    ce_type: isExtjob(ev) ? ev.type : typeOf(ev.kind),
    ce_subject: ev.jobId,
    'content-type': 'application/json',
  };
  if (ev.time !== undefined) headers.ce_time = ev.time;
  return { key: ev.jobId, value: Buffer.from(JSON.stringify(dataOf(ev))), headers };
}

/**
 * The events-topic message for an event posted over HTTP (already parsed from `body`).
 * An extjob event is encoded afresh. Any other (a CDEvent, bare or as a CloudEvent's
 * data) goes as it was sent, so that its type is the same as if it had been sent to
 * Kafka: a CloudEvent that left out its subject gets the job id the path named.
 */
export function encodeHttpEvent(
  ev: JobEvent,
  body: Buffer,
  limits: FormatLimits = DEFAULT_LIMITS,
): OutMessage {
  if (isExtjobType(ev.type)) return fitting(encodeStructured(ev), limits);
  const json = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
  if (json.specversion === undefined) return { key: ev.jobId, value: body, headers: JSON_HEADERS };
  if (json.subject != null) return { key: ev.jobId, value: body, headers: STRUCTURED_HEADERS };
  const value = Buffer.from(JSON.stringify({ ...json, subject: ev.jobId }));
  // the subject added must not take it past what the consumer takes
  return value.length > limits.maxValueBytes
    ? fitting(encodeStructured(ev), limits)
    : { key: ev.jobId, value, headers: STRUCTURED_HEADERS };
}

/**
 * The message, unless the consumers would refuse it as too large (encoding afresh adds
 * a few attributes to a body at the limit): a 413 then, rather than a 202 for an event
 * that goes to the DLQ.
 */
function fitting(m: OutMessage, limits: FormatLimits): OutMessage {
  if (m.value.length <= limits.maxValueBytes) return m;
  throw new ExtjobError(
    'EXTJOB_PAYLOAD_TOO_LARGE',
    `the event is ${m.value.length} bytes as written to Kafka, more than the consumers' limit of ${limits.maxValueBytes}`,
  );
}
const JSON_HEADERS = { 'content-type': 'application/json' };
const STRUCTURED_HEADERS = { 'content-type': 'application/cloudevents+json; charset=utf-8' };
