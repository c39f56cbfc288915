/**
 * The only module that imports kafkajs. Everything else talks to Kafka through the
 * narrow types below, so unit tests can use a fake and the client can be swapped.
 */
import { readFileSync } from 'node:fs';
import {
  type Admin,
  type Consumer,
  type ConsumerConfig,
  type IHeaders,
  type ITopicConfig,
  Kafka,
  type KafkaConfig,
  logLevel,
  Partitioners,
  type Producer,
  type SASLOptions,
} from 'kafkajs';
import type { Config } from './config.js';
import { ExtjobError } from './errors.js';
import type { Logger } from './logger.js';

export type { Admin, Consumer, IHeaders, Producer };

export interface KafkaSettings {
  brokers: string[];
  clientId: string;
  ssl?: boolean;
  sslCaFile?: string;
  sasl?: { mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; username: string; password: string };
  /** How long one connection attempt may take. */
  connectionTimeoutMs?: number;
  /** How many times an operation is retried before it fails (kafkajs retry.retries). */
  retries?: number;
}

export function kafkaSettings(config: Config): KafkaSettings {
  return {
    brokers: [...config.kafkaBrokers],
    clientId: config.kafkaClientId,
    ssl: config.kafkaSsl,
    ...(config.kafkaSslCaFile ? { sslCaFile: config.kafkaSslCaFile } : {}),
    ...(config.kafkaSaslMechanism
      ? {
          sasl: {
            mechanism: config.kafkaSaslMechanism,
            username: config.kafkaSaslUsername ?? '',
            password: config.kafkaSaslPassword ?? '',
          },
        }
      : {}),
  };
}

const LEVELS: Record<number, 'error' | 'warn' | 'info' | 'debug'> = {
  [logLevel.ERROR]: 'error',
  [logLevel.WARN]: 'warn',
  [logLevel.INFO]: 'info',
  [logLevel.DEBUG]: 'debug',
};

const TRANSIENT =
  /coordinator is not available|leadership election|not the leader for that topic-partition|does not host this topic-partition/i;

/** A kafkajs client whose own log lines go to our logger (warnings and up). */
export function createKafka(settings: KafkaSettings, logger?: Logger): Kafka {
  const config: KafkaConfig = {
    brokers: settings.brokers,
    clientId: settings.clientId,
    connectionTimeout: settings.connectionTimeoutMs ?? 3000,
    retry: { retries: settings.retries ?? 8, initialRetryTime: 200, maxRetryTime: 5000 },
    logLevel: logLevel.WARN,
    logCreator: () => (entry) => {
      if (!logger) return;
      const level = LEVELS[entry.level] ?? 'info';
      const { message, ...rest } = entry.log;
      // Answers a broker gives for a moment while a group, a topic or the broker itself
      // starts, which kafkajs retries: not news (what does not recover fails loudly).
      if (level === 'error' && TRANSIENT.test(String(rest.error))) return;
      // Said of every idempotent producer with a retry limit, at every start. Our
      // callers retry a send that gave up themselves (the outbox keeps the record, an
      // executor posts again), and what arrives twice is told apart (per-job
      // sequence of changes, event ids): a duplicate, never a loss.
      if (/^Limiting retries for the idempotent producer/.test(message)) return;
      logger[level]({ kafka: entry.namespace, ...rest }, message);
    },
  };
  if (settings.ssl)
    config.ssl = settings.sslCaFile ? { ca: [readFileSync(settings.sslCaFile, 'utf8')] } : true;
  if (settings.sasl) config.sasl = settings.sasl as SASLOptions;
  return new Kafka(config);
}

export interface TopicSpec {
  topic: string;
  partitions: number;
  /** -1: the broker's default replication factor. */
  replication: number;
  config?: Record<string, string>;
}

/** Create the topics that are missing; returns the names it created. */
export async function ensureTopics(admin: Admin, topics: TopicSpec[]): Promise<string[]> {
  const existing = new Set(await admin.listTopics());
  const missing = topics.filter((t) => !existing.has(t.topic));
  if (missing.length === 0) return [];
  try {
    await createTopics(
      admin,
      missing.map((t) => ({
        topic: t.topic,
        numPartitions: t.partitions,
        replicationFactor: t.replication,
        configEntries: Object.entries(t.config ?? {}).map(([name, value]) => ({ name, value })),
      })),
    );
  } catch (err) {
    // kafkajs says only "Topic creation errors": name each topic and Kafka's reason
    const errors = (err as { errors?: { topic?: string; type?: string; message?: string }[] }).errors;
    if (!Array.isArray(errors)) throw err;
    const what = errors.map((e) => `${e.topic}: ${e.type ?? e.message}`).join('; ');
    throw new ExtjobError(
      'EXTJOB_CONFIG_INVALID',
      `Kafka refused to create ${what} (partitions ${missing[0]!.partitions}, replication ${missing[0]!.replication}: see EXTJOB_TOPIC_PARTITIONS and EXTJOB_TOPIC_REPLICATION)`,
    );
  }
  return missing.map((t) => t.topic);
}

/**
 * Create topics and wait until the broker serves them. kafkajs's own wait
 * (`waitForLeaders`) gives up at the first "This server does not host this
 * topic-partition", which a broker answers for a moment after it created the topic
 * (its metadata cache trails its controller, longer on a loaded machine); and a
 * partition with a leader may still refuse offset reads ("not the leader") while its
 * log is created, which makes a consumer starting then crash and rejoin its group.
 */
export async function createTopics(admin: Admin, topics: ITopicConfig[], timeoutMs = 30_000): Promise<void> {
  await admin.createTopics({ topics, waitForLeaders: false });
  const names = topics.map((t) => t.topic);
  await waitWhileRetriable(async () => {
    const { topics: found } = await admin.fetchTopicMetadata({ topics: names });
    const leaderless = found.find((t) => t.partitions.length === 0 || t.partitions.some((p) => p.leader < 0));
    if (leaderless) return `a leader for every partition of ${leaderless.name}`;
    await Promise.all(names.map((topic) => admin.fetchTopicOffsets(topic)));
    return undefined;
  }, timeoutMs);
}

/**
 * Run `probe` until it returns undefined (done), every `pollMs`; it returns what it
 * still waits for. Retriable Kafka errors are waited out too; others are thrown.
 */
export async function waitWhileRetriable(
  probe: () => Promise<string | undefined>,
  timeoutMs: number,
  pollMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let waitingFor: string | undefined;
    try {
      waitingFor = await probe();
      if (waitingFor === undefined) return;
    } catch (err) {
      if ((err as { retriable?: boolean }).retriable !== true) throw err;
      waitingFor = `Kafka to serve the topics (${(err as Error).message})`;
    }
    if (Date.now() + pollMs > deadline) throw new Error(`waited ${timeoutMs} ms for ${waitingFor}`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

/**
 * Producer settings every extjob producer uses: all in-sync replicas acknowledge,
 * idempotent, keys partitioned as the Java client does (murmur2: kafkajs's default,
 * named so that kafkajs does not warn at every start that its default changed).
 */
export function createProducer(kafka: Kafka): Producer {
  return kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
}

/**
 * A kafkajs consumer that stays stopped once disconnect() was called. kafkajs restarts
 * a consumer some time after a crash, and a disconnect while it starts makes it crash
 * (its connections are gone): that restart would run after the disconnect and join
 * the group again, holding partitions for a process that is stopping or gone.
 */
export function createConsumer(kafka: Kafka, config: ConsumerConfig): Consumer {
  let disconnecting = false;
  const retry = config.retry ?? { retries: 5 }; // kafkajs's default
  const consumer = kafka.consumer({
    allowAutoTopicCreation: false,
    ...config,
    retry: {
      ...retry,
      restartOnFailure: async (err) => !disconnecting && ((await retry.restartOnFailure?.(err)) ?? true),
    },
  });
  const disconnect = consumer.disconnect;
  consumer.disconnect = () => {
    disconnecting = true;
    return disconnect();
  };
  return consumer;
}
