/**
 * Drill 1: the whole service process SIGKILLed in the middle of a batch while events
 * stream in, then started again. Every effect (transitions, log chunks with their
 * bytes, heartbeats) must be in Redis exactly once, and every transition must reach
 * the changes topic.
 */
import { describe, expect, it } from 'vitest';
import {
  audit,
  auditBroker,
  auditChanges,
  drillLine,
  expectedEffects,
  isolation,
  listeningUrl,
  serve,
  serveEnv,
  spawnServe,
  startDrill,
  waitAllPassed,
  waitFor,
} from './helpers.js';

describe('drill: serve SIGKILLed under load', () => {
  it('restarts with nothing lost and nothing doubled', async () => {
    const names = isolation();
    const env = serveEnv(names);
    const first = await serve(env);
    const { broker, redis } = auditBroker(names);
    const { plan, messages, load } = await startDrill(first.url, names, {
      tag: 'kill',
      jobs: 40,
      heartbeats: 5,
      chunks: 20,
      perSecond: 250,
    });

    // Mid-load: some chunks stored, most of the load still to come.
    await waitFor(async () => (await broker.readLog(plan.jobs[0]!, { limit: 1000 }))!.chunks.length >= 3, {
      timeoutMs: 30_000,
      what: 'the first effects',
    });
    expect(load.sent()).toBeLessThan(messages.length);
    await first.kill('SIGKILL');
    const sentAtKill = load.sent();

    // The restarted process serves reads and probes at once; it is ready once its
    // consumer joined, after the killed member's session expired.
    const restartedAt = Date.now();
    const second = spawnServe(env);
    const url = await listeningUrl(second);
    const listeningMs = Date.now() - restartedAt;
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    expect((await fetch(`${url}/v1/jobs/${plan.jobs[0]}`)).status).toBe(200);
    await waitFor(async () => (await fetch(`${url}/readyz`)).status === 200, {
      timeoutMs: 60_000,
      what: 'the restarted process to be ready',
    });
    const readyAfterMs = Date.now() - restartedAt;
    await load.done;
    await waitAllPassed(broker, plan.jobs, 90_000);
    const t = await audit(broker, redis, plan, messages.length);
    const changes = await auditChanges(broker, names, plan.jobs);
    const line = drillLine(
      'serve-sigkill',
      t,
      `killed after ${sentAtKill} sent, restarted process listening after ${listeningMs} ms, ready after ${readyAfterMs} ms, ${t.replays} replays recognized; changes ${changes.expected} expected, missing ${changes.missing}, republished ${changes.duplicates}`,
    );
    expect(t.problems, line).toEqual([]);
    expect({ lost: t.lost, doubled: t.doubled, applied: t.applied }).toEqual({
      lost: 0,
      doubled: 0,
      applied: expectedEffects(plan),
    });
    expect(changes.missing, line).toBe(0);
    expect(second.child.exitCode).toBeNull();
  }, 360_000);
});
