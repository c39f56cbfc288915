/**
 * Observing HTTP requests: one JSON log line per request (method, route, status,
 * duration, and the job id and event id when the request concerns one) and the
 * request counter and latency histogram. Only chosen fields are logged, never
 * headers, bodies or query values, so tokens and secrets cannot reach the log.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { Counter, Histogram, type Registry } from 'prom-client';
import type { Logger } from '../shared/logger.js';

/** Probes and scrapes run every few seconds: logged at debug, not info. */
const QUIET = new Set(['/healthz', '/readyz', '/metrics']);
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
const SAFE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function httpObservability(registry: Registry, logger: Logger): RequestHandler {
  const requests = new Counter({
    name: 'extjob_http_requests_total',
    help: 'HTTP requests answered, by method, route template and status code.',
    labelNames: ['method', 'route', 'status'],
    registers: [registry],
  });
  const seconds = new Histogram({
    name: 'extjob_http_request_seconds',
    help: 'Time to answer an HTTP request (long polls and streams included), by method and route template.',
    labelNames: ['method', 'route'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [registry],
  });

  return (req: Request, res: Response, next: NextFunction) => {
    const started = performance.now();
    let done = false;
    const finish = (aborted: boolean) => {
      if (done) return;
      done = true;
      const ms = performance.now() - started;
      const route = routeOf(req);
      const method = METHODS.has(req.method) ? req.method : 'OTHER';
      const status = aborted && !res.headersSent ? 'aborted' : String(res.statusCode);
      requests.inc({ method, route, status });
      seconds.observe({ method, route }, ms / 1000);
      const line: Record<string, unknown> = {
        http: { method, route, path: req.path.slice(0, 256), status, ms: Math.round(ms * 10) / 10 },
      };
      const jobId = req.params?.id;
      if (typeof jobId === 'string' && SAFE_ID.test(jobId)) line.jobId = jobId;
      const eventId = eventIdOf(req, route);
      if (eventId) line.eventId = eventId;
      const level = res.statusCode >= 500 ? 'warn' : QUIET.has(route) ? 'debug' : 'info';
      logger[level](line, aborted ? 'request aborted' : 'request');
    };
    res.once('finish', () => finish(false));
    res.once('close', () => finish(true));
    next();
  };
}

/** The route template (e.g. /v1/jobs/:id), never the raw path: bounded labels. */
function routeOf(req: Request): string {
  const path = (req.route as { path?: unknown } | undefined)?.path;
  if (typeof path === 'string') return `${req.baseUrl}${path}`;
  return 'unmatched';
}

/** The CloudEvents id of an event posted over HTTP, when it looks like an id. */
function eventIdOf(req: Request, route: string): string | undefined {
  if (req.method !== 'POST' || !route.endsWith('/events')) return undefined;
  const body = req.body as { id?: unknown; context?: { id?: unknown } } | undefined;
  const id = body?.id ?? body?.context?.id;
  return typeof id === 'string' && SAFE_ID.test(id) ? id : undefined;
}
