/**
 * `extjob dev` as the README starts it: its own redis-server and Kafka broker, the
 * service in insecure mode, and Ctrl-C on the terminal (SIGINT to the whole process
 * group) stopping all of it, the service first.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { freePort } from '../../src/cli/local/process.js';
import { withoutPassword } from '../../src/shared/config.js';
import { waitFor } from '../helpers/index.js';
import { cli } from './support.js';

const MAIN = resolve(import.meta.dirname, '../../src/cli/main.ts');

const childrenOf = (pid: number) =>
  execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
    .split('\n')
    .map((s) => Number(s.trim()))
    .filter((p) => p > 0);

/** The addresses listening on TCP `port`, IPv4 and IPv6 (from /proc/net). */
const listening = (port: number) =>
  ['tcp', 'tcp6'].flatMap((proto) =>
    readFileSync(`/proc/net/${proto}`, 'utf8')
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s+/))
      .filter((f) => f[3] === '0A' && Number.parseInt(f[1]?.split(':')[1] ?? '', 16) === port) // LISTEN
      .map(([, local]) => {
        const hex = local!.split(':')[0]!;
        return hex.length === 8
          ? (hex.match(/../g) ?? [])
              .reverse()
              .map((b) => Number.parseInt(b, 16))
              .join('.')
          : `ipv6 ${hex}`;
      }),
  );

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * `extjob dev` with a Redis URL nothing answers at (it starts its own) and no Kafka
 * configured (it starts one), in a process group of its own, as a shell runs a
 * foreground job: the terminal's Ctrl-C goes to the group.
 */
async function startDev(extraEnv: Record<string, string> = {}) {
  const env: Record<string, string | undefined> = {
    ...process.env,
    EXTJOB_REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
    ...extraEnv,
  };
  delete env.EXTJOB_KAFKA_BROKERS;
  const dev = spawn(process.execPath, ['--import', 'tsx', MAIN, 'dev', '--port', '0'], {
    env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  onTestFinished(() => {
    if (dev.exitCode === null) process.kill(-dev.pid!, 'SIGKILL');
  });
  const out = { stdout: '', stderr: '' };
  dev.stdout.on('data', (d: Buffer) => {
    out.stdout += d;
  });
  dev.stderr.on('data', (d: Buffer) => {
    out.stderr += d;
  });
  const exited = new Promise<number | null>((r) => dev.on('exit', (code) => r(code)));
  return { dev, out, exited };
}

describe('extjob dev', { timeout: 120_000 }, () => {
  it('starts Redis, Kafka and the service, and Ctrl-C stops them all', async () => {
    const { dev, out, exited } = await startDev();
    await waitFor(() => out.stdout.includes('extjob is running'), {
      timeoutMs: 90_000,
      what: `dev to start (${out.stderr})`,
    });
    const api = /API\s+(http:\/\/\S+)\/v1\/jobs/.exec(out.stdout)?.[1];
    expect(api).toBeDefined();
    const created = await fetch(`${api}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'hello' }),
    });
    expect(created.status).toBe(201);
    // an API without tokens is for this machine only
    expect(listening(Number(new URL(api!).port))).toEqual(['127.0.0.1']);
    await waitFor(async () => (await fetch(`${api}/readyz`)).status === 200, { what: 'ready' });

    const children = childrenOf(dev.pid!);
    expect(children.length).toBeGreaterThanOrEqual(2); // redis-server and the Kafka JVM
    process.kill(-dev.pid!, 'SIGINT');
    await waitFor(() => dev.exitCode !== null, { timeoutMs: 30_000, what: 'dev to exit after Ctrl-C' });
    expect(await exited).toBe(0);
    expect(out.stderr).toMatch(/SIGINT: stopping/);
    expect(children.filter(alive)).toEqual([]);
  });

  it('npm run dev stops all of it when npm alone gets SIGTERM (a supervisor, a CI step)', async () => {
    const env: Record<string, string | undefined> = {
      ...process.env,
      EXTJOB_REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
    };
    delete env.EXTJOB_KAFKA_BROKERS;
    const npm = spawn('npm', ['run', 'dev', '--', '--port', '0'], {
      cwd: resolve(import.meta.dirname, '../..'),
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    onTestFinished(() => {
      try {
        process.kill(-npm.pid!, 'SIGKILL');
      } catch {}
    });
    let stdout = '';
    npm.stdout.on('data', (d: Buffer) => {
      stdout += d;
    });
    await waitFor(() => stdout.includes('extjob is running'), { timeoutMs: 90_000, what: 'dev to start' });
    // everything npm started: tsx, the service, redis-server, the Kafka JVM
    const descendants = (pid: number): number[] => {
      let children: number[] = [];
      try {
        children = childrenOf(pid);
      } catch {} // ps says so by its exit status when there are none
      return children.flatMap((c) => [c, ...descendants(c)]);
    };
    const group = descendants(npm.pid!);
    expect(group.length).toBeGreaterThanOrEqual(4);
    process.kill(npm.pid!, 'SIGTERM');
    await waitFor(() => group.filter(alive).length === 0, {
      timeoutMs: 30_000,
      what: `every process of the group gone (left: ${group.filter(alive)})`,
    });
  });

  it('Ctrl-C while it starts stops what it started and leaves no temporary directory', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'extjob-dev-test-'));
    onTestFinished(() => rmSync(tmp, { recursive: true, force: true }));
    const { dev, out, exited } = await startDev({ TMPDIR: tmp }); // where its redis-server and Kafka keep data
    await waitFor(() => out.stderr.includes('starting a local single-node Kafka broker'), {
      timeoutMs: 30_000,
      what: `dev to start Kafka (${out.stderr})`,
    });
    await waitFor(() => readdirSync(tmp).some((d) => d.startsWith('extjob-kafka-')), {
      what: "Kafka's data directory",
    });
    const children = childrenOf(dev.pid!);
    process.kill(-dev.pid!, 'SIGINT');
    expect(await exited).toBe(130);
    await waitFor(() => children.filter(alive).length === 0, {
      timeoutMs: 20_000,
      what: 'its children gone',
    });
    expect(readdirSync(tmp).filter((d) => d.startsWith('extjob-'))).toEqual([]);
  });

  it('refuses a bad --port or configuration before it starts anything', async () => {
    const port = await cli(['dev', '--port', 'abc'], {});
    expect(port.code).toBe(2);
    expect(port.stderr).toMatch(/--port takes a port number, not "abc"/);
    const high = await cli(['dev', '--port', '99999'], {});
    expect(high.code).toBe(2);
    expect(high.stderr).toMatch(/--port takes a port number, not "99999"/);
    const config = await cli(['dev'], {
      EXTJOB_TOPIC_PARTITIONS: '0',
      EXTJOB_REDIS_URL: 'redis://127.0.0.1:1',
    });
    expect(config.code).toBe(1);
    expect(config.stderr).toMatch(/EXTJOB_TOPIC_PARTITIONS: "0"/);
    expect(`${port.stderr}${config.stderr}`).not.toMatch(/starting/);
  });

  it('says a port in use is in use, naming its setting, before it starts anything', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    onTestFinished(() => new Promise<void>((r) => taken.close(() => r())));
    const port = (taken.address() as AddressInfo).port;
    const dev = await cli(['dev', '--port', String(port)], { EXTJOB_HTTP_HOST: '127.0.0.1' });
    expect(dev.code).toBe(1);
    expect(dev.stderr).toContain(`--port: port ${port} on 127.0.0.1 is in use`);
    const serve = await cli(['serve'], {
      EXTJOB_HTTP_HOST: '127.0.0.1',
      EXTJOB_HTTP_PORT: String(port),
      EXTJOB_INSECURE: 'true',
      EXTJOB_REDIS_URL: 'redis://127.0.0.1:1',
    });
    expect(serve.code).toBe(1);
    expect(serve.stderr).toContain(`EXTJOB_HTTP_PORT: port ${port} on 127.0.0.1 is in use`);
    expect(`${dev.stderr}${serve.stderr}`).not.toMatch(/starting|\n\s+at /);
  });

  it('prints the Redis URL without its password', () => {
    expect(withoutPassword('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
    expect(withoutPassword('redis://:s3cret@h:6379/0')).toBe('redis://:***@h:6379/0');
    expect(withoutPassword('rediss://user:p%40ss@h:6380')).toBe('rediss://user:***@h:6380');
    // not a URL (a / in the password): everything up to the last @ is masked
    expect(withoutPassword('redis://:s3cr/tPass@h:6379')).toBe('redis://***@h:6379');
  });
});
