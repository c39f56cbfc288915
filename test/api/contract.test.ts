/**
 * The contract checks: the OpenAPI document lists exactly the routes the server
 * registers, every error code has an HTTP status, and no request shape (fuzzed
 * bodies, headers, paths) makes the server answer 5xx or fall over.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createApp } from '../../src/api/app.js';
import { createRegistry } from '../../src/api/metrics.js';
import { buildOpenApi } from '../../src/api/openapi.js';
import { STATUS_OF } from '../../src/api/problem.js';
import { Readiness } from '../../src/api/readiness.js';
import { ROUTES } from '../../src/api/routes.js';
import { ERROR_CODES } from '../../src/shared/errors.js';
import { createLogger } from '../../src/shared/logger.js';
import { kafkaGateway, startTestApi, TOKENS } from './support.js';

/** Every method + path express would route, read from the router stack. */
function registered(app: ReturnType<typeof createApp>): Set<string> {
  const out = new Set<string>();
  const walk = (stack: unknown[]) => {
    for (const layer of stack as {
      route?: { path: string; methods: Record<string, boolean> };
      handle?: { stack?: unknown[] };
    }[]) {
      if (layer.route) {
        for (const [m, on] of Object.entries(layer.route.methods))
          if (on && m !== '_all') out.add(`${m} ${layer.route.path.replace(/:(\w+)/g, '{$1}')}`);
      } else if (layer.handle?.stack) walk(layer.handle.stack);
    }
  };
  walk((app as unknown as { router: { stack: unknown[] } }).router.stack);
  return out;
}

type Json = Record<string, unknown>;

describe('OpenAPI', () => {
  it('documents exactly the routes the server registers', async () => {
    const api = await startTestApi();
    const doc = (await (await api.req('/openapi.json', { token: null })).json()) as {
      openapi: string;
      paths: Record<string, Record<string, unknown>>;
    };
    expect(doc.openapi).toBe('3.1.0');
    const documented = new Set(
      Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m} ${p}`)),
    );
    // the same app the test API serves, rebuilt to read its router stack
    const { createApiRouter } = await import('../../src/api/router.js');
    const router = createApiRouter({
      broker: api.broker,
      hub: api.hub,
      tokens: [],
      insecure: true,
      logger: createLogger({ level: 'silent' }),
    });
    const app = createApp({
      readiness: new Readiness(),
      registry: createRegistry(),
      logger: createLogger({ level: 'silent' }),
      routers: [router],
    });
    expect([...registered(app)].sort()).toEqual([...documented].sort());
    expect(documented.size).toBe(ROUTES.length + 4);
  });

  it('says what the server checks: bounded integers in queries, the log as text too, problem details', async () => {
    const doc = buildOpenApi() as {
      paths: Record<
        string,
        Record<string, { parameters: { name: string; schema: unknown }[]; responses: Json }>
      >;
      components: { schemas: Record<string, Json> };
    };
    const param = (path: string, name: string) =>
      doc.paths[path]!.get!.parameters.find((p) => p.name === name)?.schema;
    expect(param('/v1/jobs', 'limit')).toEqual({ type: 'integer', minimum: 1, maximum: 500 });
    expect(param('/v1/jobs/{id}/log', 'limit')).toEqual({ type: 'integer', minimum: 1, maximum: 1000 });
    expect(param('/v1/jobs/{id}/wait', 'timeoutSeconds')).toEqual({
      type: 'integer',
      minimum: 0,
      maximum: 300,
    });
    const api = await startTestApi();
    expect((await api.req('/v1/jobs?limit=501')).status).toBe(400);
    expect((await api.req('/v1/jobs?limit=500')).status).toBe(200);

    const log = doc.paths['/v1/jobs/{id}/log']!.get!.responses['200'] as { content: Json };
    expect(Object.keys(log.content).sort()).toEqual(['application/json', 'text/plain']);

    // problem bodies carry their details as extra members (RFC 9457): allowed
    expect(doc.components.schemas.Problem!.additionalProperties).not.toBe(false);
    await api.req('/v1/jobs', { json: { id: 'p1', name: 'a' } });
    const conflict = await api.req('/v1/jobs', { json: { id: 'p1', name: 'b' } });
    expect(conflict.status).toBe(409);
    expect(await conflict.json()).toMatchObject({ code: 'EXTJOB_JOB_CONFLICT', jobId: 'p1' });
  });

  it("documents the job spec's bounds the server keeps: a job at every bound is created, past one refused", async () => {
    const spec = (buildOpenApi() as { components: { schemas: Record<string, Json> } }).components.schemas
      .JobSpec as { properties: Record<string, Json & { properties?: Record<string, Json> }> };
    const p = spec.properties;
    const labels = p.labels as { maxProperties: number; propertyNames: { pattern: string } } & Json;
    const valueMax = (labels.additionalProperties as { maxLength: number }).maxLength;
    const keyMax = Number(/\{1,(\d+)\}/.exec(labels.propertyNames.pattern)![1]);
    const executorMax = (p.executor as { maxLength: number }).maxLength;
    const codes = p.retry!.properties!.onExitCodes as { maxItems: number; items: { maximum: number } };
    const key = (i: number) => `${i}`.padEnd(keyMax, 'k');
    const atBounds = {
      name: 'n'.repeat((p.name as { maxLength: number }).maxLength),
      labels: Object.fromEntries(
        Array.from({ length: labels.maxProperties }, (_, i) => [key(i), 'v'.repeat(valueMax)]),
      ),
      executor: 'e'.repeat(executorMax),
      retry: {
        limit: 1,
        onExitCodes: Array.from({ length: codes.maxItems }, (_, i) => codes.items.maximum - i),
      },
    };
    const api = await startTestApi();
    const created = await api.req('/v1/jobs', { json: atBounds });
    expect(created.status, await created.clone().text()).toBe(201);
    const past: [string, Json][] = [
      ['name', { name: 'n'.repeat((p.name as { maxLength: number }).maxLength + 1) }],
      ['labels', { labels: { ...atBounds.labels, more: 'v' } }],
      ['label key', { labels: { [`${key(0)}k`]: 'v' } }],
      ['label value', { labels: { a: 'v'.repeat(valueMax + 1) } }],
      ['executor', { executor: 'e'.repeat(executorMax + 1) }],
      ['exit codes', { retry: { limit: 1, onExitCodes: [...atBounds.retry.onExitCodes, 0] } }],
    ];
    for (const [what, change] of past) {
      const r = await api.req('/v1/jobs', { json: { ...atBounds, ...change } });
      expect(r.status, what).toBe(400);
      expect(((await r.json()) as { code: string }).code, what).toBe('EXTJOB_VALIDATION_FAILED');
    }
    // a label named __proto__ is refused, not dropped (a record cannot hold it)
    const proto = await api.req('/v1/jobs', {
      method: 'POST',
      body: '{"id":"proto","name":"n","labels":{"__proto__":"x","k":"v"}}',
      headers: { 'content-type': 'application/json' },
    });
    expect(proto.status).toBe(400);
    expect(((await proto.json()) as { detail: string }).detail).toMatch(/^body\.labels\.__proto__: /);
    // anywhere in a body: zod's copy would drop it, and the retry policy with it
    const nested = await api.req('/v1/jobs', {
      method: 'POST',
      body: '{"id":"proto2","name":"n","retry":{"__proto__":{"limit":3}}}',
      headers: { 'content-type': 'application/json' },
    });
    expect(nested.status).toBe(400);
    expect(((await nested.json()) as { detail: string }).detail).toBe(
      'body.retry.__proto__: the key __proto__ is reserved',
    );
    expect((await api.req('/v1/jobs/proto2')).status).toBe(404);
    // seqs up to 2^31-1 are valid: fromSeq takes them (and more digits than nine)
    await api.req('/v1/jobs', { json: { id: 'seqs', name: 'n' } });
    expect((await api.req('/v1/jobs/seqs/log?fromSeq=2147483647')).status).toBe(200);
  });

  it('references only schemas it defines', () => {
    const doc = buildOpenApi();
    const text = JSON.stringify(doc);
    const schemas = (doc.components as { schemas: Record<string, unknown> }).schemas;
    for (const m of text.matchAll(/"#\/components\/schemas\/([^"]+)"/g))
      expect(schemas).toHaveProperty(m[1]!);
    expect(text).not.toContain('#/$defs/');
  });
});

describe('problem codes', () => {
  it('maps every catalogue code to an HTTP status', () => {
    expect(Object.keys(STATUS_OF).sort()).toEqual(Object.keys(ERROR_CODES).sort());
    for (const [code, status] of Object.entries(STATUS_OF)) {
      expect(status, code).toBeGreaterThanOrEqual(400);
      if (ERROR_CODES[code as keyof typeof ERROR_CODES].retriable) expect(status, code).toBe(503);
    }
  });
});

describe('fuzzing', () => {
  const paths = [
    '/v1/jobs',
    '/v1/jobs/fz',
    '/v1/jobs/fz/cancel',
    '/v1/jobs/fz/events',
    '/v1/jobs/fz/log',
    '/v1/jobs/fz/history',
    '/v1/jobs/fz/wait',
    '/v1/jobs/fz/deliveries',
  ];
  const json = fc.jsonValue({ maxDepth: 6 });
  const body = fc.oneof(
    json.map((v) => JSON.stringify(v)),
    fc
      .record(
        { name: fc.string(), id: fc.string(), labels: fc.dictionary(fc.string(), fc.string()) },
        { requiredKeys: [] },
      )
      .map((v) => JSON.stringify(v)),
    fc.string(),
    fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('latin1')),
  );
  const header = fc.string({ maxLength: 60 }).filter((s) => /^[\t\x20-\x7e]*$/.test(s));

  it('never answers 5xx to any body, header or query, and keeps serving', async () => {
    const { gateway } = await kafkaGateway();
    const api = await startTestApi({ events: gateway });
    await api.req('/v1/jobs', { json: { id: 'fz', name: 'fuzz' } });
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...paths),
        fc.constantFrom('GET', 'POST'),
        body,
        fc.constantFrom(
          'application/json',
          'application/cloudevents+json',
          'text/plain',
          '',
          'application/json; charset=latin1',
        ),
        fc.oneof(fc.constant(`Bearer ${TOKENS.admin}`), fc.constant(''), header),
        fc.oneof(
          fc.constant(''),
          fc.string({ maxLength: 40 }).map((q) => `?${encodeURI(q)}`),
        ),
        async (path, method, b, ct, auth, query) => {
          const headers: Record<string, string> = {};
          if (ct) headers['content-type'] = ct;
          if (auth) headers.authorization = auth;
          let res: Response;
          try {
            res = await fetch(`${api.url}${path}${path.endsWith('/wait') ? '?timeoutSeconds=0' : query}`, {
              method,
              headers,
              ...(method === 'POST' ? { body: b } : {}),
            });
          } catch (err) {
            // fetch itself may refuse an invalid header value: not the server's doing
            if (/header|ByteString/i.test(String((err as Error).cause ?? err))) return;
            throw err;
          }
          await res.arrayBuffer();
          expect(res.status, `${method} ${path} ${b.slice(0, 80)}`).toBeLessThan(500);
        },
      ),
      { numRuns: 300 },
    );
    expect((await api.req('/v1/jobs/fz')).status).toBe(200);
  });

  it('answers job-shaped bodies with 201, 200, 400 or 409 only, and a created job reads back', async () => {
    const api = await startTestApi();
    const spec = fc.record(
      {
        id: fc.oneof(fc.stringMatching(/^[A-Za-z0-9._:-]{1,20}$/), fc.string({ maxLength: 140 })),
        name: fc.string({ maxLength: 300 }),
        labels: fc.dictionary(fc.string({ maxLength: 20 }), fc.string({ maxLength: 30 }), { maxKeys: 70 }),
        executor: fc.string({ maxLength: 30 }),
        timeouts: fc.record(
          {
            acceptSeconds: fc.integer({ min: -5, max: 100_000 }),
            cancelGraceSeconds: fc.integer({ min: -5, max: 100_000 }),
          },
          { requiredKeys: [] },
        ),
        retry: fc.record(
          { limit: fc.integer({ min: -1, max: 12 }), onExitCodes: fc.array(fc.integer(), { maxLength: 5 }) },
          { requiredKeys: ['limit'] },
        ),
        notify: fc.array(
          fc.record(
            { url: fc.oneof(fc.webUrl(), fc.string()), secret: fc.string({ maxLength: 10 }) },
            { requiredKeys: ['url'] },
          ),
          { maxLength: 3 },
        ),
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(spec, async (body) => {
        const r = await api.req('/v1/jobs', { json: body });
        expect([200, 201, 400, 409], JSON.stringify(body).slice(0, 200)).toContain(r.status);
        if (r.status === 201) {
          const { job } = (await r.json()) as { job: { id: string } };
          const back = await api.req(`/v1/jobs/${encodeURIComponent(job.id)}`);
          expect(back.status).toBe(200);
          expect(JSON.stringify(await back.json())).not.toContain('"secret"');
        } else await r.arrayBuffer();
      }),
      { numRuns: 200 },
    );
  });
});

describe('docs/api.md', () => {
  it('lists every error code with the status the server uses', async () => {
    const { readFileSync } = await import('node:fs');
    const doc = readFileSync(new URL('../../docs/api.md', import.meta.url), 'utf8');
    const rows = [...doc.matchAll(/^\| `(EXTJOB_[A-Z_]+)` \| (\d{3}) \|$/gm)].map((m) => [
      m[1],
      Number(m[2]),
    ]);
    expect(Object.fromEntries(rows)).toEqual(STATUS_OF);
  });

  it('documents every route of the table', async () => {
    const { readFileSync } = await import('node:fs');
    const doc = readFileSync(new URL('../../docs/api.md', import.meta.url), 'utf8');
    for (const r of ROUTES) expect(doc, r.path).toContain(`\`${r.method.toUpperCase()} ${r.path}`);
  });
});
