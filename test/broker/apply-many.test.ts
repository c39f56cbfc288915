/**
 * Differential property: applying events together (apply_many calls of several jobs,
 * each job's events in one go, log chunks written in bulk) leaves exactly what
 * applying them one call per event leaves: the same per-event results, the same keys with
 * the same contents (job hash, history, log chunks, indexes, counters, outbox
 * records, deadlines) and the same notifications, in the same order for each job
 * (jobs are independent: their relative order is not kept), where a run of log
 * notifications may be one.
 */
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { ApplyCall } from '../../src/broker/event-args.js';
import type { JobEvent } from '../../src/broker/index.js';
import { runScript } from '../../src/broker/scripts.js';
import { DEFAULTS, type Harness, harness } from './harness.js';

const JOBS = 2;

/** The broker's private step after a script: arm the timers it returned. */
interface Settling {
  applyTimers(outs: [string, unknown][]): Promise<void>;
}
const LOG_MAX = 60;

interface Step {
  job: number;
  kind: JobEvent['kind'];
  ref: number;
  replay: boolean;
  attempt: 'current' | 'old' | 'next' | 'none';
  exit: number;
  longText: boolean;
}

const step: fc.Arbitrary<Step> = fc.record({
  job: fc.nat(JOBS - 1),
  kind: fc.constantFrom('log', 'log', 'log', 'heartbeat', 'heartbeat', 'accepted', 'finished', 'canceled'),
  ref: fc.nat(5),
  replay: fc.boolean(),
  attempt: fc.constantFrom('current', 'current', 'current', 'old', 'next', 'none'),
  exit: fc.constantFrom(0, 1, 75),
  longText: fc.boolean(),
});

/** Every key of a prefix with its contents, prefix removed, in a comparable form. */
async function dump(redis: Redis, prefix: string): Promise<Record<string, unknown>> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  const out: Record<string, unknown> = {};
  // the event token and the creating call's mark differ between the two runs by design
  const sorted = (o: Record<string, string>) =>
    Object.fromEntries(
      Object.entries(o)
        .flatMap(([f, v]) => (f === 'tk' || f === 'cm' ? [] : [[f, v]]))
        .sort(),
    );
  for (const k of keys.sort()) {
    const name = k.slice(prefix.length);
    // BullMQ's timer queue is driven by the caller, not the scripts (the :due ZSET is compared)
    if (name.startsWith(':timers:')) continue;
    const type = await redis.type(k);
    if (type === 'hash') out[name] = sorted(await redis.hgetall(k));
    else if (type === 'string') out[name] = await redis.get(k);
    else if (type === 'zset') out[name] = await redis.zrange(k, 0, -1, 'WITHSCORES');
    // retention buckets list job ids in the order jobs ended: across jobs, any order
    else if (type === 'list') out[name] = (await redis.lrange(k, 0, -1)).sort();
    else if (type === 'stream')
      out[name] = (await redis.xrange(k, '-', '+'))
        .map(([, fields]) => {
          const o: Record<string, string> = {};
          for (let i = 0; i < fields.length; i += 2) o[fields[i] as string] = fields[i + 1] as string;
          return sorted(o);
        })
        // one job's records in order; jobs are independent of each other
        .sort((a, b) => String(a._j).localeCompare(String(b._j)));
    else out[name] = type;
  }
  return out;
}

async function notifications(h: Harness): Promise<{ messages: string[]; close(): Promise<void> }> {
  const sub = h.redis.duplicate();
  const messages: string[] = [];
  sub.on('message', (_c: string, m: string) => messages.push(m));
  await sub.subscribe(h.broker.keys.notify);
  return {
    messages,
    async close() {
      await sub.ping(); // every message published before is delivered before the answer
      await sub.quit();
    },
  };
}

/**
 * One job's notifications with each run of log, progress and history ones replaced by
 * the last log one, then one progress one, then one history one: they wake listeners
 * up to re-read the job, so only that a run ended, with which last seq, and whether
 * progress or history changed is visible.
 */
function coalesced(messages: string[]): string[] {
  const out: string[] = [];
  let log: string | undefined;
  let progress: string | undefined;
  let history: string | undefined;
  const endRun = () => {
    if (log) out.push(log);
    if (progress) out.push(progress);
    if (history) out.push(history);
    log = progress = history = undefined;
  };
  for (const m of messages) {
    if (m.includes('"kind":"log"')) log = m;
    else if (m.includes('"kind":"progress"')) progress = m;
    else if (m.includes('"kind":"history"')) history = m;
    else {
      endRun();
      out.push(m);
    }
  }
  endRun();
  return out;
}

describe('apply_many', () => {
  it('has the effects of applying the same events one by one', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(step, { minLength: 1, maxLength: 40 }),
        fc.array(fc.integer({ min: 1, max: 12 }), { minLength: 1, maxLength: 10 }),
        fc.constantFrom('pending', 'running', 'canceling'),
        async (steps, cuts, start) => {
          const clock = Date.now();
          const defaults = { ...DEFAULTS, logMaxBytes: LOG_MAX };
          const one = await harness({ now: () => clock, defaults });
          const many = await harness({ now: () => clock, defaults });
          try {
            const ids = Array.from({ length: JOBS }, (_, j) => `d-${j}`);
            for (const h of [one, many])
              for (const [j, id] of ids.entries()) {
                await h.broker.createJob({
                  id,
                  name: 'diff',
                  timeouts: {
                    acceptSeconds: 60,
                    heartbeatSeconds: j,
                    runSeconds: 600,
                    cancelGraceSeconds: 60,
                  },
                  retry: { limit: 2, onExitCodes: [75] },
                });
                if (start !== 'pending')
                  await h.broker.applyEvent({
                    kind: 'accepted',
                    jobId: id,
                    id: 'a0',
                    source: 's',
                    type: 't',
                  });
                if (start === 'canceling') await h.broker.cancelJob(id, { kind: 'api', caller: 'diff' });
              }

            // The events, attempts relative to the reference's state as it goes.
            const sent: JobEvent[][] = ids.map(() => []);
            const events: JobEvent[] = [];
            const attempts = ids.map(() => 1);
            const expected: string[] = [];
            const subOne = await notifications(one);
            for (const [n, s] of steps.entries()) {
              const id = ids[s.job] as string;
              const earlier = sent[s.job] as JobEvent[];
              let e: JobEvent;
              if (s.replay && earlier.length > 0) e = earlier[s.ref % earlier.length] as JobEvent;
              else {
                const cur = attempts[s.job] as number;
                const text = s.longText ? 'y'.repeat(80) : 'short';
                e = {
                  kind: s.kind,
                  jobId: id,
                  id: `${s.kind}-${n}`,
                  source: 'diff',
                  type: s.kind,
                  ...(s.attempt === 'none'
                    ? {}
                    : {
                        attempt:
                          s.attempt === 'old' ? Math.max(1, cur - 1) : s.attempt === 'next' ? cur + 1 : cur,
                      }),
                  ...(s.kind === 'log'
                    ? {
                        seq: s.ref,
                        // text, as parsed from JSON, or bytes (base64 data)
                        chunk: s.exit ? `line ${s.ref} ${text}` : Buffer.from(`line ${s.ref} ${text}`),
                      }
                    : {}),
                  ...(s.kind === 'heartbeat' && s.ref % 2 ? { progress: { message: text } } : {}),
                  ...(s.kind === 'finished'
                    ? { exitCode: s.exit, ...(s.longText ? { summary: text } : {}) }
                    : {}),
                  ...(s.kind === 'accepted' ? { executor: text, detailsUrl: `https://x/${text}` } : {}),
                  ...(s.kind === 'canceled' ? { reason: text } : {}),
                };
                earlier.push(e);
              }
              events.push(e);
              const call = new ApplyCall();
              call.addJob(id, 1);
              call.addEvent(e);
              // one job, one event
              const [reply] = (await runScript(
                one.redis,
                'apply_many',
                [one.broker.keys.job(id)],
                [
                  one.prefix,
                  '',
                  clock,
                  DEFAULTS.retentionSeconds * 1000,
                  DEFAULTS.lateLogGraceSeconds * 1000,
                  '',
                  ...call.args(3_600_000, LOG_MAX),
                ],
              )) as unknown as [number | [string]];
              // a job whose events all took the fast path answers their count (nothing transitioned)
              const out = (typeof reply === 'number' ? { r: 'applied' } : JSON.parse(reply[0])) as {
                r: string;
                a?: number;
              };
              // arm the returned timers as the broker does after its scripts (moves them off :due)
              await (one.broker as unknown as Settling).applyTimers([[id, out]]);
              expected.push(out.r);
              attempts[s.job] = out.a ?? (attempts[s.job] as number);
            }
            await subOne.close();

            const subMany = await notifications(many);
            const results: string[] = [];
            let at = 0;
            for (let c = 0; at < events.length; c++) {
              const size = cuts[c % cuts.length] as number;
              results.push(...(await many.broker.applyEvents(events.slice(at, at + size))));
              at += size;
            }
            await subMany.close();

            expect(results).toEqual(expected);
            expect(await dump(many.redis, many.prefix)).toEqual(await dump(one.redis, one.prefix));
            // per job, in order; a run of log and progress notifications counts as its last log
            // one, then one progress one (apply_many announces such a run so)
            const perJob = (ms: string[]) =>
              ids.map((id) => coalesced(ms.filter((m) => m.includes(`"id":"${id}"`))));
            expect(perJob(subMany.messages)).toEqual(perJob(subOne.messages));
          } finally {
            await one.cleanup();
            await many.cleanup();
          }
        },
      ),
      { numRuns: 80 },
    );
  }, 120_000);

  it('refuses a call naming an unknown event kind before it changes the job', async () => {
    const h = await harness();
    try {
      const { job } = await h.broker.createJob({ name: 'n' });
      const before = await h.redis.hgetall(h.broker.keys.job(job.id));
      const call = new ApplyCall();
      call.addJob(job.id, 2);
      call.addEvent({
        kind: 'accepted',
        jobId: job.id,
        id: 'a',
        source: 's',
        type: 'dev.extjob.accepted.v1',
      });
      const [id, n, ...fields] = JSON.parse(call.args(1, 1)[3] as string) as unknown[];
      const bogus = [id, n, ...fields, 'bogus', '', 'b', 's', 't', '', ''];
      const args = [h.prefix, '', Date.now(), 1000, 1000, '', 1, 1000, 1000, JSON.stringify(bogus)];
      await expect(runScript(h.redis, 'apply_many', [h.broker.keys.job(job.id)], args)).rejects.toThrow(
        /EXTJOB_BAD_ARGUMENT unknown event kind bogus/,
      );
      expect(await h.redis.hgetall(h.broker.keys.job(job.id))).toEqual(before);
    } finally {
      await h.cleanup();
    }
  });
});
