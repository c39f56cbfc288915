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
 *
 * A batch's webhooks are enqueued before it is published (webhooks.ts): a change Kafka
 * refuses for good still reaches its receivers, and nothing but the outbox feeds them.
 * While publishing fails, each retry also enqueues the webhooks of one more batch behind
 * the stuck one, so receivers do not wait for Kafka; the records stay in the outbox
 * until published. Enqueueing a change's webhooks again is idempotent.
 *
 * Outages (broker down, leader changes) are waited out with backoff; nothing is skipped.
 * When Kafka refuses records for good (too large for the topic), the batch is published
 * again one message at a time, in order, and each record with a refused message is moved
 * to the dead stream, so one bad record does not hold back every later change.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { topicNames } from '../shared/config.js';
import type { Producer } from '../shared/kafka.js';
import type { Logger } from '../shared/logger.js';
import { DEFAULT_SOURCE, OUTBOUND_TOPIC, type OutboxRecord, outboundMessage } from './formats/changes-v1.js';
import { createInstrumentation, type Instrumentation } from './instrumentation.js';
import type { OutgoingMessage } from './kafka-types.js';
import { backoffMs, kafkaErrorType, refusedBy, rootCause } from './retry.js';
import type { Webhooks } from './webhooks.js';

/** What the drainer needs from the broker (JobBroker satisfies it). */
export interface OutboxSource {
  readOutbox(afterId: string, count: number): Promise<OutboxRecord[]>;
  ackOutbox(ids: string[]): Promise<void>;
  /** Move a record Kafka refused for good to the dead stream and acknowledge it. */
  deadLetterOutbox(id: string, reason: string, refused: OutboxRecord['type'][]): Promise<boolean>;
  outboxPending?(): Promise<number>;
  acquireOutboxLease(owner: string, ttlMs: number): Promise<boolean>;
  releaseOutboxLease(owner: string): Promise<void>;
}

export interface OutboxDrainerOptions {
  source: OutboxSource;
  /** A connected producer (idempotent, acks=-1). */
  producer: Producer;
  /**
   * Makes another connected producer. A refused batch may have been written to some
   * partitions and not others, which leaves the idempotent producer's sequence numbers
   * behind the broker's (it then answers OUT_OF_ORDER_SEQUENCE_NUMBER): the drainer goes
   * on with a new producer (new producer id) and disconnects it when it stops. Without
   * it the drainer keeps the producer it was given.
   */
  newProducer?: () => Promise<Producer>;
  topicPrefix: string;
  logger: Logger;
  instrumentation?: Instrumentation;
  /** A Redis connection for SUBSCRIBE (it is put in subscriber mode) and the channel to wake on. */
  wakeup?: { subscriber: Redis; channel: string };
  /** CloudEvents `source` of published events. Default "/extjob". */
  ceSource?: string;
  /** Where the webhooks of the changes are enqueued, before they are published. */
  webhooks?: Pick<Webhooks, 'enqueueWebhooks'>;
  leaseMs?: number;
  /** Most outbox records read for one batch. Default 500. */
  batchSize?: number;
  /**
   * Most bytes (keys and values) published in one batch. Default 512 KiB: under the
   * 1 MB a topic takes in one partition's record batch by default (`max.message.bytes`),
   * so a backlog of large changes is not refused as too large.
   */
  batchBytes?: number;
  /** Longest sleep between polls of an empty outbox (wake-ups cut it short). */
  idleMs?: number;
}

export class OutboxDrainer {
  readonly instrumentation: Instrumentation;
  readonly owner = `drainer-${randomUUID()}`;
  private readonly topics: ReturnType<typeof topicNames>;
  /** CloudEvents `source` of what is published and delivered. */
  private readonly source: string;
  private running = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private holding = false;
  private cursor = '0';
  /** While publishing fails: the last record whose webhooks are enqueued ('0': none yet). */
  private webhooksCursor = '0';
  private producer: Producer;
  /** The producer's sequence numbers may be out of step with the broker: replace it first. */
  private producerStale = false;

  constructor(private readonly opts: OutboxDrainerOptions) {
    this.instrumentation = opts.instrumentation ?? createInstrumentation();
    this.topics = topicNames(opts.topicPrefix);
    this.source = opts.ceSource ?? DEFAULT_SOURCE;
    this.producer = opts.producer;
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
    if (this.producer !== this.opts.producer) await this.producer.disconnect().catch(() => {});
    this.producer = this.opts.producer;
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
        const type = kafkaErrorType(err);
        if (type && PRODUCER_OUT_OF_STEP.has(type)) this.producerStale = true;
        // Retried all the same: an error that is not about the records (authorization,
        // configuration) stops every record alike, and dead-lettering them all would empty
        // the outbox into the dead stream. It needs an operator, so it is logged as an error.
        if (rootCause(err).retriable === false)
          this.opts.logger.error({ err, delayMs, type }, 'Kafka refuses to publish the outbox; retrying');
        else this.opts.logger.warn({ err, delayMs }, 'outbox drain failed; retrying');
        this.instrumentation.emit('retry', {
          operation: 'publish',
          attempt: failures,
          delayMs,
          error: String(err),
        });
        await this.webhooksAhead();
        await this.sleep(delayMs);
      }
    }
  }

  /**
   * One pass: renew or take the lease, publish up to one batch, acknowledge it. Returns
   * how many entries were published (0 when idle or not the lease holder).
   */
  async drainOnce(): Promise<number> {
    const { source } = this.opts;
    const got = await source.acquireOutboxLease(this.owner, this.opts.leaseMs ?? 10_000);
    if (!got) {
      if (this.holding) this.opts.logger.warn('outbox lease lost to another process');
      this.holding = false;
      return 0;
    }
    if (!this.holding) {
      this.holding = true;
      this.cursor = '0';
      this.webhooksCursor = '0';
      this.opts.logger.info({ owner: this.owner }, 'draining the outbox');
    }
    const read = await source.readOutbox(this.cursor, this.opts.batchSize ?? 500);
    if (read.length === 0) {
      if (source.outboxPending) this.instrumentation.emit('outbox_pending', { count: 0 });
      return 0;
    }
    if (this.producerStale) await this.replaceProducer();
    const { entries, topicMessages } = this.batch(read);
    await this.opts.webhooks?.enqueueWebhooks(entries, this.source);
    const published = { changes: 0, commands: 0 };
    try {
      await this.producer.sendBatch({ acks: -1, topicMessages });
      for (const e of entries) published[OUTBOUND_TOPIC[e.type]]++;
      await source.ackOutbox(entries.map((e) => e.id));
      this.cursor = entries[entries.length - 1]!.id;
    } catch (err) {
      if (!refusedBy(err)) throw err;
      await this.publishOneByOne(entries, published, err);
    } finally {
      for (const topic of ['changes', 'commands'] as const)
        if (published[topic]) this.instrumentation.emit('published', { topic, count: published[topic] });
    }
    if (source.outboxPending)
      this.instrumentation.emit('outbox_pending', { count: await source.outboxPending() });
    return entries.length;
  }

  /**
   * Kafka refused the batch for good. Part of it may have been written (to other
   * partitions), so the producer is replaced; then each message goes alone, in order, and
   * a record with a refused message is dead-lettered once its other messages were tried.
   * Anything else that fails (an outage meanwhile) is thrown: the pass is retried, and
   * what was acknowledged so far stays acknowledged. The lease is renewed per record.
   */
  private async publishOneByOne(
    entries: OutboxRecord[],
    published: Record<'changes' | 'commands', number>,
    cause: unknown,
  ): Promise<void> {
    const { source, logger } = this.opts;
    logger.warn(
      { err: cause, entries: entries.length },
      'Kafka refused an outbox batch; publishing it one message at a time',
    );
    await this.replaceProducer();
    for (const record of byRecord(entries)) {
      // One message at a time may outlast the lease (the client retries some refusals).
      if (!(await source.acquireOutboxLease(this.owner, this.opts.leaseMs ?? 10_000))) {
        logger.warn('outbox lease lost to another process');
        this.holding = false;
        return;
      }
      const refusals: { entry: OutboxRecord; type: string; detail: string }[] = [];
      for (const e of record) {
        const topic = OUTBOUND_TOPIC[e.type];
        const message = this.message(e);
        try {
          await this.producer.sendBatch({
            acks: -1,
            topicMessages: [{ topic: this.topics[topic], messages: [message] }],
          });
          published[topic]++;
        } catch (err) {
          const type = refusedBy(err);
          if (!type) throw err;
          const bytes = Buffer.byteLength(String(message.value));
          refusals.push({ entry: e, type, detail: `${e.type} (${bytes} bytes to ${this.topics[topic]})` });
        }
      }
      const id = record[0]!.id;
      if (refusals.length === 0) await source.ackOutbox([id]);
      else {
        const reason = `Kafka refused ${refusals.map((r) => `${r.detail}: ${r.type}`).join('; ')}`;
        const types = refusals.map((r) => r.entry.type);
        // False when another drainer (after a lease handover) already handled the record.
        if (await source.deadLetterOutbox(id, reason, types)) {
          const e = record[0]!;
          logger.error(
            { jobId: e.jobId, version: e.version, attempt: e.attempt, outboxId: id, reason },
            'outbox record refused by Kafka; moved to the dead stream',
          );
          this.instrumentation.emit('outbox_dead', { reason: refusals[0]!.type.toLowerCase() });
        }
      }
      this.cursor = id;
    }
  }

  /**
   * Publishing failed: enqueue the webhooks of the next batch of records not yet
   * enqueued (the first time, the stuck batch itself), so that receivers hear of the
   * changes while Kafka is away. Best effort: what fails here is done again on
   * publishing.
   */
  private async webhooksAhead(): Promise<void> {
    const { webhooks, source } = this.opts;
    if (!webhooks || !this.holding) return;
    try {
      const read = await source.readOutbox(this.webhooksCursor, this.opts.batchSize ?? 500);
      if (read.length === 0) return;
      await webhooks.enqueueWebhooks(read, this.source);
      this.webhooksCursor = read[read.length - 1]!.id;
    } catch (err) {
      this.opts.logger.debug({ err }, 'webhooks of unpublished changes not enqueued; publishing will');
    }
  }

  private async replaceProducer(): Promise<void> {
    this.producerStale = false;
    if (!this.opts.newProducer) return;
    const fresh = await this.opts.newProducer();
    if (this.producer !== this.opts.producer) await this.producer.disconnect().catch(() => {});
    this.producer = fresh;
    this.opts.logger.info('publishing the outbox with a new producer');
  }

  private message(e: OutboxRecord) {
    return outboundMessage(e, this.source);
  }

  /**
   * The messages of the entries' first records, as many as fit in batchBytes (at least
   * one record; a record's change and command go together), and those entries.
   */
  private batch(read: OutboxRecord[]) {
    const max = this.opts.batchBytes ?? 512 * 1024;
    const changes: OutgoingMessage[] = [];
    const commands: OutgoingMessage[] = [];
    let bytes = 0;
    let n = 0;
    for (; n < read.length; n++) {
      const e = read[n]!;
      const message = this.message(e);
      const size = Buffer.byteLength(message.key) + Buffer.byteLength(message.value);
      if (n > 0 && e.id !== read[n - 1]!.id && bytes + size > max) break;
      bytes += size;
      (OUTBOUND_TOPIC[e.type] === 'changes' ? changes : commands).push(message);
    }
    const topicMessages = [];
    if (changes.length) topicMessages.push({ topic: this.topics.changes, messages: changes });
    if (commands.length) topicMessages.push({ topic: this.topics.commands, messages: commands });
    return { entries: read.slice(0, n), topicMessages };
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

/** The idempotent producer's state no longer matches the broker's: only a new producer helps. */
const PRODUCER_OUT_OF_STEP: ReadonlySet<string> = new Set([
  'OUT_OF_ORDER_SEQUENCE_NUMBER',
  'UNKNOWN_PRODUCER_ID',
]);

/** Outbox entries grouped by stream record (a change and the command it implies share one). */
function byRecord(entries: OutboxRecord[]): OutboxRecord[][] {
  const out: OutboxRecord[][] = [];
  for (const e of entries) {
    const last = out[out.length - 1];
    if (last && last[0]!.id === e.id) last.push(e);
    else out.push([e]);
  }
  return out;
}
