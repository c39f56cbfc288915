/**
 * JobEvent to a Kafka message of the events topic, in either CloudEvents binding.
 * Used by the HTTP endpoint and the CLI (`emit`), and by tests; parseMessage reads
 * back exactly what these write.
 */
import type { JobEvent } from '../../broker/types.js';
import { dataOf, typeOf } from './extjob-v1.js';

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
