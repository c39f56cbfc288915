/**
 * Executor events end to end on the real Kafka broker and the real broker on Redis:
 * every event type in both CloudEvents bindings and as CDEvents, the delivery rules
 * of SPEC 5.2-5.4 (duplicates, stale attempts, sloppy order, late log chunks), bad
 * input in the DLQ with good events behind it applied, and messages written by kcat.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { describe, expect, it, onTestFinished } from 'vitest';
import { instrumentMetrics } from '../../src/api/metrics.js';
import type { JobEvent } from '../../src/broker/types.js';
import { DLQ_HEADERS } from '../../src/consumers/dlq.js';
import { DEFAULT_LIMITS, encodeBinary, encodeStructured } from '../../src/consumers/formats/index.js';
import type { EventResult } from '../../src/consumers/instrumentation.js';
import { kafkaBrokers, waitFor } from '../helpers/index.js';
import { brokerWorld, header, kafkaWorld } from './support.js';

interface CdEvent {
  context: { id: string; source: string; type: string };
  subject: { id: string; content: Record<string, unknown> };
}
const fixture = (name: string): CdEvent =>
  JSON.parse(readFileSync(new URL(`../fixtures/cdevents/${name}.json`, import.meta.url), 'utf8'));

let n = 0;
const ev = (jobId: string, kind: JobEvent['kind'], extra: Partial<JobEvent> = {}): JobEvent => ({
  kind,
  jobId,
  id: `e-${++n}`,
  source: '/test/executor',
  type: `dev.extjob.${kind}.v1`,
  time: new Date().toISOString(),
  ...extra,
});

async function setup(opts: { partitions?: number; limits?: typeof DEFAULT_LIMITS } = {}) {
  const w = await kafkaWorld(opts.partitions ?? 3);
  const { broker, redis } = await brokerWorld(w.names.keyPrefix);
  const consumer = await w.startConsumer(broker, opts.limits ? { limits: opts.limits } : {});
  const results: { jobId?: string; result: EventResult; type?: string }[] = [];
  consumer.instrumentation.on('event', (e) =>
    results.push({ result: e.result, ...(e.type ? { type: e.type } : {}) }),
  );
  const count = (r: EventResult) => results.filter((x) => x.result === r).length;
  const job = async (id: string, extra: Record<string, unknown> = {}) => {
    await broker.createJob({ id, name: `job ${id}`, ...extra });
  };
  const state = async (id: string) => (await broker.getJob(id))?.state;
  const until = (id: string, s: string) =>
    waitFor(async () => (await state(id)) === s, { what: `${id} ${s}` });
  return { ...w, broker, redis, consumer, results, count, job, state, until };
}

describe('ingest end to end (real Kafka, real Redis)', () => {
  for (const mode of ['structured', 'binary'] as const) {
    it(`applies every event type in ${mode} mode`, async () => {
      const t = await setup();
      const enc = mode === 'binary' ? encodeBinary : encodeStructured;
      await t.job('ok');
      await t.job('bad');
      await t.job('cancel');
      const binaryLog = Buffer.from([0, 1, 2, 255]);
      await t.produce([
        enc(ev('ok', 'accepted', { executor: 'argocd', detailsUrl: 'https://argo.example/app/ok' })),
        enc(ev('ok', 'heartbeat', { progress: { percent: 50, phase: 'sync', message: 'half' } })),
        enc(ev('ok', 'log', { seq: 0, chunk: Buffer.from('hello\n') })),
        enc(ev('ok', 'log', { seq: 1, chunk: binaryLog })),
        enc(ev('ok', 'finished', { exitCode: 0, summary: 'synced', lastSeq: 1 })),
        enc(ev('bad', 'finished', { exitCode: 3, error: { type: 'SyncFailed', message: 'boom' } })),
        enc(ev('cancel', 'accepted')),
      ]);
      await t.until('ok', 'passed');
      await t.until('bad', 'failed');
      await t.until('cancel', 'running');
      await t.broker.cancelJob('cancel', { kind: 'api', caller: 'test' });
      await t.produce([enc(ev('cancel', 'canceled', { reason: 'asked' }))]);
      await t.until('cancel', 'canceled');

      const ok = (await t.broker.getJob('ok'))!;
      expect(ok).toMatchObject({ state: 'passed', exitCode: 0, detailsUrl: 'https://argo.example/app/ok' });
      expect(ok.progress).toMatchObject({ percent: 50, phase: 'sync' });
      const log = (await t.broker.readLog('ok', {}))!;
      expect(log.chunks.map((c) => c.seq)).toEqual([0, 1]);
      expect(Buffer.concat(log.chunks.map((c) => c.data))).toEqual(
        Buffer.concat([Buffer.from('hello\n'), binaryLog]),
      );
      expect(log.complete).toBe(true);
      expect((await t.broker.getJob('bad'))!).toMatchObject({ exitCode: 3, error: { type: 'SyncFailed' } });
      const transitions = (await t.broker.history('ok'))!.filter((h) => h.kind === 'transition');
      expect(transitions.map((h) => h.to)).toEqual(['pending', 'running', 'passed']);
    });
  }

  it('applies CDEvents taskrun started/finished, bare and as CloudEvent data', async () => {
    const t = await setup();
    const started = fixture('taskrun_started');
    const finished = fixture('taskrun_finished');
    // The conformance examples share one context.id; distinct events need distinct ids.
    finished.context.id = 'finished-1';
    await t.job('mySubject123');
    await t.produce([
      { key: 'mySubject123', value: JSON.stringify(started) },
      { key: 'mySubject123', value: JSON.stringify(finished) },
    ]);
    await t.until('mySubject123', 'failed');
    expect(await t.broker.getJob('mySubject123')).toMatchObject({
      exitCode: 1,
      error: { type: 'failure', message: 'Something went wrong\nWith some more details' },
      detailsUrl: 'https://www.example.com/mySubject123',
    });

    await t.job('cd-wrapped');
    const wrap = (doc: CdEvent, id: string, outcome?: string) => {
      const d = structuredClone(doc);
      d.subject.id = 'cd-wrapped';
      d.context.id = id;
      if (outcome) d.subject.content.outcome = outcome;
      return {
        key: 'cd-wrapped',
        value: JSON.stringify(d),
        headers: {
          ce_specversion: '1.0',
          ce_id: id,
          ce_source: d.context.source,
          ce_type: d.context.type,
          ce_subject: 'cd-wrapped',
          'content-type': 'application/json',
        },
      };
    };
    await t.produce([wrap(started, 'w-1'), wrap(finished, 'w-2', 'success')]);
    await t.until('cd-wrapped', 'passed');
    expect((await t.broker.getJob('cd-wrapped'))!.exitCode).toBe(0);
  });

  it('counts duplicates, stale attempts, out-of-order and late events without double effects', async () => {
    const t = await setup({ partitions: 1 });
    await t.job('dup');
    await t.job('sloppy');
    await t.job('retry', { retry: { limit: 1, backoffSeconds: 0 } });
    const accepted = ev('dup', 'accepted');
    const chunk = ev('dup', 'log', { seq: 0, chunk: Buffer.from('once\n') });
    await t.produce([
      encodeStructured(accepted),
      encodeBinary(accepted),
      encodeStructured(chunk),
      encodeStructured(chunk),
      // sloppy: log chunks out of order, finished before accepted, then stragglers
      encodeStructured(ev('sloppy', 'log', { seq: 2, chunk: Buffer.from('c') })),
      encodeStructured(ev('sloppy', 'log', { seq: 0, chunk: Buffer.from('a') })),
      encodeStructured(ev('sloppy', 'finished', { exitCode: 0, lastSeq: 2 })),
      encodeStructured(ev('sloppy', 'accepted')),
      encodeStructured(ev('sloppy', 'log', { seq: 1, chunk: Buffer.from('b') })),
      // retry: attempt 1 fails, attempt 2 starts; a heartbeat for attempt 1 is stale
      encodeStructured(ev('retry', 'accepted')),
      encodeStructured(ev('retry', 'finished', { exitCode: 1 })),
    ]);
    await t.until('sloppy', 'passed');
    await waitFor(async () => (await t.broker.getJob('retry'))?.attempt === 2, { what: 'attempt 2' });
    await t.produce([encodeStructured(ev('retry', 'heartbeat', { attempt: 1 }))]);
    await waitFor(() => t.count('stale') === 1, { what: 'a stale event' });

    expect(t.count('duplicate')).toBe(2);
    expect(t.count('late')).toBeGreaterThanOrEqual(1);
    expect((await t.broker.getJob('dup'))!.state).toBe('running');
    const dupLog = (await t.broker.readLog('dup', {}))!;
    expect(dupLog.chunks).toHaveLength(1);
    const sloppy = (await t.broker.readLog('sloppy', {}))!;
    expect(Buffer.concat(sloppy.chunks.map((c) => c.data)).toString()).toBe('abc');
    expect(sloppy.chunks.find((c) => c.seq === 1)?.late).toBe(true);
    expect(sloppy.gaps).toEqual([]);
    const hist = (await t.broker.history('dup'))!;
    expect(hist.filter((h) => h.kind === 'transition' && h.to === 'running')).toHaveLength(1);
  });

  it('dead-letters every kind of bad input with its reason and applies the good events behind it', async () => {
    const t = await setup({ partitions: 1, limits: { ...DEFAULT_LIMITS, maxValueBytes: 64 * 1024 } });
    const registry = new Registry();
    onTestFinished(instrumentMetrics(registry, { broker: t.broker, consumers: t.consumer }));
    await t.job('good');
    const ce = (o: Record<string, unknown>) =>
      JSON.stringify({ specversion: '1.0', id: `x-${++n}`, source: 's', subject: 'good', ...o });
    const bad = [
      { value: Buffer.from([0x80, 0x81, 0xfe, 0xff, 0x00]), reason: 'malformed' },
      { value: '{"specversion": "1.0", "id": ', reason: 'malformed' },
      { value: ce({ id: undefined, type: 'dev.extjob.accepted.v1' }), reason: 'invalid' },
      { value: ce({ type: 'dev.extjob.finished.v1', data: { exitCode: 'zero' } }), reason: 'invalid' },
      { value: ce({ type: 'dev.extjob.log.v1', data: { seq: -1, text: 'x' } }), reason: 'invalid' },
      { value: 'x'.repeat(70 * 1024), reason: 'too_large' },
      { value: ce({ type: 'dev.extjob.accepted.v1', subject: 'no-such-job' }), reason: 'unknown_job' },
      { value: ce({ type: 'com.example.deployed.v1' }), reason: 'unsupported_type' },
      // valid in form, refused by the broker: that attempt does not exist yet
      { value: ce({ type: 'dev.extjob.heartbeat.v1', data: { attempt: 5 } }), reason: 'invalid' },
    ];
    await t.produce([
      ...bad.map((b) => ({ key: 'good', value: b.value })),
      encodeStructured(ev('good', 'finished', { exitCode: 0 })),
    ]);
    await t.until('good', 'passed');
    const dlq = await t.readDlq(bad.length);
    expect(dlq.map((m) => header(m.headers, DLQ_HEADERS.reason))).toEqual(bad.map((b) => b.reason));
    expect(dlq.map((m) => m.value)).toEqual(bad.map((b) => Buffer.from(b.value)));
    expect(header(dlq[bad.length - 1]!.headers, DLQ_HEADERS.detail)).toMatch(/attempt 5/);
    expect(t.count('invalid')).toBe(bad.length - 1);
    expect(t.count('unknown_job')).toBe(1);
    // each counted once, whether the parser or the broker refused it
    const metrics = await registry.metrics();
    const total = (series: RegExp) => [...metrics.matchAll(series)].reduce((n, m) => n + Number(m[1]), 0);
    expect(total(/^extjob_events_total\{[^}]*result="invalid"\} (\d+)$/gm)).toBe(bad.length - 1);
    expect(total(/^extjob_dlq_total\{reason="invalid"\} (\d+)$/gm)).toBe(4);
    expect(total(/^extjob_events_total\{[^}]*result="unknown_job"\} (\d+)$/gm)).toBe(1);
  });

  it('dead-letters a log chunk over the chunk limit with the default limits, and keeps the job going', async () => {
    const t = await setup({ partitions: 1 });
    await t.job('big');
    const big = ev('big', 'log', { seq: 0, chunk: Buffer.alloc(600 * 1024, 0x41) }); // 800 KB as base64
    const msg = encodeStructured(big);
    msg.value = Buffer.from(
      msg.value.toString().replace(/"text":"A+"/, `"base64":"${big.chunk!.toString('base64')}"`),
    );
    await t.produce([msg, encodeStructured(ev('big', 'log', { seq: 1, chunk: Buffer.from('small') }))]);
    const dlq = await t.readDlq(1);
    expect(header(dlq[0]!.headers, DLQ_HEADERS.reason)).toBe('too_large');
    expect(dlq[0]!.value!.length).toBe(msg.value.length);
    await waitFor(async () => (await t.broker.readLog('big', {}))?.chunks.length === 1, {
      what: 'the small chunk',
    });
  });

  it('reads events produced by kcat in binary and structured mode', async () => {
    const t = await setup({ partitions: 1 });
    await t.job('kc');
    const kcat = (args: string[], input: string) => {
      const r = spawnSync('kcat', ['-b', kafkaBrokers().join(','), '-t', t.topics.events, '-P', ...args], {
        input,
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).toBe(0);
    };
    kcat(
      [
        '-k',
        'kc',
        '-H',
        'ce_specversion=1.0',
        '-H',
        'ce_id=kc-1',
        '-H',
        'ce_source=/gitops/hook',
        '-H',
        'ce_type=dev.extjob.accepted.v1',
        '-H',
        'ce_subject=kc',
        '-H',
        'content-type=application/json',
      ],
      '{"executor":"kcat"}\n',
    );
    await t.until('kc', 'running');
    kcat(
      ['-k', 'kc', '-H', 'content-type=application/cloudevents+json'],
      `${JSON.stringify({ specversion: '1.0', id: 'kc-2', source: '/gitops/hook', type: 'dev.extjob.finished.v1', subject: 'kc', data: { exitCode: 0 } })}\n`,
    );
    await t.until('kc', 'passed');
  });
});
