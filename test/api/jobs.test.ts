import { randomUUID } from 'node:crypto';
import { get } from 'node:http';
import { describe, expect, it, onTestFinished } from 'vitest';
import { jobSchema } from '../../src/api/schemas.js';
import { DEFAULTS, ev, waitFor } from '../broker/harness.js';
import { rawHttp, startTestApi, TOKENS } from './support.js';

const problem = async (res: Response) => {
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  return (await res.json()) as { code: string; status: number; detail: string };
};

describe('POST /v1/jobs', () => {
  it('creates (201 with an event token), is idempotent (200), conflicts (409)', async () => {
    const api = await startTestApi();
    const body = { id: 'build-1.step:2', name: 'deploy', labels: { pipeline: 'web' }, executor: 'argocd' };
    const r1 = await api.req('/v1/jobs', { json: body });
    expect(r1.status).toBe(201);
    const c1 = (await r1.json()) as { job: { id: string; state: string }; eventToken: string };
    expect(c1.job).toMatchObject({ id: 'build-1.step:2', state: 'pending', labels: { pipeline: 'web' } });
    expect(c1.eventToken).toMatch(/^[A-Za-z0-9_-]{20,}$/);

    const r2 = await api.req('/v1/jobs', { json: body });
    expect(r2.status).toBe(200);
    const c2 = (await r2.json()) as Record<string, unknown>;
    expect(c2.eventToken).toBeUndefined();

    const r3 = await api.req('/v1/jobs', { json: { ...body, name: 'other' } });
    expect(r3.status).toBe(409);
    expect((await problem(r3)).code).toBe('EXTJOB_JOB_CONFLICT');
  });

  it('does not tell a webhook secret by 200 or 409: the first create keeps its own', async () => {
    const api = await startTestApi();
    const body = (secret?: string) => ({
      id: 'hooked',
      name: 'n',
      notify: [{ url: 'https://ci.example/hook', ...(secret ? { secret } : {}) }],
    });
    const created = await api.req('/v1/jobs', { json: body('the-real-secret') });
    expect(created.status).toBe(201);
    const { createdAt } = ((await created.json()) as { job: { createdAt: string } }).job;
    expect((await api.req('/v1/jobs', { json: body('a-guess') })).status).toBe(200);
    expect((await api.req('/v1/jobs', { json: body() })).status).toBe(409); // no secret: another body
    const [target] = await api.broker.notifyTargets('hooked', createdAt);
    expect(target?.secret).toBe('the-real-secret');
  });

  it('gives the event token again to the caller presenting the Idempotency-Key it created with', async () => {
    const api = await startTestApi();
    const key = randomUUID();
    const body = { id: 'keyed', name: 'deploy' };
    const create = (k: string | undefined, json: object = body) =>
      api.req('/v1/jobs', { json, ...(k ? { headers: { 'idempotency-key': k } } : {}) });
    const first = await create(key);
    expect(first.status).toBe(201);
    const { eventToken } = (await first.json()) as { eventToken: string };
    expect(eventToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await api.broker.verifyEventToken('keyed', eventToken)).toBe(true);
    // the answer lost, the same create again: the job and its token; the creation,
    // announced once, is not announced again
    const created: string[] = [];
    api.broker.instrumentation.on('job_created', (e) => created.push(e.executor));
    const again = await create(key);
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ job: { state: 'pending' }, eventToken });
    expect(created).toEqual([]);
    // anyone else: the job, no token
    for (const other of [randomUUID(), undefined]) {
      const r = await create(other);
      expect(r.status).toBe(200);
      expect(((await r.json()) as { eventToken?: string }).eventToken).toBeUndefined();
    }
    expect((await create(key, { ...body, name: 'other' })).status).toBe(409);
    // once the job moved on: 200 with the token, and its creation is not announced again
    await api.broker.applyEvents([ev('accepted', 'keyed')]);
    const later = await create(key);
    expect(later.status).toBe(200);
    expect(await later.json()).toMatchObject({ job: { state: 'running' }, eventToken });
    const history = (await api.broker.history('keyed')) ?? [];
    expect(history.filter((h) => h.kind === 'transition' && h.to === 'pending')).toHaveLength(1);
    // the token is no function of the key alone: another installation (prefix) gives another
    const other = await startTestApi();
    const elsewhere = (await (
      await other.req('/v1/jobs', { json: body, headers: { 'idempotency-key': key } })
    ).json()) as { eventToken: string };
    expect(elsewhere.eventToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(elsewhere.eventToken).not.toBe(eventToken);
    // without an id, the key names one job
    const a = (await (await create(key, { name: 'x' })).json()) as {
      job: { id: string };
      eventToken: string;
    };
    const b = (await (await create(key, { name: 'x' })).json()) as {
      job: { id: string };
      eventToken: string;
    };
    const c = (await (await create(randomUUID(), { name: 'x' })).json()) as { job: { id: string } };
    expect(a.job.id).toMatch(/^j-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(b).toEqual(a);
    expect(c.job.id).not.toBe(a.job.id);
    // a key anyone could guess, or one that cannot be a header value, is refused
    for (const bad of ['short', 'a key with spaces in it', 'x'.repeat(257)]) {
      const r = await create(bad);
      expect(r.status, bad).toBe(400);
      expect((await problem(r)).detail).toMatch(/Idempotency-Key must be 16 to 256 visible ASCII/);
    }
  });

  it('generates an id when none is given', async () => {
    const api = await startTestApi();
    const r = await api.req('/v1/jobs', { json: { name: 'x' } });
    expect(r.status).toBe(201);
    const { job } = (await r.json()) as { job: { id: string } };
    expect(job.id).toMatch(/^[A-Za-z0-9._:-]{1,128}$/);
  });

  it('rejects unknown fields, bad ids, too many labels, non-JSON, deep nesting and huge bodies', async () => {
    const api = await startTestApi();
    const cases: [unknown, string][] = [
      [{ name: 'x', color: 'red' }, 'unknown field'],
      [{ id: 'bad id!', name: 'x' }, 'bad id'],
      [{ name: '' }, 'empty name'],
      [{}, 'missing name'],
      [
        { name: 'x', labels: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) },
        'labels',
      ],
      [{ name: 'x', retry: { limit: 11 } }, 'retry limit'],
      [{ name: 'x', notify: [{ url: 'ftp://x' }] }, 'notify url'],
      [{ name: 'x', timeouts: { acceptSeconds: -1 } }, 'timeouts'],
      [[1, 2], 'array'],
    ];
    for (const [body, what] of cases) {
      const r = await api.req('/v1/jobs', { json: body });
      expect(r.status, what).toBe(400);
      expect((await problem(r)).code, what).toBe('EXTJOB_VALIDATION_FAILED');
    }
    let deep: unknown = 'x';
    for (let i = 0; i < 40; i++) deep = { a: deep };
    const rd = await api.req('/v1/jobs', { json: { name: 'x', labels: deep } });
    expect(rd.status).toBe(400);
    expect((await problem(rd)).detail).toMatch(/nested/);

    const r415 = await api.req('/v1/jobs', {
      method: 'POST',
      body: 'name=x',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(r415.status).toBe(415);
    expect((await problem(r415)).code).toBe('EXTJOB_UNSUPPORTED_MEDIA_TYPE');

    const r413 = await api.req('/v1/jobs', { json: { name: 'x', pad: 'y'.repeat(1024 * 1024 + 10) } });
    expect(r413.status).toBe(413);
    expect((await problem(r413)).code).toBe('EXTJOB_PAYLOAD_TOO_LARGE');

    const rBad = await api.req('/v1/jobs', {
      method: 'POST',
      body: '{"name":',
      headers: { 'content-type': 'application/json' },
    });
    expect(rBad.status).toBe(400);

    // bytes that are not UTF-8 are refused, not read as U+FFFD (which two bodies could share)
    const notUtf8 = await api.req('/v1/jobs', {
      method: 'POST',
      body: Buffer.concat([Buffer.from('{"id":"u1","name":"a'), Buffer.from([0xff]), Buffer.from('b"}')]),
      headers: { 'content-type': 'application/json' },
    });
    expect(notUtf8.status).toBe(400);
    expect(await problem(notUtf8)).toMatchObject({
      code: 'EXTJOB_VALIDATION_FAILED',
      detail: 'the body is not valid UTF-8',
    });
    expect((await api.req('/v1/jobs/u1')).status).toBe(404);
  });
});

describe('auth', () => {
  it('401 without or with a wrong token, 403 without the scope', async () => {
    const api = await startTestApi();
    const none = await api.req('/v1/jobs', { token: null });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect((await problem(none)).code).toBe('EXTJOB_UNAUTHORIZED');
    expect((await api.req('/v1/jobs', { token: 'nope-nope-nope' })).status).toBe(401);
    const ro = await api.req('/v1/jobs', { token: TOKENS.read, json: { name: 'x' } });
    expect(ro.status).toBe(403);
    expect((await problem(ro)).code).toBe('EXTJOB_FORBIDDEN');
    expect((await api.req('/v1/jobs', { token: TOKENS.write })).status).toBe(403);
    expect((await api.req('/v1/jobs', { token: TOKENS.write, json: { name: 'x' } })).status).toBe(201);
    expect((await api.req('/v1/jobs', { token: TOKENS.read })).status).toBe(200);
    // an event token is not an API token
    const { eventToken } = (await (await api.req('/v1/jobs', { json: { name: 'y', id: 'y' } })).json()) as {
      eventToken: string;
    };
    expect((await api.req('/v1/jobs/y', { token: eventToken })).status).toBe(401);
  });

  it('insecure mode needs no token', async () => {
    const api = await startTestApi({ insecure: true });
    expect((await api.req('/v1/jobs', { token: null, json: { name: 'x' } })).status).toBe(201);
  });
});

describe('reading jobs', () => {
  it('GET job, 404 for a missing one, 400 for a bad id', async () => {
    const api = await startTestApi();
    await api.req('/v1/jobs', { json: { id: 'j1', name: 'one' } });
    const r = await api.req('/v1/jobs/j1');
    expect(r.status).toBe(200);
    const job = await r.json();
    expect(job).toMatchObject({ id: 'j1', name: 'one', state: 'pending', attempt: 1 });
    // the documented Job schema is exactly what the server sends (no undocumented fields)
    expect(jobSchema.strict().safeParse(job).error).toBeUndefined();
    const missing = await api.req('/v1/jobs/nope');
    expect(missing.status).toBe(404);
    expect((await problem(missing)).code).toBe('EXTJOB_JOB_NOT_FOUND');
    expect((await api.req(`/v1/jobs/${'x'.repeat(129)}`)).status).toBe(400);
    expect((await api.req('/v1/jobs/j1?foo=1')).status).toBe(400);
    const unknownRoute = await api.req('/v1/nothing');
    expect(unknownRoute.status).toBe(404);
    expect((await problem(unknownRoute)).code).toBe('EXTJOB_ROUTE_NOT_FOUND');
  });

  it('answers concurrent GETs (read together in one pipeline) each with its own job', async () => {
    const api = await startTestApi();
    const ids = Array.from({ length: 30 }, (_, i) => `burst-${i}`);
    for (const id of ids) await api.req('/v1/jobs', { json: { id, name: id } });
    const asked = [...ids, 'nope', ids[0] as string];
    const answers = await Promise.all(asked.map((id) => api.req(`/v1/jobs/${id}`)));
    expect(answers.map((r) => r.status)).toEqual([...ids.map(() => 200), 404, 200]);
    const bodies = (await Promise.all(answers.map((r) => r.json()))) as { id?: string; name?: string }[];
    expect(bodies.slice(0, ids.length).map((b) => [b.id, b.name])).toEqual(ids.map((id) => [id, id]));
    expect(bodies[ids.length + 1]).toMatchObject({ id: ids[0] });
  });

  it('lists newest first with filters and a cursor', async () => {
    const api = await startTestApi();
    for (let i = 0; i < 5; i++)
      await api.req('/v1/jobs', {
        json: { id: `l${i}`, name: 'n', executor: i % 2 ? 'odd' : 'even', labels: { n: String(i) } },
      });
    const page1 = (await (await api.req('/v1/jobs?limit=3')).json()) as {
      jobs: { id: string }[];
      nextCursor: string;
    };
    expect(page1.jobs.map((j) => j.id)).toEqual(['l4', 'l3', 'l2']);
    const page2 = (await (
      await api.req(`/v1/jobs?limit=3&cursor=${encodeURIComponent(page1.nextCursor)}`)
    ).json()) as {
      jobs: { id: string }[];
      nextCursor?: string;
    };
    expect(page2.jobs.map((j) => j.id)).toEqual(['l1', 'l0']);
    expect(page2.nextCursor).toBeUndefined();
    const odd = (await (await api.req('/v1/jobs?executor=odd')).json()) as { jobs: { id: string }[] };
    expect(odd.jobs.map((j) => j.id)).toEqual(['l3', 'l1']);
    const lab = (await (await api.req('/v1/jobs?label=n:2')).json()) as { jobs: { id: string }[] };
    expect(lab.jobs.map((j) => j.id)).toEqual(['l2']);
    const st = (await (await api.req('/v1/jobs?state=running')).json()) as { jobs: unknown[] };
    expect(st.jobs).toEqual([]);
    for (const q of [
      'state=nope',
      'limit=0',
      'limit=501',
      'limit=x',
      'label=nocolon',
      'state=a&state=b',
      'x=1',
    ])
      expect((await api.req(`/v1/jobs?${q}`)).status, q).toBe(400);
    // a repeated parameter is refused as repeated, on every route, even when each value is valid
    for (const path of ['/v1/jobs?state=passed&state=failed', '/v1/jobs/l1/log?limit=1&limit=2']) {
      const r = await api.req(path);
      expect(r.status, path).toBe(400);
      expect(((await r.json()) as { detail: string }).detail, path).toMatch(
        /^query\.\w+: given more than once$/,
      );
    }
  });

  it('a log past its limit says so as text too', async () => {
    const api = await startTestApi({ broker: { defaults: { ...DEFAULTS, logMaxBytes: 8 } } });
    await api.req('/v1/jobs', { json: { id: 'cut', name: 'n' } });
    await api.broker.applyEvents([
      ev('log', 'cut', { seq: 0, chunk: Buffer.from('hello ') }),
      ev('log', 'cut', { seq: 1, chunk: Buffer.from('world\n') }),
    ]);
    const json = (await (await api.req('/v1/jobs/cut/log')).json()) as Record<string, unknown>;
    expect(json.truncated).toEqual({ chunks: 1, bytes: 6 });
    const text = await api.req('/v1/jobs/cut/log', { headers: { accept: 'text/plain' } });
    expect(await text.text()).toBe('hello ');
    expect(text.headers.get('extjob-log-truncated')).toBe('chunks=1, bytes=6');
  });

  it('a log longer than a page: all of it as text, page by page; a limit is a page and says more follows', async () => {
    const api = await startTestApi();
    await api.req('/v1/jobs', { json: { id: 'long', name: 'n' } });
    const lines = Array.from({ length: 2500 }, (_, seq) => `line ${seq}\n`);
    for (let i = 0; i < lines.length; i += 500)
      await api.broker.applyEvents(
        lines.slice(i, i + 500).map((chunk, k) => ev('log', 'long', { seq: i + k, chunk })),
      );
    await api.broker.applyEvent(ev('finished', 'long', { exitCode: 0, lastSeq: 2499 }));
    // node's client, for the trailer
    const { body, headers, trailers } = await new Promise<{
      body: string;
      headers: Record<string, unknown>;
      trailers: Record<string, unknown>;
    }>((resolve, reject) => {
      const req = get(
        `${api.url}/v1/jobs/long/log`,
        { headers: { accept: 'text/plain', authorization: `Bearer ${TOKENS.admin}` } },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => {
            text += d;
          });
          res.on('end', () => resolve({ body: text, headers: res.headers, trailers: res.trailers }));
        },
      );
      req.on('error', reject);
    });
    expect(body).toBe(lines.join(''));
    expect(headers['extjob-log-complete']).toBe('true');
    expect(trailers['extjob-next-seq']).toBe('2500');
    const page = await api.req('/v1/jobs/long/log?fromSeq=100&limit=10', {
      headers: { accept: 'text/plain' },
    });
    expect(await page.text()).toBe(lines.slice(100, 110).join(''));
    expect(page.headers.get('extjob-next-seq')).toBe('110');
    expect(page.headers.get('extjob-log-more')).toBe('true');
    const json = (await (await api.req('/v1/jobs/long/log')).json()) as Record<string, unknown>;
    expect(json).toMatchObject({ nextSeq: 1000, more: true, complete: true, gaps: [] });
    const last = (await (await api.req('/v1/jobs/long/log?fromSeq=2000')).json()) as Record<string, unknown>;
    expect(last).toMatchObject({ nextSeq: 2500, more: false });

    // HTTP/1.0 (a default nginx proxy) gets no chunked response, so no trailer; HEAD no body
    const { host } = new URL(api.url);
    const ask = `Host: ${host}\r\nAuthorization: Bearer ${TOKENS.admin}\r\nAccept: text/plain\r\n`;
    const http10 = await rawHttp(api.url, `GET /v1/jobs/long/log HTTP/1.0\r\n${ask}\r\n`);
    expect(http10).toMatch(/^HTTP\/1\.1 200 /);
    expect(http10.slice(http10.indexOf('\r\n\r\n') + 4)).toBe(lines.join(''));
    expect(http10).not.toMatch(/^trailer:/im);
    const head = await rawHttp(api.url, `HEAD /v1/jobs/long/log HTTP/1.1\r\n${ask}Connection: close\r\n\r\n`);
    expect(head).toMatch(/^HTTP\/1\.1 200 /);
    expect(head).toMatch(/^extjob-log-complete: true\r$/im);
    expect(head.endsWith('\r\n\r\n')).toBe(true);
  });

  it('log as JSON and as text, history, cancel', async () => {
    const api = await startTestApi();
    await api.req('/v1/jobs', { json: { id: 'lg', name: 'n' } });
    await api.broker.applyEvents([
      ev('accepted', 'lg'),
      ev('log', 'lg', { seq: 0, chunk: Buffer.from('hello ') }),
      ev('log', 'lg', { seq: 2, chunk: Buffer.from([0xff, 0xfe]) }),
      ev('log', 'lg', { seq: 1, chunk: Buffer.from('world\n') }),
    ]);
    const log = (await (await api.req('/v1/jobs/lg/log')).json()) as Record<string, unknown>;
    expect(log).toMatchObject({
      chunks: [
        { seq: 0, text: 'hello ' },
        { seq: 1, text: 'world\n' },
        { seq: 2, base64: Buffer.from([0xff, 0xfe]).toString('base64') },
      ],
      nextSeq: 3,
      complete: false,
      gaps: [],
    });
    const from1 = (await (await api.req('/v1/jobs/lg/log?fromSeq=1&limit=1')).json()) as {
      chunks: unknown[];
    };
    expect(from1.chunks).toEqual([{ seq: 1, text: 'world\n' }]);
    // a leading byte-order mark is part of the chunk's bytes
    await api.broker.applyEvents([ev('log', 'lg', { seq: 3, chunk: Buffer.from([0xef, 0xbb, 0xbf, 0x68]) })]);
    const bom = (await (await api.req('/v1/jobs/lg/log?fromSeq=3')).json()) as { chunks: unknown[] };
    expect(bom.chunks).toEqual([{ seq: 3, text: '\ufeffh' }]);
    const text = await api.req('/v1/jobs/lg/log', { headers: { accept: 'text/plain' } });
    expect(text.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(Buffer.from(await text.arrayBuffer())).toEqual(
      Buffer.concat([Buffer.from('hello world\n'), Buffer.from([0xff, 0xfe, 0xef, 0xbb, 0xbf, 0x68])]),
    );
    expect((await api.req('/v1/jobs/lg/log', { headers: { accept: 'image/png' } })).status).toBe(406);
    expect((await api.req('/v1/jobs/nope/log')).status).toBe(404);

    const hist = (await (await api.req('/v1/jobs/lg/history')).json()) as {
      history: { kind: string; to?: string }[];
    };
    expect(hist.history.filter((h) => h.kind === 'transition').map((h) => h.to)).toEqual([
      'pending',
      'running',
    ]);

    const c = await api.req('/v1/jobs/lg/cancel', { method: 'POST', token: TOKENS.write });
    expect(c.status).toBe(202);
    expect(await c.json()).toMatchObject({ id: 'lg', state: 'canceling' });
    const c2 = await api.req('/v1/jobs/lg/cancel', { json: { reason: 'no longer needed' } });
    expect(c2.status).toBe(202);
    expect((await api.req('/v1/jobs/lg/cancel', { json: { why: 'x' } })).status).toBe(400);
    expect((await api.req('/v1/jobs/lg/cancel', { method: 'POST', token: TOKENS.read })).status).toBe(403);
    expect((await api.req('/v1/jobs/nope/cancel', { method: 'POST' })).status).toBe(404);

    await api.req('/v1/jobs', { json: { id: 'done', name: 'n' } });
    await api.broker.applyEvents([ev('finished', 'done', { exitCode: 0 })]);
    const term = await api.req('/v1/jobs/done/cancel', { method: 'POST' });
    expect(term.status).toBe(409);
    expect((await problem(term)).code).toBe('EXTJOB_JOB_TERMINAL');
  });
});

describe('Redis away', () => {
  /** The API on its own Redis client (given by URL), served on a free port; closed after the test. */
  async function apiOn(redisUrl: string, prefix: string, callTimeoutMs?: number) {
    const { Redis } = await import('ioredis');
    const { JobBroker } = await import('../../src/broker/index.js');
    const { startApi } = await import('../../src/api/index.js');
    const { createApp } = await import('../../src/api/app.js');
    const { createRegistry } = await import('../../src/api/metrics.js');
    const { Readiness } = await import('../../src/api/readiness.js');
    const { createLogger } = await import('../../src/shared/logger.js');
    const { DEFAULTS } = await import('../broker/harness.js');
    const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
    redis.on('error', () => {});
    const logger = createLogger({ level: 'silent' });
    const broker = new JobBroker({ redis, prefix, defaults: DEFAULTS });
    const api = await startApi({
      broker,
      redis,
      prefix,
      tokens: [],
      insecure: true,
      logger,
      ...(callTimeoutMs ? { callTimeoutMs } : {}),
    });
    const app = createApp({
      readiness: new Readiness(),
      registry: createRegistry(),
      logger,
      routers: [api.router],
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    onTestFinished(async () => {
      server.closeAllConnections();
      server.close();
      await api.close();
      redis.disconnect();
    });
    return { broker, url: `http://127.0.0.1:${(server.address() as { port: number }).port}` };
  }

  it('answers a read waiting on Redis with 503 as soon as the connection drops', async () => {
    const { Redis } = await import('ioredis');
    const { privateRedis } = await import('../faults/helpers.js');
    const r = await privateRedis();
    // a deadline far away: only the dropped connection can end the wait below
    const { broker, url } = await apiOn(r.url, 't-lost', 600_000);
    await broker.createJob({ id: 'j1', name: 'one' });
    const blocker = new Redis(r.url);
    blocker.on('error', () => {});
    onTestFinished(() => blocker.disconnect());
    const pid = Number(/process_id:(\d+)/.exec(await blocker.info('server'))?.[1]);
    expect((await fetch(`${url}/v1/jobs/j1`)).status).toBe(200);
    // Redis stops answering (a script spinning for 20 s), then dies
    const spin =
      "local s = tonumber(redis.call('TIME')[1]) while tonumber(redis.call('TIME')[1]) < s + 20 do end";
    void blocker.eval(spin, 0).catch(() => {});
    await new Promise((res) => setTimeout(res, 200));
    const pending = fetch(`${url}/v1/jobs/j1`, { signal: AbortSignal.timeout(15_000) });
    await new Promise((res) => setTimeout(res, 300));
    process.kill(pid, 'SIGKILL');
    const res = await pending;
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ code: 'EXTJOB_REDIS_UNAVAILABLE', retriable: true });
  });

  it('a create answered 503 that Redis applied late: sent again with its key, it gets its token', async () => {
    const { privateRedis } = await import('../faults/helpers.js');
    const { Redis } = await import('ioredis');
    const r = await privateRedis();
    const { broker, url } = await apiOn(r.url, 't-late', 1000);
    const probe = new Redis(r.url);
    onTestFinished(() => probe.disconnect());
    const pid = Number(/process_id:(\d+)/.exec(await probe.info('server'))?.[1]);
    const create = (key?: string) =>
      fetch(`${url}/v1/jobs`, {
        method: 'POST',
        body: JSON.stringify({ id: key ? 'late-keyed' : 'late', name: 'n' }),
        headers: { 'content-type': 'application/json', ...(key ? { 'idempotency-key': key } : {}) },
        signal: AbortSignal.timeout(10_000),
      });
    const key = randomUUID();
    for (const k of [key, undefined]) {
      // Redis stalls past the call's deadline, then runs the call
      process.kill(pid, 'SIGSTOP');
      const lost = await create(k).finally(() => process.kill(pid, 'SIGCONT'));
      expect(lost.status).toBe(503);
    }
    const id = (k?: string) => (k ? 'late-keyed' : 'late');
    await waitFor(async () => (await broker.getJob(id(key))) && (await broker.getJob(id())));
    const retried = await create(key);
    expect(retried.status).toBe(200);
    const { eventToken } = (await retried.json()) as { eventToken: string };
    expect(await broker.verifyEventToken('late-keyed', eventToken)).toBe(true);
    // without a key, nobody can have the token of the job the lost create made
    const unkeyed = await create();
    expect(unkeyed.status).toBe(200);
    expect(((await unkeyed.json()) as { eventToken?: string }).eventToken).toBeUndefined();
  });

  it('answers 503 (retriable) quickly instead of hanging', async () => {
    const { url } = await apiOn('redis://127.0.0.1:1', 't-away');
    for (const [method, path, body] of [
      ['GET', '/v1/jobs/x', undefined],
      ['GET', '/v1/jobs', undefined],
      ['POST', '/v1/jobs', '{"name":"x"}'],
      ['GET', '/v1/jobs/x/wait?timeoutSeconds=5', undefined],
      ['GET', '/v1/jobs/x/log/stream', undefined],
    ] as const) {
      const r = await fetch(`${url}${path}`, {
        method,
        ...(body ? { body, headers: { 'content-type': 'application/json' } } : {}),
        signal: AbortSignal.timeout(10_000),
      });
      expect(r.status, `${method} ${path}`).toBe(503);
      expect(await r.json()).toMatchObject({ code: 'EXTJOB_REDIS_UNAVAILABLE', retriable: true });
    }
  });
});
