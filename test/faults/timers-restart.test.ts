/**
 * Drill 6: timers across a restart. Jobs whose accept, run, heartbeat and cancel-grace
 * deadlines fall while no extjob process runs must time out right after extjob comes
 * back, exactly once, even with two processes coming back at the same time; jobs whose
 * deadlines have not passed must not move.
 */
import { describe, expect, it } from 'vitest';
import {
  auditBroker,
  auditChanges,
  createJobs,
  drillLine,
  isolation,
  serve,
  serveEnv,
  spawnServe,
  waitFor,
} from './helpers.js';

const DEADLINE_S = 3;

async function post(url: string, path: string, body: unknown) {
  const res = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (res.status >= 300) throw new Error(`${path}: ${res.status} ${await res.text()}`);
}

const accepted = (jobId: string) => ({
  specversion: '1.0',
  id: `${jobId}-acc`,
  source: '/drill',
  type: 'dev.extjob.accepted.v1',
  subject: jobId,
  data: {},
});

describe('drill: timers due while extjob is down', () => {
  it('fire right after it returns, once', async () => {
    const names = isolation();
    const env = serveEnv(names);
    const svc = await serve(env);
    const { broker } = auditBroker(names);
    const ids = (kind: string, n: number) => Array.from({ length: n }, (_, i) => `${kind}-${i}`);
    const groups = {
      expired: await createJobs(svc.url, ids('accept', 10), { timeouts: { acceptSeconds: DEADLINE_S } }),
      run: await createJobs(svc.url, ids('run', 10), { timeouts: { runSeconds: DEADLINE_S } }),
      heartbeat: await createJobs(svc.url, ids('hb', 10), { timeouts: { heartbeatSeconds: DEADLINE_S } }),
      grace: await createJobs(svc.url, ids('grace', 10), { timeouts: { cancelGraceSeconds: DEADLINE_S } }),
      control: await createJobs(svc.url, ids('control', 10), { timeouts: { acceptSeconds: 3600 } }),
    };
    // Accepted over HTTP (produced to Kafka, applied by the consumer).
    for (const id of [...groups.run, ...groups.heartbeat, ...groups.grace])
      await post(svc.url, `/v1/jobs/${id}/events`, accepted(id));
    await waitFor(
      async () =>
        (await broker.getJobs([...groups.run, ...groups.heartbeat, ...groups.grace])).every(
          (j) => j?.state === 'running',
        ),
      { timeoutMs: 20_000, what: 'the jobs to run' },
    );
    for (const id of groups.grace) await post(svc.url, `/v1/jobs/${id}/cancel`, { reason: 'drill' });
    await svc.kill('SIGKILL');
    const down = Date.now();
    // Stay down until every deadline passed (the fault's length, not a wait for a condition).
    await new Promise((r) => setTimeout(r, (DEADLINE_S + 2) * 1000));

    // Two processes come back at once. Not waiting for their readiness: that waits for
    // the killed member's Kafka session to expire, which timers must not.
    const startedAt = Date.now();
    const back = [spawnServe(env), spawnServe(env)];
    const due = [...groups.expired, ...groups.run, ...groups.heartbeat, ...groups.grace];
    const want: Record<string, string> = {};
    for (const id of groups.expired) want[id] = 'expired';
    for (const id of [...groups.run, ...groups.heartbeat]) want[id] = 'timed_out';
    for (const id of groups.grace) want[id] = 'canceled';
    await waitFor(async () => (await broker.getJobs(due)).every((j) => j && j.state === want[j.id]), {
      timeoutMs: 30_000,
      intervalMs: 100,
      what: 'every due job to time out',
    });

    // and counted by the processes that fired them, though they fired as they started
    const counted = async () => {
      let n = 0;
      for (const p of back) {
        const port = /"port":(\d+)/.exec(p.output())?.[1];
        if (!port) return -1;
        const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        for (const m of text.matchAll(/^extjob_timeouts_total\{kind="[a-z_]+"\} (\d+)$/gm)) n += Number(m[1]);
      }
      return n;
    };
    await waitFor(async () => (await counted()) === due.length, {
      timeoutMs: 20_000,
      what: 'every timeout counted in extjob_timeouts_total',
    });

    let transitions = 0;
    let doubled = 0;
    const problems: string[] = [];
    for (const id of due) {
      const h = (await broker.history(id)) ?? [];
      const ends = h.filter((e) => e.kind === 'transition' && e.to === want[id]);
      transitions += Math.min(1, ends.length);
      if (ends.length !== 1) {
        doubled += Math.max(0, ends.length - 1);
        problems.push(`${id}: ${ends.length} transitions to ${want[id]}`);
      }
      if (ends[0]?.cause.kind !== 'timer') problems.push(`${id}: ended by ${JSON.stringify(ends[0]?.cause)}`);
    }
    const grace = await broker.getJobs(groups.grace);
    for (const j of grace) if (!j?.forced) problems.push(`${j?.id}: cancel not forced`);
    const controls = await broker.getJobs(groups.control);
    for (const j of controls) if (j?.state !== 'pending') problems.push(`${j?.id}: control is ${j?.state}`);
    // Lateness measured from the moment the processes were started again (the deadlines
    // passed while down).
    const late = (await broker.getJobs(due)).map((j) => Date.parse(j?.finishedAt ?? '') - startedAt);
    const changes = await auditChanges(broker, names, [...due, ...groups.control]);
    const line = drillLine(
      'timers-across-restart',
      { sent: due.length, applied: transitions, lost: due.length - transitions, doubled },
      `down ${startedAt - down} ms; two processes started again; due timers fired ${Math.min(...late)}..${Math.max(...late)} ms after the start; controls untouched: ${controls.every((j) => j?.state === 'pending')}; changes missing ${changes.missing} of ${changes.expected}`,
    );
    expect(problems, line).toEqual([]);
    expect(doubled, line).toBe(0);
    expect(changes.missing, line).toBe(0);
    // Generous sanity bound: "right after", not a benchmark.
    expect(Math.max(...late), line).toBeLessThan(15_000);
    for (const p of back) expect(p.child.exitCode).toBeNull();
  }, 360_000);
});
