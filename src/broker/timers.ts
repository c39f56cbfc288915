/**
 * Timers as BullMQ delayed jobs (queue "timers", BullMQ prefix = our prefix).
 *
 * The scripts write every deadline into <prefix>:due (ZSET by due time)
 * atomically with the state change, and return the ones due within the arm
 * window (60 s). apply() turns those into delayed jobs with deterministic ids
 * and removes them from <prefix>:due; armDue(), run at start and every few
 * seconds, does the same for deadlines that came within the window (and for
 * any whose writer died before arming). So a far deadline costs one ZSET entry
 * and no BullMQ operation until it is near, and no timer is lost. Disarming
 * a deadline is a ZREM, plus a BullMQ remove when it was already armed. Firing is idempotent: the fire script checks state,
 * attempt and the deadline kept in the job hash, so a duplicate, stale or
 * disarmed timer is a no-op.
 */
import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../shared/logger.js';
import { disconnectIfDown, isConnectionError, pauseWhileRefused } from '../shared/redis.js';
import type { TimerKind } from './instrumentation.js';
import type { BrokerKeys } from './keys.js';

/** Same as ARM_WINDOW_MS in lua/includes/job.lua. */
export const ARM_WINDOW_MS = 60_000;

export const TIMER_QUEUE = 'timers';
const RETENTION_JOB = 'retention';

export interface TimerData {
  id: string;
  kind: TimerKind;
  attempt: number;
  due: number;
}

/** "kind|attempt|due" as the scripts return it. */
export function parseTimer(id: string, spec: string): TimerData {
  const [kind, attempt, due] = spec.split('|');
  return { id, kind: kind as TimerKind, attempt: Number(attempt), due: Number(due) };
}

/** BullMQ job id: deterministic; ':' is not allowed by BullMQ and '%' never occurs in job ids. */
export function timerJobId(t: TimerData): string {
  return `t.${t.kind}.${t.attempt}.${t.due}.${t.id.replaceAll(':', '%')}`;
}

export interface TimerHandlers {
  fire(t: TimerData): Promise<void>;
  sweepRetention(): Promise<number>;
}

export class TimerService {
  readonly queue: Queue;
  private worker: Worker | undefined;
  private workerConnection: Redis | undefined;
  /**
   * The queue's own client: BullMQ defines its 60-odd scripts as commands on the
   * client it is given, and ioredis copies every defined command onto each pipeline
   * made from that client (30 us a pipeline rather than 3, on every broker call).
   */
  private readonly queueConnection: Redis;
  private recoverTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly keys: BrokerKeys,
    private readonly logger: Logger | undefined,
  ) {
    this.queueConnection = redis.duplicate();
    // the broker's own client reports an outage; this one and the queue only repeat it
    this.queueConnection.on('error', () => {});
    this.queue = new Queue(TIMER_QUEUE, {
      connection: this.queueConnection,
      prefix: keys.prefix,
      streams: { events: { maxLen: 1000 } },
    });
    this.queue.on('error', (err) => this.logger?.debug({ err: err.message }, 'timer queue: redis error'));
  }

  /** Arm timers the scripts returned (due within the arm window); remove armed ones no longer needed. */
  async apply(toArm: TimerData[], toDisarm: TimerData[] = []): Promise<void> {
    await Promise.all([
      toArm.length > 0 ? this.add(toArm) : undefined,
      // best effort: a timer that cannot be removed (e.g. running now) fires as a no-op
      ...toDisarm.map((t) => this.queue.remove(timerJobId(t)).catch(() => 0)),
    ]);
  }

  private async add(timers: TimerData[]): Promise<void> {
    const now = Date.now();
    await this.queue.addBulk(
      timers.map((t) => ({
        name: t.kind,
        data: t,
        opts: {
          jobId: timerJobId(t),
          delay: Math.max(0, t.due - now),
          removeOnComplete: true,
          removeOnFail: { age: 7 * 86_400, count: 1000 },
          attempts: 8,
          backoff: { type: 'exponential', delay: 500 },
        },
      })),
    );
    await this.redis.zrem(this.keys.due, ...timers.map((t) => `${t.kind}|${t.attempt}|${t.due}|${t.id}`));
  }

  /** Arm every deadline due within `windowMs` from now. Returns how many. */
  async armDue(windowMs = ARM_WINDOW_MS): Promise<number> {
    let total = 0;
    for (;;) {
      const members = await this.redis.zrangebyscore(
        this.keys.due,
        '-inf',
        Date.now() + windowMs,
        'LIMIT',
        0,
        1000,
      );
      if (members.length === 0) return total;
      const timers = members.map((m) => {
        const [kind, attempt, due, ...id] = m.split('|');
        return parseTimer(id.join('|'), `${kind}|${attempt}|${due}`);
      });
      await this.add(timers);
      total += timers.length;
      if (members.length < 1000) return total;
    }
  }

  async start(
    handlers: TimerHandlers,
    opts: { concurrency: number; retentionSweepMs: number; scanEveryMs: number },
  ): Promise<void> {
    if (this.worker) return;
    this.workerConnection = this.redis.duplicate({ maxRetriesPerRequest: null });
    this.workerConnection.on('error', () => {}); // the broker's own client reports it
    this.worker = new Worker<TimerData>(
      TIMER_QUEUE,
      async (job) => {
        if (job.name === RETENTION_JOB) return handlers.sweepRetention();
        return handlers.fire(job.data);
      },
      {
        connection: this.workerConnection,
        prefix: this.keys.prefix,
        concurrency: opts.concurrency,
        removeOnComplete: { count: 0 },
        removeOnFail: { age: 7 * 86_400, count: 1000 },
        // A timer held by a worker that died comes back once its lock lapses: within
        // seconds, not BullMQ's default 30-60 s. Firing twice is a no-op, so a timer that
        // stalls is run again however often, never failed (its deadline is no longer in
        // `due` for the scan to find).
        lockDuration: 5_000,
        stalledInterval: 1_000,
        maxStalledCount: Number.MAX_SAFE_INTEGER,
      },
    );
    const paused = pauseWhileRefused(this.worker, (err, pauseMs) =>
      this.logger?.warn({ err: String(err), pauseMs }, 'timer worker paused: Redis refuses commands for now'),
    );
    this.worker.on('error', (err) => {
      if (paused(err)) return;
      // an outage is reported by the broker's own client: here it is only a repeat
      if (isConnectionError(err)) this.logger?.debug({ err: err.message }, 'timer worker: redis error');
      else this.logger?.error({ err }, 'timer worker error');
    });
    this.worker.on('failed', (job, err) =>
      this.logger?.warn({ err, timer: job?.id }, 'timer failed; BullMQ will retry it'),
    );
    const scheduleRetention = () =>
      this.queue.upsertJobScheduler(
        RETENTION_JOB,
        { every: opts.retentionSweepMs },
        { name: RETENTION_JOB, opts: { removeOnComplete: true, removeOnFail: 100 } },
      );
    await scheduleRetention();
    await this.worker.waitUntilReady();
    await this.armDue();
    this.recoverTimer = setInterval(() => {
      this.armDue().catch((err) => this.logger?.warn({ err }, 'arming due timers failed'));
      // A Redis that lost its data (restarted without persistence) lost the sweep's
      // schedule too: put it back.
      this.queue
        .getJobScheduler(RETENTION_JOB)
        .then((s) => (s ? undefined : scheduleRetention()))
        .catch((err) => this.logger?.warn({ err }, 'checking the retention schedule failed'));
    }, opts.scanEveryMs);
    this.recoverTimer.unref();
  }

  async close(): Promise<void> {
    if (this.recoverTimer) clearInterval(this.recoverTimer);
    // a connection that is down makes BullMQ's close wait for it: cut it first
    disconnectIfDown(this.workerConnection);
    disconnectIfDown(this.queueConnection);
    await this.worker?.close();
    await this.queue.close();
    this.queueConnection.disconnect();
    this.workerConnection?.disconnect();
  }
}
