/**
 * Drill 4: three serve processes in one consumer group share the partitions; while
 * events stream in, one is SIGKILLed and a fourth joins. The group rebalances twice;
 * no effect is lost or applied twice.
 */
import { describe, expect, it } from 'vitest';
import {
  audit,
  auditBroker,
  auditChanges,
  drillLine,
  expectedEffects,
  isolation,
  serve,
  serveEnv,
  startDrill,
  waitAllPassed,
  waitFor,
} from './helpers.js';

describe('drill: a consumer group of serve processes loses a member and gains one', () => {
  it('nothing lost, nothing doubled', async () => {
    const names = isolation();
    const env = serveEnv(names);
    const members = [await serve(env)];
    members.push(...(await Promise.all([serve(env), serve(env)])));
    const { broker, redis } = auditBroker(names);
    const { plan, messages, load } = await startDrill(members[0]!.url, names, {
      tag: 'group',
      jobs: 60,
      heartbeats: 4,
      chunks: 16,
      perSecond: 80,
    });

    await waitFor(() => load.sent() >= messages.length / 4, {
      timeoutMs: 30_000,
      what: 'a quarter of the load',
    });
    await members[1]!.kill('SIGKILL');
    const sentAtKill = load.sent();
    // The newcomer is spawned while the load runs; it is ready once the group settled.
    const sentAtSpawn = load.sent();
    expect(sentAtSpawn).toBeLessThan(messages.length);
    members.push(await serve(env));
    const sentAtJoin = load.sent();

    await load.done;
    await waitAllPassed(broker, plan.jobs, 120_000);
    const t = await audit(broker, redis, plan, messages.length);
    const changes = await auditChanges(broker, names, plan.jobs);
    const line = drillLine(
      'group-member-killed',
      t,
      `killed after ${sentAtKill} sent, spawned a new one at ${sentAtSpawn}, ready at ${sentAtJoin}, ${t.replays} replays recognized; changes missing ${changes.missing} of ${changes.expected}`,
    );
    expect(t.problems, line).toEqual([]);
    expect({ lost: t.lost, doubled: t.doubled, applied: t.applied }).toEqual({
      lost: 0,
      doubled: 0,
      applied: expectedEffects(plan),
    });
    expect(changes.missing, line).toBe(0);
    for (const m of [members[0]!, members[2]!, members[3]!]) expect(m.child.exitCode).toBeNull();
  }, 480_000);
});
