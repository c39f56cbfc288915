/**
 * A DLQ topic that refuses what extjob sends it (set up by someone else: compacted, or
 * with a small max.message.bytes) never stops a partition, and costs a bad message
 * only what the topic refuses of it.
 */
import { describe, expect, it } from 'vitest';
import type { ApplyResult, JobEvent } from '../../src/broker/types.js';
import { DLQ_HEADERS } from '../../src/consumers/dlq.js';
import { encodeStructured } from '../../src/consumers/formats/index.js';
import { waitFor } from '../helpers/index.js';
import { header, kafkaWorld } from './support.js';

/** A sink that applies everything, and what it was given. */
function recordingSink() {
  const applied: JobEvent[] = [];
  return {
    applied,
    async applyEvents(events: JobEvent[]): Promise<ApplyResult[]> {
      applied.push(...events);
      return events.map(() => 'applied');
    },
  };
}

/** One setting of the test's DLQ topic, as an operator would have set it. */
const setDlq = (w: Awaited<ReturnType<typeof kafkaWorld>>, name: string, value: string) =>
  w.admin.alterConfigs({
    validateOnly: false,
    resources: [{ type: 2, name: w.topics.dlq, configEntries: [{ name, value }] }],
  });

const log = (jobId: string): JobEvent => ({
  kind: 'log',
  jobId,
  id: `${jobId}-log-0`,
  source: 'test',
  type: 'dev.extjob.log.v1',
  seq: 0,
  chunk: 'line\n',
});

describe('a DLQ topic that refuses records', { timeout: 60_000 }, () => {
  it('compacted: a keyless bad message is dead-lettered keyed by its origin, and the partition goes on', async () => {
    const w = await kafkaWorld(1);
    await setDlq(w, 'cleanup.policy', 'compact');
    const sink = recordingSink();
    await w.produce([{ key: null, value: Buffer.from('not json') }, encodeStructured(log('after'))]);
    await w.startConsumer(sink, { retryInitialMs: 50, retryMaxMs: 200 });
    const [dead] = await w.readDlq(1);
    expect(dead?.key).toBe(`${w.topics.events}/0/0`);
    expect(dead?.value?.toString()).toBe('not json');
    expect(header(dead!.headers, DLQ_HEADERS.keyAdded)).toMatch(/^INVALID_RECORD: /);
    expect(header(dead!.headers, DLQ_HEADERS.reason)).toBe('malformed');
    await waitFor(
      async () => {
        const [p] = (await w.admin.fetchOffsets({ groupId: w.names.group, topics: [w.topics.events] }))[0]!
          .partitions;
        return p?.offset === '2';
      },
      { timeoutMs: 20_000, what: 'both offsets committed' },
    );
    expect(sink.applied.map((e) => e.jobId)).toEqual(['after']);
  });

  it('too small for a batch of them: each that fits alone keeps its value', async () => {
    const w = await kafkaWorld(1);
    await setDlq(w, 'max.message.bytes', '3000');
    // not JSON, 1200 bytes each: each fits with the DLQ headers, the two together do not;
    // the third fits nowhere
    await w.produce([
      { key: 'k1', value: Buffer.alloc(1200, 0x61), headers: { trace: 'one' } },
      { key: 'k2', value: Buffer.alloc(1200, 0x62), headers: { trace: 'two' } },
      { key: 'k3', value: Buffer.alloc(4000, 0x63), headers: { trace: 'three' } },
    ]);
    await w.startConsumer(recordingSink());
    const dead = await w.readDlq(3);
    const size = (trace: string) =>
      dead.find((r) => header(r.headers, 'trace') === trace)?.value?.length ?? null;
    expect([size('one'), size('two'), size('three')]).toEqual([1200, 1200, null]);
    const three = dead.find((r) => header(r.headers, 'trace') === 'three')!;
    expect(header(three.headers, DLQ_HEADERS.valueDropped)).toMatch(/^MESSAGE_TOO_LARGE: /);
  });
});
