/**
 * The Grafana dashboard, as data: rows of panels, each with its PromQL. generate.ts
 * writes it to grafana/extjob.json; the observability tests evaluate every expression
 * against a real Prometheus scraping a real extjob.
 *
 * extjob_jobs and extjob_outbox_pending are installation-wide values that every process
 * reports: they are aggregated with max. Everything else is per process: summed.
 */

export interface PanelTarget {
  expr: string;
  legend: string;
}

export interface PanelDef {
  title: string;
  description: string;
  kind: 'timeseries' | 'stat';
  unit: string;
  targets: PanelTarget[];
  stacked?: boolean;
  /** Grid width (of 24); height is fixed per kind. */
  width: number;
}

export interface RowDef {
  title: string;
  panels: PanelDef[];
}

/** Grafana's own variable syntax, not a template literal. */
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana variable reference.
const DATASOURCE = { type: 'prometheus', uid: '${datasource}' };
const I = 'instance=~"$instance"';
const sel = (metric: string, extra = '') => `${metric}{${extra ? `${extra}, ` : ''}${I}}`;
const rate = (metric: string, extra = '') => `rate(${sel(metric, extra)}[$__rate_interval])`;
const quantiles = (bucket: string, by: string[], qs: number[], extra = ''): PanelTarget[] =>
  qs.map((q) => ({
    expr: `histogram_quantile(${q}, sum by (${['le', ...by].join(', ')}) (${rate(bucket, extra)}))`,
    legend: `p${Math.round(q * 100)}${by.map((b) => ` {{${b}}}`).join('')}`,
  }));

const ts = (
  title: string,
  description: string,
  unit: string,
  targets: PanelTarget[],
  width = 12,
  stacked = false,
): PanelDef => ({ title, description, kind: 'timeseries', unit, targets, width, stacked });
const stat = (title: string, description: string, unit: string, expr: string, width = 6): PanelDef => ({
  title,
  description,
  kind: 'stat',
  unit,
  targets: [{ expr, legend: title }],
  width,
});

export const ROWS: RowDef[] = [
  {
    title: 'Jobs',
    panels: [
      stat(
        'Active jobs',
        'Jobs pending, running or canceling (Redis counters).',
        'short',
        `max(sum by (instance) (${sel('extjob_jobs', 'state=~"pending|running|canceling"')}))`,
      ),
      stat(
        'Finished per minute',
        'Jobs reaching a terminal state, all processes.',
        'short',
        `sum(${rate('extjob_jobs_finished_total')}) * 60`,
      ),
      stat(
        'Not passed (ratio)',
        'Share of finished jobs that did not pass (failed, timed out, canceled, expired).',
        'percentunit',
        `sum(${rate('extjob_jobs_finished_total', 'state!="passed"')}) / sum(${rate('extjob_jobs_finished_total')})`,
      ),
      stat(
        'Ready processes',
        'Processes whose /readyz passes, of those scraped.',
        'short',
        `sum(${sel('extjob_ready')})`,
      ),
      ts(
        'Jobs by state',
        'Current jobs in each state (Redis counters, the same in every process: max).',
        'short',
        [{ expr: `max by (state) (${sel('extjob_jobs')})`, legend: '{{state}}' }],
        24,
        true,
      ),
      ts('Created by executor', 'Jobs created per second.', 'ops', [
        { expr: `sum by (executor) (${rate('extjob_jobs_created_total')})`, legend: '{{executor}}' },
      ]),
      ts('Finished by outcome', 'Jobs reaching each terminal state per second.', 'ops', [
        { expr: `sum by (state) (${rate('extjob_jobs_finished_total')})`, legend: '{{state}}' },
      ]),
      ts(
        'Accept latency',
        'Time from creation to the executor accepting the job (retried attempts count from creation).',
        's',
        quantiles('extjob_accept_latency_seconds_bucket', [], [0.5, 0.9, 0.99]),
      ),
      ts(
        'Job duration by outcome',
        'Time from acceptance (or creation) to the terminal state.',
        's',
        quantiles('extjob_job_duration_seconds_bucket', ['state'], [0.5, 0.9]),
      ),
      ts('Transitions', 'State transitions per second; running -> pending is a retry.', 'ops', [
        {
          expr: `sum by (from, to) (${rate('extjob_job_transitions_total')})`,
          legend: '{{from}} -> {{to}}',
        },
      ]),
      ts('Timeouts by kind', 'Timers that expired or timed out a job, or forced a cancel.', 'ops', [
        { expr: `sum by (kind) (${rate('extjob_timeouts_total')})`, legend: '{{kind}}' },
      ]),
    ],
  },
  {
    title: 'Events',
    panels: [
      ts('Events by result', 'Executor events handled per second, by result.', 'ops', [
        { expr: `sum by (result) (${rate('extjob_events_total')})`, legend: '{{result}}' },
      ]),
      ts('Events by type', 'Executor events handled per second, by CloudEvents type.', 'ops', [
        { expr: `sum by (type) (${rate('extjob_events_total')})`, legend: '{{type}}' },
      ]),
      ts('Dead letters by reason', 'Messages written to the DLQ topic per second.', 'ops', [
        { expr: `sum by (reason) (${rate('extjob_dlq_total')})`, legend: '{{reason}}' },
      ]),
      ts('Consumer lag', 'Events waiting on each partition of the events topic.', 'short', [
        { expr: `max by (partition) (${sel('extjob_consumer_lag')})`, legend: 'partition {{partition}}' },
      ]),
      ts(
        'Event apply time',
        'Time of each pipelined Redis round trip that applied a batch of events.',
        's',
        quantiles('extjob_event_apply_seconds_bucket', [], [0.5, 0.99]),
      ),
      ts(
        'Event lag',
        'From the event time the executor stamped to the effect in Redis.',
        's',
        quantiles('extjob_event_lag_seconds_bucket', [], [0.5, 0.99]),
      ),
      ts(
        'Key problems and retries',
        'Events without a job-id key; batches waiting on Redis or Kafka.',
        'ops',
        [
          {
            expr: `sum by (problem) (${rate('extjob_event_key_problems_total')})`,
            legend: 'key {{problem}}',
          },
          {
            expr: `sum by (operation) (${rate('extjob_consumer_retries_total')})`,
            legend: 'retry {{operation}}',
          },
        ],
      ),
      ts(
        'Batch time',
        'Time to parse, apply, dead-letter and commit one Kafka batch.',
        's',
        quantiles('extjob_consumer_batch_seconds_bucket', [], [0.5, 0.99]),
      ),
    ],
  },
  {
    title: 'Outbound',
    panels: [
      ts(
        'Outbox backlog',
        'State changes in Redis not yet published to Kafka (max: installation-wide).',
        'short',
        [{ expr: `max(${sel('extjob_outbox_pending')})`, legend: 'pending' }],
      ),
      ts('Published', 'Outbox entries published per second, by topic.', 'ops', [
        { expr: `sum by (topic) (${rate('extjob_outbox_published_total')})`, legend: '{{topic}}' },
      ]),
      ts('Webhook deliveries', 'Webhook attempts per second, by result (failed: gave up).', 'ops', [
        { expr: `sum by (result) (${rate('extjob_webhook_deliveries_total')})`, legend: '{{result}}' },
      ]),
      ts('Webhook failures', 'Deliveries given up after the last retry, per hour.', 'short', [
        {
          expr: `sum(increase(${sel('extjob_webhook_deliveries_total', 'result="failed"')}[1h]))`,
          legend: 'failed',
        },
      ]),
    ],
  },
  {
    title: 'Process health',
    panels: [
      ts('Up and ready', 'Scrape success and readiness per process.', 'short', [
        { expr: `up{job="extjob", ${I}}`, legend: 'up {{instance}}' },
        { expr: sel('extjob_ready'), legend: 'ready {{instance}}' },
      ]),
      ts('Processes by role', 'How many processes run each role (each must be at least 1).', 'short', [
        { expr: `sum by (role) (${sel('extjob_roles')})`, legend: '{{role}}' },
      ]),
      ts('HTTP requests by status', 'Requests answered per second.', 'reqps', [
        { expr: `sum by (status) (${rate('extjob_http_requests_total')})`, legend: '{{status}}' },
      ]),
      ts(
        'HTTP latency (p99)',
        'Request time by route, long polls and streams left out.',
        's',
        quantiles('extjob_http_request_seconds_bucket', ['route'], [0.99], 'route!~".*(wait|stream)"'),
      ),
      ts(
        'Timer lateness (p99)',
        'How late timers fire past their due time.',
        's',
        quantiles('extjob_timer_lateness_seconds_bucket', ['kind'], [0.99]),
      ),
      ts('CPU', 'CPU seconds per second per process.', 'percentunit', [
        { expr: rate('process_cpu_seconds_total'), legend: '{{instance}}' },
      ]),
      ts('Memory', 'Resident memory and used heap per process.', 'bytes', [
        { expr: sel('process_resident_memory_bytes'), legend: 'rss {{instance}}' },
        { expr: `sum by (instance) (${sel('nodejs_heap_size_used_bytes')})`, legend: 'heap {{instance}}' },
      ]),
      ts('Event loop lag', 'Event loop delay p99 per process.', 's', [
        { expr: sel('nodejs_eventloop_lag_p99_seconds'), legend: '{{instance}}' },
      ]),
      ts('Restarts', 'Process starts in the last hour.', 'short', [
        { expr: `changes(${sel('process_start_time_seconds')}[1h])`, legend: '{{instance}}' },
      ]),
      ts(
        'Scrape-time read failures',
        'Redis reads behind extjob_jobs and the outbox gauge that failed.',
        'ops',
        [{ expr: `sum by (gauge) (${rate('extjob_metrics_collect_errors_total')})`, legend: '{{gauge}}' }],
      ),
    ],
  },
];

/** Every PromQL expression of the dashboard. */
export function dashboardExpressions(): { panel: string; expr: string; legend: string }[] {
  return ROWS.flatMap((row) =>
    row.panels.flatMap((p) =>
      p.targets.map((t) => ({ panel: `${row.title} / ${p.title}`, expr: t.expr, legend: t.legend })),
    ),
  );
}

/** The Grafana dashboard JSON model (schema 39, Grafana 10/11). */
export function grafanaDashboard(): Record<string, unknown> {
  const panels: Record<string, unknown>[] = [];
  let id = 1;
  let y = 0;
  for (const row of ROWS) {
    panels.push({
      id: id++,
      type: 'row',
      title: row.title,
      collapsed: false,
      panels: [],
      gridPos: { h: 1, w: 24, x: 0, y },
    });
    y += 1;
    let x = 0;
    let rowHeight = 0;
    for (const p of row.panels) {
      const h = p.kind === 'stat' ? 4 : 8;
      if (x + p.width > 24) {
        x = 0;
        y += rowHeight;
        rowHeight = 0;
      }
      panels.push({
        id: id++,
        type: p.kind,
        title: p.title,
        description: p.description,
        datasource: DATASOURCE,
        gridPos: { h, w: p.width, x, y },
        fieldConfig: {
          defaults: {
            unit: p.unit,
            ...(p.kind === 'timeseries'
              ? {
                  custom: {
                    drawStyle: 'line',
                    fillOpacity: p.stacked ? 40 : 10,
                    stacking: { mode: p.stacked ? 'normal' : 'none' },
                  },
                }
              : {}),
          },
          overrides: [],
        },
        options:
          p.kind === 'stat'
            ? { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false }, colorMode: 'value' }
            : {
                legend: { displayMode: 'list', placement: 'bottom', showLegend: true },
                tooltip: { mode: 'multi' },
              },
        targets: p.targets.map((t, i) => ({
          datasource: DATASOURCE,
          expr: t.expr,
          legendFormat: t.legend,
          refId: String.fromCharCode(65 + i),
        })),
      });
      x += p.width;
      rowHeight = Math.max(rowHeight, h);
    }
    y += rowHeight;
  }
  return {
    uid: 'extjob',
    title: 'extjob',
    description: 'External job broker: jobs, events, outbound, process health.',
    tags: ['extjob'],
    timezone: 'browser',
    schemaVersion: 39,
    version: 1,
    editable: true,
    refresh: '30s',
    time: { from: 'now-6h', to: 'now' },
    templating: {
      list: [
        {
          name: 'datasource',
          label: 'Prometheus',
          type: 'datasource',
          query: 'prometheus',
          current: { text: 'Prometheus', value: 'prometheus' },
          hide: 0,
        },
        {
          name: 'instance',
          label: 'Instance',
          type: 'query',
          datasource: DATASOURCE,
          query: { query: 'label_values(extjob_ready, instance)', refId: 'instance' },
          definition: 'label_values(extjob_ready, instance)',
          refresh: 2,
          includeAll: true,
          multi: true,
          allValue: '.*',
          current: { text: 'All', value: '$__all' },
          hide: 0,
        },
      ],
    },
    annotations: { list: [] },
    panels,
  };
}
