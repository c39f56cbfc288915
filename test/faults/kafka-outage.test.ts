/**
 * Drill 2: the Kafka broker (a private one) stopped for 20 s while events stream in.
 * The service must say it is not ready, keep serving reads from Redis, keep taking
 * jobs (their outbound messages wait in the outbox), and recover by itself once the
 * broker is back: nothing lost, nothing doubled, every change published.
 */
import { describe, expect, it } from 'vitest';
import {
  audit,
  auditBroker,
  auditChanges,
  createJobs,
  drillLine,
  expectedEffects,
  isolation,
  privateKafka,
  sampler,
  serve,
  serveEnv,
  startDrill,
  waitAllPassed,
  waitFor,
} from './helpers.js';

const OUTAGE_MS = 20_000;

describe('drill: Kafka down for 20 s under load', () => {
  it('not ready while down, reads served, recovers by itself, nothing lost', async () => {
    const kafka = await privateKafka();
    const names = isolation();
    const svc = await serve(serveEnv(names, { EXTJOB_KAFKA_BROKERS: kafka.brokers.join(',') }));
    const { broker, redis } = auditBroker(names);
    const { plan, messages, load } = await startDrill(svc.url, names, {
      tag: 'kdown',
      jobs: 40,
      heartbeats: 3,
      chunks: 12,
      perSecond: 30,
      brokers: kafka.brokers,
    });
    await waitFor(() => load.sent() >= 100, { timeoutMs: 30_000, what: 'the load to start' });

    await kafka.stop();
    const down = Date.now();
    const ready = sampler(`${svc.url}/readyz`);
    const reads = sampler(`${svc.url}/v1/jobs/${plan.jobs[0]}`);
    await waitFor(async () => (await fetch(`${svc.url}/readyz`)).status === 503, {
      timeoutMs: 15_000,
      what: '/readyz to turn 503',
    });
    const notReadyAfterMs = Date.now() - down;
    // A job created while Kafka is away: stored now, announced once Kafka is back.
    const [during] = await createJobs(svc.url, ['kdown-created-during-outage']);
    // An executor posting over HTTP is told to come back: 503, the event is not taken.
    const posted = await fetch(`${svc.url}/v1/jobs/${during}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        specversion: '1.0',
        id: 'posted-during-outage',
        source: '/drill',
        type: 'dev.extjob.accepted.v1',
        subject: during,
      }),
      signal: AbortSignal.timeout(20_000),
    });
    const postedType = posted.headers.get('content-type') ?? '';
    const sentBefore = load.sent();
    // The outage itself lasts a fixed time: that is the fault, not a wait for a condition.
    await new Promise((r) => setTimeout(r, OUTAGE_MS - (Date.now() - down)));
    const readCounts = await reads.stop();
    await kafka.restart();
    const up = Date.now();
    await waitFor(async () => (await fetch(`${svc.url}/readyz`)).status === 200, {
      timeoutMs: 90_000,
      intervalMs: 200,
      what: '/readyz to answer 200 again',
    });
    const readyAgainMs = Date.now() - up;
    const readyCounts = await ready.stop();

    await load.done;
    await waitAllPassed(broker, plan.jobs, 90_000);
    const t = await audit(broker, redis, plan, messages.length);
    const changes = await auditChanges(broker, names, [...plan.jobs, during!], kafka.brokers);
    const line = drillLine(
      'kafka-down-20s',
      t,
      `not ready after ${notReadyAfterMs} ms, ready again ${readyAgainMs} ms after restart; reads during outage ${JSON.stringify(Object.fromEntries(readCounts))}; readyz ${JSON.stringify(Object.fromEntries(readyCounts))}; POST events during the outage ${posted.status}; ${sentBefore} sent before the outage, ${load.retries()} sends retried; changes missing ${changes.missing} of ${changes.expected}`,
    );
    expect(t.problems, line).toEqual([]);
    expect({ lost: t.lost, doubled: t.doubled, applied: t.applied }).toEqual({
      lost: 0,
      doubled: 0,
      applied: expectedEffects(plan),
    });
    // Every read during the outage answered 200.
    expect([...readCounts.keys()], line).toEqual([200]);
    expect(readyCounts.get(503) ?? 0, line).toBeGreaterThan(0);
    expect(changes.missing, line).toBe(0);
    expect([posted.status, postedType.split(';')[0]], line).toEqual([503, 'application/problem+json']);
    expect(svc.child.exitCode, line).toBeNull();
  }, 480_000);
});
