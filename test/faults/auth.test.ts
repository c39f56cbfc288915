/**
 * Drill 8: every protected route of a real serve process (tokens configured, not
 * insecure) refuses missing, wrong and wrong-scope tokens, and a job's event token
 * neither reads nor touches anything: not its own job through the API routes, not
 * another job's events. Each refusal is problem+json with a stable code. The routes
 * come from the route table, so a new route is drilled without editing this file.
 */
import { describe, expect, it } from 'vitest';
import { ROUTES, type RouteDef } from '../../src/api/routes.js';
import { drillLine, isolation, serve, serveEnv } from './helpers.js';

const TOKENS = { admin: 'drill-admin-token', read: 'drill-read-token', write: 'drill-write-token' };

describe('drill: authentication and scopes on every route', () => {
  it('refuses missing, wrong, wrong-scope and other-job tokens', async () => {
    const names = isolation();
    const svc = await serve(
      serveEnv(names, {
        EXTJOB_INSECURE: 'false',
        EXTJOB_API_TOKENS: `${TOKENS.admin}=admin,${TOKENS.read}=jobs:read,${TOKENS.write}=jobs:write`,
      }),
    );
    const call = async (route: RouteDef, jobId: string, token: string | undefined) => {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (token !== undefined) headers.authorization = `Bearer ${token}`;
      const body =
        route.method === 'get'
          ? undefined
          : route.operationId === 'createJob'
            ? JSON.stringify({ name: 'drill', id: `auth-new-${Math.random().toString(36).slice(2)}` })
            : route.operationId === 'postEvent'
              ? JSON.stringify({
                  specversion: '1.0',
                  id: `auth-${Math.random()}`,
                  source: '/drill',
                  type: 'dev.extjob.heartbeat.v1',
                  subject: jobId,
                  data: {},
                })
              : JSON.stringify({});
      const ctl = new AbortController();
      // A long-poll that passes the checks answers after a second.
      const query = route.operationId === 'waitJob' ? '?timeoutSeconds=1' : '';
      const res = await fetch(`${svc.url}${route.path.replace('{id}', jobId)}${query}`, {
        method: route.method.toUpperCase(),
        headers,
        ...(body !== undefined ? { body } : {}),
        signal: ctl.signal,
      });
      const type = res.headers.get('content-type') ?? '';
      const text = type.includes('event-stream') ? '' : await res.text();
      ctl.abort();
      return { status: res.status, type, text };
    };
    const create = async (id: string) => {
      const res = await fetch(`${svc.url}/v1/jobs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKENS.write}` },
        body: JSON.stringify({ id, name: 'drill' }),
      });
      expect(res.status).toBe(201);
      return ((await res.json()) as { eventToken: string }).eventToken;
    };
    const tokenA = await create('auth-a');
    const tokenB = await create('auth-b');

    interface Case {
      route: RouteDef;
      who: string;
      token: string | undefined;
      job: string;
      want: number[];
    }
    const cases: Case[] = [];
    for (const route of ROUTES) {
      const refuse = (who: string, token: string | undefined, want: number[], job = 'auth-a') =>
        cases.push({ route, who, token, job, want });
      refuse('no token', undefined, [401]);
      refuse('wrong token', 'not-a-token', [401]);
      refuse('malformed header', '', [401]);
      if (route.auth === 'event-token') {
        refuse("another job's event token", tokenB, [401, 403]);
        refuse('the job token on another job', tokenA, [401, 403], 'auth-b');
        refuse('a read-only API token', TOKENS.read, [401, 403]);
      } else {
        // An event token is not an API token, even for its own job.
        refuse("the job's own event token", tokenA, [401]);
        if (route.auth === 'jobs:read') refuse('write-only scope', TOKENS.write, [403]);
        if (route.auth === 'jobs:write') refuse('read-only scope', TOKENS.read, [403]);
      }
    }

    let refused = 0;
    const problems: string[] = [];
    for (const c of cases) {
      const r = await call(c.route, c.job, c.token);
      const ok =
        c.want.includes(r.status) &&
        r.type.startsWith('application/problem+json') &&
        /"code":"EXTJOB_(UNAUTHORIZED|FORBIDDEN)"/.test(r.text);
      if (ok) refused++;
      else
        problems.push(
          `${c.route.method} ${c.route.path} with ${c.who}: ${r.status} ${r.type} ${r.text.slice(0, 200)}`,
        );
    }
    // Positive controls: the right credentials pass (so the refusals above mean something).
    const allowed: string[] = [];
    for (const route of ROUTES) {
      const token =
        route.auth === 'event-token' ? tokenA : route.auth === 'jobs:read' ? TOKENS.read : TOKENS.write;
      const r = await call(route, 'auth-a', token);
      if (r.status === 401 || r.status === 403 || r.status >= 500)
        problems.push(
          `${route.method} ${route.path} with the right token: ${r.status} ${r.text.slice(0, 200)}`,
        );
      else allowed.push(`${route.operationId}=${r.status}`);
    }
    // Events the refused requests tried to post must not have touched job b.
    const b = await fetch(`${svc.url}/v1/jobs/auth-b/history`, {
      headers: { authorization: `Bearer ${TOKENS.read}` },
    });
    const history = (await b.json()) as { history?: unknown[] } | unknown[];
    const entries = Array.isArray(history) ? history : (history.history ?? []);
    if (entries.length !== 1)
      problems.push(`job b has ${entries.length} history entries: ${JSON.stringify(entries)}`);

    // Here "effects applied" counts hostile requests that got through (must be 0).
    const line = drillLine(
      'auth',
      { sent: cases.length, applied: cases.length - refused, lost: 0, doubled: 0 },
      `${refused} of ${cases.length} hostile requests over ${ROUTES.length} routes refused with 401/403 problem+json; job b untouched: ${entries.length === 1}; allowed with the right token: ${allowed.join(' ')}`,
    );
    expect(problems, line).toEqual([]);
  }, 120_000);
});
