/**
 * Dead-letter records: the original key, value and headers untouched, plus headers
 * saying why and where the message came from. The header names are part of the
 * public contract (docs/events.md).
 */
import type { DlqReason } from './formats/result.js';
import type { InMessage, OutgoingMessage } from './kafka-types.js';
import { refusedBy } from './retry.js';

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

type HeaderValue = string | Buffer | (string | Buffer)[];
const isWire = (x: unknown): x is string | Buffer => typeof x === 'string' || Buffer.isBuffer(x);

/**
 * What came off the wire, only. kafkajs decodes headers into a plain object, so a
 * header named like an Object.prototype member (toString, constructor, ...) arrives as
 * an array holding that function too; sent back as is, the producer throws on every
 * retry and the partition stalls for good. A header whose value is null is left out
 * for the same reason: kafkajs reads one, but throws when asked to send it.
 */
function wireValue(v: unknown): HeaderValue | undefined {
  if (isWire(v)) return v;
  if (!Array.isArray(v)) return undefined;
  const list = v.filter(isWire);
  return list.length > 0 ? list : undefined;
}

export function dlqMessage(src: DlqSource, reason: DlqReason, detail: string): OutgoingMessage {
  const { message } = src;
  // No prototype: a header named __proto__ must stay a header.
  const headers = Object.create(null) as NonNullable<OutgoingMessage['headers']>;
  for (const [k, v] of Object.entries(message.headers ?? {})) {
    const value = wireValue(v);
    if (value !== undefined) headers[k] = value;
  }
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

/**
 * Produce DLQ records. When Kafka refuses the records themselves (too large with our
 * headers, ...), they are sent again without their values. Anything else (an outage,
 * even one the client gave up retrying) is thrown: the caller retries with the values.
 */
export async function sendDlqRecords(
  send: (messages: OutgoingMessage[]) => Promise<unknown>,
  messages: OutgoingMessage[],
  onRefused: (err: unknown) => void,
): Promise<void> {
  try {
    await send(messages);
  } catch (err) {
    const refused = refusedBy(err);
    if (!refused) throw err;
    onRefused(err);
    await send(messages.map((m) => withoutValue(m, `${refused}: ${String((err as Error).message)}`)));
  }
}
