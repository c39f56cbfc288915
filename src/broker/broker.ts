/**
 * JobBroker: the job state machine on Redis. Every change is one Lua script
 * (lua/*.lua); this class validates input, runs scripts, arms timers, and turns
 * script answers into results, errors and instrumentation events.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ExtjobError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { decodeHistoryEntry, decodeJob, encodeCause, historyLines, pairs, specLine } from './codec.js';
import { ApplyCall, checkEvent } from './event-args.js';
import {
  type BrokerEventMap,
  BrokerInstrumentation,
  NO_EXECUTOR,
  type TimerKind,
} from './instrumentation.js';
import { type BrokerKeys, brokerKeys } from './keys.js';
import { type ListQuery, listJobs } from './listing.js';
import { type LogPage, type LogQuery, readLog } from './logs.js';
import {
  ackOutbox,
  acquireOutboxLease,
  deadLetterOutbox,
  type OutboxEntry,
  type OutboxType,
  readOutbox,
  releaseOutboxLease,
} from './outbox.js';
import { redisError, ScriptResult, scriptError } from './results.js';
import { runScript, runScripts, type ScriptCall, type ScriptName } from './scripts.js';
import { prepareSpec } from './spec.js';
import { parseTimer, type TimerData, TimerService, timerJobId } from './timers.js';
import { keyedIdentity, randomToken, tokenDigest, tokenMatches } from './tokens.js';
import {
  type ApplyOutcome,
  type ApplyResult,
  type Cause,
  type HistoryEntry,
  JOB_ID_PATTERN,
  JOB_STATES,
  type Job,
  type JobEvent,
  type JobSpec,
  type JobState,
  type NotifyTarget,
  type Timeouts,
} from './types.js';

export interface BrokerDefaults {
  timeouts: Timeouts;
  retentionSeconds: number;
  lateLogGraceSeconds: number;
  logChunkMaxBytes: number;
  logMaxBytes: number;
  /** How long an applied event's (source, id) is at least remembered to refuse replays (default 3600). */
  dedupeWindowSeconds?: number;
}

export interface JobBrokerOptions {
  redis: Redis;
  prefix: string;
  defaults: BrokerDefaults;
  logger?: Logger;
  /** Timer worker tuning (defaults suit production). */
  timers?: { concurrency?: number; retentionSweepMs?: number; scanEveryMs?: number };
  /** Clock for the scripts in ms (default Date.now; hosts must keep clocks in sync, e.g. NTP). Tests only. */
  now?: () => number;
}

interface ScriptOutput {
  r: ScriptResult;
  tr?: [JobState | 'none', JobState][] | Record<string, never>;
  arm?: string[] | Record<string, never>;
  dis?: string[] | Record<string, never>;
  c?: number;
  ac?: number;
  f?: number;
  e?: string;
  timeout?: TimerKind;
  why?: string;
  h?: string[] | Record<string, never>;
  x?: string[] | Record<string, never>;
  /** when the job started running in this call (a retry may have cleared ac since) */
  ra?: number;
  /** create, when the job exists: its stored spec line */
  s?: string;
  /** create, when the job exists: its event token is the one this call brought */
  tm?: 1;
}

const APPLIED: ApplyOutcome = Object.freeze({ result: 'applied' });

/** Events per apply_many call, about a millisecond of Redis: longer calls delay other clients. */
const EVENTS_PER_CALL = 200;

const list = <T>(v: T[] | Record<string, never> | undefined): T[] => (Array.isArray(v) ? v : []);
/** Seconds as whole milliseconds; a time above 0 stays above 0 (0 turns a timeout off). */
const ms = (seconds: number) => (seconds > 0 ? Math.max(1, Math.round(seconds * 1000)) : 0);

export class JobBroker {
  readonly instrumentation = new BrokerInstrumentation();
  readonly keys: BrokerKeys;
  private readonly redis: Redis;
  private readonly defaults: BrokerDefaults;
  private readonly logger: Logger | undefined;
  private readonly timers: TimerService;
  private readonly opts: JobBrokerOptions;

  constructor(opts: JobBrokerOptions) {
    if (!/^[A-Za-z0-9._:{}-]{1,100}$/.test(opts.prefix))
      throw new ExtjobError('EXTJOB_CONFIG_INVALID', `invalid Redis key prefix "${opts.prefix}"`);
    this.opts = opts;
    this.redis = opts.redis;
    this.defaults = opts.defaults;
    this.logger = opts.logger;
    this.keys = brokerKeys(opts.prefix);
    this.timers = new TimerService(this.redis, this.keys, this.logger);
  }

  private common(id: string, cause: string): (string | number)[] {
    return [
      this.keys.prefix,
      id,
      this.opts.now ? this.opts.now() : Date.now(),
      Math.round(this.defaults.retentionSeconds * 1000),
      Math.round(this.defaults.lateLogGraceSeconds * 1000),
      cause,
    ];
  }

  private async run(name: ScriptName, id: string, args: (string | number | Buffer)[]): Promise<ScriptOutput> {
    try {
      return JSON.parse(
        (await runScript(this.redis, name, [this.keys.job(id)], args)) as string,
      ) as ScriptOutput;
    } catch (err) {
      throw redisError(err, name);
    }
  }

  /** After a script: log and announce transitions, arm and disarm timers. */
  private async settle(id: string, out: ScriptOutput): Promise<void> {
    this.announce(id, out);
    await this.applyTimers([[id, out]]);
  }

  private announce(id: string, out: ScriptOutput): void {
    for (const [from, to] of list(out.tr)) {
      this.logger?.debug({ jobId: id }, `${from} -> ${to}`);
      const ev: BrokerEventMap['job_transition'][0] = {
        jobId: id,
        from,
        to,
        executor: out.e ?? NO_EXECUTOR,
      };
      const ranAt = out.ra ?? out.ac;
      if (to === 'running' && ranAt !== undefined && out.c !== undefined)
        ev.acceptLatencySeconds = (ranAt - out.c) / 1000;
      if (out.f !== undefined && !['pending', 'running', 'canceling'].includes(to))
        ev.durationSeconds = (out.f - (out.ac ?? out.c ?? out.f)) / 1000;
      this.instrumentation.emit('job_transition', ev);
    }
    if (out.timeout) this.instrumentation.emit('timeout', { kind: out.timeout });
  }

  private async applyTimers(outs: [string, ScriptOutput][]): Promise<void> {
    const arming = new Map<string, TimerData>();
    const dis: TimerData[] = [];
    for (const [id, out] of outs) {
      for (const t of list(out.dis)) {
        const timer = parseTimer(id, t);
        dis.push(timer);
        // armed by an earlier event of the same call, then left: not armed at all
        arming.delete(timerJobId(timer));
      }
      for (const t of list(out.arm)) {
        const timer = parseTimer(id, t);
        arming.set(timerJobId(timer), timer);
      }
    }
    const arm = [...arming.values()];
    if (arm.length === 0 && dis.length === 0) return;
    try {
      await this.timers.apply(arm, dis);
    } catch (err) {
      // the deadlines stay in Redis; the periodic scan arms them
      this.logger?.warn({ err }, 'arming timers failed; the scan will arm them');
    }
  }

  /**
   * Create a job, or find the one this id (or idempotency key) already names. Under an
   * idempotency key, the creator sending the create again gets its token (tokens.ts).
   */
  async createJob(
    spec: JobSpec,
    cause: Cause = { kind: 'api', caller: 'unknown' },
    idempotencyKey?: string,
  ): Promise<{ job: Job; created: boolean; eventToken?: string }> {
    const p = prepareSpec(spec, this.defaults.timeouts);
    let token = randomToken();
    if (idempotencyKey !== undefined)
      ({ id: p.id, token } = await keyedIdentity(
        this.redis,
        this.keys.keySecret,
        idempotencyKey,
        p.clientId ? p.id : undefined,
      ));
    const [acceptSeconds, heartbeatSeconds, runSeconds, cancelGraceSeconds] = p.stored.t;
    const specJson = JSON.stringify(p.stored);
    const out = await this.run('create', p.id, [
      ...this.common(p.id, encodeCause(cause)),
      p.hash,
      specJson,
      tokenDigest(token),
      ms(acceptSeconds),
      ms(heartbeatSeconds),
      ms(runSeconds),
      ms(cancelGraceSeconds),
      randomBytes(12).toString('base64url'), // this call's own mark (see create.lua)
      ...(p.stored.e !== undefined ? [this.keys.executor(p.stored.e)] : []),
      ...Object.entries(p.stored.l).map(([k, v]) => this.keys.label(k, v)),
    ]);
    const err = scriptError(out.r, p.id);
    if (err) throw err;
    const job = decodeJob(p.id, pairs(out.h), out.s ?? specJson, pairs(out.x));
    if (!job) throw new ExtjobError('EXTJOB_INTERNAL', `job ${p.id} vanished while being created`);
    // the creator again, after the job moved on: its token, nothing announced again
    if (out.r !== ScriptResult.Created)
      return out.tm ? { job, created: false, eventToken: token } : { job, created: false };
    this.instrumentation.emit('job_created', { executor: p.stored.e ?? NO_EXECUTOR });
    await this.settle(p.id, out);
    return { job, created: true, eventToken: token };
  }

  async verifyEventToken(jobId: string, token: string): Promise<boolean> {
    if (!JOB_ID_PATTERN.test(jobId) || typeof token !== 'string' || token.length > 512) return false;
    return tokenMatches(await this.redis.hget(this.keys.job(jobId), 'tk'), token);
  }

  /** Apply a batch of events in one pipelined round trip; results in the same order. */
  async applyEvents(events: JobEvent[]): Promise<ApplyResult[]> {
    return (await this.applyEventsDetailed(events)).map((o) => o.result);
  }

  async applyEvent(e: JobEvent): Promise<ApplyResult> {
    const [r] = await this.applyEvents([e]);
    return r as ApplyResult;
  }

  /** Like applyEvents, with the reason for invalid events. */
  async applyEventsDetailed(events: JobEvent[]): Promise<ApplyOutcome[]> {
    if (events.length === 0) return [];
    const started = performance.now();
    const outcomes: (ApplyOutcome | undefined)[] = new Array(events.length);
    // Each job's events in order, the job loaded once (apply_many).
    const groups = new Map<string, number[]>();
    events.forEach((e, i) => {
      const check = checkEvent(e, this.defaults.logChunkMaxBytes);
      if (check.invalid) {
        outcomes[i] = {
          result: 'invalid',
          reason: check.invalid,
          ...(check.tooLarge ? { tooLarge: true } : {}),
        };
        return;
      }
      const group = groups.get(e.jobId);
      if (group) group.push(i);
      else groups.set(e.jobId, [i]);
    });
    // Several jobs per call (apply_many), a bounded number of events each, so no call
    // holds Redis for long; the calls go in one pipeline.
    const jobs = [...groups];
    const calls: ScriptCall[] = [];
    const perCall: number[] = []; // jobs in each call
    const windowMs = Math.round((this.defaults.dedupeWindowSeconds ?? 3600) * 1000);
    for (let j = 0; j < jobs.length; ) {
      const keys: string[] = [];
      const call = new ApplyCall();
      for (; j < jobs.length && call.events < EVENTS_PER_CALL; j++) {
        const [id, indexes] = jobs[j]!;
        keys.push(this.keys.job(id));
        call.addJob(id, indexes.length);
        for (const i of indexes) call.addEvent(events[i] as JobEvent);
      }
      calls.push({
        name: 'apply_many',
        keys,
        args: [...this.common('', ''), ...call.args(windowMs, this.defaults.logMaxBytes)],
      });
      perCall.push(keys.length);
    }
    let replies: [Error | null, unknown][] = [];
    try {
      replies = await runScripts(this.redis, calls);
    } catch (err) {
      throw redisError(err, 'apply');
    }
    const settled: [string, ScriptOutput][] = [];
    // the round trip's time; none when every event was refused before it
    const applySeconds = calls.length > 0 ? (performance.now() - started) / 1000 : undefined;
    let j = 0;
    replies.forEach((reply, c) => {
      if (!reply || reply[0]) throw redisError(reply?.[0] ?? new Error('no reply'), 'apply');
      const perJob = reply[1];
      if (!Array.isArray(perJob) || perJob.length !== perCall[c])
        throw redisError(new Error(`apply_many answered ${String(perJob)}`), 'apply');
      for (const answers of perJob) {
        const [id, indexes] = jobs[j++]!;
        // every event applied on the fast path: their count
        if (answers === indexes.length) {
          for (const eventIndex of indexes) outcomes[eventIndex] = APPLIED;
          continue;
        }
        if (!Array.isArray(answers) || answers.length !== indexes.length)
          throw redisError(new Error(`apply_many answered ${String(answers)} for job ${id}`), 'apply');
        indexes.forEach((eventIndex, k) => {
          if (answers[k] === 'applied') {
            outcomes[eventIndex] = APPLIED; // the fast path: no transition, no timer
            return;
          }
          const out = JSON.parse(String(answers[k])) as ScriptOutput;
          const result = out.r as ApplyResult;
          outcomes[eventIndex] = result === 'invalid' ? { result, reason: out.why ?? 'invalid' } : { result };
          this.announce(id, out);
          settled.push([id, out]);
        });
      }
    });
    await this.applyTimers(settled);
    const done = outcomes as ApplyOutcome[];
    this.instrumentation.emit('events_applied', { events, outcomes: done, applySeconds });
    return done;
  }

  async cancelJob(id: string, cause: Cause): Promise<Job> {
    if (!JOB_ID_PATTERN.test(id)) throw new ExtjobError('EXTJOB_JOB_NOT_FOUND', `no job with id ${id}`);
    const reason = cause.kind === 'api' ? (cause.reason ?? '') : '';
    const out = await this.run('cancel', id, [...this.common(id, encodeCause(cause)), reason]);
    const err = scriptError(out.r, id);
    if (err) throw err;
    await this.settle(id, out);
    const job = await this.getJob(id);
    if (!job) throw new ExtjobError('EXTJOB_JOB_NOT_FOUND', `no job with id ${id}`);
    return job;
  }

  async getJob(id: string): Promise<Job | undefined> {
    const [job] = await this.getJobs([id]);
    return job;
  }

  /**
   * Several jobs in one round trip (one read script each, pipelined: one socket write
   * for all of them); undefined where a job does not exist.
   */
  async getJobs(ids: string[]): Promise<(Job | undefined)[]> {
    const valid = ids.filter((id) => JOB_ID_PATTERN.test(id));
    let replies: [Error | null, unknown][];
    try {
      replies =
        valid.length === 1
          ? [[null, await runScript(this.redis, 'get', [this.keys.job(valid[0]!)], [])]]
          : await runScripts(
              this.redis,
              valid.map((id) => ({ name: 'get', keys: [this.keys.job(id)], args: [] })),
            );
    } catch (err) {
      throw redisError(err, 'get');
    }
    const jobs = new Map<string, Job | undefined>();
    valid.forEach((id, i) => {
      const [err, reply] = replies[i] ?? [new Error('no reply'), null];
      if (err) throw redisError(err, 'get');
      const [h, s, x] = reply as [unknown, string | null, unknown];
      jobs.set(id, decodeJob(id, pairs(h), s, pairs(x)));
    });
    return ids.map((id) => jobs.get(id));
  }

  /**
   * The job's webhook targets, with their secrets (never exposed by the API); none
   * unless the job holding the id now is the one created at `createdAt` (a change's
   * `job.createdAt`): a change of a job that retention removed is not sent to a later
   * job of that id.
   */
  async notifyTargets(id: string, createdAt: string): Promise<NotifyTarget[]> {
    if (!JOB_ID_PATTERN.test(id)) return [];
    const [created, spec] = await Promise.all([
      this.redis.hget(this.keys.job(id), 'c'),
      this.redis.get(this.keys.spec(id)),
    ]);
    if (created === null || new Date(Number(created)).toISOString() !== createdAt) return [];
    const s = specLine(spec);
    return s ? ((JSON.parse(s) as { o?: NotifyTarget[] }).o ?? []) : [];
  }

  listJobs(q: ListQuery): Promise<{ jobs: Job[]; nextCursor?: string }> {
    return listJobs(this.redis, this.keys, (ids) => this.getJobs(ids), q);
  }

  readLog(id: string, q: LogQuery = {}): Promise<LogPage | undefined> {
    if (!JOB_ID_PATTERN.test(id)) return Promise.resolve(undefined);
    return readLog(this.redis, this.keys, id, q);
  }

  async history(id: string): Promise<HistoryEntry[] | undefined> {
    if (!JOB_ID_PATTERN.test(id)) return undefined;
    const [[, createdAt], [, raw]] = (await this.redis
      .pipeline()
      .hget(this.keys.job(id), 'c')
      .get(this.keys.spec(id))
      .exec()) as [[Error | null, string | null], [Error | null, string | null]];
    if (createdAt == null || raw == null) return undefined;
    return historyLines(raw).map((line) => decodeHistoryEntry(line, Number(createdAt)));
  }

  async countsByState(): Promise<Record<JobState, number>> {
    const raw = await this.redis.hgetall(this.keys.counts);
    return Object.fromEntries(JOB_STATES.map((s) => [s, Math.max(0, Number(raw[s] ?? 0))])) as Record<
      JobState,
      number
    >;
  }

  readOutbox(afterId: string, count: number): Promise<OutboxEntry[]> {
    return readOutbox(this.redis, this.keys, afterId, count);
  }

  ackOutbox(ids: string[]): Promise<void> {
    return ackOutbox(this.redis, this.keys, ids);
  }

  /** Move a record Kafka refused for good to `<prefix>:outbox:dead` and acknowledge it. */
  deadLetterOutbox(id: string, reason: string, refused: OutboxType[]): Promise<boolean> {
    return deadLetterOutbox(this.redis, this.keys, id, reason, refused, Date.now());
  }

  outboxPending(): Promise<number> {
    return this.redis.xlen(this.keys.outbox);
  }

  acquireOutboxLease(owner: string, ttlMs: number): Promise<boolean> {
    return acquireOutboxLease(this.redis, this.keys, owner, ttlMs);
  }

  releaseOutboxLease(owner: string): Promise<void> {
    return releaseOutboxLease(this.redis, this.keys, owner);
  }

  /** A timer fired (called by the timer worker; public for tests and tools). */
  async fireTimer(t: TimerData): Promise<string> {
    const out = await this.run('fire_timer', t.id, [
      ...this.common(t.id, encodeCause({ kind: 'timer', timer: t.kind })),
      t.kind,
      t.attempt,
      t.due,
    ]);
    this.instrumentation.emit('timer_fired', {
      kind: t.kind,
      lateSeconds: Math.max(0, Date.now() - t.due) / 1000,
      effect: out.r,
    });
    await this.settle(t.id, out);
    return out.r;
  }

  /** Remove terminal jobs past retention; returns how many. */
  async sweepRetention(batch = 500): Promise<number> {
    let total = 0;
    for (;;) {
      const [n, more] = (await runScript(
        this.redis,
        'retention',
        [this.keys.retain],
        [this.keys.prefix, this.opts.now ? this.opts.now() : '', batch],
      )) as [number, number];
      total += n;
      if (!more) return total;
    }
  }

  /** Run the timer worker in this process (role "schedule"). */
  startTimers(): Promise<void> {
    return this.timers.start(
      { fire: async (t) => void (await this.fireTimer(t)), sweepRetention: () => this.sweepRetention() },
      {
        concurrency: this.opts.timers?.concurrency ?? 64,
        retentionSweepMs: this.opts.timers?.retentionSweepMs ?? 30_000,
        // a deadline whose arming was lost (a writer died before the BullMQ add, a
        // reply lost and the call sent again) is armed by the next scan: at most a
        // second late. A scan with nothing to arm is one ZRANGEBYSCORE.
        scanEveryMs: this.opts.timers?.scanEveryMs ?? 1_000,
      },
    );
  }

  /** Arm deadlines due within the arm window (startTimers does this every few seconds). */
  armDueTimers(): Promise<number> {
    return this.timers.armDue();
  }

  async close(): Promise<void> {
    await this.timers.close();
  }
}
