/**
 * Typed instrumentation events of the Kafka side (consumer, DLQ, outbox drainer).
 * The metrics module listens; nothing here imports prom-client.
 */
import { EventEmitter } from 'node:events';
import type { ApplyResult, EventKind } from '../broker/types.js';
import type { DlqReason } from './formats/result.js';

export type EventResult = ApplyResult | 'invalid';

export interface ConsumerInstrumentation {
  /**
   * One executor event handled. `kind` is undefined when the message could not be
   * parsed; `counted` is true when the broker answered for it (its own instrumentation
   * counted it), false when it never reached the broker or the broker refused it by
   * throwing. Emitted only while something listens: the metrics do not (they count
   * `refused` and the broker's own instrumentation), so the hot path pays nothing.
   */
  event: [{ kind: EventKind | undefined; type: string | undefined; result: EventResult; counted: boolean }];
  /**
   * One message dead-lettered as invalid that the broker never answered for (it could
   * not be parsed, or the broker refused it by throwing): the broker counts the rest.
   * `type` is the event's type where it could be read.
   */
  refused: [{ type: string | undefined }];
  /** One message written to the DLQ. */
  dlq: [{ reason: DlqReason }];
  /** A message had no key (keyed by its subject) or a key that is not its subject. */
  key_problem: [{ problem: 'missing' | 'mismatch'; partition: number }];
  /** Messages behind the partition's high watermark after a batch. */
  lag: [{ topic: string; partition: number; lag: number }];
  /** One batch applied and committed. */
  batch: [{ topic: string; partition: number; size: number; seconds: number }];
  /** A retriable failure (Redis or Kafka unavailable): the batch waits and tries again. */
  retry: [{ operation: 'apply' | 'dlq' | 'publish'; attempt: number; delayMs: number; error: string }];
  /** The consumer joined its group (ready) or stopped. */
  joined: [{ groupId: string; memberId: string; partitions: number }];
  stopped: [{ groupId: string; reason: 'stop' | 'crash' }];
  /** Outbox entries published to Kafka, by topic kind. */
  published: [{ topic: 'changes' | 'commands'; count: number }];
  /**
   * One outbox record Kafka refused for good, moved to the dead stream. `reason` is the
   * Kafka error type in lower case (message_too_large, record_list_too_large, ...).
   */
  outbox_dead: [{ reason: string }];
  /** Outbox entries still waiting after a drain pass. */
  outbox_pending: [{ count: number }];
}

export type Instrumentation = EventEmitter<ConsumerInstrumentation>;

export const createInstrumentation = (): Instrumentation => new EventEmitter<ConsumerInstrumentation>();
