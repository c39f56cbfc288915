/**
 * What the consumer tests share: their own topics (provisioned like the service does),
 * a connected producer, a consumer started on a group of their own, and a reader of
 * whatever lands in the DLQ. Everything is torn down when the test finishes.
 */
import { onTestFinished } from 'vitest';
import { type BrokerDefaults, JobBroker } from '../../src/broker/index.js';
import type { EventSink } from '../../src/consumers/event-batch.js';
import { EventsConsumer, type EventsConsumerOptions } from '../../src/consumers/events-consumer.js';
import { provisionTopics } from '../../src/consumers/topics.js';
import { topicNames } from '../../src/shared/config.js';
import { createConsumer, createProducer, type IHeaders } from '../../src/shared/kafka.js';
import { createLogger } from '../../src/shared/logger.js';
import { BROKER_DEFAULTS } from '../helpers/broker-defaults.js';
import { dropKeys, isolation, redisClient, testKafka, unique, waitFor } from '../helpers/index.js';

export const quietLogger = () => createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

export async function kafkaWorld(partitions = 3) {
  const names = isolation();
  const kafka = testKafka();
  const admin = kafka.admin();
  await admin.connect();
  await provisionTopics(admin, { prefix: names.topicPrefix, partitions, replication: 1 });
  const producer = createProducer(kafka);
  await producer.connect();
  const topics = topicNames(names.topicPrefix);
  const stops: (() => Promise<void>)[] = [];
  onTestFinished(async () => {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    await admin.deleteTopics({ topics: Object.values(topics) }).catch(() => {});
    await producer.disconnect();
    await admin.disconnect();
  });

  /** Produce raw messages to the events topic, acknowledged by all replicas. */
  const produce = (
    messages: { key?: string | Buffer | null; value: Buffer | string | null; headers?: IHeaders }[],
  ) => producer.send({ topic: topics.events, acks: -1, messages });

  /** A member of the test's group, started; `joined`: once it joined its group. */
  async function startConsumer(sink: EventSink, extra: Partial<EventsConsumerOptions> = {}, joined = true) {
    const c = new EventsConsumer({
      kafka,
      producer,
      sink,
      topicPrefix: names.topicPrefix,
      groupId: names.group,
      logger: quietLogger(),
      ...extra,
    });
    stops.push(() => c.stop());
    await c.start();
    if (joined) await waitFor(() => c.isReady(), { timeoutMs: 30_000, what: 'consumer to join' });
    return c;
  }

  /** Every record in the DLQ, read from the start until `count` arrived. */
  async function readDlq(count: number, timeoutMs = 20_000) {
    const got: { key: string | null; value: Buffer | null; headers: Record<string, string | Buffer> }[] = [];
    const c = createConsumer(kafka, { groupId: unique('dlq-reader'), maxWaitTimeInMs: 100 });
    await c.connect();
    await c.subscribe({ topics: [topics.dlq], fromBeginning: true });
    await c.run({
      eachMessage: async ({ message }) => {
        got.push({
          key: message.key?.toString() ?? null,
          value: message.value,
          headers: message.headers as Record<string, string | Buffer>,
        });
      },
    });
    try {
      await waitFor(() => got.length >= count, {
        timeoutMs,
        what: `${count} DLQ records (have ${got.length})`,
      });
    } finally {
      await c.disconnect();
    }
    return got;
  }

  return { names, kafka, admin, producer, topics, produce, startConsumer, readDlq };
}

export const header = (h: Record<string, string | Buffer>, name: string) => h[name]?.toString();

/** A JobBroker on the run's Redis under this test's own key prefix; its keys are removed at the end. */
export async function brokerWorld(prefix: string, defaults: Partial<BrokerDefaults> = {}) {
  const redis = redisClient({ maxRetriesPerRequest: 3 });
  const broker = new JobBroker({ redis, prefix, defaults: { ...BROKER_DEFAULTS, ...defaults } });
  onTestFinished(async () => {
    await broker.close().catch(() => {});
    await dropKeys(redis, `${prefix}:`);
  });
  return { redis, broker };
}
