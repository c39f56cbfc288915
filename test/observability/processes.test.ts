/**
 * Metrics of an installation with several processes: the Redis-backed gauges
 * (extjob_jobs, extjob_outbox_pending) are installation-wide, so every process reports
 * the same, correct value whichever process did the work; counters are per process.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { topicNames } from '../../src/shared/config.js';
import { isolation, waitFor } from '../helpers/index.js';
import { type Service, startService } from './serve.js';
import { connectClient, createJob, event, produce, waitForState } from './workload.js';

const running: Service[] = [];
afterAll(async () => {
  await Promise.all(running.map((s) => s.stop()));
});

/** series -> value of the extjob_* lines of a /metrics text. */
async function scrape(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('extjob_')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

describe('metrics across processes', () => {
  it('every process reports the same job counts; counters stay with the process that counted', async () => {
    const iso = isolation();
    const a = await startService({}, iso);
    running.push(a);
    const b = await startService({}, iso);
    running.push(b);
    const client = await connectClient(a.url, topicNames(iso.topicPrefix).events);
    try {
      const jobs = [];
      for (let i = 0; i < 5; i++) jobs.push(await createJob(client, { name: 'multi', executor: 'argocd' }));
      await produce(
        client,
        jobs.slice(0, 3).map((j) => event(j.id, 'finished', { exitCode: 0 })),
      );
      for (const j of jobs.slice(0, 3)) await waitForState(client, j.id, 'passed');
    } finally {
      await client.close();
    }
    const expected = { pending: 2, passed: 3, running: 0, failed: 0 };
    for (const url of [a.url, b.url])
      await waitFor(
        async () => {
          const m = await scrape(url);
          return Object.entries(expected).every(([state, n]) => m.get(`extjob_jobs{state="${state}"}`) === n);
        },
        { timeoutMs: 10_000, what: `${url} to report ${JSON.stringify(expected)}` },
      );
    // Jobs were created through A: A counted them, B did not.
    const [ma, mb] = [await scrape(a.url), await scrape(b.url)];
    expect(ma.get('extjob_jobs_created_total{executor="argocd"}')).toBe(5);
    expect(mb.get('extjob_jobs_created_total{executor="argocd"}')).toBeUndefined();
    // The outbox backlog is one number for the installation, read by both.
    expect(ma.has('extjob_outbox_pending')).toBe(true);
    await waitFor(async () => (await scrape(a.url)).get('extjob_outbox_pending') === 0, {
      timeoutMs: 10_000,
      what: 'the outbox to drain',
    });
    expect((await scrape(b.url)).get('extjob_outbox_pending')).toBe(0);
  }, 120_000);
});
