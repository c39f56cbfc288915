/**
 * Timers as BullMQ delayed jobs (queue "timers", BullMQ prefix = our prefix).
 *
 * The scripts record each timer to arm as an intent in <prefix>:arm atomically
 * with the state change; arm() turns intents into delayed jobs with
 * deterministic ids and then removes the intents. If the process dies between
 * the two, recover() (run at start and every few seconds) arms what is left.
 * Firing is idempotent: the fire script checks state, attempt and the deadline
 * kept in the job hash, so a duplicate or stale timer is a no-op.
 */
import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../shared/logger.js';
import type { TimerKind } from './instrumentation.js';
import type { BrokerKeys } from './keys.js';

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
  private recoverTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly keys: BrokerKeys,
    private readonly logger: Logger | undefined,
  ) {
    this.queue = new Queue(TIMER_QUEUE, {
      connection: redis,
      prefix: keys.prefix,
      streams: { events: { maxLen: 1000 } },
    });
  }

  /** Arm timers (and drop their intents) and best-effort remove obsolete ones. */
  async apply(toArm: TimerData[], toDisarm: TimerData[]): Promise<void> {
    const dis = new Set(toDisarm.map(timerJobId));
    const arm = toArm.filter((t) => !dis.has(timerJobId(t)));
    const armed = new Set(toArm.map(timerJobId));
    const work: Promise<unknown>[] = [];
    if (arm.length > 0) work.push(this.add(arm));
    else if (toArm.length > 0) work.push(this.dropIntents(toArm));
    for (const t of toDisarm) {
      if (armed.has(timerJobId(t))) continue;
      work.push(this.queue.remove(timerJobId(t)).catch(() => 0));
    }
    await Promise.all(work);
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
    await this.dropIntents(timers);
  }

  private dropIntents(timers: TimerData[]): Promise<number> {
    return this.redis.zrem(this.keys.arm, ...timers.map((t) => `${t.kind}|${t.attempt}|${t.due}|${t.id}`));
  }

  /** Arm intents older than `minAgeMs` (their writer died or is slow). Returns how many. */
  async recover(minAgeMs = 5000): Promise<number> {
    let total = 0;
    for (;;) {
      const members = await this.redis.zrangebyscore(
        this.keys.arm,
        '-inf',
        Date.now() - minAgeMs,
        'LIMIT',
        0,
        500,
      );
      if (members.length === 0) return total;
      const timers = members.map((m) => {
        const [kind, attempt, due, ...id] = m.split('|');
        return parseTimer(id.join('|'), `${kind}|${attempt}|${due}`);
      });
      await this.add(timers);
      total += timers.length;
      if (members.length < 500) return total;
    }
  }

  async start(
    handlers: TimerHandlers,
    opts: { concurrency: number; retentionSweepMs: number; recoverEveryMs: number },
  ): Promise<void> {
    if (this.worker) return;
    this.workerConnection = this.redis.duplicate({ maxRetriesPerRequest: null });
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
      },
    );
    this.worker.on('error', (err) => this.logger?.error({ err }, 'timer worker error'));
    this.worker.on('failed', (job, err) =>
      this.logger?.warn({ err, timer: job?.id }, 'timer failed; BullMQ will retry it'),
    );
    await this.queue.upsertJobScheduler(
      RETENTION_JOB,
      { every: opts.retentionSweepMs },
      { name: RETENTION_JOB, opts: { removeOnComplete: true, removeOnFail: 100 } },
    );
    await this.worker.waitUntilReady();
    await this.recover(0);
    this.recoverTimer = setInterval(() => {
      this.recover().catch((err) => this.logger?.warn({ err }, 'timer recovery failed'));
    }, opts.recoverEveryMs);
    this.recoverTimer.unref();
  }

  async close(): Promise<void> {
    if (this.recoverTimer) clearInterval(this.recoverTimer);
    await this.worker?.close();
    await this.queue.close();
    this.workerConnection?.disconnect();
  }
}
