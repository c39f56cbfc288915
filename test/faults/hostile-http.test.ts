/**
 * Drill 7b: fast-check fuzz of every HTTP route of a real serve process (and of paths
 * that are not routes): random methods, ids, query strings, headers and bodies (JSON
 * of any shape, garbage, deep nesting, over the size limit). No answer may be a 5xx,
 * every error must be problem+json with a code, nothing may hang (long-polls aside),
 * and the process must stay up.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ROUTES } from '../../src/api/routes.js';
import { createJobs, drillLine, isolation, serve, serveEnv } from './helpers.js';

const QUERY_KEYS = ['state', 'executor', 'label', 'limit', 'cursor', 'fromSeq', 'until', 'timeoutSeconds'];

const id = fc.oneof(
  fc.constantFrom(
    'fuzz-a',
    'fuzz-b',
    'no-such-job',
    '',
    '..',
    '%2e%2e',
    '%ZZ',
    '%00',
    'a'.repeat(129),
    'a'.repeat(5000),
  ),
  fc.string({ maxLength: 40 }).map(encodeURIComponent),
  fc.string({ unit: 'binary', maxLength: 20 }).map(encodeURIComponent),
);

/** Mostly a real route with its own method (so validation is reached), sometimes anything. */
const target = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .tuple(fc.constantFrom(...ROUTES), id)
      .map(([r, i]) => ({ method: r.method.toUpperCase(), path: r.path.replace('{id}', i) })),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(
        fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'),
        fc.constantFrom(...ROUTES),
        id,
      )
      .map(([m, r, i]) => ({ method: m, path: r.path.replace('{id}', i) })),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('GET', 'POST'), id, fc.string({ maxLength: 20 }))
      .map(([m, i, s]) => ({ method: m, path: `/v1/jobs/${i}/${encodeURIComponent(s)}` })),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('GET', 'POST'), fc.webPath())
      .map(([m, p]) => ({ method: m, path: p })),
  },
);

const query = fc.oneof(
  fc
    .dictionary(
      fc.oneof(fc.constantFrom(...QUERY_KEYS), fc.string({ maxLength: 10 })),
      fc.oneof(
        fc.string({ maxLength: 30 }),
        fc.integer().map(String),
        fc.constantFrom('-1', '0', '1e9', 'NaN', '300', '301'),
      ),
      { maxKeys: 4 },
    )
    .map((d) => new URLSearchParams(d).toString()),
  fc.string({ maxLength: 50 }),
);

const big = (n: number) => `{"name":"${'x'.repeat(n)}"}`;
const body = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 5 }).map((j) => JSON.stringify(j)) },
  {
    weight: 3,
    arbitrary: fc
      .record(
        {
          id: fc.oneof(fc.string({ maxLength: 20 }), fc.integer()),
          name: fc.oneof(fc.string({ maxLength: 20 }), fc.constant(null)),
          labels: fc.dictionary(
            fc.string({ maxLength: 8 }),
            fc.oneof(fc.string({ maxLength: 8 }), fc.integer()),
          ),
          timeouts: fc.dictionary(
            fc.constantFrom('acceptSeconds', 'runSeconds', 'x'),
            fc.oneof(fc.integer(), fc.string()),
          ),
          retry: fc.record({ limit: fc.integer({ min: -5, max: 20 }) }),
          notify: fc.array(fc.record({ url: fc.oneof(fc.webUrl(), fc.string()) }), { maxLength: 2 }),
          specversion: fc.constantFrom('1.0', '0.3', 1),
          type: fc.constantFrom('dev.extjob.finished.v1', 'dev.extjob.log.v1', 'x'),
          data: fc.jsonValue({ maxDepth: 3 }),
          reason: fc.string(),
          unknown: fc.anything(),
        },
        { requiredKeys: [] },
      )
      .map((o) => JSON.stringify(o)),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
  { weight: 1, arbitrary: fc.integer({ min: 33, max: 5000 }).map((d) => `${'['.repeat(d)}${']'.repeat(d)}`) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(big(1024 * 1024 + 10), big(600_000), '{"name":', '\u0000\uffff', ''),
  },
);

const request = fc.record({
  target,
  query,
  body,
  contentType: fc.option(
    fc.constantFrom(
      'application/json',
      'application/cloudevents+json',
      'text/plain',
      'application/json; charset=latin1',
      'multipart/form-data',
      'ü/ü',
    ),
  ),
  accept: fc.option(
    fc.constantFrom('application/json', 'text/plain', 'text/event-stream', '*/*', 'image/png'),
  ),
  authorization: fc.option(
    fc.oneof(fc.constantFrom('Bearer', 'Bearer x', 'Basic YTpi'), fc.string({ maxLength: 40 })),
  ),
  lastEventId: fc.option(fc.oneof(fc.nat().map(String), fc.string({ maxLength: 10 }))),
});

describe('drill: HTTP fuzz', () => {
  it('no 5xx, errors are problem+json, no hang, the process stays up', async () => {
    const names = isolation();
    const svc = await serve(serveEnv(names));
    await createJobs(svc.url, ['fuzz-a', 'fuzz-b']);
    const statuses: Record<number, number> = {};
    const problems: string[] = [];
    let sent = 0;
    let longPolls = 0;
    await fc.assert(
      fc.asyncProperty(request, async ({ target: { method, path }, ...r }) => {
        sent++;
        const headers = new Headers();
        const safe = (name: string, v: string | null) => {
          if (v === null) return;
          try {
            headers.set(name, v);
          } catch {}
        };
        safe('content-type', r.contentType);
        safe('accept', r.accept);
        safe('authorization', r.authorization);
        safe('last-event-id', r.lastEventId);
        const url = `${svc.url}${path}${r.query ? `?${r.query}` : ''}`;
        const hasBody = !['GET', 'HEAD'].includes(method);
        let res: Response;
        const ctl = new AbortController();
        const timer = setTimeout(() => ctl.abort(), 8000);
        try {
          res = await fetch(url, {
            method: method,
            headers,
            ...(hasBody ? { body: r.body } : {}),
            signal: ctl.signal,
          });
        } catch (err) {
          clearTimeout(timer);
          // A long-poll legitimately waits; anything else that does not answer hangs.
          if (/\/wait(\?|$)/.test(new URL(url).pathname + (r.query ? '?' : '')) || path.endsWith('/wait')) {
            longPolls++;
            return;
          }
          if (
            (err as Error).name === 'TypeError' &&
            /Invalid URL|invalid/i.test(String((err as Error).message))
          )
            return;
          problems.push(`${method} ${url.slice(0, 200)}: no answer (${(err as Error).message})`);
          return;
        }
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        const type = res.headers.get('content-type') ?? '';
        const text =
          type.includes('event-stream') || method === 'HEAD' ? '' : await res.text().catch(() => '');
        clearTimeout(timer);
        ctl.abort();
        if (res.status >= 500)
          problems.push(`${method} ${url.slice(0, 200)}: ${res.status} ${text.slice(0, 200)}`);
        else if (res.status >= 400 && method !== 'HEAD') {
          let code: unknown;
          try {
            code = (JSON.parse(text) as { code?: unknown }).code;
          } catch {}
          if (!type.startsWith('application/problem+json') || typeof code !== 'string')
            problems.push(`${method} ${url.slice(0, 200)}: ${res.status} ${type} ${text.slice(0, 200)}`);
        }
      }),
      { numRuns: 1500, seed: 20261127, endOnFailure: true },
    );
    const health = await fetch(`${svc.url}/healthz`);
    const line = drillLine(
      'hostile-http',
      { sent, applied: 0, lost: 0, doubled: 0 },
      `${sent} fuzzed requests, statuses ${JSON.stringify(statuses)}, ${longPolls} long-polls left waiting, ${problems.length} problems; healthz ${health.status}`,
    );
    expect(problems.slice(0, 20), line).toEqual([]);
    expect(health.status, line).toBe(200);
    expect(svc.child.exitCode, line).toBeNull();
  }, 480_000);
});
