/**
 * Property tests: any sequence of events (duplicates, reorderings, stale
 * attempts), cancels and timer firings leaves every job in a legal state, with
 * a history that chains from creation to that state, one outbox record per
 * transition, and each event's effect applied at most once.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  canTransition,
  JOB_STATES,
  type JobEvent,
  type JobState,
  type TimerKind,
} from '../../src/broker/index.js';
import { DEFAULTS, harness } from './harness.js';

type Action =
  | {
      t: 'event';
      job: number;
      kind: JobEvent['kind'];
      ref: number;
      attempt: 'current' | 'old' | 'none';
      exit: number;
    }
  | { t: 'replay'; job: number; back: number }
  | { t: 'timer'; job: number; kind: TimerKind; advance: number; attemptDelta: number }
  | { t: 'cancel'; job: number };

const JOBS = 3;
const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      t: fc.constant('event' as const),
      job: fc.nat(JOBS - 1),
      kind: fc.constantFrom('accepted', 'heartbeat', 'log', 'finished', 'canceled'),
      ref: fc.nat(6),
      attempt: fc.constantFrom('current', 'current', 'old', 'none'),
      exit: fc.constantFrom(0, 0, 1, 75),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ t: fc.constant('replay' as const), job: fc.nat(JOBS - 1), back: fc.nat(5) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('timer' as const),
      job: fc.nat(JOBS - 1),
      kind: fc.constantFrom('accept', 'heartbeat', 'run', 'cancel_grace', 'retry'),
      advance: fc.constantFrom(0, 1500, 100_000_000),
      attemptDelta: fc.constantFrom(0, 0, 0, -1),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('cancel' as const), job: fc.nat(JOBS - 1) }) },
);

describe('state machine properties', () => {
  it('stays legal and consistent under any event sequence', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(action, { minLength: 1, maxLength: 30 }),
        fc.boolean(),
        async (actions, batch) => {
          let clock = Date.now();
          const h = await harness({ now: () => clock });
          try {
            const b = h.broker;
            const ids: string[] = [];
            for (let j = 0; j < JOBS; j++) {
              const { job } = await b.createJob({
                id: `p-${j}`,
                name: 'prop',
                timeouts: {
                  acceptSeconds: 1,
                  heartbeatSeconds: j === 0 ? 1 : 0,
                  runSeconds: 5,
                  cancelGraceSeconds: 1,
                },
                retry: j === 2 ? { limit: 2, backoffSeconds: j } : { limit: j, onExitCodes: [75] },
              });
              ids.push(job.id);
            }
            const sent: JobEvent[][] = ids.map(() => []);
            const applied = new Map<string, number>();
            const pending: JobEvent[] = [];
            const flush = async () => {
              const results = await b.applyEvents(pending.splice(0));
              return results;
            };
            const record = (e: JobEvent, r: string) => {
              if (r === 'applied')
                applied.set(`${e.jobId}/${e.id}`, (applied.get(`${e.jobId}/${e.id}`) ?? 0) + 1);
            };
            let seq = 0;
            for (const a of actions) {
              const id = ids[a.job] as string;
              if (a.t === 'event' || a.t === 'replay') {
                let e: JobEvent | undefined;
                if (a.t === 'event') {
                  const current = (await b.getJob(id))?.attempt ?? 1;
                  e = {
                    kind: a.kind,
                    jobId: id,
                    id: `${a.kind}-${a.ref}-${seq++}`,
                    source: 'prop',
                    type: a.kind,
                    ...(a.attempt === 'none'
                      ? {}
                      : { attempt: a.attempt === 'old' ? Math.max(1, current - 1) : current }),
                    ...(a.kind === 'log' ? { seq: a.ref, chunk: Buffer.from(`line ${a.ref}`) } : {}),
                    ...(a.kind === 'finished' ? { exitCode: a.exit } : {}),
                  };
                  sent[a.job]?.push(e);
                } else {
                  const list = sent[a.job] ?? [];
                  e = list[list.length - 1 - (a.back % Math.max(1, list.length))];
                }
                if (!e) continue;
                if (batch) pending.push(e);
                else record(e, await b.applyEvent(e));
              } else {
                if (batch && pending.length) {
                  const p = [...pending];
                  for (const [i, r] of (await flush()).entries()) record(p[i] as JobEvent, r);
                }
                if (a.t === 'timer') {
                  clock += a.advance;
                  const job = await b.getJob(id);
                  await b.fireTimer({
                    id,
                    kind: a.kind,
                    attempt: Math.max(1, (job?.attempt ?? 1) + a.attemptDelta),
                    due: clock,
                  });
                } else {
                  await b.cancelJob(id, { kind: 'api', caller: 'prop' });
                }
              }
            }
            if (pending.length) {
              const p = [...pending];
              for (const [i, r] of (await flush()).entries()) record(p[i] as JobEvent, r);
            }

            // each (source, id) took effect at most once (log chunks are deduped by seq instead)
            for (const [k, n] of applied) if (!k.includes('/log-')) expect(n, k).toBe(1);

            const outbox = await b.readOutbox('0', 10_000);
            const counts = await b.countsByState();
            const expected = Object.fromEntries(JOB_STATES.map((s) => [s, 0]));
            for (const id of ids) {
              const job = await b.getJob(id);
              const hist = (await b.history(id)) ?? [];
              expect(job).toBeDefined();
              const state = job?.state as JobState;
              expected[state] = (expected[state] ?? 0) + 1;
              expect(JOB_STATES).toContain(state);
              const transitions = hist.filter((e) => e.kind === 'transition');
              let prev: JobState | 'none' = 'none';
              for (const t of transitions) {
                expect(t.from ?? 'none').toBe(prev);
                expect(canTransition(prev, t.to as JobState), `${prev} -> ${t.to}`).toBe(true);
                prev = t.to as JobState;
              }
              expect(prev).toBe(state);
              expect(job?.version).toBe(transitions.length);
              const changes = outbox.filter((e) => e.jobId === id && e.type === 'job.changed');
              expect(changes.map((e) => e.version)).toEqual(transitions.map((_, i) => i + 1));
              expect(changes.map((e) => e.payload.to)).toEqual(transitions.map((t) => t.to));
              const limit = job?.retry?.limit ?? 0;
              expect(job?.attempt).toBeLessThanOrEqual(1 + limit);
              const retries = transitions.filter((t) => t.from === 'running' && t.to === 'pending').length;
              expect(job?.attempt).toBe(1 + retries);
              const announced = outbox.filter((e) => e.jobId === id && e.type === 'job.created').length;
              // every attempt is announced at most once; only the latest may be unannounced
              // (still in its backoff, or accepted by the executor before the backoff passed)
              expect(announced).toBeLessThanOrEqual(job?.attempt ?? 0);
              expect(announced).toBeGreaterThanOrEqual((job?.attempt ?? 0) - 1);
            }
            expect(counts).toEqual(expected);
          } finally {
            await h.cleanup();
          }
        },
      ),
      { numRuns: 60 },
    );
  }, 60_000);
});

void DEFAULTS;
