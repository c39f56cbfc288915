/**
 * Drill 5: webhook receivers that fail, hang, flap or answer slowly. Deliveries are
 * retried exactly as configured (attempts, timeout), failures after the last try are
 * kept for inspection, signatures verify, and event ingestion does not slow down
 * because of them: the same load is measured without and with hostile receivers in
 * the same run, and both rates are printed.
 */
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import {
  audit,
  auditBroker,
  createJobs,
  drillLine,
  isolation,
  type Plan,
  planMessages,
  serve,
  serveEnv,
  startLoad,
  topicNames,
  waitAllPassed,
  waitFor,
} from './helpers.js';

const ATTEMPTS = 3;
const TIMEOUT_S = 1;
const SECRET = 'drill-secret';
const BEHAVIOURS = ['ok', 'fail', 'flaky', 'hang', 'slow'] as const;
type Behaviour = (typeof BEHAVIOURS)[number];

/** One HTTP server; the path names how it behaves. Counts requests per (job, version). */
async function receivers() {
  const hits = new Map<Behaviour, Map<string, number>>(BEHAVIOURS.map((b) => [b, new Map()]));
  let badSignatures = 0;
  const hanging = new Set<ServerResponse>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const b = (req.url ?? '/').slice(1) as Behaviour;
      const ts = String(req.headers['x-extjob-timestamp'] ?? '');
      const mac = createHmac('sha256', SECRET).update(`${ts}.`).update(body).digest('hex');
      if (req.headers['x-extjob-signature'] !== `sha256=${mac}`) badSignatures++;
      const ce = JSON.parse(body.toString()) as { subject: string; extjobseq: number };
      const key = `${ce.subject}/${ce.extjobseq}`;
      const m = hits.get(b)!;
      const n = (m.get(key) ?? 0) + 1;
      m.set(key, n);
      if (b === 'ok') res.end('ok');
      else if (b === 'fail') res.writeHead(503).end('down');
      else if (b === 'flaky') res.writeHead(n < ATTEMPTS ? 500 : 200).end();
      else if (b === 'slow') setTimeout(() => res.end('late but fine'), 300);
      else hanging.add(res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  onTestFinished(async () => {
    for (const r of hanging) r.destroy();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { base, hits, badSignatures: () => badSignatures };
}

async function ingest(
  svcUrl: string,
  names: ReturnType<typeof isolation>,
  prefix: string,
  notify: unknown[],
  jobs = 40,
) {
  const plan: Plan = {
    jobs: await createJobs(
      svcUrl,
      Array.from({ length: jobs }, (_, i) => `${prefix}-${i}`),
      notify.length ? { notify } : {},
    ),
    heartbeats: 2,
    chunks: 10,
  };
  const messages = planMessages(plan);
  const started = Date.now();
  const load = startLoad(topicNames(names.topicPrefix).events, messages, { perSecond: 100_000, batch: 100 });
  await load.done;
  return { plan, messages, started, load };
}

describe('drill: hostile webhook receivers', () => {
  it('retried as configured, kept when they fail for good, ingestion unaffected', async () => {
    const rx = await receivers();
    const names = isolation();
    const svc = await serve(
      serveEnv(names, {
        EXTJOB_WEBHOOK_ATTEMPTS: String(ATTEMPTS),
        EXTJOB_WEBHOOK_BACKOFF_MS: '200',
        EXTJOB_WEBHOOK_TIMEOUT_SECONDS: String(TIMEOUT_S),
        // The receivers listen on 127.0.0.1.
        EXTJOB_WEBHOOK_ALLOW_PRIVATE: 'true',
      }),
    );
    const { broker, redis } = auditBroker(names);

    /** Events per second from the first send until every job passed. */
    const measure = async (prefix: string) => {
      const r = await ingest(svc.url, names, prefix, [], 80);
      await waitAllPassed(broker, r.plan.jobs, 60_000);
      return r.messages.length / ((Date.now() - r.started) / 1000);
    };
    await measure('warmup');
    const baseRate = await measure('baseline');

    // Jobs whose every change goes to five receivers; then the same plain load again
    // while those deliveries fail, hang and retry.
    const notify = BEHAVIOURS.map((b) => ({ url: `${rx.base}/${b}`, secret: SECRET }));
    const hooked = await ingest(svc.url, names, 'hooked', notify);
    await waitAllPassed(broker, hooked.plan.jobs, 60_000);
    const stormRate = await measure('during-storm');
    const hangsSoFar = [...rx.hits.get('hang')!.values()].reduce((a, b) => a + b, 0);

    // Every change of every hooked job: pending, running, passed.
    const changes: string[] = [];
    for (const j of await broker.getJobs(hooked.plan.jobs))
      for (let v = 1; v <= (j?.version ?? 0); v++) changes.push(`${j?.id}/${v}`);
    const want: Record<Behaviour, number> = {
      ok: 1,
      slow: 1,
      flaky: ATTEMPTS,
      fail: ATTEMPTS,
      hang: ATTEMPTS,
    };
    const settled = async () => {
      for (const id of hooked.plan.jobs) {
        const res = await fetch(`${svc.url}/v1/jobs/${id}/deliveries`);
        const { deliveries } = (await res.json()) as { deliveries: { state: string }[] };
        if (deliveries.length < (changes.length / hooked.plan.jobs.length) * BEHAVIOURS.length) return false;
        if (deliveries.some((d) => d.state !== 'completed' && d.state !== 'failed')) return false;
      }
      return true;
    };
    await waitFor(settled, { timeoutMs: 120_000, intervalMs: 500, what: 'every delivery to end' });

    const problems: string[] = [];
    const summary: Record<string, string> = {};
    for (const b of BEHAVIOURS) {
      const m = rx.hits.get(b)!;
      let total = 0;
      for (const c of changes) {
        const n = m.get(c) ?? 0;
        total += n;
        if (n !== want[b]) problems.push(`${b} ${c}: ${n} requests, want ${want[b]}`);
      }
      summary[b] = `${total}/${changes.length * want[b]}`;
    }
    const failedKept = [];
    for (const id of hooked.plan.jobs) {
      const { deliveries } = (await (await fetch(`${svc.url}/v1/jobs/${id}/deliveries`)).json()) as {
        deliveries: { url: string; state: string; attempts: number }[];
      };
      for (const d of deliveries) {
        const bad = d.url.endsWith('/fail') || d.url.endsWith('/hang');
        if (bad) failedKept.push(d);
        if (bad && (d.state !== 'failed' || d.attempts !== ATTEMPTS))
          problems.push(`${id} ${d.url}: ${d.state} after ${d.attempts} attempts`);
        if (!bad && d.state !== 'completed') problems.push(`${id} ${d.url}: ${d.state}`);
      }
    }
    const t = await audit(broker, redis, hooked.plan, hooked.messages.length);
    problems.push(...t.problems);
    const line = drillLine(
      'webhooks-hostile-receivers',
      t,
      `ingestion ${baseRate.toFixed(0)} events/s before (baseline, same run), ${stormRate.toFixed(0)} events/s during the delivery storm to 5 receivers per job (ok, fail, flaky, hang, slow; ${hangsSoFar} hung requests by the end of that load); requests/expected per receiver ${JSON.stringify(summary)}; ${failedKept.length} failed deliveries kept; bad signatures ${rx.badSignatures()}`,
    );
    expect(problems.slice(0, 20), line).toEqual([]);
    expect(rx.badSignatures(), line).toBe(0);
    expect({ lost: t.lost, doubled: t.doubled }).toEqual({ lost: 0, doubled: 0 });
    // Generous sanity bound only: hostile receivers must not throttle ingestion.
    expect(hangsSoFar, line).toBeLessThan(changes.length * ATTEMPTS);
    expect(stormRate, line).toBeGreaterThan(baseRate / 4);
  }, 480_000);
});
