/**
 * The /v1 router: registers every route of ROUTES with its auth, body parsing,
 * validation and handler. Broker calls run under a deadline so a Redis outage
 * answers 503 instead of hanging the request.
 */
import { type Request, type RequestHandler, type Response, Router } from 'express';
import type { Cause, Job } from '../broker/types.js';
import type { ApiToken } from '../shared/config.js';
import { ExtjobError, isExtjobError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { allows, bearerToken, type Principal, requireScope, TokenTable } from './auth.js';
import { BatchReader } from './batch-reader.js';
import { jsonBody, protoKeyPath } from './body.js';
import { chunkJson } from './log-format.js';
import type { NotifyHub } from './notify-hub.js';
import type { BrokerPort, DeliveryLog, EventGateway, LogPage } from './ports.js';
import { expressPath, ROUTES, type RouteDef } from './routes.js';
import { describeIssues, IDEMPOTENCY_KEY, jobId } from './schemas.js';
import { lastEventId, SseStream } from './sse.js';
import { logResumePoint, mustGetJob, streamEvents, streamLog } from './streams.js';
import { waitForJob } from './wait.js';

export interface ApiOptions {
  broker: BrokerPort;
  hub: NotifyHub;
  events?: EventGateway;
  deliveries?: DeliveryLog;
  tokens: readonly ApiToken[];
  insecure: boolean;
  logger: Logger;
  /** False while the Redis connection is down: requests fail fast with 503. */
  redisReady?: () => boolean;
  /** Registers a listener called when the Redis connection drops: calls waiting on it answer 503 at once. */
  onRedisLost?: (listener: () => void) => void;
  /** Longest a broker call may take before the request answers 503. */
  callTimeoutMs?: number;
  /** Why a webhook URL can never be delivered to (a forbidden literal address), if so. */
  refuseNotifyUrl?: (url: string) => string | undefined;
}

interface Ctx {
  req: Request;
  res: Response;
  id: string;
  query: Record<string, unknown>;
  body: unknown;
  principal: Principal;
}

type Handler = (ctx: Ctx) => Promise<void>;

export function createApiRouter(opts: ApiOptions): Router {
  const table = new TokenTable(opts.tokens);
  const timeoutMs = opts.callTimeoutMs ?? 5000;

  /** Calls in progress: each one's way to fail when the Redis connection drops. */
  const waiting = new Set<(err: Error) => void>();
  opts.onRedisLost?.(() => {
    const err = new ExtjobError('EXTJOB_REDIS_UNAVAILABLE', 'the Redis connection was lost');
    for (const fail of waiting) fail(err);
  });

  /**
   * A broker call with a deadline; Redis trouble becomes a 503 problem, at once when
   * the connection drops under it (a command sent just before may wait for the
   * reconnection, and the client must not wait with it).
   */
  const call = async <T>(fn: () => Promise<T>): Promise<T> => {
    if (opts.redisReady && !opts.redisReady())
      throw new ExtjobError('EXTJOB_REDIS_UNAVAILABLE', 'Redis is not connected');
    let timer: NodeJS.Timeout | undefined;
    let fail: ((err: Error) => void) | undefined;
    try {
      return await Promise.race([
        fn(),
        new Promise<never>((_, reject) => {
          fail = reject;
          waiting.add(reject);
          timer = setTimeout(
            () =>
              reject(
                new ExtjobError('EXTJOB_REDIS_UNAVAILABLE', `Redis did not answer within ${timeoutMs} ms`),
              ),
            timeoutMs,
          );
        }),
      ]);
    } catch (err) {
      if (isExtjobError(err)) throw err;
      const name = (err as Error)?.name ?? '';
      const msg = (err as Error)?.message ?? String(err);
      if (/MaxRetriesPerRequest|Connection is closed|ECONNREFUSED|ETIMEDOUT|LOADING/i.test(`${name} ${msg}`))
        throw new ExtjobError('EXTJOB_REDIS_UNAVAILABLE', `Redis: ${msg}`, { cause: err });
      throw err;
    } finally {
      clearTimeout(timer);
      if (fail) waiting.delete(fail);
    }
  };

  const { broker, hub } = opts;
  /**
   * Reads requested in the same turn of the event loop go to Redis in one pipeline
   * (one socket write for all: under load, most of a read's cost is that write).
   * Waiters woken by the same change (same job version) share one read, which starts
   * after that change was published and so sees it. Other reads are not shared.
   */
  const inflight = new Map<string, Promise<Job | undefined>>();
  const batch = broker.getJobs ? new BatchReader((ids) => broker.getJobs!(ids)) : undefined;
  const read = (id: string) => call(() => (batch ? batch.read(id) : broker.getJob(id)));
  const readAfter = (id: string, version?: number): Promise<Job | undefined> => {
    if (version === undefined) return read(id);
    const key = `${id}@${version}`;
    let p = inflight.get(key);
    if (!p) {
      p = read(id).finally(() => inflight.delete(key));
      inflight.set(key, p);
    }
    return p;
  };
  const cause = (ctx: Ctx, reason?: string): Cause =>
    reason === undefined
      ? { kind: 'api', caller: ctx.principal.caller }
      : { kind: 'api', caller: ctx.principal.caller, reason };

  const handlers: Record<string, Handler> = {
    createJob: async (ctx) => {
      const notify = (ctx.body as { notify?: { url: string }[] }).notify ?? [];
      notify.forEach(({ url }, i) => {
        const why = opts.refuseNotifyUrl?.(url);
        if (why) throw new ExtjobError('EXTJOB_VALIDATION_FAILED', `body.notify.${i}.url: ${why}`);
      });
      const key = ctx.req.get('idempotency-key');
      if (key !== undefined && !IDEMPOTENCY_KEY.test(key))
        throw new ExtjobError(
          'EXTJOB_VALIDATION_FAILED',
          'Idempotency-Key must be 16 to 256 visible ASCII characters (a random UUID, say)',
        );
      const r = await call(() => broker.createJob(ctx.body as never, cause(ctx), key));
      if (r.created) ctx.res.status(201).json({ job: r.job, eventToken: r.eventToken });
      else ctx.res.status(200).json(r.eventToken ? { job: r.job, eventToken: r.eventToken } : { job: r.job });
    },
    listJobs: async (ctx) => {
      const q = ctx.query as {
        state?: never;
        executor?: string;
        label?: string;
        limit?: number;
        cursor?: string;
      };
      const filter: Parameters<BrokerPort['listJobs']>[0] = { limit: q.limit ?? 50 };
      if (q.state) filter.state = q.state;
      if (q.executor) filter.executor = q.executor;
      if (q.cursor) filter.cursor = q.cursor;
      if (q.label) {
        const i = q.label.indexOf(':');
        filter.label = [q.label.slice(0, i), q.label.slice(i + 1)];
      }
      const page = await call(() => broker.listJobs(filter));
      ctx.res.json(page.nextCursor ? { jobs: page.jobs, nextCursor: page.nextCursor } : { jobs: page.jobs });
    },
    getJob: async (ctx) => {
      ctx.res.json(await mustGetJob({ getJob: read }, ctx.id));
    },
    readLog: async (ctx) => {
      const kind = ctx.req.accepts(['application/json', 'text/plain']);
      if (!kind)
        throw new ExtjobError('EXTJOB_NOT_ACCEPTABLE', 'the log is served as application/json or text/plain');
      const q = ctx.query as { fromSeq?: number; limit?: number };
      const read = (fromSeq: number) =>
        call(() => broker.readLog(ctx.id, { fromSeq, limit: q.limit ?? 1000 }));
      const page = await read(q.fromSeq ?? 0);
      if (!page) throw new ExtjobError('EXTJOB_JOB_NOT_FOUND', `no job "${ctx.id}"`);
      const { res } = ctx;
      if (kind === 'text/plain') {
        // complete and truncated describe the whole log, whatever the page
        res.setHeader('Extjob-Log-Complete', String(page.complete));
        // the text cannot carry the truncation marker the JSON form has
        if (page.truncated)
          res.setHeader(
            'Extjob-Log-Truncated',
            `chunks=${page.truncated.chunks}, bytes=${page.truncated.bytes}`,
          );
        res.type('text/plain; charset=utf-8');
        // a page is what `limit` asked for; without it, the whole log, page by page
        if (!page.more || q.limit !== undefined) {
          res.setHeader('Extjob-Next-Seq', String(page.nextSeq));
          if (page.more) res.setHeader('Extjob-Log-More', 'true');
          res.send(Buffer.concat(page.chunks.map((c) => c.data)));
          return;
        }
        if (ctx.req.method === 'HEAD') {
          res.end(); // the headers alone: no page read for a body nobody gets
          return;
        }
        // a trailer needs a chunked response, which an HTTP/1.0 client does not get
        const trailer = ctx.req.httpVersion !== '1.0';
        if (trailer) res.setHeader('Trailer', 'Extjob-Next-Seq');
        await writeLogPages(res, page, read, trailer);
        return;
      }
      const body: Record<string, unknown> = {
        chunks: page.chunks.map(chunkJson),
        nextSeq: page.nextSeq,
        more: page.more,
        complete: page.complete,
        gaps: page.gaps,
      };
      if (page.truncated) body.truncated = page.truncated;
      res.json(body);
    },
    streamLog: async (ctx) => {
      await call(() => mustGetJob(broker, ctx.id));
      const resume = logResumePoint(ctx.req.get('last-event-id'));
      const from = resume ?? { seq: (ctx.query.fromSeq as number | undefined) ?? 0 };
      const sse = new SseStream(ctx.res);
      await streamLog(broker, hub, ctx.id, sse, from, resume !== undefined).then(
        () => sse.end(),
        (err) => streamFailed(sse, err),
      );
    },
    streamEvents: async (ctx) => {
      await call(() => mustGetJob(broker, ctx.id));
      const resume = lastEventId(ctx.req);
      const sse = new SseStream(ctx.res);
      await streamEvents(broker, hub, ctx.id, sse, resume ?? -1).then(
        () => sse.end(),
        (err) => streamFailed(sse, err),
      );
    },
    getHistory: async (ctx) => {
      const history = await call(() => broker.history(ctx.id));
      if (!history) throw new ExtjobError('EXTJOB_JOB_NOT_FOUND', `no job "${ctx.id}"`);
      ctx.res.json({ history });
    },
    waitJob: async (ctx) => {
      const q = ctx.query as { until?: 'terminal' | 'running'; timeoutSeconds?: number };
      if (!hub.ready)
        throw new ExtjobError('EXTJOB_REDIS_UNAVAILABLE', 'the notification subscriber is not connected');
      const gone = new AbortController();
      ctx.res.on('close', () => gone.abort());
      const r = await waitForJob(
        readAfter,
        hub,
        ctx.id,
        q.until ?? 'terminal',
        (q.timeoutSeconds ?? 30) * 1000,
        gone.signal,
      );
      if (gone.signal.aborted) return;
      ctx.res.setHeader('Extjob-Condition-Met', String(r.met));
      ctx.res.json(r.job);
    },
    cancelJob: async (ctx) => {
      const reason = (ctx.body as { reason?: string }).reason;
      const before = await call(() => mustGetJob(broker, ctx.id));
      if (before.state !== 'canceled' && ['passed', 'failed', 'timed_out', 'expired'].includes(before.state))
        throw new ExtjobError('EXTJOB_JOB_TERMINAL', `job "${ctx.id}" already finished as ${before.state}`, {
          details: { state: before.state },
        });
      const job = await call(() => broker.cancelJob(ctx.id, cause(ctx, reason)));
      if (job.state !== 'canceled' && job.state !== 'canceling')
        throw new ExtjobError('EXTJOB_JOB_TERMINAL', `job "${ctx.id}" already finished as ${job.state}`, {
          details: { state: job.state },
        });
      ctx.res.status(202).json(job);
    },
    postEvent: async (ctx) => {
      const events = opts.events;
      if (!events) throw new ExtjobError('EXTJOB_NOT_READY', 'this process does not accept events over HTTP');
      // An event token proved the job exists; other callers (admin, insecure) get a 404
      // here rather than an event dead-lettered as unknown_job.
      if (!ctx.principal.caller.startsWith('event-token:')) await call(() => mustGetJob(broker, ctx.id));
      const raw = ctx.res.locals.rawBody as Buffer;
      const r = events.parse(raw, ctx.id);
      if (!r.ok)
        throw new ExtjobError(
          r.reason === 'too_large' ? 'EXTJOB_PAYLOAD_TOO_LARGE' : 'EXTJOB_VALIDATION_FAILED',
          `the event is ${r.reason.replace('_', ' ')}: ${r.detail}`,
          { details: { reason: r.reason } },
        );
      await events.publish(r.event, raw);
      ctx.res.status(202).json({ accepted: true, jobId: ctx.id, eventId: r.event.id, type: r.event.type });
    },
    listDeliveries: async (ctx) => {
      const job = await call(() => mustGetJob(broker, ctx.id));
      const deliveries = opts.deliveries
        ? await call(() => opts.deliveries!.list(ctx.id, job.createdAt))
        : [];
      ctx.res.json({ deliveries });
    },
  };

  const streamFailed = (sse: SseStream, err: unknown) => {
    // nobody to tell, and an error after the client left (a read cut by the server's
    // stop) is not news
    if (sse.closed) return opts.logger.debug({ err }, 'stream ended after its client left');
    const code = isExtjobError(err) ? err.code : 'EXTJOB_INTERNAL';
    if (!isExtjobError(err)) opts.logger.error({ err }, 'stream failed');
    sse.send('error', { code, detail: isExtjobError(err) ? err.message : 'the stream failed' });
    sse.end();
  };

  /** Event token of this job, or an admin API token; none needed in insecure mode. */
  const eventAuth: RequestHandler = async (req, res, next) => {
    try {
      const id = String(req.params.id);
      const header = req.get('authorization');
      const token = bearerToken(header);
      if (!token) {
        // only an absent token is excused: one presented but unreadable (another
        // scheme, empty, too long) fails as in production
        if (opts.insecure && header === undefined) {
          res.locals.principal = { caller: 'anonymous', scopes: new Set() };
          return next();
        }
        throw new ExtjobError('EXTJOB_UNAUTHORIZED', "send Authorization: Bearer <the job's event token>");
      }
      const api = table.lookup(token);
      if (api && allows(api, 'admin')) {
        res.locals.principal = api;
        return next();
      }
      if (!jobId.safeParse(id).success) throw new ExtjobError('EXTJOB_VALIDATION_FAILED', `invalid job id`);
      if (await call(() => broker.verifyEventToken(id, token))) {
        res.locals.principal = { caller: `event-token:${id}`, scopes: new Set() };
        return next();
      }
      // the same answer whether the job exists or not: a caller without a valid token
      // learns nothing about which ids exist (admin callers get the 404)
      throw new ExtjobError('EXTJOB_UNAUTHORIZED', 'the token is not valid for this job');
    } catch (err) {
      next(err);
    }
  };

  const router = Router();
  for (const def of ROUTES) {
    const handler = handlers[def.operationId];
    if (!handler) throw new Error(`no handler for ${def.operationId}`);
    const chain: RequestHandler[] = [
      def.auth === 'event-token' ? eventAuth : requireScope(table, opts.insecure, def.auth),
    ];
    if (def.body) chain.push(...jsonBody(def.bodyOptional, def.operationId === 'postEvent'));
    chain.push(run(def, handler));
    router[def.method](expressPath(def.path), ...chain);
  }
  return router;
}

/**
 * The whole log as text, page after page, each written once the client took the one
 * before; Extjob-Next-Seq follows as a trailer (with `trailer`). A failure part way ends
 * the response unfinished (the client sees a broken transfer, not a short log).
 */
async function writeLogPages(
  res: Response,
  first: LogPage,
  read: (fromSeq: number) => Promise<LogPage | undefined>,
  trailer: boolean,
): Promise<void> {
  let page: LogPage | undefined = first;
  let nextSeq = first.nextSeq;
  try {
    while (page) {
      nextSeq = page.nextSeq;
      if (!res.write(Buffer.concat(page.chunks.map((c) => c.data))))
        await new Promise<void>((resolve) => {
          const done = () => {
            res.off('drain', done);
            res.off('close', done);
            resolve();
          };
          res.on('drain', done);
          res.on('close', done);
        });
      if (res.destroyed) return; // the client left
      page = page.more ? await read(page.nextSeq) : undefined;
    }
  } catch (err) {
    res.destroy(err instanceof Error ? err : new Error(String(err)));
    return;
  }
  if (trailer) res.addTrailers({ 'Extjob-Next-Seq': String(nextSeq) });
  res.end();
}

function run(def: RouteDef, handler: Handler): RequestHandler {
  return async (req, res, next) => {
    try {
      let id = '';
      if (def.path.includes('{id}')) {
        const p = jobId.safeParse(req.params.id);
        if (!p.success) throw new ExtjobError('EXTJOB_VALIDATION_FAILED', describeIssues(p.error, 'path.id'));
        id = p.data;
      }
      // Repeated parameters arrive as arrays: rejected, not guessed at, and said so (the
      // schemas would only say that each value is not one of the allowed ones).
      const repeated = Object.entries(req.query).find(([, v]) => Array.isArray(v));
      if (repeated)
        throw new ExtjobError('EXTJOB_VALIDATION_FAILED', `query.${repeated[0]}: given more than once`);
      const q = def.query.safeParse({ ...(req.query as Record<string, unknown>) });
      if (!q.success) throw new ExtjobError('EXTJOB_VALIDATION_FAILED', describeIssues(q.error, 'query'));
      let body: unknown;
      if (def.body && def.operationId !== 'postEvent') {
        const proto = protoKeyPath(req.body);
        if (proto)
          throw new ExtjobError('EXTJOB_VALIDATION_FAILED', `${proto}: the key __proto__ is reserved`);
        const b = def.body.safeParse(req.body);
        if (!b.success) throw new ExtjobError('EXTJOB_VALIDATION_FAILED', describeIssues(b.error, 'body'));
        body = b.data;
      }
      await handler({ req, res, id, query: q.data, body, principal: res.locals.principal as Principal });
    } catch (err) {
      next(err);
    }
  };
}
