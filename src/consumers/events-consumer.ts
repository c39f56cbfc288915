/**
 * The events consumer: a consumer group on `<prefix>.events` whose batches are parsed
 * and applied by event-batch.ts, which sends a batch's effects to Redis group by group
 * as it parses them. kafkajs fetches the next batch while we parse and Redis applies;
 * a batch starts once the previous one of its partition is durable. Offsets are
 * committed only once a batch's Redis effects and DLQ records are acknowledged, at
 * most every commitIntervalMs (a crash replays what was not committed yet, and
 * replays are duplicates), so a commit round trip is not paid on every batch. A batch
 * abandoned (stopping, or the partition lost while waiting out an outage) is read
 * again from its start. stop() finishes the in-flight batches, commits them and
 * leaves the group; a rebalance commits too.
 */
import { topicNames } from '../shared/config.js';
import { type Consumer, createConsumer, type Producer } from '../shared/kafka.js';
import type { Logger } from '../shared/logger.js';
import { settledWithin, withTimeout } from '../shared/timeouts.js';
import { DLQ_HEADERS, sendDlqRecords } from './dlq.js';
import { type BatchReport, type EventSink, processBatch } from './event-batch.js';
import type { FormatLimits } from './formats/result.js';
import { createInstrumentation, type Instrumentation } from './instrumentation.js';
import type { EachBatchPayload, KafkaClient, OutgoingMessage } from './kafka-types.js';

export interface EventsConsumerOptions {
  kafka: KafkaClient;
  /** A connected producer (idempotent, acks=-1) for the DLQ; shared with the drainer. */
  producer: Producer;
  sink: EventSink;
  topicPrefix: string;
  groupId: string;
  logger: Logger;
  limits?: FormatLimits;
  instrumentation?: Instrumentation;
  /** Partitions processed at the same time by this process (one batch each). Default 16. */
  concurrency?: number;
  /** Messages of a batch parsed before their effects are sent to Redis. Default 512. */
  groupMessages?: number;
  sessionTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  /** Longest a fetch waits on the broker for new messages (and so a stop waits). Default 1 s. */
  maxWaitTimeMs?: number;
  /** Largest fetch per partition, in bytes (bounds one batch). Default 1 MiB. */
  maxBytesPerPartition?: number;
  /** Longest time between offset commits while running. Default 250 ms. */
  commitIntervalMs?: number;
  /**
   * How often the lag of partitions whose batch waits (an outage) is asked of Kafka,
   * which a batch's own report cannot give while it waits. Default 15 s.
   */
  lagCheckMs?: number;
  /** Backoff bounds while Redis or Kafka is unavailable. */
  retryInitialMs?: number;
  retryMaxMs?: number;
}

export class EventsConsumer {
  readonly instrumentation: Instrumentation;
  private readonly consumer: Consumer;
  private readonly topics: ReturnType<typeof topicNames>;
  private joined = false;
  /** run(): settles once the group is joined (or the start failed). */
  private running: Promise<void> = Promise.resolve();
  /** When the rebalance under way began (the group was joined before it). */
  private rebalancingSince: number | undefined;
  private stopping = false;
  private crashed: Error | undefined;
  /** Applied but maybe not yet committed: partition -> next offset. */
  private readonly pending = new Map<number, string>();
  private lastCommit = 0;
  private commitTimer: NodeJS.Timeout | undefined;
  /**
   * Partitions of the current assignment. A batch that finishes after its partition
   * moved away is not committed: a late commit could move the new owner's offset back.
   */
  private readonly assigned = new Set<number>();
  /** Per partition, the latest batch's effects: true once durable, false if abandoned. */
  private readonly inflight = new Map<number, Promise<boolean>>();
  /** Per partition, the first offset not yet applied, and since when it waits. */
  private readonly waiting = new Map<number, { offset: string; since: number }>();
  private lagTimer: NodeJS.Timeout | undefined;
  private lagAdmin: ReturnType<KafkaClient['admin']> | undefined;
  private checkingLag = false;

  constructor(private readonly opts: EventsConsumerOptions) {
    this.instrumentation = opts.instrumentation ?? createInstrumentation();
    this.topics = topicNames(opts.topicPrefix);
    this.consumer = createConsumer(opts.kafka, {
      groupId: opts.groupId,
      sessionTimeout: opts.sessionTimeoutMs ?? 30_000,
      heartbeatInterval: opts.heartbeatIntervalMs ?? 3_000,
      maxBytesPerPartition: opts.maxBytesPerPartition ?? 1024 * 1024,
      maxWaitTimeInMs: opts.maxWaitTimeMs ?? 1000,
      retry: { retries: 10, initialRetryTime: 300, maxRetryTime: 10_000 },
    });
    const { events } = this.consumer;
    this.consumer.on(events.GROUP_JOIN, ({ payload }) => {
      this.joined = true;
      this.rebalancingSince = undefined;
      this.assigned.clear();
      for (const partition of payload.memberAssignment[this.topics.events] ?? [])
        this.assigned.add(partition);
      const partitions = Object.values(payload.memberAssignment).reduce((n, ps) => n + ps.length, 0);
      opts.logger.info(
        { groupId: payload.groupId, partitions, assignment: payload.memberAssignment },
        'joined',
      );
      this.instrumentation.emit('joined', {
        groupId: payload.groupId,
        memberId: payload.memberId,
        partitions,
      });
    });
    this.consumer.on(events.CRASH, ({ payload }) => {
      this.joined = false;
      opts.logger.error({ err: payload.error, restart: payload.restart }, 'events consumer crashed');
      if (!payload.restart) {
        this.crashed = payload.error;
        this.instrumentation.emit('stopped', { groupId: opts.groupId, reason: 'crash' });
      }
    });
    this.consumer.on(events.REBALANCING, () => {
      this.rebalancingSince ??= Date.now();
      this.assigned.clear(); // until the next join says which partitions are ours
      this.waiting.clear(); // each partition's next batch says where it waits
      // Best effort: what was applied is committed before the partitions move on.
      this.flush().catch((err) => opts.logger.debug({ err }, 'commit before rebalance failed'));
    });
  }

  /**
   * Joined the group and not crashed: what /readyz reports. A rebalance keeps a member
   * in its group: it is ready through one that waits out a dead member's session (every
   * member of the group rebalances together, and the API of a process running all roles
   * would otherwise leave its Service with all the others), not after twice that.
   */
  isReady(): boolean {
    const rebalancing = this.rebalancingSince === undefined ? 0 : Date.now() - this.rebalancingSince;
    return (
      this.joined &&
      !this.crashed &&
      !this.stopping &&
      rebalancing < 2 * (this.opts.sessionTimeoutMs ?? 30_000)
    );
  }

  async start(): Promise<void> {
    await this.consumer.connect();
    // A new group starts at the earliest offset: events sent before the service first ran count too.
    await this.consumer.subscribe({ topics: [this.topics.events], fromBeginning: true });
    // run() resolves once the group is joined, which after a crash waits out the dead
    // member's session: the service must not wait for that to serve HTTP and probes.
    // Readiness follows the join event; a failed start counts as a crash.
    this.running = this.consumer
      .run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: this.opts.concurrency ?? 16,
        eachBatch: (payload) => this.onBatch(payload),
      })
      .then(() => {
        if (this.stopping) return;
        this.lagTimer = setInterval(() => void this.checkWaitingLag(), this.opts.lagCheckMs ?? 15_000);
        this.lagTimer.unref();
      })
      .catch((err: unknown) => {
        this.crashed = err instanceof Error ? err : new Error(String(err));
        this.opts.logger.error({ err }, 'events consumer failed to start');
      });
  }

  /** Finish the in-flight batches, commit, leave the group. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.joined = false;
    clearTimeout(this.commitTimer);
    clearInterval(this.lagTimer);
    // Stopped while joining: the join finishes first (for a session at most), so the
    // member leaves the group rather than staying in it, unreachable, for a session.
    await settledWithin(this.running, this.opts.sessionTimeoutMs ?? 30_000);
    await Promise.all(this.inflight.values());
    await this.flush().catch((err) => this.opts.logger.warn({ err }, 'commit at stop failed'));
    await this.consumer.disconnect();
    await this.lagAdmin?.disconnect().catch(() => {});
    this.instrumentation.emit('stopped', { groupId: this.opts.groupId, reason: 'stop' });
  }

  /**
   * One batch of a partition. It starts once the previous batch's effects are durable
   * (per-partition order), and kafkajs is let go on to fetch the next batch while we
   * parse this one and Redis applies it: the offset is resolved (the fetch position)
   * at once, but commits follow only what is durable (`pending`). Stopping, a batch is
   * finished before kafkajs is let go, so the group is left with it committed.
   */
  private async onBatch(p: EachBatchPayload): Promise<void> {
    const { batch } = p;
    if (batch.messages.length === 0) return;
    const { partition } = batch;
    const started = performance.now();
    const previous = this.inflight.get(partition);
    // abandoned: its partition was sought back to it, and this batch is fetched again
    if (previous && !(await previous)) return;
    // Fetched before an earlier batch of its partition was abandoned (the seek back is
    // still pending: kafkajs fetches again only once this one is handled), and that
    // batch's work ended while this one waited for a free worker: the same. Stopping,
    // no batch is begun (stop() finishes those under way).
    if (p.isStale() || this.stopping) return;
    // parsed and sent to Redis on the next turn of the event loop: kafkajs sends its
    // next fetch first, and the fetch's round trip overlaps the parsing
    const work = new Promise<void>((r) => setImmediate(r))
      .then(() => this.apply(p, started))
      .catch((err: unknown) => {
        this.opts.logger.error({ err, partition }, 'batch failed after its effects; reading it again');
        return this.readAgain(p);
      });
    if (!this.waiting.has(partition))
      this.waiting.set(partition, { offset: batch.messages[0]!.offset, since: Date.now() });
    this.inflight.set(partition, work);
    void work.finally(() => {
      if (this.inflight.get(partition) === work) this.inflight.delete(partition);
    });
    p.resolveOffset(batch.messages[batch.messages.length - 1]!.offset);
    if (this.stopping || !p.isRunning()) await work;
  }

  /** Apply a batch; true once its effects are durable, false when abandoned. */
  private async apply(p: EachBatchPayload, started: number): Promise<boolean> {
    const { batch } = p;
    let report: BatchReport;
    try {
      report = await processBatch(batch, {
        sink: this.opts.sink,
        sendDlq: (messages) => this.sendDlq(messages),
        instrumentation: this.instrumentation,
        logger: this.opts.logger,
        limits: this.opts.limits,
        groupMessages: this.opts.groupMessages,
        control: {
          // Stopping, the batch under way is finished (its groups already sent to Redis
          // and its DLQ records), so that it is committed; an outage is not waited out.
          stillOwned: () => p.isRunning() && !p.isStale(),
          stopping: () => this.stopping,
          keepAlive: async () => {
            try {
              await p.heartbeat();
              return true;
            } catch (err) {
              this.opts.logger.warn({ err }, 'heartbeat failed while waiting; abandoning the batch');
              return false;
            }
          },
          initialDelayMs: this.opts.retryInitialMs ?? 100,
          maxDelayMs: this.opts.retryMaxMs ?? 5_000,
        },
      });
    } catch (err) {
      this.opts.logger.error(
        { err, partition: batch.partition, offset: batch.messages[0]!.offset },
        'batch failed; reading it again',
      );
      // a fault that repeats must not spin
      if (!this.stopping) await new Promise((r) => setTimeout(r, this.opts.retryMaxMs ?? 5_000));
      report = { done: false, applied: 0, dead: 0 };
    }
    if (!report.done) return this.readAgain(p);
    const last = batch.messages[batch.messages.length - 1]!;
    const next = nextOffset(last.offset);
    this.waiting.delete(batch.partition); // the next batch, begun, says where it waits
    // A batch that finished after its partition moved away (or during a rebalance) is
    // not committed: whoever owns the partition replays it, as duplicates.
    if (this.assigned.has(batch.partition)) {
      this.pending.set(batch.partition, next);
      if (this.stopping || !p.isRunning()) {
        // Stopping: this batch's offsets are committed before the group is left.
        try {
          await p.commitOffsetsIfNecessary({
            topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: next }] }],
          });
          if (this.pending.get(batch.partition) === next) this.pending.delete(batch.partition);
        } catch (err) {
          this.opts.logger.warn({ err, partition: batch.partition }, 'commit at stop failed');
        }
      } else {
        this.scheduleCommit();
      }
    }
    this.instrumentation.emit('batch', {
      topic: batch.topic,
      partition: batch.partition,
      size: batch.messages.length,
      seconds: (performance.now() - started) / 1000,
    });
    // only for a partition still ours: the lag of one that moved on is its new owner's
    // to report, and a late value here would stay, frozen, until the next rebalance
    if (this.assigned.has(batch.partition))
      this.instrumentation.emit('lag', {
        topic: batch.topic,
        partition: batch.partition,
        lag: Math.max(0, Number(batch.highWatermark) - Number(last.offset) - 1),
      });
    return true;
  }

  /**
   * The lag of partitions whose batch has waited a check's interval (Redis or Kafka
   * away), from Kafka's end of each partition now: a batch reports lag only once it is
   * applied, so an outage would otherwise leave the gauge where the last batch left it
   * while the backlog grows. Nothing when Kafka does not answer either.
   */
  private async checkWaitingLag(): Promise<void> {
    const due = Date.now() - (this.opts.lagCheckMs ?? 15_000);
    const stuck = [...this.waiting].filter(([p, w]) => w.since <= due && this.assigned.has(p));
    if (stuck.length === 0 || this.checkingLag) return;
    this.checkingLag = true;
    try {
      this.lagAdmin ??= this.opts.kafka.admin();
      await withTimeout(this.lagAdmin.connect(), 5000, 'no Kafka connection');
      const ends = await withTimeout(this.lagAdmin.fetchTopicOffsets(this.topics.events), 5000, 'no answer');
      for (const [partition, w] of stuck) {
        const end = ends.find((e) => e.partition === partition);
        // still waiting, and still ours
        if (end && this.waiting.get(partition) === w && this.assigned.has(partition))
          this.instrumentation.emit('lag', {
            topic: this.topics.events,
            partition,
            lag: Math.max(0, Number(end.high) - Number(w.offset)),
          });
      }
    } catch (err) {
      this.opts.logger.debug({ err }, 'lag of waiting partitions not known');
    } finally {
      this.checkingLag = false;
    }
  }

  /**
   * Nothing of this batch (or of later ones of its partition) is committed: fetch it
   * again from its first offset. Answers false, the batch's outcome.
   */
  private readAgain(p: EachBatchPayload): false {
    const { topic, partition, messages } = p.batch;
    try {
      this.consumer.seek({ topic, partition, offset: messages[0]!.offset });
    } catch (err) {
      // not running any more: the next owner starts from the last commit
      this.opts.logger.debug({ err, partition }, 'no seek back: the consumer stopped');
    }
    return false;
  }

  /** Commit what is durable within commitIntervalMs (one commit for many batches). */
  private scheduleCommit(): void {
    if (this.commitTimer) return;
    const wait = this.lastCommit + (this.opts.commitIntervalMs ?? 250) - performance.now();
    this.commitTimer = setTimeout(
      () => {
        this.commitTimer = undefined;
        if (this.stopping) return; // stop() commits
        this.flush().catch((err) => this.opts.logger.debug({ err }, 'commit failed; retried with the next'));
      },
      Math.max(0, wait),
    );
    this.commitTimer.unref();
  }

  /** Commit every applied offset not known to be committed. */
  private async flush(): Promise<void> {
    this.lastCommit = performance.now();
    const entries = [...this.pending];
    if (entries.length === 0) return;
    await this.consumer.commitOffsets(
      entries.map(([partition, offset]) => ({ topic: this.topics.events, partition, offset })),
    );
    for (const [partition, offset] of entries)
      if (this.pending.get(partition) === offset) this.pending.delete(partition);
  }

  private sendDlq(messages: OutgoingMessage[]): Promise<void> {
    return sendDlqRecords(
      (msgs) => this.opts.producer.send({ topic: this.topics.dlq, acks: -1, messages: msgs }),
      messages,
      // The DLQ refused a record for good (too large with our headers, keyless on a
      // compacted topic): what it takes, rather than a partition stalled.
      (err, m, outcome) => {
        const h = m.headers ?? {};
        const from = { partition: String(h[DLQ_HEADERS.partition]), offset: String(h[DLQ_HEADERS.offset]) };
        const what = {
          keyed: 'DLQ refused a record without a key; sending it keyed by where it came from',
          value_dropped: 'DLQ refused a record; sending it without its value',
          lost: 'DLQ refused a record even without its value; it is not dead-lettered',
        }[outcome];
        this.opts.logger.error({ err, ...from }, what);
      },
    );
  }
}

const nextOffset = (offset: string): string => (BigInt(offset) + 1n).toString();
