import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startKafka } from '../../src/cli/local/kafka.js';
import { startService } from '../../src/cli/service.js';
import { loadConfig } from '../../src/shared/config.js';
import { createTopics } from '../../src/shared/kafka.js';
import { createLogger } from '../../src/shared/logger.js';
import {
  isolation,
  kafkaBrokers,
  redisClient,
  redisUrl,
  testKafka,
  unique,
  waitFor,
} from '../helpers/index.js';

describe('the real local stack', () => {
  it('creates topics, produces and consumes in a consumer group with kafkajs', async () => {
    const kafka = testKafka();
    const topic = unique('harness');
    const admin = kafka.admin();
    await admin.connect();
    await createTopics(admin, [{ topic, numPartitions: 3, replicationFactor: 1 }]);
    expect(await admin.listTopics()).toContain(topic);

    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const sent = Array.from({ length: 30 }, (_, i) => ({ key: `job-${i % 5}`, value: `message ${i}` }));
    await producer.send({ topic, acks: -1, messages: sent });

    const groupId = unique('group');
    const consumer = kafka.consumer({ groupId });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const received: string[] = [];
    await consumer.run({
      eachMessage: async ({ message }) => {
        received.push(String(message.value));
      },
    });
    await waitFor(() => received.length >= sent.length, { what: 'all messages consumed' });
    expect(received.sort()).toEqual(sent.map((m) => m.value).sort());

    const groups = await admin.describeGroups([groupId]);
    expect(groups.groups[0]?.state).toBe('Stable');
    expect(groups.groups[0]?.members).toHaveLength(1);

    await consumer.disconnect();
    await producer.disconnect();
    await admin.deleteTopics({ topics: [topic] });
    await admin.disconnect();
  });

  it('round-trips a value through Redis under its own key prefix', async () => {
    const redis = redisClient();
    const { keyPrefix } = isolation();
    await redis.set(`${keyPrefix}:k`, 'v', 'EX', 60);
    expect(await redis.get(`${keyPrefix}:k`)).toBe('v');
    await redis.del(`${keyPrefix}:k`);
  });

  it('/readyz turns 503 when Kafka stops and 200 again when it returns', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'extjob-readyz-'));
    let kafka = await startKafka({ dataDir });
    const { port, controllerPort } = kafka;
    const { topicPrefix, keyPrefix } = isolation();
    const config = loadConfig({
      EXTJOB_REDIS_URL: redisUrl(),
      EXTJOB_REDIS_PREFIX: keyPrefix,
      EXTJOB_KAFKA_BROKERS: kafka.brokers.join(','),
      EXTJOB_TOPIC_PREFIX: topicPrefix,
      EXTJOB_TOPIC_REPLICATION: '1',
      EXTJOB_HTTP_PORT: '0',
      EXTJOB_HTTP_HOST: '127.0.0.1',
      EXTJOB_INSECURE: 'true',
    });
    const service = await startService(config, createLogger({ level: 'silent' }));
    const readyz = async () => {
      const res = await fetch(`${service.url}/readyz`);
      return { status: res.status, body: (await res.json()) as { checks: Record<string, { ok: boolean }> } };
    };
    try {
      // ready once the events consumer joined its group (start does not wait for that)
      await waitFor(async () => (await readyz()).status === 200, { timeoutMs: 30_000, what: '/readyz 200' });
      await kafka.stop();
      const down = await waitFor(async () => ((await readyz()).status === 503 ? readyz() : undefined), {
        timeoutMs: 20_000,
        what: '/readyz 503',
      });
      expect(down.body.checks.kafka?.ok).toBe(false);
      expect(down.body.checks.redis?.ok).toBe(true);

      kafka = await startKafka({ dataDir, port, controllerPort });
      await waitFor(async () => (await readyz()).status === 200, { timeoutMs: 30_000, what: '/readyz 200' });
    } finally {
      await service.close();
      await kafka.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 240_000);

  it('runs against the broker the global setup started', () => {
    expect(kafkaBrokers()[0]).toMatch(/^127\.0\.0\.1:\d+$/);
  });
});
