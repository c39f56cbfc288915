/**
 * Outbound webhooks (SPEC 6). Each state change of a job with `notify` targets becomes
 * one BullMQ job per target on the queue `webhooks`, delivered by a worker of its own:
 * a POST of the change's CloudEvent (the same JSON as on `<prefix>.changes`), signed
 * (webhooks-sign.ts), with a request timeout, retried with exponential backoff. A job
 * that fails its last try stays in BullMQ's failed set for inspection
 * (GET /v1/jobs/{id}/deliveries). Slow receivers only occupy this worker, never the
 * event consumers.
 *
 * Enqueueing is idempotent: the BullMQ job id is derived from (job id, version,
 * target), so a change enqueued twice (a drainer retry, a lease handover) is
 * delivered once while its record is kept.
 *
 * Each request resolves the receiver's host itself and connects only to an address
 * the guard (webhooks-guard.ts) allows; a refused address fails the delivery at once.
 * Redirects are never followed.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as http from 'node:http';
import * as https from 'node:https';
import { isIP } from 'node:net';
import { type Job as BullJob, Queue, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { NotifyTarget } from '../broker/types.js';
import type { Logger } from '../shared/logger.js';
import { closeConnection, disconnectIfDown, pauseWhileRefused } from '../shared/redis.js';
import { DEFAULT_SOURCE, type OutboxRecord, outboundCloudEvent } from './formats/changes-v1.js';
import {
  type AddressPolicy,
  type AllowPrivate,
  addressPolicy,
  guardedLookup,
  RefusedTargetError,
  refusal,
} from './webhooks-guard.js';
import { SIGNATURE_HEADER, sign, TIMESTAMP_HEADER } from './webhooks-sign.js';

export const WEBHOOK_QUEUE = 'webhooks';

export interface WebhookOptions {
  /** Command connection (BullMQ needs maxRetriesPerRequest: null); the worker uses a duplicate. */
  redis: Redis;
  prefix: string;
  /**
   * The job's targets with their secrets (JobBroker.notifyTargets); none when the job
   * holding the id was not created at `createdAt` (the change's job was removed).
   */
  targets(jobId: string, createdAt: string): Promise<NotifyTarget[]>;
  attempts?: number;
  backoffMs?: number;
  timeoutMs?: number;
  concurrency?: number;
  /** How long delivery records are kept (the job retention). */
  keepSeconds?: number;
  /** Receivers at internal addresses (EXTJOB_WEBHOOK_ALLOW_PRIVATE); default none. */
  allowPrivate?: AllowPrivate;
  logger?: Logger;
}

/**
 * One delivery as stored in BullMQ. The secret is not: it is read from the job when
 * the delivery is sent (`target`: its index among the job's targets), so it stays
 * where the job keeps it and goes with the job.
 */
interface DeliveryData {
  jobId: string;
  /** When the job was created: a job id used again after retention is another job. */
  created?: string;
  version: number;
  to?: string;
  url: string;
  /** Set when the target has a secret: its index among the job's targets. */
  target?: number;
  /** Only in deliveries enqueued by older versions. */
  secret?: string;
  body: string;
}

export interface DeliveryView {
  id: string;
  url: string;
  version: number;
  to?: string;
  state: string;
  attempts: number;
  status?: number;
  error?: string;
  createdAt: string;
  finishedAt?: string;
}

/** Statuses a retry cannot fix: the delivery fails at once (redirects are not followed). */
const PERMANENT = (status: number) =>
  (status >= 300 && status < 400) ||
  (status >= 400 && status < 500 && ![408, 409, 425, 429].includes(status));

export class Webhooks {
  /** `delivery` {result: delivered | retried | failed} per attempt that ended. */
  readonly instrumentation = new EventEmitter();
  readonly queue: Queue;
  private worker: Worker | undefined;
  private workerConnection: Redis | undefined;
  private cleaner: NodeJS.Timeout | undefined;
  /** The queue's own client (BullMQ's scripts would slow every pipeline of the one given; see TimerService). */
  private readonly queueConnection: Redis;
  private readonly policy: AddressPolicy;
  private readonly lookup: ReturnType<typeof guardedLookup>;
  private readonly agents = {
    'http:': new http.Agent({ keepAlive: true }),
    'https:': new https.Agent({ keepAlive: true }),
  };

  constructor(private readonly opts: WebhookOptions) {
    this.policy = addressPolicy(opts.allowPrivate);
    this.lookup = guardedLookup(this.policy);
    this.queueConnection = opts.redis.duplicate();
    // the service's own client reports an outage; this one and the queue only repeat it
    this.queueConnection.on('error', () => {});
    this.queue = new Queue(WEBHOOK_QUEUE, {
      connection: this.queueConnection,
      prefix: opts.prefix,
      streams: { events: { maxLen: 1000 } },
    });
    this.queue.on('error', (err) => opts.logger?.debug({ err: err.message }, 'webhook queue: redis error'));
  }

  private indexKey(jobId: string): string {
    return `${this.opts.prefix}:wh:{${jobId}}`;
  }

  /**
   * Enqueue the webhooks of outbox entries (state changes of jobs with targets); returns
   * how many deliveries. The outbox drainer calls it before it publishes the entries,
   * and the body is the change as it publishes it to `<prefix>.changes` (with the same
   * `source`), byte for byte.
   */
  async enqueueWebhooks(entries: OutboxRecord | OutboxRecord[], source = DEFAULT_SOURCE): Promise<number> {
    let n = 0;
    for (const e of [entries].flat())
      if (e.type === 'job.changed' && e.payload.job.notify?.length) n += await this.enqueueChange(e, source);
    return n;
  }

  private async enqueueChange(e: OutboxRecord, source: string): Promise<number> {
    const ce = outboundCloudEvent(e, source);
    const body = JSON.stringify(ce);
    const { jobId, version } = e;
    const to = e.payload.to ?? e.payload.job.state;
    const created = e.payload.job.createdAt;
    const targets = await this.opts.targets(jobId, created);
    const wanted = targets.map((t, i) => ({ t, i })).filter(({ t }) => !t.events || t.events.includes(to));
    if (wanted.length === 0) return 0;
    const keep = this.keepSeconds();
    const jobs = wanted.map(({ t, i }) => {
      const d: DeliveryData = { jobId, created, version, url: t.url, body, to };
      if (t.secret) d.target = i;
      return {
        name: 'deliver',
        data: d,
        opts: {
          jobId: deliveryId(String(ce.id), i, t.url),
          attempts: this.opts.attempts ?? 8,
          backoff: { type: 'exponential', delay: this.opts.backoffMs ?? 1000 },
          removeOnComplete: { age: keep, count: 100_000 },
          removeOnFail: { age: keep },
        },
      };
    });
    const now = Date.now();
    const key = this.indexKey(jobId);
    await this.opts.redis
      .multi()
      .zadd(key, ...jobs.flatMap((j) => [now, j.opts.jobId]))
      .expire(key, keep + 86_400)
      .exec();
    await this.queue.addBulk(jobs);
    return jobs.length;
  }

  /** Start delivering (the `schedule` role). */
  async startWorker(): Promise<void> {
    if (this.worker) return;
    this.workerConnection = this.opts.redis.duplicate({ maxRetriesPerRequest: null });
    this.workerConnection.on('error', (err) =>
      this.opts.logger?.warn({ err: err.message }, 'webhook worker connection error'),
    );
    const worker = new Worker(WEBHOOK_QUEUE, (job: BullJob<DeliveryData>) => this.deliver(job), {
      connection: this.workerConnection,
      prefix: this.opts.prefix,
      concurrency: this.opts.concurrency ?? 32,
    });
    worker.on('completed', () => this.instrumentation.emit('delivery', { result: 'delivered' }));
    worker.on('failed', (job, err) => {
      // the delivery's own number of tries: it may have been enqueued with another setting
      const final =
        !job || job.attemptsMade >= (job.opts.attempts ?? 1) || err?.name === 'UnrecoverableError';
      this.instrumentation.emit('delivery', { result: final ? 'failed' : 'retried' });
      if (final)
        this.opts.logger?.warn(
          { jobId: job?.data.jobId, url: job ? redactUrl(job.data.url) : undefined, err: err?.message },
          'webhook delivery failed after its last try',
        );
    });
    const paused = pauseWhileRefused(worker, (err, pauseMs) =>
      this.opts.logger?.warn(
        { err: String(err), pauseMs },
        'webhook worker paused: Redis refuses commands for now',
      ),
    );
    worker.on('error', (err) => {
      if (!paused(err)) this.opts.logger?.warn({ err: err.message }, 'webhook worker error');
    });
    this.worker = worker;
    await worker.waitUntilReady();
    // BullMQ trims finished deliveries past their age only when later ones finish: on
    // a quiet system the last records would stay. Swept here, as jobs are by retention.
    const keepMs = this.keepSeconds() * 1000;
    this.cleaner = setInterval(
      () => {
        for (const type of ['completed', 'failed'] as const)
          this.queue
            .clean(keepMs, 10_000, type)
            .catch((err) => this.opts.logger?.warn({ err }, 'removing old webhook deliveries failed'));
      },
      Math.min(600_000, Math.max(1000, keepMs / 2)),
    );
    this.cleaner.unref();
  }

  /** The secret of a delivery's target, from its job; none to sign with: not sent. */
  private async secretOf(d: DeliveryData, index: number): Promise<string> {
    const t = (await this.opts.targets(d.jobId, d.created ?? ''))[index];
    if (t?.url !== d.url || !t.secret)
      throw new UnrecoverableError('the job is gone (removed by retention), and its webhook secret with it');
    return t.secret;
  }

  private keepSeconds(): number {
    return this.opts.keepSeconds ?? 7 * 86_400;
  }

  private async deliver(job: BullJob<DeliveryData>): Promise<{ status: number }> {
    const d = job.data;
    const ts = Math.floor(Date.now() / 1000);
    const headers: Record<string, string> = {
      'content-type': 'application/cloudevents+json; charset=utf-8',
      'user-agent': 'extjob-webhooks/1',
      [TIMESTAMP_HEADER]: String(ts),
      'X-Extjob-Delivery': String(job.id),
    };
    const secret = d.target === undefined ? d.secret : await this.secretOf(d, d.target);
    if (secret) headers[SIGNATURE_HEADER] = sign(secret, ts, d.body);
    let status: number;
    try {
      status = await this.post(d.url, headers, d.body);
    } catch (err) {
      const e = err as Error & { code?: string };
      if (e instanceof RefusedTargetError) throw new UnrecoverableError(e.message);
      throw new Error(
        e.name === 'AbortError' || e.name === 'TimeoutError'
          ? 'the receiver did not answer in time'
          : `request failed: ${e.code ?? e.message}`,
      );
    }
    if (status >= 200 && status < 300) return { status };
    const msg = `HTTP ${status} from the receiver${status >= 300 && status < 400 ? ' (redirects are not followed)' : ''}`;
    throw PERMANENT(status) ? new UnrecoverableError(msg) : new Error(msg);
  }

  /**
   * POST `body` to `target` and answer the response status. The host is resolved by the
   * guarded lookup, and an address literal is checked here, so the request only ever
   * connects to an address the policy allows.
   */
  private post(target: string, headers: Record<string, string>, body: string): Promise<number> {
    let url: URL;
    try {
      url = new URL(target);
    } catch {
      throw new RefusedTargetError('the URL is not valid');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new RefusedTargetError(`${url.protocol} URLs are not allowed`);
    if (url.username || url.password) throw new RefusedTargetError('URLs with credentials are not allowed');
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const why = isIP(host) ? refusal(host, this.policy) : undefined;
    if (why) throw new RefusedTargetError(why);
    const protocol = url.protocol;
    return new Promise((resolve, reject) => {
      const req = (protocol === 'https:' ? https : http).request(
        {
          protocol,
          hostname: host,
          port: url.port || undefined,
          path: `${url.pathname}${url.search}`,
          method: 'POST',
          headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
          agent: this.agents[protocol],
          lookup: this.lookup,
          signal: AbortSignal.timeout(this.opts.timeoutMs ?? 10_000),
        },
        (res) => {
          res.on('error', () => {}); // the body is discarded; a broken one changes nothing
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  /**
   * Deliveries of a job, newest first (at most `limit`); given when the job was
   * created, not those of an earlier job that had its id.
   */
  async list(jobId: string, created?: string, limit = 100): Promise<DeliveryView[]> {
    const ids = await this.opts.redis.zrevrange(this.indexKey(jobId), 0, limit - 1);
    // State first, then the job: the record read is at least as new as the state.
    const states = await Promise.all(ids.map((id) => this.queue.getJobState(id)));
    const jobs = await Promise.all(ids.map((id) => this.queue.getJob(id)));
    const out: DeliveryView[] = [];
    for (const [i, j] of jobs.entries()) {
      if (!j || (created !== undefined && j.data.created !== undefined && j.data.created !== created))
        continue;
      const state = states[i] ?? 'unknown';
      const v: DeliveryView = {
        id: String(j.id),
        url: j.data.url,
        version: j.data.version,
        state,
        attempts: j.attemptsMade,
        createdAt: new Date(j.timestamp).toISOString(),
      };
      if (j.data.to) v.to = j.data.to;
      const rv = j.returnvalue as { status?: number } | null | undefined;
      if (rv?.status) v.status = rv.status;
      // a delivery that succeeded after retries has no error: the earlier tries' last
      // reason stays on the BullMQ job, and `attempts` says there were retries
      if (j.failedReason && state !== 'completed') {
        v.error = j.failedReason;
        const m = /^HTTP (\d{3})/.exec(j.failedReason);
        if (m && !v.status) v.status = Number(m[1]);
      }
      if (j.finishedOn) v.finishedAt = new Date(j.finishedOn).toISOString();
      out.push(v);
    }
    return out;
  }

  async close(): Promise<void> {
    clearInterval(this.cleaner);
    // a connection that is down makes BullMQ's close wait for it: cut it first
    disconnectIfDown(this.workerConnection);
    disconnectIfDown(this.queueConnection);
    await this.worker?.close().catch(() => {});
    await this.queue.close().catch(() => {});
    this.queueConnection.disconnect();
    if (this.workerConnection) await closeConnection(this.workerConnection);
    for (const agent of Object.values(this.agents)) agent.destroy();
  }
}

/**
 * One per change and target: a change seen twice is delivered once. The change's
 * CloudEvents id names it (job, its creation, version, attempt: changes-v1.ts).
 */
function deliveryId(changeId: string, index: number, url: string): string {
  return `wh-${createHash('sha256').update(`${changeId}\n${index}\n${url}`).digest('hex').slice(0, 40)}`;
}

/** A URL for logs: no credentials or query (they may carry secrets). */
function redactUrl(u: string): string {
  try {
    const url = new URL(u);
    return `${url.protocol}//${url.host}${url.pathname}`;
  } catch {
    return '[invalid url]';
  }
}
