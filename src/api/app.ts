/**
 * The HTTP application: probes, metrics and (mounted by the caller) the /v1 API.
 * Building the app does no I/O; the caller owns every connection it is given.
 */
import express, { type Express, type RequestHandler, type Router } from 'express';
import type { Registry } from 'prom-client';
import type { Logger } from '../shared/logger.js';
import { buildOpenApi } from './openapi.js';
import { problemHandler, routeNotFound } from './problem.js';
import type { Readiness } from './readiness.js';

export interface AppParts {
  readiness: Readiness;
  registry: Registry;
  logger: Logger;
  /** Routers mounted after the probes (the /v1 API). */
  routers?: Router[];
  /** Error handler installed last. */
  errorHandler?: express.ErrorRequestHandler;
  /** Installed first: sees every request (request log and HTTP metrics). */
  requestLog?: RequestHandler;
  /** Counts the requests under way, for a stop to wait for (InFlight). */
  inFlight?: RequestHandler;
}

export function createApp(parts: AppParts): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  if (parts.requestLog) app.use(parts.requestLog);
  if (parts.inFlight) app.use(parts.inFlight);
  // Stopping: every answer from then on closes its connection (told as its headers go
  // out: a long-poll that came before is answered after), so that a client keeping
  // connections alive (a pool, a proxy) opens its next one elsewhere.
  app.use((_req, res, next) => {
    const writeHead = res.writeHead;
    res.writeHead = ((...args: Parameters<typeof writeHead>) => {
      if (parts.readiness.isStopping && !res.headersSent) res.setHeader('connection', 'close');
      return writeHead.apply(res, args);
    }) as typeof writeHead;
    next();
  });

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  app.get('/readyz', async (_req, res) => {
    const report = await parts.readiness.report();
    res.status(report.ready ? 200 : 503).json(report);
  });

  app.get('/metrics', async (_req, res) => {
    res.type(parts.registry.contentType).send(await parts.registry.metrics());
  });

  let openapi: string | undefined;
  app.get('/openapi.json', (_req, res) => {
    openapi ??= JSON.stringify(buildOpenApi());
    res.type('application/json').send(openapi);
  });

  for (const router of parts.routers ?? []) app.use(router);
  app.use(routeNotFound);
  app.use(parts.errorHandler ?? problemHandler(parts.logger));
  return app;
}
