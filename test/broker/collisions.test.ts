/**
 * 1,000 jobs whose finished events race their run timeouts: each ends in
 * exactly one terminal state, and the outcomes agree with history, counters
 * and the event results.
 */
import { afterEach, expect, it } from 'vitest';
import type { ApplyResult, JobEvent } from '../../src/broker/index.js';
import { type Harness, harness, waitFor } from './harness.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
});

it('finished events and run timeouts colliding on 1,000 jobs: one terminal state each', async () => {
  h = await harness({ timers: { concurrency: 64, retentionSweepMs: 60_000, scanEveryMs: 5000 } });
  const b = h.broker;
  const N = 1000;
  const ids = Array.from({ length: N }, (_, i) => `c-${i}`);
  for (let i = 0; i < N; i += 100)
    await Promise.all(
      ids.slice(i, i + 100).map((id) => b.createJob({ id, name: 'race', timeouts: { runSeconds: 1.5 } })),
    );
  await b.startTimers();
  const ev = (kind: JobEvent['kind'], jobId: string, extra: Partial<JobEvent> = {}): JobEvent => ({
    kind,
    jobId,
    id: `${kind}-${jobId}`,
    source: 'race',
    type: kind,
    ...extra,
  });
  const acceptedAt = Date.now();
  for (let i = 0; i < N; i += 250) await b.applyEvents(ids.slice(i, i + 250).map((id) => ev('accepted', id)));
  // send the finished events in small batches spread across the run deadline
  await new Promise((r) => setTimeout(r, Math.max(0, acceptedAt + 1300 - Date.now())));
  const results = new Map<string, ApplyResult>();
  const shuffled = [...ids].sort(() => Math.random() - 0.5);
  for (let i = 0; i < N; i += 20) {
    const batch = shuffled.slice(i, i + 20);
    const r = await b.applyEvents(batch.map((id) => ev('finished', id, { exitCode: 0 })));
    batch.forEach((id, k) => {
      results.set(id, r[k] as ApplyResult);
    });
    await new Promise((r) => setTimeout(r, 8));
  }
  await waitFor(async () => {
    const c = await b.countsByState();
    return c.passed + c.timed_out === N;
  }, 20_000);

  const jobs = await b.getJobs(ids);
  let passed = 0;
  let timedOut = 0;
  for (const [i, id] of ids.entries()) {
    const job = jobs[i];
    const hist = (await b.history(id)) ?? [];
    const terminal = hist.filter(
      (e) => e.kind === 'transition' && (e.to === 'passed' || e.to === 'timed_out'),
    );
    expect(terminal, id).toHaveLength(1);
    expect(terminal[0]?.to).toBe(job?.state);
    if (job?.state === 'passed') {
      passed++;
      expect(results.get(id)).toBe('applied');
    } else {
      timedOut++;
      expect(job?.state).toBe('timed_out');
      expect(results.get(id)).toBe('late');
    }
  }
  expect(passed + timedOut).toBe(N);
  const counts = await b.countsByState();
  expect(counts).toMatchObject({ passed, timed_out: timedOut, running: 0, pending: 0 });
  // both outcomes happened, or the race was not a race
  expect(passed).toBeGreaterThan(0);
  expect(timedOut).toBeGreaterThan(0);
  const changes = await b.readOutbox('0', 10_000);
  expect(changes.filter((e) => e.payload.to === 'passed').length).toBe(passed);
  expect(changes.filter((e) => e.payload.to === 'timed_out').length).toBe(timedOut);
}, 40_000);
