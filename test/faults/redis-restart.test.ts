/**
 * Drill 3: Redis (a private one, appendonly yes, appendfsync always) SIGKILLed under
 * load and started again from its AOF. The service waits it out and recovers by
 * itself. Offsets are committed only after effects are durable, so any effect the
 * crash took is replayed from Kafka: in the end every effect is there exactly once.
 * (Were an offset committed ahead of a lost effect, that effect would stay lost.)
 */
import { describe, expect, it } from 'vitest';
import {
  audit,
  auditBroker,
  auditChanges,
  drillLine,
  expectedEffects,
  isolation,
  privateRedis,
  sampler,
  serve,
  serveEnv,
  startDrill,
  waitAllPassed,
  waitFor,
} from './helpers.js';

const DOWN_MS = 5_000;

describe('drill: Redis crashes and restarts under load', () => {
  it('recovers by itself; no acknowledged effect lost, none doubled', async () => {
    const r = await privateRedis();
    const names = isolation();
    const svc = await serve(serveEnv(names, { EXTJOB_REDIS_URL: r.url }));
    const { broker, redis } = auditBroker(names, r.url);
    const { plan, messages, load } = await startDrill(svc.url, names, {
      tag: 'rdown',
      jobs: 40,
      heartbeats: 3,
      chunks: 12,
      perSecond: 60,
    });
    await waitFor(() => load.sent() >= 150, { timeoutMs: 30_000, what: 'the load to start' });

    const ready = sampler(`${svc.url}/readyz`);
    const reads = sampler(`${svc.url}/v1/jobs/${plan.jobs[0]}`);
    await r.crash();
    const down = Date.now();
    const sentAtCrash = load.sent();
    await waitFor(async () => (await fetch(`${svc.url}/readyz`)).status === 503, {
      timeoutMs: 10_000,
      what: '/readyz to turn 503',
    });
    // How long Redis stays away is the fault itself, not a wait for a condition.
    await new Promise((res) => setTimeout(res, DOWN_MS - (Date.now() - down)));
    await r.restart();
    const up = Date.now();
    await waitFor(async () => (await fetch(`${svc.url}/readyz`)).status === 200, {
      timeoutMs: 60_000,
      intervalMs: 200,
      what: '/readyz to answer 200 again',
    });
    const readyAgainMs = Date.now() - up;
    const readyCounts = await ready.stop();
    const readCounts = await reads.stop();

    await load.done;
    await waitAllPassed(broker, plan.jobs, 90_000);
    const t = await audit(broker, redis, plan, messages.length);
    const changes = await auditChanges(broker, names, plan.jobs);
    const line = drillLine(
      'redis-crash-restart',
      t,
      `crashed after ${sentAtCrash} sent, ready again ${readyAgainMs} ms after restart, ${t.replays} replays recognized; readyz ${JSON.stringify(Object.fromEntries(readyCounts))}; reads ${JSON.stringify(Object.fromEntries(readCounts))} (0: no answer within 5 s); changes missing ${changes.missing} of ${changes.expected}`,
    );
    expect(t.problems, line).toEqual([]);
    expect({ lost: t.lost, doubled: t.doubled, applied: t.applied }).toEqual({
      lost: 0,
      doubled: 0,
      applied: expectedEffects(plan),
    });
    expect(readyCounts.get(503) ?? 0, line).toBeGreaterThan(0);
    // Reads while Redis is away: answered (200 or 503), never hung, never another 5xx.
    expect(
      [...readCounts.keys()].filter((s) => s !== 200 && s !== 503),
      line,
    ).toEqual([]);
    expect(changes.missing, line).toBe(0);
    expect(svc.child.exitCode, line).toBeNull();
  }, 480_000);
});
