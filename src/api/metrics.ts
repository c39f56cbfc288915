/**
 * The Prometheus metrics of one process (names fixed by SPEC section 9). The broker,
 * the consumers and the webhook worker never import prom-client: they emit typed
 * instrumentation events, and instrumentMetrics() listens. Gauges that describe the
 * whole installation (jobs by state, outbox backlog) are read from Redis at scrape
 * time, so every process reports the same, correct value (aggregate them with max(),
 * not sum()). Every label is bounded: never a job id, event id or free text as is.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { legalTransitions } from '../broker/transitions.js';
import type { JobState } from '../broker/types.js';
import { JOB_STATES } from '../broker/types.js';
import { ROLES } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import { withTimeout } from '../shared/timeouts.js';
import { boundedLabel, eventTypeLabel, LabelLimiter } from './metrics-labels.js';

/**
 * Gauges of prom-client's defaults whose names end in _total, which Prometheus reserves
 * for counters (`promtool check metrics` flags them). Each is the sum of a by-type gauge
 * that stays (nodejs_active_handles{type} ...), so nothing is lost by dropping them.
 */
const MISNAMED_DEFAULTS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  for (const name of MISNAMED_DEFAULTS) registry.removeSingleMetric(name);
  return registry;
}

/** Something with EventEmitter's `on`; the payload types are checked at the listeners. */
export interface Listenable {
  // biome-ignore lint/suspicious/noExplicitAny: typed emitters of several shapes are accepted.
  on(event: string, listener: (payload: any) => void): unknown;
  // biome-ignore lint/suspicious/noExplicitAny: as above.
  off(event: string, listener: (payload: any) => void): unknown;
}

/** What the broker emits (see src/broker): the metrics read these fields only. */
export interface BrokerEventPayloads {
  job_created: { executor?: string };
  job_transition: {
    from: string;
    to: JobState;
    executor?: string;
    acceptLatencySeconds?: number;
    durationSeconds?: number;
  };
  /** One applyEvents call: outcomes[i] is what became of events[i]. */
  events_applied: {
    events: readonly { type?: string; time?: string }[];
    outcomes: readonly { result: string }[];
    applySeconds?: number;
  };
  timeout: { kind: string };
  timer_fired: { kind: string; lateSeconds: number; effect?: string };
}

/** What the Kafka side emits (src/consumers/instrumentation.ts). */
export interface ConsumerEventPayloads {
  refused: { type?: string };
  dlq: { reason: string };
  key_problem: { problem: string };
  lag: { topic?: string; partition: number; lag: number };
  batch: { seconds: number; size: number };
  retry: { operation: string };
  joined: unknown;
  stopped: unknown;
  published: { topic: string; count: number };
  outbox_dead: { reason: string };
  outbox_pending: { count: number };
}

/** What the webhook worker emits: one `delivery` per attempt that ended. */
export interface WebhookEventPayloads {
  delivery: { result: string };
}

/** An emitter, or something that has one as `instrumentation`. */
type Source = Listenable | { instrumentation: Listenable };
const emitterOf = (s: Source): Listenable => ('instrumentation' in s ? s.instrumentation : s);

export interface MetricSources {
  broker?: {
    instrumentation: Listenable;
    countsByState(): Promise<Record<JobState, number>>;
    /** Outbox entries not yet published (Redis), read at scrape time. */
    outboxPending?(): Promise<number>;
  };
  /** The events consumer and the outbox drainer, or their emitters (they may share one). */
  consumers?: Source | Source[];
  webhooks?: { instrumentation: Listenable };
  /** Roles this process runs (api, consume, schedule): extjob_roles{role}. */
  roles?: readonly string[];
  /** Whether the process is ready (the same verdict as /readyz), read at scrape time. */
  ready?: () => Promise<boolean>;
  logger?: Logger;
  /** Longest a scrape-time Redis read may take before the gauge is left out. Default 2000 ms. */
  collectTimeoutMs?: number;
  /** Distinct executor label values kept before the rest are reported as "other". */
  maxExecutors?: number;
}

const TERMINAL: ReadonlySet<string> = new Set(['passed', 'failed', 'canceled', 'timed_out', 'expired']);
const STATES: ReadonlySet<string> = new Set(JOB_STATES);
const RESULTS = new Set(['applied', 'duplicate', 'stale', 'late', 'invalid', 'unknown_job']);
const TIMEOUT_KINDS = new Set(['accept', 'heartbeat', 'run', 'cancel_grace']);
const TIMER_KINDS = new Set([...TIMEOUT_KINDS, 'retry']);
const DLQ_REASONS = new Set(['malformed', 'invalid', 'unsupported_type', 'too_large', 'unknown_job']);
const WEBHOOK_RESULTS = new Set(['delivered', 'failed', 'retried']);
const KEY_PROBLEMS = new Set(['missing', 'mismatch']);
const RETRY_OPERATIONS = new Set(['apply', 'dlq', 'publish']);
const OUTBOX_TOPICS = new Set(['changes', 'commands']);
const OUTBOX_DEAD_REASONS = new Set([
  'message_too_large',
  'record_list_too_large',
  'invalid_record',
  'corrupt_message',
]);

/** Buckets: job phases last seconds to hours; event handling lasts milliseconds. */
const LATENCY_BUCKETS = [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600];
const DURATION_BUCKETS = [
  1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 21600, 43200, 86400,
];
const APPLY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const LAG_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900];

/** Registers every extjob metric on `registry`; returns a function that stops listening. */
export function instrumentMetrics(registry: Registry, sources: MetricSources): () => void {
  const executors = new LabelLimiter(sources.maxExecutors ?? 100);
  const timeoutMs = sources.collectTimeoutMs ?? 2000;
  const r = [registry];
  const unsubscribe: (() => void)[] = [];
  const listen = <P>(
    from: Listenable | Listenable[] | undefined,
    name: string,
    fn: (payload: P) => void,
  ): void => {
    if (Array.isArray(from)) {
      for (const one of new Set(from)) listen(one, name, fn);
      return;
    }
    const source = from;
    if (!source) return;
    const safe = (payload: P) => {
      try {
        fn(payload);
      } catch (err) {
        sources.logger?.warn({ err, event: name }, 'metrics listener failed');
      }
    };
    source.on(name, safe);
    unsubscribe.push(() => source.off(name, safe));
  };
  /** Scrape-time reads under way (each settles within its deadline). */
  const reading = new Set<Promise<unknown>>();
  const collectErrors = new Counter({
    name: 'extjob_metrics_collect_errors_total',
    help: 'Scrape-time reads (Redis counters, readiness) that failed or timed out; the gauge is left out or NaN.',
    labelNames: ['gauge'],
    registers: r,
    async collect() {
      // A scrape collects every metric at once, this counter first (registered first):
      // let the gauges start their reads, then wait for them, so that the scrape whose
      // gauge is left out or NaN also shows the failure counted.
      await new Promise(setImmediate);
      await Promise.allSettled(reading);
    },
  });
  const scrapeRead = <T>(gauge: string, read: () => Promise<T>, ms = timeoutMs): Promise<T | undefined> => {
    const p = (async () => {
      try {
        return await withTimeout(read(), ms, `${gauge}: no answer within ${ms} ms`);
      } catch (err) {
        collectErrors.inc({ gauge });
        sources.logger?.warn({ err: (err as Error).message, gauge }, 'metrics: scrape-time read failed');
        return undefined;
      }
    })();
    reading.add(p);
    void p.finally(() => reading.delete(p));
    return p;
  };

  // --- jobs (broker) ---
  const broker = sources.broker;
  const created = new Counter({
    name: 'extjob_jobs_created_total',
    help: 'Jobs created, by executor.',
    labelNames: ['executor'],
    registers: r,
  });
  const finished = new Counter({
    name: 'extjob_jobs_finished_total',
    help: 'Jobs that reached a terminal state, by executor and state.',
    labelNames: ['executor', 'state'],
    registers: r,
  });
  const transitions = new Counter({
    name: 'extjob_job_transitions_total',
    help: 'Job state transitions, by from and to state (retries are running -> pending).',
    labelNames: ['from', 'to'],
    registers: r,
  });
  new Gauge({
    name: 'extjob_jobs',
    help: 'Jobs by state, from the Redis counters shared by every process (aggregate with max).',
    labelNames: ['state'],
    registers: r,
    async collect() {
      this.reset();
      if (!broker) return;
      const counts = await scrapeRead('extjob_jobs', () => broker.countsByState());
      if (!counts) return;
      for (const state of JOB_STATES) this.set({ state }, Number(counts[state] ?? 0));
    },
  });
  const acceptLatency = new Histogram({
    name: 'extjob_accept_latency_seconds',
    help: 'Time from job creation to acceptance by the executor (a retried attempt counts from creation too).',
    buckets: LATENCY_BUCKETS,
    registers: r,
  });
  const duration = new Histogram({
    name: 'extjob_job_duration_seconds',
    help: 'Time from acceptance (creation, for a job never accepted) to its terminal state, by that state.',
    labelNames: ['state'],
    buckets: DURATION_BUCKETS,
    registers: r,
  });
  const timeouts = new Counter({
    name: 'extjob_timeouts_total',
    help: 'Timeouts that fired and changed a job, by kind (accept, heartbeat, run, cancel_grace).',
    labelNames: ['kind'],
    registers: r,
  });

  const timerLateness = new Histogram({
    name: 'extjob_timer_lateness_seconds',
    help: 'How late a timer (accept, heartbeat, run, cancel_grace, retry) fired past its due time.',
    labelNames: ['kind'],
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
    registers: r,
  });

  // --- events ---
  // Counted per event, tens of thousands a second: each (type, result) series is looked
  // up once (labels() hashes its labels on every call), and an event only adds to a plain
  // number, handed to prom-client when a scrape reads the counter. Both labels are
  // bounded, and so is this map.
  const eventSeries = new Map<string, Map<string, { child: { inc(n: number): void }; n: number }>>();
  const events = new Counter({
    name: 'extjob_events_total',
    help: 'Executor events handled, by type and result (applied, duplicate, stale, late, invalid, unknown_job).',
    labelNames: ['type', 'result'],
    registers: r,
    collect() {
      for (const byResult of eventSeries.values())
        for (const series of byResult.values())
          if (series.n > 0) {
            series.child.inc(series.n);
            series.n = 0;
          }
    },
  });
  const countEvent = (type: string | undefined, result: string) => {
    const t = eventTypeLabel(type);
    let byResult = eventSeries.get(t);
    if (!byResult) {
      byResult = new Map();
      eventSeries.set(t, byResult);
    }
    let series = byResult.get(result);
    if (!series) {
      series = { child: events.labels({ type: t, result }), n: 0 };
      byResult.set(result, series);
    }
    series.n++;
  };
  const applySeconds = new Histogram({
    name: 'extjob_event_apply_seconds',
    help: 'Time of the pipelined Redis round trip that applied a batch of events (one observation a round trip).',
    buckets: APPLY_BUCKETS,
    registers: r,
  });
  const lagSeconds = new Histogram({
    name: 'extjob_event_lag_seconds',
    help: 'Time from the event time (CloudEvents time) to the event being applied.',
    buckets: LAG_BUCKETS,
    registers: r,
  });

  listen<BrokerEventPayloads['job_created']>(broker?.instrumentation, 'job_created', (p) => {
    created.inc({ executor: executors.label(p.executor) });
  });
  listen<BrokerEventPayloads['job_transition']>(broker?.instrumentation, 'job_transition', (p) => {
    const from = STATES.has(p.from) ? p.from : 'none';
    const to = STATES.has(p.to) ? p.to : 'other';
    transitions.inc({ from, to });
    if (p.to === 'running' && isSeconds(p.acceptLatencySeconds))
      acceptLatency.observe(p.acceptLatencySeconds);
    if (TERMINAL.has(p.to)) {
      finished.inc({ executor: executors.label(p.executor), state: p.to });
      if (isSeconds(p.durationSeconds)) duration.observe({ state: p.to }, p.durationSeconds);
    }
  });
  listen<BrokerEventPayloads['events_applied']>(broker?.instrumentation, 'events_applied', (p) => {
    // Events that never reach the broker (or that it refuses by throwing) are counted
    // from the consumers' instrumentation (below).
    const now = Date.now();
    p.events.forEach((e, i) => {
      const result = boundedLabel(p.outcomes[i]?.result, RESULTS);
      countEvent(e.type, result);
      if (result !== 'applied' || !e.time) return;
      const lag = Math.max(0, (now - Date.parse(e.time)) / 1000); // NaN for an unreadable time
      if (isSeconds(lag)) lagSeconds.observe(lag);
    });
    if (isSeconds(p.applySeconds)) applySeconds.observe(p.applySeconds);
  });
  listen<BrokerEventPayloads['timeout']>(broker?.instrumentation, 'timeout', (p) => {
    timeouts.inc({ kind: boundedLabel(p.kind, TIMEOUT_KINDS) });
  });
  listen<BrokerEventPayloads['timer_fired']>(broker?.instrumentation, 'timer_fired', (p) => {
    if (isSeconds(p.lateSeconds))
      timerLateness.observe({ kind: boundedLabel(p.kind, TIMER_KINDS) }, p.lateSeconds);
  });

  // --- Kafka side ---
  const consumers = [sources.consumers ?? []].flat().map(emitterOf);
  const dlq = new Counter({
    name: 'extjob_dlq_total',
    help: 'Messages written to the dead-letter topic, by reason.',
    labelNames: ['reason'],
    registers: r,
  });
  const lag = new Gauge({
    name: 'extjob_consumer_lag',
    help: 'Messages behind the high watermark on the events topic, per partition this process owns.',
    labelNames: ['partition'],
    registers: r,
  });
  const keyProblems = new Counter({
    name: 'extjob_event_key_problems_total',
    help: 'Events whose Kafka key was missing or not the job id (they are keyed by subject).',
    labelNames: ['problem'],
    registers: r,
  });
  const batchSeconds = new Histogram({
    name: 'extjob_consumer_batch_seconds',
    help: 'Time to handle one Kafka batch: parse, apply, dead-letter, commit.',
    buckets: APPLY_BUCKETS.map((b) => b * 10),
    registers: r,
  });
  const retries = new Counter({
    name: 'extjob_consumer_retries_total',
    help: 'Retriable failures (Redis or Kafka unavailable) that made a batch wait, by operation.',
    labelNames: ['operation'],
    registers: r,
  });
  const published = new Counter({
    name: 'extjob_outbox_published_total',
    help: 'Outbox entries published to Kafka, by topic (changes, commands).',
    labelNames: ['topic'],
    registers: r,
  });
  const outboxDead = new Counter({
    name: 'extjob_outbox_dead_total',
    help: 'Outbox records Kafka refused for good (too large, invalid), moved to the Redis dead stream, by reason.',
    labelNames: ['reason'],
    registers: r,
  });
  let pendingFromDrainer: number | undefined;
  new Gauge({
    name: 'extjob_outbox_pending',
    help: 'State changes written to Redis and not yet published to Kafka (aggregate with max).',
    registers: r,
    async collect() {
      this.reset();
      const read = broker?.outboxPending;
      const n = read
        ? await scrapeRead('extjob_outbox_pending', () => read.call(broker))
        : pendingFromDrainer;
      // Unlabelled gauges always have a value: NaN says "unknown" where 0 would lie.
      this.set(n ?? Number.NaN);
    },
  });

  listen<ConsumerEventPayloads['refused']>(consumers, 'refused', (p) => countEvent(p.type, 'invalid'));
  listen<ConsumerEventPayloads['dlq']>(consumers, 'dlq', (p) => {
    dlq.inc({ reason: boundedLabel(p.reason, DLQ_REASONS) });
  });
  listen<ConsumerEventPayloads['lag']>(consumers, 'lag', (p) => {
    if (Number.isInteger(p.partition) && p.partition >= 0)
      lag.set({ partition: String(p.partition) }, Math.max(0, p.lag));
  });
  // After a rebalance this process may own other partitions: forget the old ones.
  listen<unknown>(consumers, 'joined', () => lag.reset());
  listen<unknown>(consumers, 'stopped', () => lag.reset());
  listen<ConsumerEventPayloads['key_problem']>(consumers, 'key_problem', (p) => {
    keyProblems.inc({ problem: boundedLabel(p.problem, KEY_PROBLEMS) });
  });
  listen<ConsumerEventPayloads['batch']>(consumers, 'batch', (p) => {
    if (isSeconds(p.seconds)) batchSeconds.observe(p.seconds);
  });
  listen<ConsumerEventPayloads['retry']>(consumers, 'retry', (p) => {
    retries.inc({ operation: boundedLabel(p.operation, RETRY_OPERATIONS) });
  });
  listen<ConsumerEventPayloads['published']>(consumers, 'published', (p) => {
    published.inc({ topic: boundedLabel(p.topic, OUTBOX_TOPICS) }, p.count);
  });
  listen<ConsumerEventPayloads['outbox_dead']>(consumers, 'outbox_dead', (p) => {
    outboxDead.inc({ reason: boundedLabel(p.reason, OUTBOX_DEAD_REASONS) });
  });
  listen<ConsumerEventPayloads['outbox_pending']>(consumers, 'outbox_pending', (p) => {
    pendingFromDrainer = p.count;
  });

  // --- webhooks ---
  const webhooks = new Counter({
    name: 'extjob_webhook_deliveries_total',
    help: 'Webhook delivery attempts that ended, by result (delivered, retried, failed = gave up).',
    labelNames: ['result'],
    registers: r,
  });
  listen<WebhookEventPayloads['delivery']>(sources.webhooks?.instrumentation, 'delivery', (p) => {
    webhooks.inc({ result: boundedLabel(p.result, WEBHOOK_RESULTS) });
  });

  // --- process ---
  const ready = sources.ready;
  new Gauge({
    name: 'extjob_ready',
    help: '1 when the process is ready (Redis and Kafka reachable, consumers joined), else 0.',
    registers: r,
    async collect() {
      if (!ready) return this.set(1);
      // Readiness bounds its own checks (2 s each); this deadline only guards against a hang.
      const ok = await scrapeRead('extjob_ready', ready, timeoutMs + 3000);
      this.set(ok ? 1 : 0);
    },
  });

  // Every bounded label set exists from the start at 0: rate() and increase() see the
  // first increment, and "no failures" reads as 0 rather than as no data.
  const zero = <L extends string>(c: Counter<L>, label: L, values: Iterable<string>) => {
    for (const v of values) c.inc({ [label]: v } as Partial<Record<L, string>>, 0);
  };
  zero(collectErrors, 'gauge', ['extjob_jobs', 'extjob_outbox_pending', 'extjob_ready']);
  zero(timeouts, 'kind', TIMEOUT_KINDS);
  zero(dlq, 'reason', DLQ_REASONS);
  zero(keyProblems, 'problem', KEY_PROBLEMS);
  zero(retries, 'operation', RETRY_OPERATIONS);
  zero(published, 'topic', OUTBOX_TOPICS);
  zero(outboxDead, 'reason', OUTBOX_DEAD_REASONS);
  zero(webhooks, 'result', ['delivered', 'retried', 'failed']);
  for (const [from, to] of legalTransitions()) transitions.inc({ from, to }, 0);

  if (sources.roles) {
    const roles = new Gauge({
      name: 'extjob_roles',
      help: 'Roles this process runs: 1 for each of api, consume, schedule it runs, else 0.',
      labelNames: ['role'],
      registers: r,
    });
    for (const role of ROLES) roles.set({ role }, sources.roles.includes(role) ? 1 : 0);
  }

  return () => {
    for (const off of unsubscribe) off();
  };
}

const isSeconds = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;
