/**
 * The proof that the dashboard and the alerts work: a real `extjob serve` runs a mixed
 * workload while a private Prometheus scrapes it every second with the alert rules
 * loaded; then every PromQL expression of the dashboard and of the rules is evaluated
 * through Prometheus' HTTP API and must succeed and return series. /metrics must pass
 * `promtool check metrics`; the rules must pass `promtool check rules` and their unit
 * tests.
 *
 * Alert expressions are evaluated twice: as written (no error allowed; under a healthy
 * workload their condition is false, so they rightly return nothing) and with their
 * numeric thresholds removed (the underlying expression, which must return series).
 * Counters with a bounded label set start at 0 (failures included), so no expression
 * is allowed to come back empty.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { dashboardExpressions, grafanaDashboard } from '../../deploy/dashboard.js';
import type { JobState } from '../../src/broker/types.js';
import { topicNames } from '../../src/shared/config.js';
import { waitFor } from '../helpers/index.js';
import { hasPrometheus, type PromServer, promtool, startPrometheus } from './prometheus.js';
import { type Service, startService } from './serve.js';
import { connectClient, mixedWorkload, webhookWorkload } from './workload.js';

const ALERTS = resolve(import.meta.dirname, '../../deploy/prometheus/alerts.yml');
const ALERT_TESTS = resolve(import.meta.dirname, '../../deploy/prometheus/alerts.test.yml');

/** Grafana's variables, as the dashboard would send them with "All" instances. */
const grafanaToPromQL = (expr: string) =>
  expr.replaceAll('$__rate_interval', '1m').replaceAll('$instance', '.*');

/** The expression without its comparisons against numbers: what the alert looks at. */
const withoutThresholds = (expr: string) =>
  expr.replace(/\s*(==|!=|>=|<=|>|<)\s*-?[0-9][0-9.e+]*(?![\w:])/g, '').trim();

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
}
const rules = (): Rule[] =>
  (parse(readFileSync(ALERTS, 'utf8')) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);

describe.runIf(hasPrometheus())('metrics against a real Prometheus', () => {
  let serve: Service;
  let prom: PromServer;
  let metricsText = '';
  let expected: Map<string, JobState>;
  let eventTokens: string[] = [];

  beforeAll(async () => {
    // The workload's webhook receivers listen on 127.0.0.1.
    serve = await startService({ EXTJOB_WEBHOOK_ALLOW_PRIVATE: 'true' });
    prom = await startPrometheus({ targets: [serve.host], ruleFiles: [ALERTS] });
    await waitFor(async () => (await prom.query('up{job="extjob"} == 1')).length === 1, {
      timeoutMs: 20_000,
      what: 'Prometheus to scrape extjob',
    });
    const client = await connectClient(serve.url, topicNames(serve.iso.topicPrefix).events);
    try {
      ({ expected, eventTokens } = await mixedWorkload(client));
      await webhookWorkload(client, expected);
    } finally {
      await client.close();
    }
    // Prometheus has seen the end state: the Redis-backed gauge agrees with the workload.
    const passed = [...expected.values()].filter((s) => s === 'passed').length;
    await waitFor(async () => (await prom.query(`extjob_jobs{state="passed"} == ${passed}`)).length === 1, {
      timeoutMs: 20_000,
      what: `Prometheus to see ${passed} passed jobs`,
    });
    // Two more scrapes and rule evaluations, so rates and deriv have their points.
    const scrapes = await prom.query('count_over_time(up{job="extjob"}[1h])');
    const seen = Number(scrapes[0]?.value[1] ?? 0);
    await waitFor(
      async () =>
        Number((await prom.query('count_over_time(up{job="extjob"}[1h])'))[0]?.value[1] ?? 0) >= seen + 3,
      { timeoutMs: 20_000, what: 'three more scrapes' },
    );
    metricsText = await (await fetch(`${serve.url}/metrics`)).text();
  }, 180_000);

  afterAll(async () => {
    await prom?.stop();
    await serve?.stop();
  });

  it('counts what the workload did', async () => {
    const byState = new Map<string, number>();
    for (const s of expected.values()) byState.set(s, (byState.get(s) ?? 0) + 1);
    for (const [state, n] of byState) {
      const r = await prom.query(`max(extjob_jobs{state="${state}"})`);
      expect(Number(r[0]?.value[1]), `extjob_jobs{state="${state}"}`).toBe(n);
    }
    const finished = await prom.query('sum by (state) (extjob_jobs_finished_total)');
    const finishedBy = Object.fromEntries(finished.map((s) => [s.metric.state, Number(s.value[1])]));
    for (const [state, n] of byState)
      if (!['pending', 'running'].includes(state)) expect(finishedBy[state]).toBe(n);
    const results = await prom.query('sum by (result) (extjob_events_total)');
    const resultsBy = Object.fromEntries(results.map((s) => [s.metric.result, Number(s.value[1])]));
    for (const r of ['applied', 'duplicate', 'stale', 'late', 'invalid', 'unknown_job'])
      expect(resultsBy[r], `events with result ${r}`).toBeGreaterThan(0);
    const timeouts = await prom.query('sum by (kind) (extjob_timeouts_total) > 0');
    expect(timeouts.map((s) => s.metric.kind).sort()).toEqual(['accept', 'cancel_grace', 'heartbeat', 'run']);
    const hooks = await prom.query('sum by (result) (extjob_webhook_deliveries_total) > 0');
    expect(hooks.map((s) => s.metric.result).sort()).toEqual(['delivered', 'failed', 'retried']);
    const dlq = await prom.query('sum by (reason) (extjob_dlq_total) > 0');
    expect(dlq.map((s) => s.metric.reason).sort()).toEqual([
      'invalid',
      'malformed',
      'unknown_job',
      'unsupported_type',
    ]);
  });

  it('evaluates every dashboard expression with series', async () => {
    const failures: string[] = [];
    for (const { panel, expr, legend } of dashboardExpressions()) {
      const promql = grafanaToPromQL(expr);
      // Every {{label}} of the legend must be a label the expression keeps.
      const wanted = [...legend.matchAll(/\{\{(\w+)\}\}/g)].map((m) => m[1]!);
      try {
        const series = await prom.query(promql);
        if (series.length === 0) failures.push(`${panel}: no series for ${promql}`);
        for (const s of series)
          for (const label of wanted)
            if (s.metric[label] === undefined)
              failures.push(`${panel}: legend {{${label}}} not in ${promql}`);
      } catch (err) {
        failures.push(`${panel}: ${(err as Error).message}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('answers the dashboard variable query label_values(extjob_ready, instance)', async () => {
    const dashboard = grafanaDashboard() as { templating: { list: { name: string; definition?: string }[] } };
    const def = dashboard.templating.list.find((v) => v.name === 'instance')?.definition;
    const m = /^label_values\((\w+), (\w+)\)$/.exec(def ?? '');
    expect(m).not.toBeNull();
    const res = await fetch(
      `${prom.url}/api/v1/label/${m![2]}/values?${new URLSearchParams({ 'match[]': m![1]! })}`,
    );
    const body = (await res.json()) as { data: string[] };
    expect(body.data).toEqual([serve.host]);
  });

  it('evaluates every rule, as written and without thresholds', async () => {
    const failures: string[] = [];
    for (const rule of rules()) {
      const name = rule.alert ?? rule.record ?? '?';
      try {
        await prom.query(rule.expr);
        const underlying = withoutThresholds(rule.expr);
        const series = await prom.query(underlying);
        if (series.length === 0) failures.push(`${name}: no series for ${underlying}`);
      } catch (err) {
        failures.push(`${name}: ${(err as Error).message}`);
      }
    }
    expect(failures).toEqual([]);
    // Prometheus evaluated the loaded rules itself, without errors.
    const res = (await (await fetch(`${prom.url}/api/v1/rules`)).json()) as {
      data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] };
    };
    const loaded = res.data.groups.flatMap((g) => g.rules);
    expect(loaded).toHaveLength(rules().length);
    expect(loaded.filter((r) => r.health !== 'ok')).toEqual([]);
  });

  it('fires the webhook-failure alert on the rejected delivery of the workload, and nothing else', async () => {
    type Alert = { labels: { alertname: string }; state: string };
    const alerts = async () =>
      ((await (await fetch(`${prom.url}/api/v1/alerts`)).json()) as { data: { alerts: Alert[] } }).data
        .alerts;
    await waitFor(
      async () =>
        (await alerts()).some((a) => a.labels.alertname === 'ExtjobWebhookFailures' && a.state === 'firing'),
      { timeoutMs: 20_000, what: 'ExtjobWebhookFailures to fire' },
    );
    const firing = (await alerts()).filter((a) => a.state === 'firing').map((a) => a.labels.alertname);
    expect(firing).toEqual(['ExtjobWebhookFailures']);
  });

  it('logs JSON lines, requests with their job and event ids, and never a token or secret', () => {
    const lines = serve
      .output()
      .split('\n')
      .filter((l) => l.trim());
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const requests = parsed.filter((l) => l.msg === 'request') as {
      jobId?: string;
      eventId?: string;
      http: { route: string; status: string };
    }[];
    expect(requests.some((r) => r.http.route === '/v1/jobs' && r.http.status === '201')).toBe(true);
    const posted = requests.filter((r) => r.http.route === '/v1/jobs/:id/events');
    expect(posted.length).toBeGreaterThan(0);
    for (const r of posted) {
      expect(r.jobId).toMatch(/^viahttp-/);
      expect(r.eventId).toBeDefined();
    }
    const text = lines.join('\n');
    expect(eventTokens.length).toBeGreaterThan(5);
    for (const token of eventTokens) expect(text).not.toContain(token);
    expect(text).not.toContain('hook-secret-0123456789');
  });

  it('serves /metrics that promtool check metrics accepts', () => {
    const r = promtool(['check', 'metrics'], metricsText);
    expect(r.output).toBe('');
    expect(r.status).toBe(0);
  });

  it('serves every SPEC section 9 metric name', () => {
    for (const name of [
      'extjob_jobs_created_total',
      'extjob_jobs_finished_total',
      'extjob_jobs',
      'extjob_events_total',
      'extjob_event_apply_seconds',
      'extjob_event_lag_seconds',
      'extjob_accept_latency_seconds',
      'extjob_job_duration_seconds',
      'extjob_timeouts_total',
      'extjob_dlq_total',
      'extjob_webhook_deliveries_total',
      'extjob_consumer_lag',
      'extjob_outbox_pending',
    ])
      expect(metricsText, name).toMatch(new RegExp(`^# TYPE ${name.replace(/_total$/, '(_total)?')} `, 'm'));
    // Bounded labels: no job id ever appears in a series.
    for (const id of expected.keys()) expect(metricsText).not.toContain(id);
  });
});

describe.runIf(hasPrometheus())('alert rules', () => {
  it('pass promtool check rules and their unit tests', () => {
    const check = promtool(['check', 'rules', ALERTS]);
    expect(check.output).toContain('SUCCESS');
    expect(check.status).toBe(0);
    const tests = promtool(['test', 'rules', ALERT_TESTS]);
    expect(tests.output).toContain('SUCCESS');
    expect(tests.status).toBe(0);
  });
});

describe('threshold stripping', () => {
  it('removes comparisons with numbers and keeps the rest', () => {
    expect(withoutThresholds('max(x) > 0\nand\nsum(increase(y[1h])) == 0')).toBe(
      'max(x)\nand\nsum(increase(y[1h]))',
    );
    expect(withoutThresholds('extjob:a:sum > 1000 and deriv(extjob:a:sum[10m]) > 0')).toBe(
      'extjob:a:sum and deriv(extjob:a:sum[10m])',
    );
  });
});
