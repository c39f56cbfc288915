/**
 * Logs: one JSON line per HTTP request carrying the job id and event id when the
 * request concerns one, and no token or secret ever reaching the log, whether it came
 * in a header, a query string, a body or a logged object.
 */
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import express from 'express';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { httpObservability } from '../../src/api/metrics-http.js';
import { createLogger } from '../../src/shared/logger.js';

const SECRETS = {
  apiToken: 'api-token-0123456789abcdef',
  eventToken: 'evt-token-XYZ-abcdefghijklmnop',
  webhookSecret: 'hook-secret-ABCDEFGHIJ',
  password: 'kafka-pass-9876543210',
  cookie: 'session-cookie-qwertyuiop',
};

function capture() {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  return { logger: createLogger({ level: 'debug' }, sink), lines, text: () => lines.join('\n') };
}

const servers: { close(): void }[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** An app shaped like extjob's: the middleware first, a JSON router, a 404. */
async function serve(logger: ReturnType<typeof createLogger>, registry = new Registry()) {
  const app = express();
  app.use(httpObservability(registry, logger));
  const v1 = express.Router();
  v1.get('/v1/jobs/:id', (req, res) => {
    res.json({ id: req.params.id });
  });
  v1.post('/v1/jobs/:id/events', express.json(), (req, res) => {
    logger.info({ jobId: req.params.id, eventToken: SECRETS.eventToken }, 'handler logged an object');
    res.status(202).json({ accepted: true });
  });
  v1.post('/v1/jobs', express.json(), (req, res) => {
    logger.info({ spec: req.body, headers: req.headers }, 'handler logged the spec and headers');
    res.status(201).json({ eventToken: SECRETS.eventToken });
  });
  app.use(v1);
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  servers.push(server);
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, registry };
}

/** Wait for the log line of a request (written when the response finished). */
async function lineFor(lines: string[], path: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const found = lines.map((l) => JSON.parse(l)).find((l) => l.http?.path === path);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no request log line for ${path}: ${lines.join('\n')}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('request logs', () => {
  it('logs one JSON line per request with route template, status, duration and the job id', async () => {
    const { logger, lines } = capture();
    const { url, registry } = await serve(logger);
    const res = await fetch(`${url}/v1/jobs/build-42?token=${SECRETS.apiToken}`, {
      headers: { authorization: `Bearer ${SECRETS.apiToken}` },
    });
    expect(res.status).toBe(200);
    const line = await lineFor(lines, '/v1/jobs/build-42');
    expect(line).toMatchObject({
      level: 30,
      msg: 'request',
      jobId: 'build-42',
      http: { method: 'GET', route: '/v1/jobs/:id', status: '200' },
    });
    expect(typeof (line.http as { ms: number }).ms).toBe('number');
    const metrics = await registry.metrics();
    expect(metrics).toContain('extjob_http_requests_total{method="GET",route="/v1/jobs/:id",status="200"} 1');
  });

  it('carries the event id of an event posted over HTTP', async () => {
    const { logger, lines } = capture();
    const { url } = await serve(logger);
    await fetch(`${url}/v1/jobs/j1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${SECRETS.eventToken}` },
      body: JSON.stringify({ specversion: '1.0', id: 'ev-7', source: 's', type: 'dev.extjob.accepted.v1' }),
    });
    expect(await lineFor(lines, '/v1/jobs/j1/events')).toMatchObject({ jobId: 'j1', eventId: 'ev-7' });
  });

  it('labels unmatched paths as one route, so scanners cannot grow the series', async () => {
    const { logger, lines } = capture();
    const { url, registry } = await serve(logger);
    for (let i = 0; i < 5; i++) await fetch(`${url}/wp-admin/${i}.php`);
    await lineFor(lines, '/wp-admin/4.php');
    const metrics = await registry.metrics();
    expect(metrics).toContain('extjob_http_requests_total{method="GET",route="unmatched",status="404"} 5');
  });

  it('logs probes at debug only', async () => {
    const { logger, lines } = capture();
    const { url } = await serve(logger);
    await fetch(`${url}/healthz`);
    expect(await lineFor(lines, '/healthz')).toMatchObject({ level: 20 });
  });

  it('never writes a token or secret, wherever it came from', async () => {
    const { logger, lines, text } = capture();
    const { url } = await serve(logger);
    const headers = {
      'content-type': 'application/json',
      authorization: `Bearer ${SECRETS.apiToken}`,
      cookie: SECRETS.cookie,
    };
    await fetch(`${url}/v1/jobs?token=${SECRETS.apiToken}`, {
      method: 'POST',
      headers,
      body: JSON.stringify({
        name: 'deploy',
        notify: [{ url: 'https://hooks.example/x', secret: SECRETS.webhookSecret }],
      }),
    });
    await fetch(`${url}/v1/jobs/j2/events`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ id: 'e1' }),
    });
    await lineFor(lines, '/v1/jobs');
    await lineFor(lines, '/v1/jobs/j2/events');
    // Objects a component might log directly.
    logger.info({ token: SECRETS.apiToken, config: { password: SECRETS.password } }, 'config');
    logger.info({ job: { notify: [{ url: 'u', secret: SECRETS.webhookSecret }] } }, 'nested');
    logger.info({ req: { headers: { authorization: `Bearer ${SECRETS.apiToken}` } } }, 'req');

    const all = text();
    expect(lines.length).toBeGreaterThanOrEqual(7);
    for (const [name, secret] of Object.entries(SECRETS)) expect(all, name).not.toContain(secret);
    // The handler's lines are there, with their secrets censored.
    expect(all).toContain('handler logged the spec and headers');
    expect(all).toContain('[redacted]');
  });
});
