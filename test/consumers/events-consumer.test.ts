/**
 * The consumer's contract with a recording sink on the real Kafka broker: batches in
 * offset order, one applyEvents call per batch, bad messages and unknown jobs in the
 * DLQ with reasons and original bytes, offsets committed only after the effects.
 */
import { describe, expect, it } from 'vitest';
import type { ApplyResult, JobEvent } from '../../src/broker/types.js';
import { DLQ_HEADERS } from '../../src/consumers/dlq.js';
import { DEFAULT_LIMITS, encodeBinary, encodeStructured } from '../../src/consumers/formats/index.js';
import { createInstrumentation } from '../../src/consumers/instrumentation.js';
import { ExtjobError } from '../../src/shared/errors.js';
import { waitFor } from '../helpers/index.js';
import { header, kafkaWorld } from './support.js';

class RecordingSink {
  calls: JobEvent[][] = [];
  applied: JobEvent[] = [];
  failNext = 0;
  failWith: () => Error = () => new ExtjobError('EXTJOB_REDIS_UNAVAILABLE', 'Redis did not answer');
  /** While set, calls wait for it (a slow Redis). */
  gate: Promise<void> | undefined;
  async applyEvents(events: JobEvent[]): Promise<ApplyResult[]> {
    this.calls.push(events);
    await this.gate;
    if (this.failNext > 0) {
      this.failNext--;
      throw this.failWith();
    }
    return events.map((e) => {
      if (e.jobId.startsWith('nojob')) return 'unknown_job';
      this.applied.push(e);
      return 'applied';
    });
  }
}

const log = (jobId: string, seq: number): JobEvent => ({
  kind: 'log',
  jobId,
  id: `${jobId}-log-${seq}`,
  source: 'test',
  type: 'dev.extjob.log.v1',
  seq,
  chunk: Buffer.from(`line ${seq}\n`),
});

describe('events consumer (recording sink, real Kafka)', () => {
  it('applies events per job in partition order, in both binding modes', async () => {
    const w = await kafkaWorld(3);
    const sink = new RecordingSink();
    const jobs = ['a', 'b', 'c', 'd'];
    const msgs = [];
    for (let seq = 0; seq < 50; seq++)
      for (const j of jobs) msgs.push(seq % 2 ? encodeBinary(log(j, seq)) : encodeStructured(log(j, seq)));
    await w.produce(msgs);
    await w.startConsumer(sink);
    await waitFor(() => sink.applied.length >= 200, { what: '200 applied events' });
    for (const j of jobs)
      expect(sink.applied.filter((e) => e.jobId === j).map((e) => e.seq)).toEqual([...Array(50).keys()]);
    // one call per batch, never one per message
    expect(sink.calls.length).toBeLessThan(200);
  });

  it('dead-letters bad messages and unknown jobs with reasons, untouched, and applies the good ones behind them', async () => {
    const w = await kafkaWorld(1);
    const sink = new RecordingSink();
    const garbage = Buffer.from([0xde, 0xad, 0xbe, 0xef, 0xff]);
    await w.produce([
      { key: 'x', value: garbage, headers: { trace: 'keep-me' } },
      { key: 'x', value: '{"specversion":"1.0",' },
      {
        key: 'x',
        value: JSON.stringify({
          specversion: '1.0',
          id: '1',
          source: 's',
          type: 'dev.extjob.finished.v1',
          subject: 'x',
          data: { exitCode: 'zero' },
        }),
      },
      {
        key: 'x',
        value: JSON.stringify({
          specversion: '1.0',
          id: '2',
          source: 's',
          type: 'com.example.other',
          subject: 'x',
        }),
      },
      { key: 'x', value: Buffer.alloc(80 * 1024, 0x20) },
      encodeStructured(log('nojob-1', 1)),
      encodeStructured(log('good', 1)),
    ]);
    const instrumentation = createInstrumentation();
    const refused: (string | undefined)[] = [];
    instrumentation.on('event', (e) => {
      if (e.result === 'invalid') refused.push(e.type);
    });
    await w.startConsumer(sink, { limits: { ...DEFAULT_LIMITS, maxValueBytes: 64 * 1024 }, instrumentation });
    const dlq = await w.readDlq(6);
    // counted under their type where it could be read
    expect(refused).toEqual([undefined, undefined, 'dev.extjob.finished.v1', 'com.example.other', undefined]);
    expect(dlq.map((m) => header(m.headers, DLQ_HEADERS.reason))).toEqual([
      'malformed',
      'malformed',
      'invalid',
      'unsupported_type',
      'too_large',
      'unknown_job',
    ]);
    expect(dlq[0]!.value).toEqual(garbage);
    expect(header(dlq[0]!.headers, 'trace')).toBe('keep-me');
    expect(dlq[0]!.key).toBe('x');
    expect(header(dlq[2]!.headers, DLQ_HEADERS.detail)).toMatch(/data\.exitCode/);
    expect(dlq.map((m) => header(m.headers, DLQ_HEADERS.offset))).toEqual(['0', '1', '2', '3', '4', '5']);
    expect(header(dlq[0]!.headers, DLQ_HEADERS.topic)).toBe(w.topics.events);
    expect(header(dlq[0]!.headers, DLQ_HEADERS.partition)).toBe('0');
    await waitFor(() => sink.applied.some((e) => e.jobId === 'good'), { what: 'the good event' });
  });

  it('sends a record the DLQ topic refuses for its size without its value, and goes on', async () => {
    const w = await kafkaWorld(1);
    await w.admin.alterConfigs({
      validateOnly: false,
      resources: [
        {
          type: 2 /* TOPIC */,
          name: w.topics.dlq,
          configEntries: [{ name: 'max.message.bytes', value: '3000' }],
        },
      ],
    });
    const sink = new RecordingSink();
    await w.produce([
      { key: 'x', value: Buffer.alloc(4000, 0xff), headers: { trace: 'keep-me' } },
      encodeStructured(log('good', 1)),
    ]);
    await w.startConsumer(sink);
    const [rec] = await w.readDlq(1);
    expect(rec!.value).toBeNull();
    expect(header(rec!.headers, DLQ_HEADERS.reason)).toBe('malformed');
    expect(header(rec!.headers, DLQ_HEADERS.valueDropped)).toMatch(/^MESSAGE_TOO_LARGE: /);
    expect(header(rec!.headers, DLQ_HEADERS.offset)).toBe('0');
    expect(header(rec!.headers, 'trace')).toBe('keep-me');
    await waitFor(() => sink.applied.some((e) => e.jobId === 'good'), { what: 'the good event' });
  });

  it('waits out a retriable outage instead of dead-lettering, and counts keyless messages', async () => {
    const w = await kafkaWorld(1);
    const sink = new RecordingSink();
    sink.failNext = 3;
    const c = await w.startConsumer(sink, { retryInitialMs: 20, retryMaxMs: 100 });
    const retries: string[] = [];
    const keyProblems: string[] = [];
    c.instrumentation.on('retry', (r) => retries.push(r.operation));
    c.instrumentation.on('key_problem', (k) => keyProblems.push(k.problem));
    const m = encodeBinary(log('job-k', 1));
    await w.produce([{ ...m, key: null }, encodeBinary(log('job-k', 2))]);
    await waitFor(() => sink.applied.length >= 2, { what: 'both events after the outage' });
    expect(retries).toEqual(['apply', 'apply', 'apply']);
    expect(keyProblems).toEqual(['missing']);
  });

  it('isolates an event the broker rejects for good and dead-letters only that one', async () => {
    const w = await kafkaWorld(1);
    const sink = new RecordingSink();
    const real = sink.applyEvents.bind(sink);
    sink.applyEvents = async (events) => {
      if (events.some((e) => e.seq === 2))
        throw new ExtjobError('EXTJOB_PAYLOAD_TOO_LARGE', 'chunk over the limit');
      return real(events);
    };
    await w.produce([1, 2, 3].map((s) => encodeStructured(log('iso', s))));
    await w.startConsumer(sink);
    const dlq = await w.readDlq(1);
    expect(header(dlq[0]!.headers, DLQ_HEADERS.reason)).toBe('too_large');
    await waitFor(() => sink.applied.length >= 2, { what: 'the two acceptable events' });
    expect(sink.applied.map((e) => e.seq)).toEqual([1, 3]);
  });

  it('fetches the next batch while one is applied, applies it after, and commits only applied offsets', async () => {
    const w = await kafkaWorld(1);
    const sink = new RecordingSink();
    const real = sink.applyEvents.bind(sink);
    let open!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    let calls = 0;
    sink.applyEvents = async (events) => {
      if (calls++ === 0) await gate; // the first batch stays in Redis until the gate opens
      return real(events);
    };
    await w.startConsumer(sink, { commitIntervalMs: 10, maxWaitTimeMs: 100 });
    const committed = async () => {
      const [t] = await w.admin.fetchOffsets({ groupId: w.names.group, topics: [w.topics.events] });
      return Number(t?.partitions[0]?.offset ?? -1);
    };
    try {
      await w.produce([1, 2, 3].map((s) => encodeStructured(log('gated', s))));
      await waitFor(() => calls === 1, { what: 'the first batch in flight' });
      await w.produce([4, 5].map((s) => encodeStructured(log('gated', s))));
      // the next batch is fetched, but its effects wait for the first batch's
      await new Promise((r) => setTimeout(r, 500));
      expect(calls).toBe(1);
      expect(await committed()).toBeLessThan(1);
    } finally {
      open();
    }
    await waitFor(() => sink.applied.length >= 5, { what: 'all five' });
    expect(sink.applied.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    await waitFor(async () => (await committed()) === 5, { what: 'offset 5 committed' });
  });

  it('reads a batch again from its start when applying it failed unexpectedly', async () => {
    const w = await kafkaWorld(1);
    const sink = new RecordingSink();
    const c = await w.startConsumer(sink, { retryMaxMs: 50 });
    let failed = false;
    c.instrumentation.on('event', () => {
      if (failed) return;
      failed = true;
      throw new Error('a bug after the effects');
    });
    await w.produce([1, 2, 3].map((s) => encodeStructured(log('again', s))));
    await waitFor(() => failed, { what: 'the failure' });
    // produced after the failure, so never in the failed batch
    await w.produce([4].map((s) => encodeStructured(log('again', s))));
    await waitFor(() => sink.applied.some((e) => e.seq === 4), { what: 'the fourth' });
    // the failed batch was applied again (the broker would count the repeats as
    // duplicates), before anything after it
    expect(sink.applied.map((e) => e.seq)).toEqual([1, 2, 3, 1, 2, 3, 4]);
  });

  it('commits what was applied at stop: a new member resumes after the last applied batch', async () => {
    const w = await kafkaWorld(1);
    const first = new RecordingSink();
    // No commit falls due while running: only stop() commits what was applied.
    const c1 = await w.startConsumer(first, { commitIntervalMs: 600_000 });
    await w.produce([1, 2, 3].map((s) => encodeStructured(log('resume', s))));
    await waitFor(() => first.applied.length >= 3, { what: 'first three' });
    await c1.stop();
    await w.produce([4, 5].map((s) => encodeStructured(log('resume', s))));
    const second = new RecordingSink();
    await w.startConsumer(second);
    await waitFor(() => second.applied.length >= 2, { what: 'the two new ones' });
    expect(second.applied.map((e) => e.seq)).toEqual([4, 5]);
  });

  it('reports lag only for partitions it owns when batches finish after a rebalance', async () => {
    const w = await kafkaWorld(6);
    const messages = [0, 1, 2, 3, 4, 5].flatMap((p) =>
      Array.from({ length: 100 }, (_, i) => ({ ...encodeStructured(log(`lag-${p}`, i)), partition: p })),
    );
    for (let i = 0; i < messages.length; i += 100)
      await w.producer.send({ topic: w.topics.events, acks: -1, messages: messages.slice(i, i + 100) });
    // slow applies: small batches of every partition are under way when the group changes
    let slow = true;
    const sink = {
      async applyEvents(events: JobEvent[]): Promise<ApplyResult[]> {
        if (slow) await new Promise((r) => setTimeout(r, 5000));
        return events.map(() => 'applied' as const);
      },
    };
    const opts = { maxBytesPerPartition: 2000, sessionTimeoutMs: 10_000, heartbeatIntervalMs: 500 };
    const a = await w.startConsumer(sink, opts);
    const owned = () => [...(a as unknown as { assigned: Set<number> }).assigned];
    const lagged = new Map<number, number>(); // what the metrics keep: the last value a partition
    a.instrumentation.on('joined', () => lagged.clear());
    const strays: number[] = []; // reported while not ours (moved on, or in a rebalance)
    a.instrumentation.on('lag', (l) => {
      lagged.set(l.partition, l.lag);
      if (!owned().includes(l.partition)) strays.push(l.partition);
    });
    await new Promise((r) => setTimeout(r, 1000));
    const b = await w.startConsumer(sink, opts);
    const ownedB = () => [...(b as unknown as { assigned: Set<number> }).assigned];
    await waitFor(() => ownedB().length > 0 && owned().length + ownedB().length === 6, {
      timeoutMs: 30_000,
      what: 'the rebalance',
    });
    await new Promise((r) => setTimeout(r, 6000)); // the batches under way at the rebalance finish
    slow = false;
    await waitFor(() => [...lagged.values()].every((v) => v === 0) && lagged.size > 0, {
      timeoutMs: 30_000,
      what: 'the backlog drained',
    });
    for (const p of lagged.keys()) expect(owned()).toContain(p);
    expect(strays).toEqual([]);
  });

  it('finishes a batch under way at stop, its DLQ record too, and commits it', async () => {
    const w = await kafkaWorld(1);
    const first = new RecordingSink();
    let open!: () => void;
    first.gate = new Promise((r) => {
      open = r;
    });
    const c1 = await w.startConsumer(first, { commitIntervalMs: 600_000 });
    await w.produce([
      encodeStructured(log('inflight', 1)),
      { key: 'inflight', value: 'not json' },
      encodeStructured(log('inflight', 2)),
    ]);
    await waitFor(() => first.calls.length === 1, { what: 'the batch under way' });
    const stopping = c1.stop();
    await new Promise((r) => setTimeout(r, 200));
    open();
    await stopping;
    expect(first.applied.map((e) => e.seq)).toEqual([1, 2]);
    expect((await w.readDlq(1)).map((m) => String(m.value))).toEqual(['not json']);
    const [committed] = await w.admin.fetchOffsets({ groupId: w.names.group, topics: [w.topics.events] });
    expect(committed?.partitions[0]?.offset).toBe('3');
  });
});
