/**
 * processBatch with a fake sink and a fake DLQ (pure logic; the Kafka and Redis paths
 * are covered by the integration tests): every message ends up applied or
 * dead-lettered exactly once, in offset order, whatever the mix and the failures.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ApplyResult, JobEvent } from '../../src/broker/types.js';
import { DLQ_HEADERS } from '../../src/consumers/dlq.js';
import { type EventSink, keyGroups, processBatch } from '../../src/consumers/event-batch.js';
import { encodeBinary, encodeStructured } from '../../src/consumers/formats/index.js';
import { createInstrumentation } from '../../src/consumers/instrumentation.js';
import type { InMessage, OutgoingMessage } from '../../src/consumers/kafka-types.js';
import { ExtjobError } from '../../src/shared/errors.js';

const control = { stillOwned: () => true, keepAlive: async () => true, initialDelayMs: 1, maxDelayMs: 2 };

function inMessage(
  offset: number,
  m: { key: string | null; value: Buffer | null; headers?: Record<string, string> },
): InMessage {
  return {
    key: m.key === null ? null : Buffer.from(m.key),
    value: m.value,
    headers: Object.fromEntries(Object.entries(m.headers ?? {}).map(([k, v]) => [k, Buffer.from(v)])),
    offset: String(offset),
    timestamp: '0',
    attributes: 0,
    size: 0,
  } as unknown as InMessage;
}

const event = (i: number, jobId: string): JobEvent => ({
  kind: 'heartbeat',
  jobId,
  id: `e-${i}`,
  source: 's',
  type: 'dev.extjob.heartbeat.v1',
});

type Spec = { kind: 'good' | 'garbage' | 'unknown' | 'refused'; binary: boolean };

describe('processBatch', () => {
  it('dead-letters or applies each message once, in offset order, through outages and refusals', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({ kind: fc.constantFrom('good', 'garbage', 'unknown', 'refused'), binary: fc.boolean() }),
          { minLength: 1, maxLength: 30 },
        ) as fc.Arbitrary<Spec[]>,
        fc.nat({ max: 3 }),
        fc.nat({ max: 2 }),
        fc.boolean(),
        async (specs, outages, dlqOutages, listening) => {
          const messages = specs.map((s, i) => {
            if (s.kind === 'garbage') return inMessage(i, { key: 'j', value: Buffer.from([0xff, i & 0xff]) });
            const jobId = s.kind === 'unknown' ? 'nojob' : s.kind === 'refused' ? 'refuse' : 'j';
            const enc = (s.binary ? encodeBinary : encodeStructured)(event(i, jobId));
            return inMessage(i, enc);
          });
          const applied: string[] = [];
          let failures = outages;
          const sink: EventSink = {
            applyEvents: async () => [],
            applyEventsDetailed: async (evs) => {
              if (failures-- > 0) throw new ExtjobError('EXTJOB_REDIS_UNAVAILABLE', 'down');
              if (evs.length > 1 && evs.some((e) => e.jobId === 'refuse'))
                throw new ExtjobError('EXTJOB_VALIDATION_FAILED', 'refused');
              return evs.map((e) => {
                if (e.jobId === 'refuse') throw new ExtjobError('EXTJOB_VALIDATION_FAILED', 'refused');
                if (e.jobId === 'nojob') return { result: 'unknown_job' as ApplyResult };
                applied.push(e.id);
                return { result: 'applied' as ApplyResult };
              });
            },
          };
          const dead: OutgoingMessage[] = [];
          let dlqFailures = dlqOutages;
          // what the metrics count (refused), whether or not per-event reports are listened to
          const instrumentation = createInstrumentation();
          const refused: (string | undefined)[] = [];
          const reported: string[] = [];
          instrumentation.on('refused', (r) => refused.push(r.type));
          if (listening) instrumentation.on('event', (e) => reported.push(e.result));
          const report = await processBatch(
            { topic: 't', partition: 0, messages },
            {
              sink,
              control,
              instrumentation,
              sendDlq: async (m) => {
                if (dlqFailures-- > 0) throw new Error('kafka away');
                dead.push(...m);
              },
            },
          );
          expect(report.done).toBe(true);
          const goodIds = specs.flatMap((s, i) => (s.kind === 'good' ? [`e-${i}`] : []));
          // applied in offset order; a refused batch is re-applied one by one, so count distinct
          expect([...new Set(applied)]).toEqual(goodIds);
          const deadOffsets = dead.map((m) =>
            Number((m.headers as Record<string, string>)[DLQ_HEADERS.offset]),
          );
          expect(deadOffsets).toEqual(specs.flatMap((s, i) => (s.kind === 'good' ? [] : [i])));
          const reasons = dead.map((m) => (m.headers as Record<string, string>)[DLQ_HEADERS.reason]);
          expect(reasons).toEqual(
            specs.flatMap((s) =>
              s.kind === 'garbage'
                ? ['malformed']
                : s.kind === 'unknown'
                  ? ['unknown_job']
                  : s.kind === 'refused'
                    ? ['invalid']
                    : [],
            ),
          );
          // the broker answered for unknown jobs (and counted them); not for the rest
          expect(refused).toEqual(
            specs.flatMap((s) =>
              s.kind === 'garbage' ? [undefined] : s.kind === 'refused' ? ['dev.extjob.heartbeat.v1'] : [],
            ),
          );
          expect(reported).toEqual(
            listening
              ? specs.map((s) =>
                  s.kind === 'good' ? 'applied' : s.kind === 'unknown' ? 'unknown_job' : 'invalid',
                )
              : [],
          );
        },
      ),
      { numRuns: 60 },
    );
  });

  it('sends each group as soon as it is parsed and applies every job in offset order, retrying failed groups', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ job: fc.nat({ max: 9 }), binary: fc.boolean() }), {
          minLength: 1,
          maxLength: 120,
        }),
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.boolean(), { maxLength: 12 }),
        async (specs, groupMessages, failCalls) => {
          const messages = specs.map((s, i) =>
            inMessage(i, (s.binary ? encodeBinary : encodeStructured)(event(i, `job-${s.job}`))),
          );
          const applied: JobEvent[] = [];
          let calls = 0;
          const sink: EventSink = {
            applyEvents: async () => [],
            applyEventsDetailed: async (evs) => {
              // a failed call fails before any effect, as a Redis outage does
              if (failCalls[calls++]) throw new ExtjobError('EXTJOB_REDIS_UNAVAILABLE', 'down');
              applied.push(...evs);
              return evs.map(() => ({ result: 'applied' as ApplyResult }));
            },
          };
          const done = processBatch(
            { topic: 't', partition: 0, messages },
            { sink, control, groupMessages, sendDlq: async () => {} },
          );
          // every group went out before the first reply was awaited
          expect(calls).toBe(keyGroups(messages, groupMessages).length);
          const report = await done;
          expect(report).toEqual({ done: true, applied: specs.length, dead: 0 });
          expect(applied.length).toBe(specs.length);
          expect(new Set(applied.map((e) => e.id)).size).toBe(specs.length);
          for (let job = 0; job < 10; job++) {
            const order = applied.filter((e) => e.jobId === `job-${job}`).map((e) => Number(e.id.slice(2)));
            expect(order).toEqual([...order].sort((a, b) => a - b));
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  it('groups a batch by key, each key in one group in offset order', () => {
    const messages = Array.from({ length: 100 }, (_, i) =>
      inMessage(i, encodeStructured(event(i, `job-${i % 10}`))),
    );
    const groups = keyGroups(messages, 20);
    expect(groups.length).toBeGreaterThan(1);
    expect(groups.flat().sort((a, b) => a - b)).toEqual([...Array(100).keys()]);
    for (const g of groups) expect(g).toEqual([...g].sort((a, b) => a - b));
    const groupOf = (i: number) => groups.findIndex((g) => g.includes(i));
    for (let i = 10; i < 100; i++) expect(groupOf(i)).toBe(groupOf(i % 10));
    expect(keyGroups(messages, 100)).toEqual([[...Array(100).keys()]]);
  });

  it('abandons the batch (no DLQ, not done) when it stops being ours during an outage', async () => {
    let owned = true;
    const sink: EventSink = {
      applyEvents: async () => {
        owned = false;
        throw new ExtjobError('EXTJOB_REDIS_UNAVAILABLE', 'down');
      },
    };
    const dead: OutgoingMessage[] = [];
    const report = await processBatch(
      { topic: 't', partition: 0, messages: [inMessage(0, encodeStructured(event(0, 'j')))] },
      { sink, control: { ...control, stillOwned: () => owned }, sendDlq: async (m) => void dead.push(...m) },
    );
    expect(report.done).toBe(false);
    expect(dead).toEqual([]);
  });
});
