/**
 * The webhook feed's consumer group takes the configured session timeout: after a
 * schedule process dies without leaving its group, its partitions move on once that
 * session lapses (6 s here), not after kafkajs's default 30 s.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { WebhookFeed } from '../../src/consumers/webhooks-feed.js';
import { createProducer, createTopics } from '../../src/shared/kafka.js';
import { kafkaBrokers, testKafka, unique, waitFor } from '../helpers/index.js';

const CHILD = fileURLToPath(new URL('./child-feed.ts', import.meta.url));
const SESSION_MS = 6000;

describe('webhook feed', () => {
  it("takes a dead member's partitions once its configured session lapses", async () => {
    const topic = unique('feed-changes');
    const group = unique('feed-group');
    const kafka = testKafka();
    const admin = kafka.admin();
    await admin.connect();
    await createTopics(admin, [{ topic, numPartitions: 1, replicationFactor: 1 }]);
    onTestFinished(async () => {
      await admin.deleteTopics({ topics: [topic] }).catch(() => {});
      await admin.disconnect();
    });
    const producer = createProducer(kafka);
    await producer.connect();
    onTestFinished(() => producer.disconnect());
    const change = () =>
      producer.send({
        topic,
        acks: -1,
        messages: [{ key: 'j', value: JSON.stringify({ id: unique('c') }) }],
      });

    const child = spawn(process.execPath, ['--import', 'tsx', CHILD], {
      env: {
        ...process.env,
        KAFKA_BROKERS: kafkaBrokers().join(','),
        TOPIC: topic,
        GROUP: group,
        SESSION_MS: String(SESSION_MS),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    onTestFinished(() => void child.kill('SIGKILL'));
    let childGot = 0;
    child.stdout.on('data', (d: Buffer) => (childGot += d.toString().split('got').length - 1));
    await change();
    await waitFor(() => childGot > 0, { timeoutMs: 30_000, what: 'the child feed to get a change' });

    child.kill('SIGKILL'); // no LeaveGroup: the group waits out its session
    const killed = Date.now();
    let got = 0;
    const feed = new WebhookFeed({
      kafka,
      topic,
      groupId: group,
      sessionTimeoutMs: SESSION_MS,
      webhooks: {
        enqueueChange: async () => {
          got++;
          return 0;
        },
      },
    });
    await feed.start();
    onTestFinished(() => feed.stop());
    await change();
    await waitFor(() => got > 0, {
      timeoutMs: 60_000,
      intervalMs: 100,
      what: 'the new member to get the change',
    });
    // kafkajs's default session (30 s) would hold the partition until then
    expect(Date.now() - killed).toBeLessThan(25_000);
  }, 90_000);
});
