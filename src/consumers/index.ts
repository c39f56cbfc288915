/**
 * The Kafka side of a service process: topics provisioned and checked, one idempotent
 * producer (DLQ and outbox), the events consumer (role "consume") and the outbox
 * drainer (which also enqueues webhooks), all reporting on one instrumentation emitter,
 * and stopped in order.
 */
import type { Redis } from 'ioredis';
import { type Config, topicNames } from '../shared/config.js';
import { ExtjobError } from '../shared/errors.js';
import { createKafka, createProducer, kafkaSettings } from '../shared/kafka.js';
import type { Logger } from '../shared/logger.js';
import { closeConnection } from '../shared/redis.js';
import { type EventSink, processBatch } from './event-batch.js';
import { EventsConsumer } from './events-consumer.js';
import { DEFAULT_LIMITS, type FormatLimits } from './formats/result.js';
import { createInstrumentation, type Instrumentation } from './instrumentation.js';
import { OutboxDrainer, type OutboxSource } from './outbox-drainer.js';
import { rootCause } from './retry.js';
import { provisionTopics } from './topics.js';
import type { Webhooks } from './webhooks.js';

export { DLQ_HEADERS } from './dlq.js';
export type { ConsumerInstrumentation, Instrumentation } from './instrumentation.js';
export type { EventSink, OutboxSource };
export { EventsConsumer, OutboxDrainer, processBatch, provisionTopics, topicNames };

export interface KafkaSideOptions {
  config: Config;
  broker: EventSink & OutboxSource;
  /** Used to make the subscriber connection that wakes the drainer. */
  redis: Redis;
  /** The broker's notification channel (JobBroker.keys.notify). */
  notifyChannel: string;
  logger: Logger;
  consume: boolean;
  drain: boolean;
  /** Where the drainer enqueues the webhooks of the changes it publishes. */
  webhooks?: Pick<Webhooks, 'enqueueWebhooks'>;
  /** Where the consumer and the drainer report; default a new emitter. */
  instrumentation?: Instrumentation;
}

export interface KafkaSide {
  instrumentation: Instrumentation;
  /** The consumer joined its group (true when this process does not consume). */
  isReady(): boolean;
  stop(): Promise<void>;
}

/** Format limits that follow the configured log chunk limit. */
export function formatLimits(config: Pick<Config, 'logChunkMaxBytes'>): FormatLimits {
  const chunkAsBase64 = Math.ceil(config.logChunkMaxBytes / 3) * 4;
  return {
    ...DEFAULT_LIMITS,
    maxChunkBytes: config.logChunkMaxBytes,
    maxValueBytes: Math.max(DEFAULT_LIMITS.maxValueBytes, chunkAsBase64 + 64 * 1024),
  };
}

export async function startKafkaSide(o: KafkaSideOptions): Promise<KafkaSide> {
  const { config, logger } = o;
  const instrumentation = o.instrumentation ?? createInstrumentation();
  const kafka = createKafka(kafkaSettings(config), logger);
  const admin = kafka.admin();
  await admin.connect().catch((err: Error) => {
    throw new ExtjobError(
      'EXTJOB_KAFKA_UNAVAILABLE',
      `cannot reach Kafka at ${config.kafkaBrokers.join(',')} (EXTJOB_KAFKA_BROKERS): ${String(rootCause(err).message ?? err.message)}`,
      { cause: err },
    );
  });
  try {
    await provisionTopics(admin, {
      prefix: config.topicPrefix,
      partitions: config.topicPartitions,
      replication: config.topicReplication,
      logger,
    });
  } finally {
    await admin.disconnect();
  }
  const producer = createProducer(kafka);
  await producer.connect();
  const consumer = o.consume
    ? new EventsConsumer({
        kafka,
        producer,
        sink: o.broker,
        topicPrefix: config.topicPrefix,
        groupId: config.consumerGroup,
        sessionTimeoutMs: config.consumerSessionTimeoutSeconds * 1000,
        heartbeatIntervalMs: Math.max(500, Math.floor((config.consumerSessionTimeoutSeconds * 1000) / 10)),
        logger: logger.child({ component: 'events-consumer' }),
        limits: formatLimits(config),
        instrumentation,
      })
    : undefined;
  const subscriber = o.drain ? o.redis.duplicate() : undefined;
  subscriber?.on('error', () => {}); // the service's own client reports an outage
  const drainer = subscriber
    ? new OutboxDrainer({
        source: o.broker,
        producer,
        newProducer: async () => {
          const fresh = createProducer(kafka);
          await fresh.connect();
          return fresh;
        },
        topicPrefix: config.topicPrefix,
        logger: logger.child({ component: 'outbox-drainer' }),
        instrumentation,
        wakeup: { subscriber, channel: o.notifyChannel },
        ...(o.webhooks ? { webhooks: o.webhooks } : {}),
      })
    : undefined;
  // The drainer first: starting the consumer waits for its group join, which after a
  // crash waits out the dead member's session; changes made meanwhile (timers firing,
  // jobs created) must not wait for that to be published.
  await drainer?.start();
  await consumer?.start();
  return {
    instrumentation,
    isReady: () => consumer?.isReady() ?? true,
    stop: async () => {
      await consumer?.stop();
      await drainer?.stop();
      await producer.disconnect();
      if (subscriber) await closeConnection(subscriber);
    },
  };
}
