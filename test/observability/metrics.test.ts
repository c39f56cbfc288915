/**
 * Unit tests of the metrics module: instrumentation events in, Prometheus series out,
 * with fake emitters (pure logic; the end-to-end proof is prometheus.test.ts).
 */
import { EventEmitter } from 'node:events';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { instrumentMetrics } from '../../src/api/metrics.js';
import { eventTypeLabel, LabelLimiter } from '../../src/api/metrics-labels.js';
import type { JobState } from '../../src/broker/types.js';
import { JOB_STATES } from '../../src/broker/types.js';
import { createInstrumentation } from '../../src/consumers/instrumentation.js';

const zeroCounts = () => Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>;

/** The value of one series in the text format, or undefined when absent. */
async function sample(registry: Registry, series: string): Promise<number | undefined> {
  const text = await registry.metrics();
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    if (line.slice(0, at) === series) return Number(line.slice(at + 1));
  }
  return undefined;
}

function setup(overrides: Partial<Parameters<typeof instrumentMetrics>[1]> = {}) {
  const registry = new Registry();
  const broker = new EventEmitter();
  const consumers = createInstrumentation();
  const webhooks = new EventEmitter();
  let counts = zeroCounts();
  const stop = instrumentMetrics(registry, {
    broker: {
      instrumentation: broker,
      countsByState: async () => counts,
      outboxPending: async () => 7,
    },
    consumers: { instrumentation: consumers },
    webhooks: { instrumentation: webhooks },
    ...overrides,
  });
  return {
    registry,
    broker,
    consumers,
    webhooks,
    stop,
    setCounts: (c: Partial<Record<JobState, number>>) => {
      counts = { ...zeroCounts(), ...c };
    },
  };
}

describe('instrumentMetrics', () => {
  it('counts jobs created and finished by executor and state, with duration and accept latency', async () => {
    const { registry, broker } = setup();
    broker.emit('job_created', { executor: 'argocd' });
    broker.emit('job_created', {});
    broker.emit('job_transition', {
      from: 'pending',
      to: 'running',
      executor: 'argocd',
      acceptLatencySeconds: 3,
    });
    broker.emit('job_transition', { from: 'running', to: 'passed', executor: 'argocd', durationSeconds: 42 });
    broker.emit('job_transition', { from: 'running', to: 'pending', executor: 'argocd' });
    expect(await sample(registry, 'extjob_jobs_created_total{executor="argocd"}')).toBe(1);
    expect(await sample(registry, 'extjob_jobs_created_total{executor="none"}')).toBe(1);
    expect(await sample(registry, 'extjob_jobs_finished_total{executor="argocd",state="passed"}')).toBe(1);
    expect(await sample(registry, 'extjob_job_transitions_total{from="running",to="pending"}')).toBe(1);
    expect(await sample(registry, 'extjob_accept_latency_seconds_count')).toBe(1);
    expect(await sample(registry, 'extjob_accept_latency_seconds_sum')).toBe(3);
    expect(await sample(registry, 'extjob_job_duration_seconds_sum{state="passed"}')).toBe(42);
    // A retry is not a finish.
    expect(
      await sample(registry, 'extjob_jobs_finished_total{executor="argocd",state="pending"}'),
    ).toBeUndefined();
  });

  it('reads extjob_jobs{state} and extjob_outbox_pending from the broker at scrape time', async () => {
    const { registry, setCounts } = setup();
    setCounts({ running: 3, passed: 10 });
    expect(await sample(registry, 'extjob_jobs{state="running"}')).toBe(3);
    expect(await sample(registry, 'extjob_jobs{state="passed"}')).toBe(10);
    expect(await sample(registry, 'extjob_jobs{state="expired"}')).toBe(0);
    setCounts({ running: 1 });
    expect(await sample(registry, 'extjob_jobs{state="running"}')).toBe(1);
    expect(await sample(registry, 'extjob_outbox_pending')).toBe(7);
  });

  it('leaves a gauge out and counts the failure when its Redis read fails or hangs', async () => {
    const registry = new Registry();
    instrumentMetrics(registry, {
      broker: {
        instrumentation: new EventEmitter(),
        countsByState: () => Promise.reject(new Error('redis down')),
        outboxPending: () => new Promise(() => {}),
      },
      collectTimeoutMs: 50,
    });
    const text = await registry.metrics();
    expect(text).not.toMatch(/^extjob_jobs\{/m);
    expect(text).toMatch(/^extjob_outbox_pending nan$/im);
    // The scrape that left the gauges out counts their failures too, once per scrape.
    expect(text).toMatch(/^extjob_metrics_collect_errors_total\{gauge="extjob_jobs"\} 1$/m);
    expect(text).toMatch(/^extjob_metrics_collect_errors_total\{gauge="extjob_outbox_pending"\} 1$/m);
    const next = await registry.metrics();
    expect(next).toMatch(/^extjob_metrics_collect_errors_total\{gauge="extjob_jobs"\} 2$/m);
    expect(next).toMatch(/^extjob_metrics_collect_errors_total\{gauge="extjob_outbox_pending"\} 2$/m);
  });

  it('counts events once: results from the broker, invalid ones from the consumers', async () => {
    const { registry, broker, consumers } = setup();
    const finished = { type: 'dev.extjob.finished.v1' };
    const halfSecondAgo = new Date(Date.now() - 500).toISOString();
    broker.emit('events_applied', {
      events: [{ ...finished, time: halfSecondAgo }, finished, { ...finished, time: 'not a time' }],
      outcomes: [{ result: 'applied' }, { result: 'duplicate' }, { result: 'applied' }],
      applySeconds: 0.002,
    });
    broker.emit('events_applied', {
      events: [{ ...finished, time: halfSecondAgo }],
      outcomes: [{ result: 'duplicate' }],
      applySeconds: 0.001,
    });
    // The broker counts what it answered for; the consumers count what never reached it.
    broker.emit('events_applied', {
      events: [{ type: 'dev.extjob.heartbeat.v1' }],
      outcomes: [{ result: 'invalid', reason: 'attempt 5 does not exist yet' }],
      applySeconds: 0.001,
    });
    consumers.emit('refused', { type: undefined });
    consumers.emit('refused', { type: 'com.example.whatever' });
    consumers.emit('dlq', { reason: 'malformed' });
    expect(
      await sample(registry, 'extjob_events_total{type="dev.extjob.finished.v1",result="applied"}'),
    ).toBe(2);
    expect(
      await sample(registry, 'extjob_events_total{type="dev.extjob.finished.v1",result="duplicate"}'),
    ).toBe(2);
    expect(
      await sample(registry, 'extjob_events_total{type="dev.extjob.heartbeat.v1",result="invalid"}'),
    ).toBe(1);
    expect(await sample(registry, 'extjob_events_total{type="unknown",result="invalid"}')).toBe(1);
    expect(await sample(registry, 'extjob_events_total{type="other",result="invalid"}')).toBe(1);
    expect(await sample(registry, 'extjob_dlq_total{reason="malformed"}')).toBe(1);
    // one observation a round trip; a lag only for applied events with a readable time
    expect(await sample(registry, 'extjob_event_apply_seconds_count')).toBe(3);
    expect(await sample(registry, 'extjob_event_lag_seconds_count')).toBe(1);
    const lag = await sample(registry, 'extjob_event_lag_seconds_sum');
    expect(lag).toBeGreaterThanOrEqual(0.5);
    expect(lag).toBeLessThan(30);
    // counts reach prom-client at scrape time, and every scrape sees the ones since
    broker.emit('events_applied', {
      events: [finished],
      outcomes: [{ result: 'applied' }],
      applySeconds: 0.001,
    });
    expect(
      await sample(registry, 'extjob_events_total{type="dev.extjob.finished.v1",result="applied"}'),
    ).toBe(3);
  });

  it('keeps consumer lag per owned partition and forgets it on a rebalance', async () => {
    const { registry, consumers } = setup();
    consumers.emit('lag', { topic: 'x.events', partition: 0, lag: 5 });
    consumers.emit('lag', { topic: 'x.events', partition: 3, lag: 0 });
    expect(await sample(registry, 'extjob_consumer_lag{partition="0"}')).toBe(5);
    expect(await sample(registry, 'extjob_consumer_lag{partition="3"}')).toBe(0);
    consumers.emit('joined', { groupId: 'g', memberId: 'm', partitions: 1 });
    expect(await sample(registry, 'extjob_consumer_lag{partition="0"}')).toBeUndefined();
  });

  it('counts timeouts, webhook deliveries, and bounds unknown label values', async () => {
    const { registry, broker, webhooks, consumers } = setup();
    broker.emit('timeout', { kind: 'heartbeat' });
    broker.emit('timeout', { kind: 'job-123' });
    broker.emit('timer_fired', { kind: 'retry', lateSeconds: 0.2, effect: 'ok' });
    webhooks.emit('delivery', { result: 'failed' });
    webhooks.emit('delivery', { result: 'https://secret.example/hook' });
    (consumers as EventEmitter).emit('dlq', { reason: 'something new' });
    expect(await sample(registry, 'extjob_timeouts_total{kind="heartbeat"}')).toBe(1);
    expect(await sample(registry, 'extjob_timeouts_total{kind="other"}')).toBe(1);
    expect(await sample(registry, 'extjob_timer_lateness_seconds_count{kind="retry"}')).toBe(1);
    expect(await sample(registry, 'extjob_webhook_deliveries_total{result="failed"}')).toBe(1);
    expect(await sample(registry, 'extjob_webhook_deliveries_total{result="other"}')).toBe(1);
    expect(await sample(registry, 'extjob_dlq_total{reason="other"}')).toBe(1);
  });

  it('never lets executor names grow the series without bound', async () => {
    const { registry, broker } = setup({ maxExecutors: 3 });
    for (let i = 0; i < 50; i++) broker.emit('job_created', { executor: `exec-${i}` });
    const text = await registry.metrics();
    const series = text.split('\n').filter((l) => l.startsWith('extjob_jobs_created_total{'));
    expect(series).toHaveLength(4);
    expect(await sample(registry, 'extjob_jobs_created_total{executor="other"}')).toBe(47);
  });

  it('reports readiness as extjob_ready and stops listening when asked', async () => {
    let ready = true;
    const { registry, broker, stop } = setup({ ready: async () => ready });
    expect(await sample(registry, 'extjob_ready')).toBe(1);
    ready = false;
    expect(await sample(registry, 'extjob_ready')).toBe(0);
    stop();
    broker.emit('job_created', { executor: 'late' });
    expect(await sample(registry, 'extjob_jobs_created_total{executor="late"}')).toBeUndefined();
  });

  it('listens to the events consumer and the outbox drainer, once per shared emitter', async () => {
    const registry = new Registry();
    const consumer = createInstrumentation();
    const drainer = createInstrumentation();
    instrumentMetrics(registry, {
      consumers: [{ instrumentation: consumer }, { instrumentation: drainer }, drainer],
    });
    consumer.emit('dlq', { reason: 'invalid' });
    drainer.emit('published', { topic: 'changes', count: 3 });
    drainer.emit('outbox_pending', { count: 4 });
    expect(await sample(registry, 'extjob_dlq_total{reason="invalid"}')).toBe(1);
    expect(await sample(registry, 'extjob_outbox_published_total{topic="changes"}')).toBe(3);
    expect(await sample(registry, 'extjob_outbox_pending')).toBe(4);
  });

  it('starts every bounded counter at 0, so the first increment and "no failures" are visible', async () => {
    const { registry } = setup();
    expect(await sample(registry, 'extjob_timeouts_total{kind="cancel_grace"}')).toBe(0);
    expect(await sample(registry, 'extjob_dlq_total{reason="too_large"}')).toBe(0);
    expect(await sample(registry, 'extjob_webhook_deliveries_total{result="failed"}')).toBe(0);
    expect(await sample(registry, 'extjob_consumer_retries_total{operation="apply"}')).toBe(0);
    expect(await sample(registry, 'extjob_job_transitions_total{from="none",to="pending"}')).toBe(0);
    // Only legal transitions are pre-created.
    expect(
      await sample(registry, 'extjob_job_transitions_total{from="passed",to="running"}'),
    ).toBeUndefined();
  });

  it('reports the roles of the process', async () => {
    const { registry } = setup({ roles: ['api', 'schedule'] });
    expect(await sample(registry, 'extjob_roles{role="api"}')).toBe(1);
    expect(await sample(registry, 'extjob_roles{role="consume"}')).toBe(0);
    expect(await sample(registry, 'extjob_roles{role="schedule"}')).toBe(1);
  });

  it('a listener that throws on a bad payload does not break the emitter', () => {
    const { broker } = setup();
    expect(() => broker.emit('job_transition', null)).not.toThrow();
  });
});

describe('label bounds', () => {
  it('folds event types into a fixed vocabulary', () => {
    expect(eventTypeLabel('dev.extjob.log.v1')).toBe('dev.extjob.log.v1');
    expect(eventTypeLabel('dev.cdevents.taskrun.finished.0.1.1')).toBe('dev.cdevents.taskrun.finished');
    expect(eventTypeLabel('dev.extjob.log.v2')).toBe('other');
    expect(eventTypeLabel(undefined)).toBe('unknown');
  });

  it('cleans executor names to a safe alphabet and length', () => {
    const l = new LabelLimiter(10);
    expect(l.label('argo cd "prod"\n')).toBe('argo_cd__prod__');
    expect(l.label('x'.repeat(200))).toHaveLength(64);
  });
});
