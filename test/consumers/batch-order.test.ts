/**
 * The events consumer's batch sequencing against a model of kafkajs (pure logic: no
 * broker). What is modelled is what kafkajs 2 does: consumer.seek() leaves a seek
 * pending until the partition's next fetch, a payload is stale while one is pending,
 * and a fetcher fetches again only once every batch of its last fetch was handled.
 * The real-broker paths are in events-consumer.test.ts and crash.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type { ApplyResult, JobEvent } from '../../src/broker/types.js';
import { EventsConsumer } from '../../src/consumers/events-consumer.js';
import { encodeStructured } from '../../src/consumers/formats/index.js';
import type { EachBatchPayload, KafkaClient } from '../../src/consumers/kafka-types.js';
import { ExtjobError } from '../../src/shared/errors.js';
import { waitFor } from '../helpers/index.js';
import { quietLogger } from './support.js';

const TOPIC = 'order.events';

function model() {
  const seeks = new Map<number, string>();
  const commits: string[] = [];
  const on: Record<string, (e: unknown) => void> = {};
  const consumer = {
    events: { GROUP_JOIN: 'join', CRASH: 'crash', REBALANCING: 'rebalancing' },
    on: (event: string, f: (e: unknown) => void) => {
      on[event] = f;
    },
    seek: ({ partition, offset }: { partition: number; offset: string }) => seeks.set(partition, offset),
    commitOffsets: async (list: { offset: string }[]) => {
      commits.push(...list.map((o) => o.offset));
    },
  };
  return { seeks, commits, on, kafka: { consumer: () => consumer } as unknown as KafkaClient };
}

describe('batch sequencing', () => {
  it('a batch fetched before an earlier one was abandoned is not applied, and the seek back stands', async () => {
    const m = model();
    let redisUp = false;
    const applied: string[] = [];
    const sink = {
      async applyEvents(events: JobEvent[]): Promise<ApplyResult[]> {
        if (!redisUp) throw new ExtjobError('EXTJOB_REDIS_UNAVAILABLE', 'Redis did not answer');
        applied.push(...events.map((e) => e.id));
        return events.map(() => 'applied');
      },
    };
    const consumer = new EventsConsumer({
      kafka: m.kafka,
      producer: {} as never,
      sink,
      topicPrefix: 'order',
      groupId: 'g',
      logger: quietLogger(),
      retryInitialMs: 10,
      retryMaxMs: 20,
      commitIntervalMs: 0,
    });
    m.on.join!({ payload: { groupId: 'g', memberId: 'm', memberAssignment: { [TOPIC]: [0] } } });
    let rebalancing = false;
    const batch = (first: number) =>
      ({
        batch: {
          topic: TOPIC,
          partition: 0,
          highWatermark: '100',
          messages: [0, 1, 2].map((i) => ({
            ...encodeStructured({
              kind: 'heartbeat',
              jobId: 'j',
              id: `e${first + i}`,
              source: 's',
              type: 'dev.extjob.heartbeat.v1',
            }),
            key: Buffer.from('j'),
            offset: String(first + i),
            timestamp: '0',
          })),
        },
        resolveOffset: () => {},
        heartbeat: async () => {
          if (rebalancing) throw new Error('The group is rebalancing');
        },
        isRunning: () => true,
        isStale: () => m.seeks.has(0),
        commitOffsetsIfNecessary: async () => {},
      }) as unknown as EachBatchPayload;
    const onBatch = (p: EachBatchPayload) =>
      (consumer as unknown as { onBatch(p: EachBatchPayload): Promise<void> }).onBatch(p);
    const inflight = (consumer as unknown as { inflight: Map<number, unknown> }).inflight;

    // A (10-12) waits out a Redis outage; B (13-15) is fetched meanwhile, its handler
    // queued behind other partitions' (all workers busy).
    await onBatch(batch(10));
    rebalancing = true; // A's heartbeat fails: A is abandoned and seeks back to 10
    await waitFor(() => !inflight.has(0), { what: 'A abandoned' });
    expect(m.seeks.get(0)).toBe('10');
    redisUp = true;
    rebalancing = false;
    await onBatch(batch(13)); // B's handler runs at last
    await new Promise((r) => setTimeout(r, 100));
    expect(applied).toEqual([]);
    expect(m.seeks.get(0)).toBe('10');
    expect(m.commits).toEqual([]);

    // The next fetch takes the seek: A again, then B.
    m.seeks.delete(0);
    await onBatch(batch(10));
    await onBatch(batch(13));
    await waitFor(() => applied.length === 6 && m.commits.at(-1) === '16', { what: 'A then B applied' });
    expect(applied).toEqual(['e10', 'e11', 'e12', 'e13', 'e14', 'e15']);
  });
});
