/**
 * The CLI as users run it: real processes against a running service (real Redis and
 * Kafka), exit codes as SPEC 7 says, logs streamed from stdin reading back identical.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  lstatSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ownDescriptor } from '../../src/cli/commands/create.js';
import { serviceUrl, startService } from '../../src/cli/service.js';
import { loadConfig } from '../../src/shared/config.js';
import { createLogger } from '../../src/shared/logger.js';
import { testKafka, waitFor } from '../helpers/index.js';
import { cli, stackEnv, startStack } from './support.js';

const json = <T>(s: string): T => JSON.parse(s) as T;

// Each CLI run is a fresh Node process: these tests take longer than unit tests.
describe('extjob CLI against a running stack', { timeout: 120_000 }, () => {
  it('create --wait exits with the job exit code; emit over HTTP with the event token', async () => {
    const stack = await startStack();
    const created = await cli(
      ['create', '--name', 'deploy', '--id', 'c1', '--label', 'pipeline=web', '--json'],
      stack.env,
    );
    expect(created.code, created.stderr).toBe(0);
    const { job, eventToken } = json<{ job: { id: string; labels: object }; eventToken: string }>(
      created.stdout,
    );
    expect(job).toMatchObject({ id: 'c1', labels: { pipeline: 'web' } });

    const waiting = cli(['wait', 'c1'], stack.env);
    const executor = { ...stack.env, EXTJOB_EVENT_TOKEN: eventToken, EXTJOB_TOKEN: '' };
    expect(
      (await cli(['emit', 'c1', 'accepted', '--details-url', 'https://ci.example/1'], executor)).code,
    ).toBe(0);
    expect((await cli(['emit', 'c1', 'log', '--text', 'step one\n', '--seq', '0'], executor)).code).toBe(0);
    expect(
      (await cli(['emit', 'c1', 'heartbeat', '--percent', '50', '--phase', 'sync'], executor)).code,
    ).toBe(0);
    const fin = await cli(
      ['emit', 'c1', 'finished', '--exit-code', '3', '--text', 'boom', '--last-seq', '0'],
      executor,
    );
    expect(fin.code, fin.stderr).toBe(0);
    const w = await waiting;
    expect(w.code, w.stderr).toBe(3);
    expect(w.stdout).toBe('step one\n');
    expect(w.stderr).toMatch(/c1 running/);
    expect(w.stderr).toMatch(/c1 failed/);

    // create --wait on a job that another process finishes
    const tokenDir = mkdtempSync(join(tmpdir(), 'extjob-token-'));
    onTestFinished(() => rmSync(tokenDir, { recursive: true, force: true }));
    const cw = cli(
      ['create', '--name', 'n', '--id', 'c2', '--event-token-file', join(tokenDir, 't'), '--wait'],
      stack.env,
    );
    await waitFor(
      async () =>
        (
          await fetch(`${stack.url}/v1/jobs/c2`, {
            headers: { authorization: `Bearer ${stack.env.EXTJOB_TOKEN}` },
          })
        ).status === 200,
    );
    expect((await cli(['emit', 'c2', 'finished', '--exit-code', '0'], stack.env)).code).toBe(0);
    const r = await cw;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe('c2');
  });

  it('emit log --stdin (HTTP and Kafka) produces a log that reads back identical', async () => {
    const stack = await startStack();
    // text with many lines and a multi-byte character straddling chunk cuts
    const lines = Array.from(
      { length: 4000 },
      (_, i) => `line ${i} ${'é'.repeat(i % 40)} ${randomBytes(8).toString('hex')}`,
    );
    const input = `${lines.join('\n')}\nno newline at the end`;
    for (const via of ['http', 'kafka'] as const) {
      const id = `log-${via}`;
      const created = await cli(['create', '--name', 'n', '--id', id, '--json'], stack.env);
      const { eventToken } = json<{ eventToken: string }>(created.stdout);
      const env = {
        ...stack.env,
        EXTJOB_EVENT_TOKEN: eventToken,
        EXTJOB_KAFKA_BROKERS: (await import('../helpers/index.js')).kafkaBrokers().join(','),
      };
      const sent = await cli(['emit', id, 'log', '--stdin', '--via', via, '--json'], env, { stdin: input });
      expect(sent.code, sent.stderr).toBe(0);
      const chunks = sent.stdout.trim().split('\n').length;
      expect(chunks).toBeGreaterThan(1);
      await cli(
        ['emit', id, 'finished', '--exit-code', '0', '--last-seq', String(chunks - 1), '--via', via],
        env,
      );
      await waitFor(async () => (await cli(['get', id, '--json'], stack.env)).stdout.includes('"passed"'), {
        timeoutMs: 20_000,
      });
      const back = await cli(['logs', id], stack.env);
      expect(back.code).toBe(0);
      expect(back.stdout.length).toBe(input.length);
      expect(back.stdout).toBe(input);
      const text = await fetch(`${stack.url}/v1/jobs/${id}/log?limit=1000`, {
        headers: { authorization: `Bearer ${stack.env.EXTJOB_TOKEN}`, accept: 'application/json' },
      });
      expect(((await text.json()) as { complete: boolean }).complete).toBe(true);
    }
    // a reader that went away (`| head`): stopped as by SIGPIPE, quietly (the pipe is
    // closed before the log is read, so the first write meets it closed)
    const head = cli(['logs', 'log-http'], stack.env);
    head.child.stdout?.destroy();
    const cut = await head;
    expect(cut.code).toBe(141);
    expect(cut.stderr).toBe('');
    // one that read only the notes on stderr: `wait` still reports the job (passed)
    const quiet = cli(['wait', 'log-http'], stack.env);
    quiet.child.stderr?.destroy();
    const waited = await quiet;
    expect(waited.code).toBe(0);
    expect(waited.stdout.length).toBeGreaterThan(0);
  });

  it('wait exits 130 for canceled, 124 for timed out, 125 for expired, 75 on --timeout, 69 when unreachable', async () => {
    const stack = await startStack();
    const env = stack.env;
    await cli(['create', '--name', 'n', '--id', 'x-cancel'], env);
    expect((await cli(['cancel', 'x-cancel', '--reason', 'not needed'], env)).stdout).toMatch(
      /x-cancel canceled/,
    );
    expect((await cli(['wait', 'x-cancel'], env)).code).toBe(130);
    // a job that has ended answers at once, even when no time is left to follow it
    for (const flags of [[], ['--no-log'], ['--json']])
      expect((await cli(['wait', 'x-cancel', '--timeout', '0', ...flags], env)).code, flags.join()).toBe(130);

    await cli(['create', '--name', 'n', '--id', 'x-exp', '--accept-timeout', '1'], env);
    expect((await cli(['wait', 'x-exp'], env)).code).toBe(125);

    await cli(['create', '--name', 'n', '--id', 'x-run', '--run-timeout', '1'], env);
    await cli(['emit', 'x-run', 'accepted'], env);
    const runWait = await cli(['wait', 'x-run', '--json'], env);
    expect(runWait.code).toBe(124);
    expect(json<{ state: string }>(runWait.stdout).state).toBe('timed_out');

    await cli(['create', '--name', 'n', '--id', 'x-slow'], env);
    const gaveUp = await cli(['wait', 'x-slow', '--timeout', '1'], env);
    expect(gaveUp.code).toBe(75);

    const down = await cli(['wait', 'x-slow'], { ...env, EXTJOB_URL: 'http://127.0.0.1:9' });
    expect(down.code).toBe(69);
    const down2 = await cli(['create', '--name', 'n'], { ...env, EXTJOB_URL: 'http://127.0.0.1:9' });
    expect(down2.code).toBe(69);
  });

  it('wait --json asks again while the server is away for a moment (a restart)', async () => {
    let asked = 0;
    const restarting = createServer((_req, res) => {
      asked++;
      if (asked <= 2)
        res
          .writeHead(503, { 'content-type': 'application/problem+json' })
          .end('{"code":"EXTJOB_REDIS_UNAVAILABLE","detail":"Redis did not answer"}');
      else
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ id: 'j1', state: 'failed', attempt: 1, exitCode: 42 }));
    });
    await new Promise<void>((r) => restarting.listen(0, '127.0.0.1', r));
    onTestFinished(() => {
      restarting.close();
    });
    const url = `http://127.0.0.1:${(restarting.address() as net.AddressInfo).port}`;
    const waited = await cli(['wait', 'j1', '--json'], { EXTJOB_URL: url, EXTJOB_TOKEN: 't' });
    expect(waited.code).toBe(42);
    expect(JSON.parse(waited.stdout)).toMatchObject({ id: 'j1', exitCode: 42 });
    expect(asked).toBe(3);
  });

  it('exits 69 when the server answers 5xx, and emit --via kafka uses the Kafka TLS settings', async () => {
    // a server whose Redis is away: every request 503, as extjob answers then
    const failing = createServer((_req, res) =>
      res
        .writeHead(503, { 'content-type': 'application/problem+json' })
        .end('{"code":"EXTJOB_REDIS_UNAVAILABLE","detail":"Redis did not answer"}'),
    );
    // a "broker" that only records the first bytes it is sent
    let first: Buffer | undefined;
    const sniffer = net.createServer((sock) => {
      sock.once('data', (d: Buffer) => {
        first ??= d;
        sock.destroy();
      });
    });
    for (const srv of [failing, sniffer]) await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    onTestFinished(() => {
      failing.close();
      sniffer.close();
    });
    const port = (srv: net.Server) => (srv.address() as net.AddressInfo).port;
    const env = { EXTJOB_URL: `http://127.0.0.1:${port(failing)}`, EXTJOB_TOKEN: 't' };
    const waited = await cli(['wait', 'j1'], env);
    expect(waited.code).toBe(69);
    expect(waited.stderr).toMatch(/EXTJOB_REDIS_UNAVAILABLE/);
    expect((await cli(['get', 'j1'], env)).code).toBe(69);

    const sent = await cli(['emit', 'j1', 'accepted', '--via', 'kafka'], {
      EXTJOB_KAFKA_BROKERS: `127.0.0.1:${port(sniffer)}`,
      EXTJOB_KAFKA_SSL: 'true',
    });
    expect(sent.code).toBe(69);
    expect(first?.[0]).toBe(0x16); // a TLS handshake record, not a Kafka request
    // a bad flag is a usage error named as given; the service's other settings do not matter
    const bad = await cli(['emit', 'j1', 'accepted', '--via', 'kafka', '--brokers', 'nohostport'], {
      EXTJOB_HTTP_PORT: 'http://x:1',
    });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--brokers: "nohostport" is not host:port/);
    const unrelated = await cli(['emit', 'j1', 'accepted', '--via', 'kafka'], {
      EXTJOB_KAFKA_BROKERS: '127.0.0.1:1',
      EXTJOB_HTTP_PORT: 'http://x:1',
      EXTJOB_REDIS_URL: 'x',
    });
    expect(unrelated.code).toBe(69);
    expect(unrelated.stderr).toMatch(/cannot reach Kafka at 127\.0\.0\.1:1/);
  });

  /** A service's environment whose HTTP port is taken: it fails after starting its consumers. */
  async function portTaken() {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    onTestFinished(() => {
      taken.close();
    });
    return stackEnv({
      EXTJOB_INSECURE: 'true',
      EXTJOB_HTTP_PORT: String((taken.address() as net.AddressInfo).port),
    });
  }

  it('serve exits 1 when it cannot start, rather than hang with Redis and timers open', async () => {
    // one that hangs is killed after 60 s and has no exit code
    const run = await cli(['serve'], (await portTaken()).env);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/EXTJOB_HTTP_PORT: port \d+ on 127\.0\.0\.1 is in use/);
    // a bad flag is named as given, not as the setting it fills
    const role = await cli(['serve', '--role', 'bogus'], {});
    expect(role.code).toBe(2);
    expect(role.stderr).toMatch(/--role: "bogus" is not a role/);
  });

  it('a service that cannot start leaves its consumer group at once', async () => {
    const { env, group } = await portTaken();
    const config = loadConfig(env);
    const admin = testKafka().admin();
    await admin.connect();
    onTestFinished(() => admin.disconnect());
    const members = async () => (await admin.describeGroups([group])).groups[0]?.members.length ?? 0;
    const failed = await startService(config, createLogger({ level: 'silent' })).catch((err: Error) => err);
    expect(String(failed)).toMatch(/EXTJOB_HTTP_PORT: port \d+ on 127\.0\.0\.1 is in use/);
    // out of the group, and staying out: a consumer left running would join or stay
    await waitFor(async () => (await members()) === 0, { timeoutMs: 5000, what: 'the group left' });
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 500));
      expect(await members()).toBe(0);
    }
  });

  it('create sends a create whose answer was lost again, and gets its job and event token', async () => {
    const stack = await startStack();
    // between the CLI and the service: the first create goes through, but its answer is a
    // 503, as when Redis ran the call after the service's deadline
    const keys: (string | undefined)[] = [];
    const proxy = createServer(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const headers = Object.fromEntries(
        ['authorization', 'content-type', 'accept', 'idempotency-key'].flatMap((h) =>
          req.headers[h] ? [[h, String(req.headers[h])]] : [],
        ),
      );
      const key = headers['idempotency-key'];
      // the unnamed job's service is one older than idempotency keys: it drops the key
      if (Buffer.concat(chunks).includes('"unnamed"')) delete headers['idempotency-key'];
      const upstream = await fetch(`${stack.url}${req.url}`, {
        method: req.method,
        headers,
        ...(req.method === 'POST' ? { body: Buffer.concat(chunks) } : {}),
      });
      const body = Buffer.from(await upstream.arrayBuffer());
      if (req.method === 'POST' && req.url === '/v1/jobs' && !keys.includes(key) && keys.push(key)) {
        res.writeHead(503, { 'content-type': 'application/problem+json' });
        res.end(JSON.stringify({ code: 'EXTJOB_REDIS_UNAVAILABLE', status: 503, retriable: true }));
        return;
      }
      res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? '' });
      res.end(body);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    onTestFinished(() => new Promise<void>((r) => proxy.close(() => r())));
    const url = `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
    const dir = mkdtempSync(join(tmpdir(), 'extjob-token-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'token');
    const r = await cli(['create', '--name', 'n', '--id', 'lost-1', '--event-token-file', file], {
      ...stack.env,
      EXTJOB_URL: url,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('lost-1\n');
    expect(r.stderr).toMatch(/EXTJOB_REDIS_UNAVAILABLE.*; sending it again in 1 s/);
    expect(keys).toHaveLength(1); // one create, sent again under its key
    expect(keys[0]).toMatch(/^[0-9a-f-]{36}$/);
    // without --id, the create sent again names the same job: one job, not two
    const unnamed = await cli(['create', '--name', 'unnamed', '--json'], { ...stack.env, EXTJOB_URL: url });
    expect(unnamed.code, unnamed.stderr).toBe(0);
    expect(keys).toHaveLength(2);
    const listed = await cli(['list', '--json'], stack.env);
    expect(listed.stdout.split('\n').filter((l) => l.includes('"unnamed"'))).toHaveLength(1);
    const token = readFileSync(file, 'utf8').trim();
    const executor = { ...stack.env, EXTJOB_EVENT_TOKEN: token, EXTJOB_TOKEN: '' };
    const accepted = await cli(['emit', 'lost-1', 'accepted'], executor);
    expect(accepted.code, accepted.stderr).toBe(0);
    await waitFor(
      async () =>
        (
          (await (
            await fetch(`${stack.url}/v1/jobs/lost-1`, {
              headers: { authorization: `Bearer ${stack.env.EXTJOB_TOKEN}` },
            })
          ).json()) as { state: string }
        ).state === 'running',
      { what: 'the job running' },
    );
  });

  it('writes the event token to a new file of its own, readable by its owner only', async () => {
    const stack = await startStack();
    const dir = mkdtempSync(join(tmpdir(), 'extjob-token-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const existing = join(dir, 'existing');
    writeFileSync(existing, 'old\n', { mode: 0o644 });
    const target = join(dir, 'target');
    writeFileSync(target, '', { mode: 0o666 });
    const link = join(dir, 'link');
    symlinkSync(target, link);
    for (const [file, id] of [
      [existing, 'tok-1'],
      [link, 'tok-2'],
    ] as const) {
      const r = await cli(['create', '--name', 'n', '--id', id, '--event-token-file', file], stack.env);
      expect(r.code, r.stderr).toBe(0);
      expect(lstatSync(file).isFile()).toBe(true); // the link replaced, not followed
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(readFileSync(file, 'utf8')).toMatch(/^[A-Za-z0-9_-]{43}\n$/);
    }
    expect(readFileSync(target, 'utf8')).toBe('');
    // a pipe, or a link to a device, takes the token and stays what it was
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const piped = readFile(fifo, 'utf8');
    const devLink = join(dir, 'null');
    symlinkSync('/dev/null', devLink);
    for (const [file, id] of [
      [fifo, 'tok-3'],
      [devLink, 'tok-4'],
    ] as const) {
      const r = await cli(['create', '--name', 'n', '--id', id, '--event-token-file', file], stack.env);
      expect(r.code, r.stderr).toBe(0);
    }
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    expect(await piped).toMatch(/^[A-Za-z0-9_-]{43}\n$/);
    expect(lstatSync(devLink).isSymbolicLink()).toBe(true);
    expect(statSync('/dev/null').isCharacterDevice()).toBe(true);
    // this process's own stdout, here a file (a CI runner's log): it gets the token after
    // what was written to it before, and a link to it (what /dev/stdout is) stays a link
    const stdoutLink = join(dir, 'stdout');
    symlinkSync('/proc/self/fd/1', stdoutLink);
    const outFile = join(dir, 'out');
    for (const [file, id] of [
      [stdoutLink, 'tok-6'],
      ['/proc/self/fd/1', 'tok-7'],
    ] as const) {
      writeFileSync(outFile, 'before\n');
      const fd = openSync(outFile, 'a');
      const r = await cli(['create', '--name', 'n', '--id', id, '--event-token-file', file], stack.env, {
        stdout: fd,
      });
      closeSync(fd);
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(outFile, 'utf8')).toMatch(new RegExp(`^before\n[A-Za-z0-9_-]{43}\n${id}\n$`));
    }
    expect(lstatSync(stdoutLink).isSymbolicLink()).toBe(true);
    rmSync(outFile);
    expect(['/dev/stdout', '/dev/stderr', '/dev/fd/3', stdoutLink].map(ownDescriptor)).toEqual([1, 2, 3, 1]);
    expect(ownDescriptor(join(dir, 'fd', '1'))).toBeUndefined();
    // a file that cannot be written fails before the job is created (its token would be lost)
    for (const [file, why] of [
      [join(dir, 'nodir', 'token'), /ENOENT/],
      [dir, /it is a directory/],
      ['/dev/fd/5', /descriptor 5 is not one to write to/], // Node's own
      ['/dev/stdin', /descriptor 0 is not one to write to/],
    ] as const) {
      const r = await cli(['create', '--name', 'n', '--id', 'tok-5', '--event-token-file', file], stack.env);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/cannot write the event token to/);
      expect(r.stderr).toMatch(why);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    }
    expect((await cli(['get', 'tok-5'], stack.env)).stderr).toMatch(/EXTJOB_JOB_NOT_FOUND/);
    // a job that already existed has no token to give: said, and the file left as it was
    const before = readFileSync(existing, 'utf8');
    const again = await cli(
      ['create', '--name', 'n', '--id', 'tok-1', '--event-token-file', existing],
      stack.env,
    );
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/job tok-1 already existed: its event token was given when it was created/);
    expect(readFileSync(existing, 'utf8')).toBe(before);
    expect(readdirSync(dir).sort()).toEqual(['existing', 'fifo', 'link', 'null', 'stdout', 'target']);
    // a server URL with user:password@ is refused without repeating it
    const creds = await cli(['get', 'tok-1'], {
      ...stack.env,
      EXTJOB_URL: 'http://user:hunter2@127.0.0.1:1',
    });
    expect(creds.code).toBe(2);
    expect(creds.stderr).toMatch(/must not carry user:password/);
    expect(creds.stderr).not.toMatch(/hunter2/);
    // a URL that cannot work is a usage error (2), not an unreachable server (69, retried)
    for (const url of ['notaurl', 'localhost:8080', 'ftp://u:hunter2@127.0.0.1:1']) {
      const bad = await cli(['get', 'tok-1'], { ...stack.env, EXTJOB_URL: url });
      expect(bad.code, url).toBe(2);
      expect(bad.stderr, url).toMatch(/must be an http:\/\/ or https:\/\/ URL/);
      expect(bad.stderr, url).not.toMatch(/hunter2/);
    }
  });

  it('get, list, logs -f, errors and usage', async () => {
    const stack = await startStack();
    const env = stack.env;
    for (const i of [1, 2, 3])
      await cli(
        ['create', '--name', `job ${i}`, '--id', `g${i}`, '--executor', i === 2 ? 'argo' : 'tekton'],
        env,
      );
    const got = await cli(['get', 'g2'], env);
    expect(got.stdout).toMatch(/^id\s+g2$/m);
    expect(got.stdout).toMatch(/^executor\s+argo$/m);
    const listed = await cli(['list', '--json', '--executor', 'tekton'], env);
    expect(
      listed.stdout
        .trim()
        .split('\n')
        .map((l) => json<{ id: string }>(l).id),
    ).toEqual(['g3', 'g1']);
    const all = await cli(['list', '--all', '--limit', '1'], env);
    expect(all.stdout.trim().split('\n')).toHaveLength(3);

    const follow = cli(['logs', 'g1', '-f'], env);
    await cli(['emit', 'g1', 'log', '--text', 'a', '--seq', '0'], env);
    await cli(['emit', 'g1', 'log', '--text', 'b', '--seq', '1'], env);
    await cli(['emit', 'g1', 'finished', '--exit-code', '0'], env);
    const f = await follow;
    expect(f.code).toBe(0);
    expect(f.stdout).toBe('ab');

    const missing = await cli(['get', 'nope'], env);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/EXTJOB_JOB_NOT_FOUND/);
    const noAuth = await cli(['get', 'g1'], { ...env, EXTJOB_TOKEN: 'wrong-token' });
    expect(noAuth.code).toBe(1);
    expect(noAuth.stderr).toMatch(/EXTJOB_UNAUTHORIZED/);
    // without a token, the CLI names its own way to give one, not the HTTP header
    const noToken = await cli(['create', '--name', 'x'], { ...env, EXTJOB_TOKEN: '' });
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toBe(
      'extjob create: no API token: pass --token or set EXTJOB_TOKEN (EXTJOB_UNAUTHORIZED)\n',
    );
    expect((await cli(['create'], env)).code).toBe(2);
    expect((await cli(['emit', 'g1', 'exploded'], env)).code).toBe(2);
    expect((await cli(['wait'], env)).code).toBe(2);
    expect((await cli(['list', '--bogus'], env)).code).toBe(2);
    for (const limit of ['abc', '0', '501']) {
      const bad = await cli(['list', '--limit', limit], env);
      expect(bad.code, limit).toBe(2);
      expect(bad.stderr, limit).toMatch(/--limit takes a whole number from 1 to 500/);
    }
    // a number flag given the empty text of an unset variable is a usage error, not 0
    const unset = await cli(['emit', 'g2', 'finished', '--exit-code', ''], env);
    expect(unset.code).toBe(2);
    expect(unset.stderr).toMatch(/--exit-code takes an integer/);
    expect((await cli(['get', 'g2', '--json'], env)).stdout).toMatch(/"state": ?"pending"/);
    expect((await cli(['wait', 'g2', '--timeout', ''], env)).code).toBe(2);
    // a negative exit code is a value of --exit-code, not a mistyped option
    const negative = await cli(['emit', 'g2', 'finished', '--exit-code', '-1'], env);
    expect(negative.code, negative.stderr).toBe(0);
    const ended = await cli(['wait', 'g2', '--json'], env);
    expect(ended.code).toBe(1); // outside 1-255
    expect(json<{ state: string; exitCode: number }>(ended.stdout)).toMatchObject({
      state: 'failed',
      exitCode: -1,
    });
    expect((await cli(['create', '--name', 'x', '--accept-timeout', ' '], env)).code).toBe(2);
    const emitNoToken = await cli(['emit', 'g3', 'accepted'], { ...env, EXTJOB_TOKEN: '' });
    expect(emitNoToken.code).toBe(1);
    expect(emitNoToken.stderr).toBe(
      "extjob emit: no event token: pass the job's event token with --event-token or set EXTJOB_EVENT_TOKEN (EXTJOB_UNAUTHORIZED)\n",
    );
  });
});

describe('the URL extjob prints for its service', () => {
  it('reaches an any-address listener on loopback and brackets IPv6 literals', async () => {
    expect(serviceUrl('0.0.0.0', 8080)).toBe('http://127.0.0.1:8080');
    expect(serviceUrl('::', 8080)).toBe('http://[::1]:8080');
    expect(serviceUrl('127.0.0.1', 80)).toBe('http://127.0.0.1:80');
    expect(serviceUrl('localhost', 80)).toBe('http://localhost:80');
    // what it prints for an IPv6 host is a URL a client can use
    const server = createServer((_req, res) => res.end('ok'));
    await new Promise<void>((r) => server.listen(0, '::1', r));
    onTestFinished(() => {
      server.close();
    });
    const url = serviceUrl('::1', (server.address() as net.AddressInfo).port);
    expect(await (await fetch(url)).text()).toBe('ok');
  });
});
