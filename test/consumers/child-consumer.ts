/**
 * A consuming process for the crash and scale-out tests: the events consumer with the
 * real broker, configured from the environment. It prints one line per batch
 * ("batch <applied> <duplicates>") and "ready" once it joined the group. HOLD_MS keeps
 * each batch open after its Redis effects and before its offsets are committed, so a
 * SIGKILL lands in the window that forces a replay. Batches are parsed and sent in
 * groups of 16 messages, so a batch's groups are in flight at once when it is killed.
 */
import { Redis } from 'ioredis';
import { JobBroker } from '../../src/broker/index.js';
import type { JobEvent } from '../../src/broker/types.js';
import { EventsConsumer } from '../../src/consumers/events-consumer.js';
import { createKafka, createProducer } from '../../src/shared/kafka.js';
import { createLogger } from '../../src/shared/logger.js';
import { BROKER_DEFAULTS } from '../helpers/broker-defaults.js';

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is required`);
  return v;
};

const holdMs = Number(process.env.HOLD_MS ?? 0);
const logger = createLogger({ level: process.env.CHILD_LOG_LEVEL ?? 'warn', name: `child-${process.pid}` });
const redis = new Redis(env('REDIS_URL'));
const broker = new JobBroker({ redis, prefix: env('KEY_PREFIX'), defaults: BROKER_DEFAULTS, logger });
const kafka = createKafka(
  { brokers: env('KAFKA_BROKERS').split(','), clientId: `child-${process.pid}` },
  logger,
);
const producer = createProducer(kafka);
await producer.connect();

const sink = {
  applyEvents: (events: JobEvent[]) => broker.applyEvents(events),
  applyEventsDetailed: async (events: JobEvent[]) => {
    const out = await broker.applyEventsDetailed(events);
    const applied = out.filter((o) => o.result === 'applied').length;
    const dups = out.filter((o) => o.result === 'duplicate').length;
    process.stdout.write(`batch ${applied} ${dups}\n`);
    if (holdMs > 0) await new Promise((r) => setTimeout(r, holdMs));
    return out;
  },
};

const consumer = new EventsConsumer({
  kafka,
  producer,
  sink,
  topicPrefix: env('TOPIC_PREFIX'),
  groupId: env('GROUP'),
  logger,
  sessionTimeoutMs: 6000,
  heartbeatIntervalMs: 500,
  maxBytesPerPartition: Number(process.env.MAX_BYTES ?? 1024 * 1024),
  groupMessages: 16,
});
consumer.instrumentation.on('joined', () => process.stdout.write('ready\n'));
await consumer.start();

process.on('SIGTERM', async () => {
  await consumer.stop();
  await producer.disconnect();
  redis.disconnect();
  process.exit(0);
});
