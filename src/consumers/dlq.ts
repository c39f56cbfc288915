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
  /** Set only when the original value had to be left out (the DLQ topic refused the record with it). */
  valueDropped: 'extjob-dlq-value-dropped',
  /** Set only when a message without a key got one (the DLQ topic refused it keyless). */
  keyAdded: 'extjob-dlq-key-added',
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

/** The same record without its value, for when the DLQ topic refuses it with it. */
export function withoutValue(m: OutgoingMessage, why: string): OutgoingMessage {
  return { ...m, value: null, headers: { ...m.headers, [DLQ_HEADERS.valueDropped]: why.slice(0, 200) } };
}

/**
 * The same record keyed by where it came from (`<topic>/<partition>/<offset>`), for a
 * message without a key that the DLQ refuses (a compacted topic takes no keyless
 * record): a key of its own, so that compaction keeps every such record.
 */
function withSourceKey(m: OutgoingMessage, why: string): OutgoingMessage {
  const h = m.headers ?? {};
  const key = `${h[DLQ_HEADERS.topic]}/${h[DLQ_HEADERS.partition]}/${h[DLQ_HEADERS.offset]}`;
  return { ...m, key, headers: { ...h, [DLQ_HEADERS.keyAdded]: why.slice(0, 200) } };
}

/** What became of a record the DLQ refused as it was. */
export type DlqRefusal = 'keyed' | 'value_dropped' | 'lost';

/**
 * Produce DLQ records. Anything but a refusal of the records themselves (an outage,
 * even one the client gave up retrying) is thrown: the caller sends them again as they
 * are. When Kafka refuses the records (a request too large for the topic, a keyless
 * record on a compacted topic, ...), each goes on its own, so that one the DLQ takes
 * keeps its value; one refused alone goes with a key if it had none, then without its
 * value. One refused even then is given up ('lost'): a message that cannot be applied
 * never stops its partition.
 */
export async function sendDlqRecords(
  send: (messages: OutgoingMessage[]) => Promise<unknown>,
  messages: OutgoingMessage[],
  onRefused: (err: unknown, message: OutgoingMessage, outcome: DlqRefusal) => void,
): Promise<void> {
  try {
    await send(messages);
    return;
  } catch (err) {
    if (!refusedBy(err)) throw err;
    if (messages.length > 1) for (const m of messages) await sendAlone(send, m, onRefused);
    else await sendAlone(send, messages[0]!, onRefused, err);
  }
}

async function sendAlone(
  send: (messages: OutgoingMessage[]) => Promise<unknown>,
  message: OutgoingMessage,
  onRefused: (err: unknown, message: OutgoingMessage, outcome: DlqRefusal) => void,
  refusal?: unknown,
): Promise<void> {
  let m = message;
  const attempt = async (next: OutgoingMessage): Promise<boolean> => {
    try {
      await send([next]);
      return true;
    } catch (err) {
      if (!refusedBy(err)) throw err;
      refusal = err;
      return false;
    }
  };
  if (refusal === undefined && (await attempt(m))) return;
  const why = () => `${refusedBy(refusal)}: ${String((refusal as Error).message)}`;
  if (m.key === null || m.key === undefined) {
    m = withSourceKey(m, why());
    onRefused(refusal, message, 'keyed');
    if (await attempt(m)) return;
  }
  m = withoutValue(m, why());
  onRefused(refusal, message, 'value_dropped');
  if (await attempt(m)) return;
  onRefused(refusal, message, 'lost');
}
