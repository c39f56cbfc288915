/**
 * Dead-letter records: the original key, value and headers untouched, plus headers
 * saying why and where the message came from. The header names are part of the
 * public contract (docs/events.md).
 */
import type { DlqReason } from './formats/result.js';
import type { InMessage, OutgoingMessage } from './kafka-types.js';

export const DLQ_HEADERS = {
  reason: 'extjob-dlq-reason',
  detail: 'extjob-dlq-detail',
  topic: 'extjob-source-topic',
  partition: 'extjob-source-partition',
  offset: 'extjob-source-offset',
  timestamp: 'extjob-source-timestamp',
  /** Set only when the original value had to be left out (the DLQ topic refused its size). */
  valueDropped: 'extjob-dlq-value-dropped',
} as const;

export const MAX_DETAIL_CHARS = 1024;

export interface DlqSource {
  topic: string;
  partition: number;
  message: InMessage;
}

export function dlqMessage(src: DlqSource, reason: DlqReason, detail: string): OutgoingMessage {
  const { message } = src;
  const headers: NonNullable<OutgoingMessage['headers']> = {};
  for (const [k, v] of Object.entries(message.headers ?? {})) if (v !== undefined) headers[k] = v;
  headers[DLQ_HEADERS.reason] = reason;
  headers[DLQ_HEADERS.detail] =
    detail.length > MAX_DETAIL_CHARS ? `${detail.slice(0, MAX_DETAIL_CHARS - 3)}...` : detail;
  headers[DLQ_HEADERS.topic] = src.topic;
  headers[DLQ_HEADERS.partition] = String(src.partition);
  headers[DLQ_HEADERS.offset] = message.offset;
  headers[DLQ_HEADERS.timestamp] = message.timestamp;
  return { key: message.key, value: message.value, headers };
}

/** The same record without its value, for when the DLQ topic refuses the original size. */
export function withoutValue(m: OutgoingMessage, why: string): OutgoingMessage {
  return { ...m, value: null, headers: { ...m.headers, [DLQ_HEADERS.valueDropped]: why.slice(0, 200) } };
}
