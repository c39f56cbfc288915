/** Topic provisioning on the real Kafka broker. */
import { describe, expect, it, onTestFinished } from 'vitest';
import { provisionTopics, topicSpecs } from '../../src/consumers/topics.js';
import { topicNames } from '../../src/shared/config.js';
import { isolation, testKafka, waitFor } from '../helpers/index.js';

async function admin() {
  const a = testKafka().admin();
  await a.connect();
  onTestFinished(() => a.disconnect());
  return a;
}

describe('topic provisioning', () => {
  it('creates the four topics once, with the configured partitions', async () => {
    const a = await admin();
    const { topicPrefix: prefix } = isolation();
    const names = Object.values(topicNames(prefix));
    onTestFinished(() => a.deleteTopics({ topics: names }).catch(() => {}));
    const first = await provisionTopics(a, { prefix, partitions: 4, replication: 1 });
    expect(first.created.sort()).toEqual([...names].sort());
    expect(first.problems).toEqual([]);
    const meta = await a.fetchTopicMetadata({ topics: names });
    expect(meta.topics.map((t) => t.partitions.length)).toEqual([4, 4, 4, 4]);
    const again = await provisionTopics(a, { prefix, partitions: 4, replication: 1 });
    expect(again).toEqual({ created: [], problems: [] });
  });

  it('says which topics Kafka refused to create and why, naming the settings', async () => {
    const a = await admin();
    const { topicPrefix: prefix } = isolation();
    // more replicas than the single test broker can hold
    await expect(provisionTopics(a, { prefix, partitions: 1, replication: 3 })).rejects.toMatchObject({
      code: 'EXTJOB_CONFIG_INVALID',
      message: expect.stringMatching(
        new RegExp(`${prefix}\\.events: INVALID_REPLICATION_FACTOR.*EXTJOB_TOPIC_REPLICATION`),
      ),
    });
    expect(await a.listTopics()).not.toContain(topicNames(prefix).events);
  });

  it('reports an existing compacted events topic and too few partitions', async () => {
    const a = await admin();
    const { topicPrefix: prefix } = isolation();
    const t = topicNames(prefix);
    onTestFinished(() => a.deleteTopics({ topics: Object.values(t) }).catch(() => {}));
    await a.createTopics({
      waitForLeaders: false,
      topics: [
        {
          topic: t.events,
          numPartitions: 1,
          replicationFactor: 1,
          configEntries: [{ name: 'cleanup.policy', value: 'compact' }],
        },
      ],
    });
    await waitFor(
      async () => (await a.fetchTopicMetadata({ topics: [t.events] })).topics[0]?.partitions.length,
      {
        what: 'the compacted topic',
      },
    );
    const r = await provisionTopics(a, { prefix, partitions: 3, replication: 1 });
    expect(r.created.sort()).toEqual([t.changes, t.commands, t.dlq].sort());
    expect(r.problems).toEqual([
      expect.objectContaining({
        topic: t.events,
        severity: 'warning',
        problem: expect.stringMatching(/1 partitions/),
      }),
      expect.objectContaining({
        topic: t.events,
        severity: 'error',
        problem: expect.stringMatching(/cleanup.policy=compact/),
      }),
    ]);
  });

  it('reports an existing DLQ that takes no larger records than the events topic', async () => {
    const a = await admin();
    const { topicPrefix: prefix } = isolation();
    const t = topicNames(prefix);
    onTestFinished(() => a.deleteTopics({ topics: Object.values(t) }).catch(() => {}));
    const topic = (name: string, bytes: string) => ({
      topic: name,
      numPartitions: 1,
      replicationFactor: 1,
      configEntries: [{ name: 'max.message.bytes', value: bytes }],
    });
    await a.createTopics({
      waitForLeaders: true,
      topics: [topic(t.events, '2000000'), topic(t.dlq, '2000000')],
    });
    const r = await provisionTopics(a, { prefix, partitions: 1, replication: 1 });
    expect(r.problems).toEqual([
      {
        topic: t.dlq,
        severity: 'warning',
        problem: expect.stringMatching(/max.message.bytes=2000000.*2000000.*at least 2004096/),
      },
    ]);
  });

  it('gives the DLQ room for the largest event plus headers', () => {
    const dlq = topicSpecs({ prefix: 'p', partitions: 1, replication: -1 }).find(
      (s) => s.topic === 'p.events.dlq',
    );
    expect(Number(dlq?.config?.['max.message.bytes'])).toBeGreaterThan(2 * 1024 * 1024);
  });
});
