/**
 * One partition's batch of executor events: parse every message, dead-letter the bad
 * ones, apply the good ones (each job's in offset order, one applyEvents call per
 * group of keys), dead-letter events for unknown jobs, and only then report the batch
 * done (the caller resolves and commits the offsets). Outages are waited out; nothing
 * here skips a good event.
 */
import type { ApplyOutcome, ApplyResult, JobEvent } from '../broker/types.js';
import type { Logger } from '../shared/logger.js';
import { dlqMessage } from './dlq.js';
import { DEFAULT_LIMITS, type DlqReason, type FormatLimits, parseMessage } from './formats/index.js';
import type { EventResult, Instrumentation } from './instrumentation.js';
import type { InMessage, OutgoingMessage } from './kafka-types.js';
import { ABORTED, backoffMs, type RetryControl, retrying, StillWaiting, stillWaiting } from './retry.js';

/**
 * What the consumer needs from the broker (JobBroker satisfies it). When the sink
 * offers applyEventsDetailed, that is called instead, for the reasons of refusals.
 */
export interface EventSink {
  applyEvents(events: JobEvent[]): Promise<ApplyResult[]>;
  applyEventsDetailed?(events: JobEvent[]): Promise<ApplyOutcome[]>;
}

/** Errors that are about the event itself: dead-letter it at once. */
const EVENT_ERRORS: ReadonlySet<unknown> = new Set(['EXTJOB_VALIDATION_FAILED', 'EXTJOB_PAYLOAD_TOO_LARGE']);
/** Tries of one event failing with another permanent error before it is dead-lettered. */
export const ISOLATED_TRIES = 5;
/**
 * How long a batch's Redis call may go unanswered (Redis away: the client holds it)
 * before the wait counts as a retry: an outage shows in the retry metric and the log.
 */
const WAIT_REPORT_MS = 5000;

export interface BatchDeps {
  sink: EventSink;
  /** Produce DLQ records, resolving once Kafka acknowledged all of them. */
  sendDlq(messages: OutgoingMessage[]): Promise<void>;
  control: RetryControl;
  instrumentation?: Instrumentation | undefined;
  logger?: Logger | undefined;
  limits?: FormatLimits | undefined;
  /** Messages parsed before their effects are sent to Redis (see keyGroups). Default 512. */
  groupMessages?: number | undefined;
}

export interface BatchInput {
  topic: string;
  partition: number;
  messages: InMessage[];
}

/** `counted`: the broker answered for the event, and its instrumentation counted it. */
type Outcome = { result: ApplyResult } | { dlq: DlqReason; detail: string; counted?: true; type?: string };

export interface BatchReport {
  /** False when the batch was abandoned (stopping or revoked): do not resolve its offsets. */
  done: boolean;
  applied: number;
  dead: number;
}

type KeyProblem = 'missing' | 'mismatch';

/**
 * Parse a batch and apply it, group by group: a group's events go to Redis as soon as
 * it is parsed, so Redis applies one group while the next is parsed, and the batch is
 * durable soon after its last message is parsed. A job's events share its id as key,
 * so they fall in one group, in offset order (see keyGroups). Dead-letter what cannot
 * apply; done once all of it is durable.
 */
export async function processBatch(input: BatchInput, deps: BatchDeps): Promise<BatchReport> {
  const { topic, partition, messages } = input;
  const inst = deps.instrumentation;
  const limits = deps.limits ?? DEFAULT_LIMITS;
  const outcomes: (Outcome | undefined)[] = new Array(messages.length);
  const eventAt: (JobEvent | undefined)[] = new Array(messages.length);
  const keyProblems: KeyProblem[] = [];
  const sent: { events: JobEvent[]; at: number[]; first: Promise<ApplyOutcome[]> }[] = [];
  for (const group of keyGroups(messages, deps.groupMessages ?? 512)) {
    const events: JobEvent[] = [];
    const at: number[] = [];
    for (const i of group) {
      const msg = messages[i]!;
      const r = parseMessage(msg, limits);
      if (!r.ok) {
        outcomes[i] = { dlq: r.reason, detail: r.detail, type: r.type };
        continue;
      }
      if (msg.key === null || msg.key === undefined) keyProblems.push('missing');
      else if (r.keyMismatch) keyProblems.push('mismatch');
      events.push(r.event);
      at.push(i);
      eventAt[i] = r.event;
    }
    if (events.length === 0) continue;
    const first = checked(callSink(deps.sink, events), events.length);
    first.catch(() => {}); // awaited below, maybe after it failed
    sent.push({ events, at, first });
  }
  // Groups hold different jobs: each is retried on its own, one after the other.
  let applied = 0;
  for (const { events, at, first } of sent) {
    const results = await applyAll(events, deps, first);
    if (results === ABORTED) return { done: false, applied: 0, dead: 0 };
    results.forEach((o, j) => {
      outcomes[at[j]!] = o;
    });
    applied += events.length;
  }

  const dead: OutgoingMessage[] = [];
  outcomes.forEach((o, i) => {
    if (o && 'dlq' in o) dead.push(dlqMessage({ topic, partition, message: messages[i]! }, o.dlq, o.detail));
  });
  if (dead.length > 0) {
    const delivered = await retrying(() => deps.sendDlq(dead), {
      ...deps.control,
      onRetry: (attempt, delayMs, err) => {
        inst?.emit('retry', { operation: 'dlq', attempt, delayMs, error: describe(err) });
        deps.logger?.warn({ err, topic, partition, attempt }, 'DLQ produce failed; retrying');
      },
    });
    if (delivered === ABORTED) return { done: false, applied: 0, dead: 0 };
  }

  if (inst) {
    for (const problem of keyProblems) inst.emit('key_problem', { problem, partition });
    // one emission an event only while something listens: thousands a batch otherwise
    const each = inst.listenerCount('event') > 0;
    outcomes.forEach((o, i) => {
      if (!o || (!each && !('dlq' in o))) return;
      const type = eventAt[i]?.type ?? ('type' in o ? o.type : undefined);
      const counted = 'result' in o || o.counted === true;
      if ('dlq' in o) {
        inst.emit('dlq', { reason: o.dlq });
        if (!counted) inst.emit('refused', { type });
      }
      if (!each) return;
      const result: EventResult =
        'result' in o ? o.result : o.dlq === 'unknown_job' ? 'unknown_job' : 'invalid';
      inst.emit('event', { kind: eventAt[i]?.kind, type, result, counted });
    });
  }
  return { done: true, applied, dead: dead.length };
}

/**
 * A batch's message indexes in groups of about `size`, by a hash of the key:
 * all messages with one key fall in one group, in offset order. Events whose key is
 * missing or not their job id (counted as key problems) keep offset order only among
 * messages with the same key.
 */
export function keyGroups(messages: InMessage[], size: number): number[][] {
  const n = Math.ceil(messages.length / size);
  if (n <= 1) return [messages.map((_, i) => i)];
  const groups: number[][] = Array.from({ length: n }, () => []);
  for (let i = 0; i < messages.length; i++) {
    const key = messages[i]!.key;
    let h = 0;
    if (key) for (let b = 0; b < key.length; b++) h = (Math.imul(h, 31) + key[b]!) | 0;
    groups[(h >>> 0) % n]!.push(i);
  }
  return groups.filter((g) => g.length > 0);
}

/**
 * Apply in one call (`first`, when already sent, is that call); on a permanent
 * failure, isolate the culprit event by event.
 */
async function applyAll(
  events: JobEvent[],
  deps: BatchDeps,
  first?: Promise<ApplyOutcome[]>,
): Promise<Outcome[] | typeof ABORTED> {
  const control: RetryControl = {
    ...deps.control,
    onRetry: (attempt, delayMs, err) => {
      deps.instrumentation?.emit('retry', { operation: 'apply', attempt, delayMs, error: describe(err) });
      deps.logger?.warn({ err, attempt, delayMs }, 'applying events failed; retrying');
    },
  };
  const apply = (evs: JobEvent[]) => checked(callSink(deps.sink, evs), evs.length);
  let call = first;
  try {
    const results = await retrying(() => {
      call ??= apply(events);
      // a call still under way is waited on again; one that failed is sent again
      return stillWaiting(call, WAIT_REPORT_MS, 'Redis').catch((err: unknown) => {
        if (!(err instanceof StillWaiting)) call = undefined;
        throw err;
      });
    }, control);
    if (results === ABORTED) return ABORTED;
    return results.map(toOutcome(events));
  } catch (err) {
    deps.logger?.error({ err, events: events.length }, 'batch refused; applying its events one by one');
  }
  const out: Outcome[] = [];
  for (const ev of events) {
    for (let tries = 1; ; tries++) {
      try {
        const r = await retrying(() => apply([ev]), control);
        if (r === ABORTED) return ABORTED;
        out.push(toOutcome([ev])(r[0]!, 0));
        break;
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (EVENT_ERRORS.has(code) || tries >= ISOLATED_TRIES) {
          deps.logger?.error({ err, jobId: ev.jobId, eventId: ev.id }, 'event refused by the broker');
          const reason = code === 'EXTJOB_PAYLOAD_TOO_LARGE' ? 'too_large' : 'invalid';
          out.push({ dlq: reason, detail: `refused by the broker: ${describe(err)}` });
          break;
        }
        const delayMs = backoffMs(tries, 200, 2000);
        control.onRetry?.(tries, delayMs, err);
        await new Promise((r) => setTimeout(r, delayMs));
        if (!control.stillOwned() || control.stopping?.() || !(await control.keepAlive())) return ABORTED;
      }
    }
  }
  return out;
}

async function callSink(sink: EventSink, events: JobEvent[]): Promise<ApplyOutcome[]> {
  if (sink.applyEventsDetailed) return sink.applyEventsDetailed(events);
  return (await sink.applyEvents(events)).map((result) => ({ result }));
}

const toOutcome =
  (events: JobEvent[]) =>
  (o: ApplyOutcome, i: number): Outcome => {
    if (o.result === 'unknown_job')
      return { dlq: 'unknown_job', detail: `no job has the id "${events[i]!.jobId}"`, counted: true };
    if (o.result === 'invalid')
      return {
        dlq: o.tooLarge ? 'too_large' : 'invalid',
        detail: `refused by the broker: ${o.reason ?? 'invalid'}`,
        counted: true,
      };
    return RESULTS[o.result] ?? { result: o.result };
  };
/** One outcome object per result, shared: a batch makes thousands. */
const RESULTS = Object.fromEntries(
  (['applied', 'duplicate', 'stale', 'late'] as const).map((r) => [r, Object.freeze({ result: r })]),
) as Record<Exclude<ApplyResult, 'invalid' | 'unknown_job'>, Outcome>;

async function checked(p: Promise<ApplyOutcome[]>, n: number): Promise<ApplyOutcome[]> {
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
