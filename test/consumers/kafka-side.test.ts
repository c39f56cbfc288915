/** The Kafka side as the service starts it from configuration. */
import { describe, expect, it, onTestFinished } from 'vitest';
import { encodeStructured } from '../../src/consumers/formats/index.js';
import { formatLimits, startKafkaSide } from '../../src/consumers/index.js';
import { loadConfig } from '../../src/shared/config.js';
import { createConsumer } from '../../src/shared/kafka.js';
import {
  isolation,
  kafkaBrokers,
  redisClient,
  redisUrl,
  testKafka,
  unique,
  waitFor,
} from '../helpers/index.js';
import { brokerWorld, quietLogger } from './support.js';

describe('startKafkaSide', () => {
  it('provisions topics, consumes events and drains the outbox, then stops', async () => {
    const names = isolation();
    const config = loadConfig({
      EXTJOB_KAFKA_BROKERS: kafkaBrokers().join(','),
      EXTJOB_REDIS_URL: redisUrl(),
      EXTJOB_TOPIC_PREFIX: names.topicPrefix,
      EXTJOB_REDIS_PREFIX: names.keyPrefix,
      EXTJOB_CONSUMER_GROUP: names.group,
      EXTJOB_TOPIC_PARTITIONS: '2',
      EXTJOB_TOPIC_REPLICATION: '1',
    });
    const { broker } = await brokerWorld(names.keyPrefix);
    const side = await startKafkaSide({
      config,
      broker,
      redis: redisClient(),
      notifyChannel: broker.keys.notify,
      logger: quietLogger(),
      consume: true,
      drain: true,
    });
    let stopped = false;
    onTestFinished(async () => {
      if (!stopped) await side.stop();
    });
    await waitFor(() => side.isReady(), { timeoutMs: 30_000, what: 'consumer joined' });

    await broker.createJob({ id: 'side-1', name: 'side' });
    const kafka = testKafka();
    const p = kafka.producer();
    await p.connect();
    await p.send({
      topic: `${names.topicPrefix}.events`,
      messages: [
        encodeStructured({
          kind: 'finished',
          jobId: 'side-1',
          id: 'f',
          source: 's',
          type: 'dev.extjob.finished.v1',
          exitCode: 0,
        }),
      ],
    });
    await p.disconnect();
    await waitFor(async () => (await broker.getJob('side-1'))?.state === 'passed', { what: 'job passed' });

    const changes: string[] = [];
    const c = createConsumer(kafka, { groupId: unique('watch'), maxWaitTimeInMs: 100 });
    await c.connect();
    await c.subscribe({ topics: [`${names.topicPrefix}.changes`], fromBeginning: true });
    await c.run({
      eachMessage: async ({ message }) => void changes.push(JSON.parse(message.value!.toString()).data.to),
    });
    onTestFinished(() => c.disconnect());
    await waitFor(() => changes.length >= 3, { what: 'three changes' });
    expect(changes).toEqual(['pending', 'running', 'passed']);

    await side.stop();
    stopped = true;
    expect(side.isReady()).toBe(false);
  });

  it('sizes the value limit to hold the largest log chunk as base64', () => {
    const l = formatLimits({ logChunkMaxBytes: 4 * 1024 * 1024 });
    expect(l.maxChunkBytes).toBe(4 * 1024 * 1024);
    expect(l.maxValueBytes).toBeGreaterThan((4 * 1024 * 1024 * 4) / 3);
  });
});
