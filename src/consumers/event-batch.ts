/**
 * One partition's batch of executor events: parse every message, dead-letter the bad
 * ones, apply the good ones in offset order with one applyEvents call, dead-letter
 * events for unknown jobs, and only then report the batch done (the caller resolves
 * and commits the offsets). Outages are waited out; nothing here skips a good event.
 */
import type { ApplyResult, JobEvent } from '../broker/types.js';
import type { Logger } from '../shared/logger.js';
import { dlqMessage } from './dlq.js';
import { DEFAULT_LIMITS, type DlqReason, type FormatLimits, parseMessage } from './formats/index.js';
import type { EventResult, Instrumentation } from './instrumentation.js';
import type { InMessage, OutgoingMessage } from './kafka-types.js';
import { ABORTED, type RetryControl, retrying } from './retry.js';

/** What the consumer needs from the broker (JobBroker satisfies it). */
export interface EventSink {
  applyEvents(events: JobEvent[]): Promise<ApplyResult[]>;
}

export interface BatchDeps {
  sink: EventSink;
  /** Produce DLQ records, resolving once Kafka acknowledged all of them. */
  sendDlq(messages: OutgoingMessage[]): Promise<void>;
  control: RetryControl;
  instrumentation?: Instrumentation | undefined;
  logger?: Logger | undefined;
  limits?: FormatLimits | undefined;
}

export interface BatchInput {
  topic: string;
  partition: number;
  messages: InMessage[];
}

type Outcome = { result: ApplyResult } | { dlq: DlqReason; detail: string };

export interface BatchReport {
  /** False when the batch was abandoned (stopping or revoked): do not resolve its offsets. */
  done: boolean;
  applied: number;
  dead: number;
}

export async function processBatch(input: BatchInput, deps: BatchDeps): Promise<BatchReport> {
  const { topic, partition, messages } = input;
  const inst = deps.instrumentation;
  const outcomes: (Outcome | undefined)[] = new Array(messages.length);
  const events: JobEvent[] = [];
  const eventIndex: number[] = [];
  const eventAt: (JobEvent | undefined)[] = new Array(messages.length);
  for (let i = 0; i < messages.length; i++) {
    const msg = messages[i]!;
    const r = parseMessage(msg, deps.limits ?? DEFAULT_LIMITS);
    if (!r.ok) {
      outcomes[i] = { dlq: r.reason, detail: r.detail };
      continue;
    }
    if (msg.key === null || msg.key === undefined)
      inst?.emit('key_problem', { problem: 'missing', partition });
    else if (r.keyMismatch) inst?.emit('key_problem', { problem: 'mismatch', partition });
    events.push(r.event);
    eventIndex.push(i);
    eventAt[i] = r.event;
  }

  if (events.length > 0) {
    const results = await applyAll(events, deps);
    if (results === ABORTED) return { done: false, applied: 0, dead: 0 };
    results.forEach((o, j) => {
      outcomes[eventIndex[j]!] = o;
    });
  }

  const dead: OutgoingMessage[] = [];
  outcomes.forEach((o, i) => {
    if (o && 'dlq' in o) dead.push(dlqMessage({ topic, partition, message: messages[i]! }, o.dlq, o.detail));
  });
  if (dead.length > 0) {
    const sent = await retrying(() => deps.sendDlq(dead), {
      ...deps.control,
      onRetry: (attempt, delayMs, err) => {
        inst?.emit('retry', { operation: 'dlq', attempt, delayMs, error: describe(err) });
        deps.logger?.warn({ err, topic, partition, attempt }, 'DLQ produce failed; retrying');
      },
    });
    if (sent === ABORTED) return { done: false, applied: 0, dead: 0 };
  }

  if (inst) {
    outcomes.forEach((o, i) => {
      if (!o) return;
      const ev = eventAt[i];
      const result: EventResult =
        'result' in o ? o.result : o.dlq === 'unknown_job' ? 'unknown_job' : 'invalid';
      inst.emit('event', { kind: ev?.kind, type: ev?.type, result });
      if ('dlq' in o) inst.emit('dlq', { reason: o.dlq });
    });
  }
  return { done: true, applied: events.length, dead: dead.length };
}

/** Apply in one call; on a permanent failure, isolate the culprit event by event. */
async function applyAll(events: JobEvent[], deps: BatchDeps): Promise<Outcome[] | typeof ABORTED> {
  const control: RetryControl = {
    ...deps.control,
    onRetry: (attempt, delayMs, err) => {
      deps.instrumentation?.emit('retry', { operation: 'apply', attempt, delayMs, error: describe(err) });
      deps.logger?.warn({ err, attempt, delayMs }, 'applying events failed; retrying');
    },
  };
  try {
    const results = await retrying(() => checked(deps.sink.applyEvents(events), events.length), control);
    if (results === ABORTED) return ABORTED;
    return results.map(toOutcome(events));
  } catch (err) {
    deps.logger?.error({ err, events: events.length }, 'batch rejected; applying its events one by one');
  }
  const out: Outcome[] = [];
  for (const ev of events) {
    try {
      const r = await retrying(() => checked(deps.sink.applyEvents([ev]), 1), control);
      if (r === ABORTED) return ABORTED;
      out.push(toOutcome([ev])(r[0]!, 0));
    } catch (err) {
      deps.logger?.error({ err, jobId: ev.jobId, eventId: ev.id }, 'event rejected by the broker');
      const tooLarge = (err as { code?: unknown }).code === 'EXTJOB_PAYLOAD_TOO_LARGE';
      out.push({
        dlq: tooLarge ? 'too_large' : 'invalid',
        detail: `rejected by the broker: ${describe(err)}`,
      });
    }
  }
  return out;
}

const toOutcome =
  (events: JobEvent[]) =>
  (result: ApplyResult, i: number): Outcome =>
    result === 'unknown_job'
      ? { dlq: 'unknown_job', detail: `no job has the id "${events[i]!.jobId}"` }
      : { result };

async function checked(p: Promise<ApplyResult[]>, n: number): Promise<ApplyResult[]> {
  const r = await p;
  if (!Array.isArray(r) || r.length !== n)
    throw Object.assign(
      new Error(`applyEvents returned ${Array.isArray(r) ? r.length : typeof r} results for ${n}`),
      {
        retriable: false,
      },
    );
  return r;
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return `${typeof code === 'string' ? `${code}: ` : ''}${err.message}`.slice(0, 300);
  }
  return String(err).slice(0, 300);
}
