/**
 * Redis key names. Per-job keys share the hash tag {<id>} so one job's keys live
 * in one slot; global keys (indexes, counters, outbox, timers) do not. See
 * docs/design.md for the layout and the Redis Cluster story.
 */
import type { JobState } from './types.js';

export type BrokerKeys = ReturnType<typeof brokerKeys>;

export function brokerKeys(prefix: string) {
  const job = (id: string) => `${prefix}:job:{${id}}`;
  return {
    prefix,
    /** Hash: state, version, attempt, timestamps, deadlines, counters (short fields). */
    job,
    /** String: the spec as one JSON line, then one compact history entry per line. */
    spec: (id: string) => `${job(id)}:s`,
    /** Hash: mutable text fields longer than 64 bytes (shorter ones stay in the job hash). */
    extra: (id: string) => `${job(id)}:x`,
    /** Hash seq -> bytes of one attempt's log, and field r: the run of consecutive seqs stored. */
    log: (id: string, attempt: number) => `${job(id)}:l${attempt}`,
    /** ZSET of that attempt's other seqs, out of order or late (member "<seq>" or "<seq>:L"). */
    logSeqs: (id: string, attempt: number) => `${job(id)}:q${attempt}`,
    logDropped: (id: string, attempt: number) => `${job(id)}:t${attempt}`,
    counts: `${prefix}:counts`,
    outbox: `${prefix}:outbox`,
    outboxLease: `${prefix}:outbox:lease`,
    /** Stream: outbox records Kafka refused for good, with the reason (newest OUTBOX_DEAD_MAX kept). */
    outboxDead: `${prefix}:outbox:dead`,
    retain: `${prefix}:retain`,
    /** ZSET "kind|attempt|due|id" by due ms: deadlines not yet armed in BullMQ. */
    due: `${prefix}:due`,
    notify: `${prefix}:notify`,
    /** String: this installation's secret for what is derived from idempotency keys. */
    keySecret: `${prefix}:keysecret`,
    state: (s: JobState) => `${prefix}:idx:st:${s}`,
    executor: (e: string) => `${prefix}:idx:ex:${e}`,
    label: (k: string, v: string) => `${prefix}:idx:lb:${Buffer.byteLength(k)}:${k}=${v}`,
  };
}
