/**
 * What the format modules produce: one executor event normalized to the broker's
 * JobEvent, or the reason it cannot be used. The reasons are the DLQ vocabulary
 * (header `extjob-dlq-reason`, metric `extjob_dlq_total{reason}`).
 */
import type { JobEvent } from '../../broker/types.js';

export const DLQ_REASONS = ['malformed', 'invalid', 'unsupported_type', 'too_large', 'unknown_job'] as const;
/**
 * - malformed: the bytes are not UTF-8 or not JSON;
 * - invalid: JSON, but an attribute or data field breaks the schema;
 * - unsupported_type: a well-formed event of a type extjob does not handle;
 * - too_large: the message, a header or a log chunk exceeds its size limit;
 * - unknown_job: valid, but no job has that id (decided by the broker).
 */
export type DlqReason = (typeof DLQ_REASONS)[number];

export type ParseResult =
  | {
      ok: true;
      event: JobEvent;
      /** The Kafka key was present and differs from the event's subject (the job id). */
      keyMismatch?: boolean;
    }
  | {
      ok: false;
      reason: DlqReason;
      detail: string;
      /** The event's type, when it could be read (for the metrics' type label). */
      type?: string;
    };

export type ParseFailure = Extract<ParseResult, { ok: false }>;

export const fail = (reason: DlqReason, detail: string): ParseFailure => ({ ok: false, reason, detail });

/** One Kafka message as the parser sees it (kafkajs hands over these shapes). */
export interface RawMessage {
  key: Buffer | string | null | undefined;
  value: Buffer | string | null | undefined;
  headers?: Record<string, Buffer | string | (Buffer | string)[] | undefined> | undefined;
}

/** Size and shape bounds; the defaults follow SPEC section 10. */
export interface FormatLimits {
  /** Largest Kafka value or HTTP body, in bytes. */
  maxValueBytes: number;
  /** Largest decoded log chunk, in bytes. */
  maxChunkBytes: number;
  /** Deepest JSON nesting accepted (objects and arrays). */
  maxDepth: number;
  /** Largest single header value, in bytes. */
  maxHeaderBytes: number;
}

export const DEFAULT_LIMITS: Readonly<FormatLimits> = Object.freeze({
  maxValueBytes: 1024 * 1024,
  maxChunkBytes: 512 * 1024,
  maxDepth: 32,
  maxHeaderBytes: 4096,
});
