/**
 * Feeds webhooks from the changes topic: a consumer group of its own reads
 * `<prefix>.changes` and enqueues each change's deliveries (Webhooks.enqueueChange)
 * before its offset is committed. Decoupled from the outbox drainer, so a change
 * published once reaches its webhooks even if this process restarts in between
 * (replays are deduplicated by delivery id).
 */
import type { createKafka } from '../shared/kafka.js';
import { type Consumer, createConsumer } from '../shared/kafka.js';
import type { Logger } from '../shared/logger.js';
import { settledWithin } from '../shared/timeouts.js';
import type { Webhooks } from './webhooks.js';

export interface WebhookFeedOptions {
  kafka: ReturnType<typeof createKafka>;
  topic: string;
  groupId: string;
  webhooks: Pick<Webhooks, 'enqueueChange'>;
  logger?: Logger;
  /**
   * Changes published longer ago than this are skipped: a new consumer group starts at
   * the beginning of the topic, and its first start must not replay the topic's history
   * as webhooks. Published, not changed: a change the drainer publishes late (after an
   * outage) is still delivered. Default 24 hours.
   */
  maxAgeSeconds?: number;
  /** How long a member that died keeps its partitions (EXTJOB_CONSUMER_SESSION_TIMEOUT_SECONDS). */
  sessionTimeoutMs?: number;
}

export class WebhookFeed {
  private consumer: Consumer | undefined;
  private running: Promise<void> = Promise.resolve();

  constructor(private readonly opts: WebhookFeedOptions) {}

  async start(): Promise<void> {
    // A short fetch wait: stopping waits for the in-flight fetch to return.
    const sessionTimeout = this.opts.sessionTimeoutMs ?? 30_000;
    const consumer = createConsumer(this.opts.kafka, {
      groupId: this.opts.groupId,
      maxWaitTimeInMs: 500,
      sessionTimeout,
      heartbeatInterval: Math.max(500, Math.floor(sessionTimeout / 10)),
    });
    await consumer.connect();
    // From the beginning: a group that has not committed yet must not miss the changes
    // published while it joined. Old changes are skipped by age below.
    await consumer.subscribe({ topic: this.opts.topic, fromBeginning: true });
    const maxAgeMs = (this.opts.maxAgeSeconds ?? 86_400) * 1000;
    this.consumer = consumer;
    // Not awaited: run() resolves once the group is joined, which after a crash waits
    // out the dead member's session; the service must not wait for that.
    const running = consumer.run({
      eachMessage: async ({ message }) => {
        if (!message.value) return;
        if (Date.now() - Number(message.timestamp) > maxAgeMs) return;
        const body = message.value.toString('utf8');
        let ce: unknown;
        try {
          ce = JSON.parse(body);
        } catch {
          this.opts.logger?.warn({ topic: this.opts.topic }, 'a change that is not JSON was skipped');
          return;
        }
        if (!ce || typeof ce !== 'object') return;
        await this.opts.webhooks.enqueueChange(body, ce as Record<string, unknown>);
      },
    });
    this.running = running.catch((err: unknown) =>
      this.opts.logger?.error({ err }, 'webhook feed failed to start'),
    );
  }

  async stop(): Promise<void> {
    // stopped while joining: the join first, so the member leaves (see EventsConsumer.stop)
    await settledWithin(this.running, 30_000);
    await this.consumer?.disconnect().catch(() => {});
    this.consumer = undefined;
  }
}
