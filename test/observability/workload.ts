/**
 * Drives a running extjob service the way executors and pipelines do: jobs created
 * over HTTP, events produced to Kafka (and one over HTTP), jobs passing, failing,
 * retried, timing out, expiring, canceled, plus duplicates, stale and late events and
 * input that must be dead-lettered. Used by the Prometheus proof and the shutdown test.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { JobState } from '../../src/broker/types.js';
import { createProducer, type Producer } from '../../src/shared/kafka.js';
import { testKafka, waitFor } from '../helpers/index.js';

export interface Client {
  url: string;
  eventsTopic: string;
  producer: Producer;
}

export async function connectClient(
  url: string,
  eventsTopic: string,
): Promise<Client & { close(): Promise<void> }> {
  const producer = createProducer(testKafka());
  await producer.connect();
  return { url, eventsTopic, producer, close: () => producer.disconnect() };
}

export async function createJob(
  c: Client,
  body: Record<string, unknown>,
): Promise<{ id: string; eventToken: string }> {
  const res = await fetch(`${c.url}/v1/jobs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (res.status !== 201)
    throw new Error(`create ${JSON.stringify(body)}: ${res.status} ${await res.text()}`);
  const out = (await res.json()) as { job: { id: string }; eventToken: string };
  return { id: out.job.id, eventToken: out.eventToken };
}

export async function jobState(c: Client, id: string): Promise<JobState | undefined> {
  const res = await fetch(`${c.url}/v1/jobs/${encodeURIComponent(id)}`);
  if (res.status !== 200) return undefined;
  return ((await res.json()) as { state: JobState }).state;
}

export async function waitForState(
  c: Client,
  id: string,
  state: JobState,
  timeoutMs = 20_000,
): Promise<void> {
  await waitFor(async () => (await jobState(c, id)) === state, {
    timeoutMs,
    intervalMs: 50,
    what: `job ${id} to be ${state} (is ${await jobState(c, id)})`,
  });
}

export function event(
  jobId: string,
  kind: 'accepted' | 'heartbeat' | 'log' | 'finished' | 'canceled',
  data: Record<string, unknown> = {},
  id = randomUUID(),
) {
  return {
    specversion: '1.0',
    id,
    source: 'test/workload',
    type: `dev.extjob.${kind}.v1`,
    subject: jobId,
    time: new Date().toISOString(),
    datacontenttype: 'application/json',
    data,
  };
}

/** Produce messages to the events topic; key defaults to the event's subject. */
export async function produce(
  c: Client,
  messages: ({ key?: string | null; value: string | Buffer } | Record<string, unknown>)[],
): Promise<void> {
  await c.producer.send({
    topic: c.eventsTopic,
    acks: -1,
    messages: messages.map((m) => {
      if ('value' in m && (typeof m.value === 'string' || Buffer.isBuffer(m.value)))
        return { key: (m.key as string | null | undefined) ?? null, value: m.value };
      return { key: String((m as { subject: string }).subject), value: JSON.stringify(m) };
    }),
  });
}

export interface WorkloadResult {
  /** Every job the workload created, with the state it ended in. */
  expected: Map<string, JobState>;
  /** The event tokens the API returned (secrets that must never reach a log). */
  eventTokens: string[];
}

/** The full mixed workload; resolves once every job reached its expected state. */
export async function mixedWorkload(c: Client, tag = randomUUID().slice(0, 8)): Promise<WorkloadResult> {
  const expected = new Map<string, JobState>();
  const eventTokens: string[] = [];
  const make = async (name: string, extra: Record<string, unknown>, end: JobState) => {
    const j = await createJob(c, { id: `${name}-${tag}`, name, ...extra });
    expected.set(j.id, end);
    eventTokens.push(j.eventToken);
    return j;
  };

  // Passing jobs, with heartbeat, log, a replayed (duplicate) accepted and a late event.
  const passing = await Promise.all(
    [1, 2, 3].map((i) => make(`pass${i}`, { executor: 'argocd', labels: { pipeline: 'p' } }, 'passed')),
  );
  for (const j of passing) {
    const accepted = event(j.id, 'accepted', { detailsUrl: 'https://argo.example/app' });
    await produce(c, [
      accepted,
      accepted,
      event(j.id, 'heartbeat', { progress: { percent: 50, phase: 'sync' } }),
      event(j.id, 'log', { seq: 1, text: 'syncing\n' }),
      event(j.id, 'finished', { exitCode: 0, lastSeq: 1 }),
    ]);
  }
  // Failing jobs (finished implies accepted).
  const failing = await Promise.all([1, 2].map((i) => make(`fail${i}`, { executor: 'tekton' }, 'failed')));
  await produce(
    c,
    failing.map((j) =>
      event(j.id, 'finished', { exitCode: 2, error: { type: 'Sync', message: 'degraded' } }),
    ),
  );
  // Timeouts of every kind.
  await make('expire', { executor: 'metal', timeouts: { acceptSeconds: 1 } }, 'expired');
  const run = await make('runtimeout', { executor: 'metal', timeouts: { runSeconds: 1 } }, 'timed_out');
  const hb = await make('hbtimeout', { executor: 'metal', timeouts: { heartbeatSeconds: 1 } }, 'timed_out');
  await produce(c, [event(run.id, 'accepted'), event(hb.id, 'accepted')]);
  // Cancels: pending (at once) and running with a 1 s grace the executor ignores (forced).
  const c1 = await make('cancelpending', {}, 'canceled');
  const c2 = await make('cancelforced', { timeouts: { cancelGraceSeconds: 1 } }, 'canceled');
  await produce(c, [event(c2.id, 'accepted')]);
  await waitForState(c, c2.id, 'running');
  for (const j of [c1, c2]) {
    const res = await fetch(`${c.url}/v1/jobs/${j.id}/cancel`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'test' }),
    });
    if (res.status !== 202) throw new Error(`cancel ${j.id}: ${res.status} ${await res.text()}`);
  }
  // A retried job: attempt 1 fails, attempt 2 passes; an attempt-1 event afterwards is stale.
  const retried = await make(
    'retried',
    { executor: 'argocd', retry: { limit: 1, backoffSeconds: 0 } },
    'passed',
  );
  await produce(c, [event(retried.id, 'finished', { exitCode: 1 })]);
  await waitFor(
    async () => {
      const res = await fetch(`${c.url}/v1/jobs/${retried.id}`);
      const job = (await res.json()) as { attempt: number; state: string };
      return job.attempt === 2 && job.state === 'pending';
    },
    { timeoutMs: 20_000, what: 'the retried job to be pending again in attempt 2' },
  );
  await produce(c, [
    event(retried.id, 'finished', { attempt: 2, exitCode: 0 }),
    event(retried.id, 'heartbeat', { attempt: 1 }),
  ]);
  // One job driven over HTTP with its event token, one by CDEvents.
  const http = await make('viahttp', { executor: 'bridge' }, 'passed');
  for (const ev of [event(http.id, 'accepted'), event(http.id, 'finished', { exitCode: 0 })]) {
    const res = await fetch(`${c.url}/v1/jobs/${http.id}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${http.eventToken}` },
      body: JSON.stringify(ev),
    });
    if (res.status !== 202) throw new Error(`POST events: ${res.status} ${await res.text()}`);
    await waitForState(c, http.id, ev.type.includes('accepted') ? 'running' : 'passed');
  }
  const cd = await make('cdevents', { executor: 'tekton' }, 'passed');
  const cdEvent = (kind: 'started' | 'finished', content: Record<string, unknown>) => ({
    specversion: '1.0',
    id: randomUUID(),
    source: 'tekton/test',
    type: `dev.cdevents.taskrun.${kind}.0.2.0`,
    subject: cd.id,
    data: {
      context: {
        version: '0.4.1',
        id: randomUUID(),
        source: 'tekton/test',
        type: `dev.cdevents.taskrun.${kind}.0.2.0`,
        timestamp: new Date().toISOString(),
      },
      subject: { id: cd.id, source: 'tekton/test', type: 'taskRun', content },
    },
  });
  await produce(c, [
    cdEvent('started', { taskName: 'deploy', url: 'https://tekton.example/run' }),
    cdEvent('finished', { taskName: 'deploy', url: 'https://tekton.example/run', outcome: 'success' }),
  ]);
  // Input that must be dead-lettered, and an event without a key.
  const keyless = await make('keyless', {}, 'running');
  await produce(c, [
    { key: 'garbage', value: Buffer.from([0xff, 0xfe, 0x00, 0x01]) },
    { key: 'x', value: JSON.stringify({ specversion: '1.0', id: 'no-type' }) },
    { key: 'y', value: JSON.stringify({ ...event('y', 'accepted'), type: 'com.example.unsupported' }) },
    event(`nosuchjob-${tag}`, 'accepted'),
    { key: null, value: JSON.stringify(event(keyless.id, 'accepted')) },
  ]);
  // Late: an event after the job finished.
  await waitForState(c, passing[0]!.id, 'passed');
  await produce(c, [event(passing[0]!.id, 'heartbeat')]);

  for (const [id, state] of expected) await waitForState(c, id, state);
  return { expected, eventTokens };
}

/**
 * Webhook deliveries of every outcome: a receiver that answers 200, one that fails
 * once with 500 (retried, then delivered) and one that answers 400 (a failure no retry
 * can fix: given up at once). Resolves once each receiver saw its requests.
 */
export async function webhookWorkload(
  c: Client,
  expected: Map<string, JobState>,
  tag = randomUUID().slice(0, 8),
): Promise<void> {
  const hits = { ok: 0, flaky: 0, reject: 0 };
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const path = (req.url ?? '').slice(1) as keyof typeof hits;
      if (path in hits) hits[path]++;
      const status = path === 'reject' ? 400 : path === 'flaky' && hits.flaky === 1 ? 500 : 200;
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    for (const path of Object.keys(hits)) {
      const j = await createJob(c, {
        id: `hook-${path}-${tag}`,
        name: 'notify',
        notify: [{ url: `${base}/${path}`, events: ['passed'], secret: 'hook-secret-0123456789' }],
      });
      expected.set(j.id, 'passed');
      await produce(c, [event(j.id, 'finished', { exitCode: 0 })]);
    }
    for (const id of expected.keys()) if (id.startsWith('hook-')) await waitForState(c, id, 'passed');
    await waitFor(() => hits.ok >= 1 && hits.flaky >= 2 && hits.reject >= 1, {
      timeoutMs: 30_000,
      what: `webhook receivers to be called (${JSON.stringify(hits)})`,
    });
  } finally {
    server.close();
  }
}
