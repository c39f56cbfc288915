/**
 * Outbound CloudEvents (SPEC 6), built from outbox entries: state changes for
 * `<prefix>.changes` and commands to executors for `<prefix>.commands`. Everything in
 * a message is derived from the entry, so publishing an entry twice (after a crash
 * between the Kafka ack and the outbox ack) yields byte-identical messages, and the
 * `extjobseq` extension (the job's version) lets readers drop what they have seen.
 * A job id used again after retention removed the first job starts at version 1
 * again: `extjobcreated` (and the id) tell the two jobs apart.
 */
import type { OutboxPayload } from '../../broker/types.js';

/** The fields of an outbox entry this module reads (the broker's OutboxEntry has them). */
export interface OutboxRecord {
  /** Stream id "<ms>-<n>": its time part dates the change. */
  id: string;
  jobId: string;
  version: number;
  attempt: number;
  type: 'job.changed' | 'job.created' | 'job.cancel_requested';
  payload: OutboxPayload;
}

export const OUTBOUND_TYPES = {
  'job.changed': 'dev.extjob.job.changed.v1',
  'job.created': 'dev.extjob.job.created.v1',
  'job.cancel_requested': 'dev.extjob.job.cancel_requested.v1',
} as const;

export const OUTBOUND_TOPIC = {
  'job.changed': 'changes',
  'job.created': 'commands',
  'job.cancel_requested': 'commands',
} as const satisfies Record<OutboxRecord['type'], 'changes' | 'commands'>;

/** Default CloudEvents `source` of everything extjob publishes. */
export const DEFAULT_SOURCE = '/extjob';

export function outboundCloudEvent(e: OutboxRecord, source = DEFAULT_SOURCE): Record<string, unknown> {
  const ms = Number(e.id.split('-')[0]);
  const data: Record<string, unknown> = { job: e.payload.job };
  if (e.type === 'job.changed') {
    data.from = e.payload.from ?? null;
    data.to = e.payload.to ?? e.payload.job.state;
    if (e.payload.detail !== undefined) data.detail = e.payload.detail;
  }
  if (e.payload.cause !== undefined) data.cause = e.payload.cause;
  const created = e.payload.job.createdAt;
  return {
    specversion: '1.0',
    id: `${e.jobId}/${Date.parse(created)}/v${e.version}/a${e.attempt}/${e.type.slice(4)}`,
    source,
    type: OUTBOUND_TYPES[e.type],
    subject: e.jobId,
    time: new Date(Number.isFinite(ms) ? ms : Date.now()).toISOString(),
    datacontenttype: 'application/json',
    extjobseq: e.version,
    extjobattempt: e.attempt,
    extjobcreated: created,
    data,
  };
}

/** The Kafka message (structured mode, keyed by job id) for an outbox entry. */
export function outboundMessage(e: OutboxRecord, source = DEFAULT_SOURCE) {
  return {
    key: e.jobId,
    value: JSON.stringify(outboundCloudEvent(e, source)),
    headers: { 'content-type': 'application/cloudevents+json; charset=utf-8' },
  };
}
