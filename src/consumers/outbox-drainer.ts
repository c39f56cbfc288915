/**
 * Publishes the broker's outbox to Kafka: state changes to `<prefix>.changes`, commands
 * to `<prefix>.commands`, keyed by job id, in commit order. An entry is acknowledged
 * (removed) only after Kafka acknowledged its message (acks=-1, idempotent producer, one
 * request in flight, so one job's messages keep their order).
 *
 * Only the holder of a lease in Redis drains, so one process publishes at a time and
 * per-job order holds across processes. The lease is renewed before every batch; if a
 * holder stalls past the lease, another may republish the same entries: duplicates
 * (same CloudEvents id and `extjobseq`), never reordering of new over old for a reader
 * that drops `extjobseq` values it has seen.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { topicNames } from '../shared/config.js';
import type { Producer } from '../shared/kafka.js';
import type { Logger } from '../shared/logger.js';
import { DEFAULT_SOURCE, OUTBOUND_TOPIC, type OutboxRecord, outboundMessage } from './formats/changes-v1.js';
import { createInstrumentation, type Instrumentation } from './instrumentation.js';
import type { OutgoingMessage } from './kafka-types.js';
import { backoffMs } from './retry.js';

/** What the drainer needs from the broker (JobBroker satisfies it). */
export interface OutboxSource {
  readOutbox(afterId: string, count: number): Promise<OutboxRecord[]>;
  ackOutbox(ids: string[]): Promise<void>;
  outboxPending?(): Promise<number>;
  acquireOutboxLease(owner: string, ttlMs: number): Promise<boolean>;
  releaseOutboxLease(owner: string): Promise<void>;
}

export interface OutboxDrainerOptions {
  source: OutboxSource;
  /** A connected producer (idempotent, acks=-1). */
  producer: Producer;
  topicPrefix: string;
  logger: Logger;
  instrumentation?: Instrumentation;
  /** A Redis connection for SUBSCRIBE (it is put in subscriber mode) and the channel to wake on. */
  wakeup?: { subscriber: Redis; channel: string };
  /** CloudEvents `source` of published events. Default "/extjob". */
  ceSource?: string;
  leaseMs?: number;
  batchSize?: number;
  /** Longest sleep between polls of an empty outbox (wake-ups cut it short). */
  idleMs?: number;
}

export class OutboxDrainer {
  readonly instrumentation: Instrumentation;
  readonly owner = `drainer-${randomUUID()}`;
  private readonly topics: ReturnType<typeof topicNames>;
  private running = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private holding = false;
  private cursor = '0';

  constructor(private readonly opts: OutboxDrainerOptions) {
    this.instrumentation = opts.instrumentation ?? createInstrumentation();
    this.topics = topicNames(opts.topicPrefix);
  }

  /** Whether this process holds the lease right now. */
  isLeader(): boolean {
    return this.holding;
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    if (this.opts.wakeup) {
      const { subscriber, channel } = this.opts.wakeup;
      // Outbox entries come with state changes; log and progress notifications are far
      // more frequent and never add an entry, so they do not wake the drainer.
      subscriber.on('message', (ch: string, msg: string) => {
        if (ch === channel && msg.includes('"kind":"state"')) this.wake?.();
      });
      await subscriber.subscribe(channel);
    }
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.wake?.();
    await this.loop;
    if (this.opts.wakeup) await this.opts.wakeup.subscriber.unsubscribe().catch(() => {});
    if (this.holding) await this.opts.source.releaseOutboxLease(this.owner).catch(() => {});
    this.holding = false;
  }

  private async run(): Promise<void> {
    const leaseMs = this.opts.leaseMs ?? 10_000;
    let failures = 0;
    while (this.running) {
      try {
        const n = await this.drainOnce();
        failures = 0;
        if (n === 0) await this.sleep(this.holding ? (this.opts.idleMs ?? 200) : Math.max(100, leaseMs / 3));
      } catch (err) {
        failures++;
        this.cursor = '0';
        const delayMs = backoffMs(failures, 200, 5000);
        this.opts.logger.warn({ err, delayMs }, 'outbox drain failed; retrying');
        this.instrumentation.emit('retry', {
          operation: 'publish',
          attempt: failures,
          delayMs,
          error: String(err),
        });
        await this.sleep(delayMs);
      }
    }
  }

  /**
   * One pass: renew or take the lease, publish up to one batch, acknowledge it. Returns
   * how many entries were published (0 when idle or not the lease holder).
   */
  async drainOnce(): Promise<number> {
    const { source, producer } = this.opts;
    const got = await source.acquireOutboxLease(this.owner, this.opts.leaseMs ?? 10_000);
    if (!got) {
      if (this.holding) this.opts.logger.warn('outbox lease lost to another process');
      this.holding = false;
      return 0;
    }
    if (!this.holding) {
      this.holding = true;
      this.cursor = '0';
      this.opts.logger.info({ owner: this.owner }, 'draining the outbox');
    }
    const entries = await source.readOutbox(this.cursor, this.opts.batchSize ?? 500);
    if (entries.length === 0) {
      if (source.outboxPending) this.instrumentation.emit('outbox_pending', { count: 0 });
      return 0;
    }
    const changes: OutgoingMessage[] = [];
    const commands: OutgoingMessage[] = [];
    const ceSource = this.opts.ceSource ?? DEFAULT_SOURCE;
    for (const e of entries)
      (OUTBOUND_TOPIC[e.type] === 'changes' ? changes : commands).push(outboundMessage(e, ceSource));
    const topicMessages = [];
    if (changes.length) topicMessages.push({ topic: this.topics.changes, messages: changes });
    if (commands.length) topicMessages.push({ topic: this.topics.commands, messages: commands });
    await producer.sendBatch({ acks: -1, topicMessages });
    await source.ackOutbox(entries.map((e) => e.id));
    this.cursor = entries[entries.length - 1]!.id;
    if (changes.length) this.instrumentation.emit('published', { topic: 'changes', count: changes.length });
    if (commands.length)
      this.instrumentation.emit('published', { topic: 'commands', count: commands.length });
    if (source.outboxPending)
      this.instrumentation.emit('outbox_pending', { count: await source.outboxPending() });
    return entries.length;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = done;
    });
  }
}
