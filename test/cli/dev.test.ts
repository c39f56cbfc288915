/**
 * `extjob dev` as the README starts it: its own redis-server and Kafka broker, the
 * service in insecure mode, and Ctrl-C on the terminal (SIGINT to the whole process
 * group) stopping all of it, the service first.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { withoutPassword } from '../../src/cli/commands/dev.js';
import { freePort } from '../../src/cli/local/process.js';
import { waitFor } from '../helpers/index.js';

const MAIN = resolve(import.meta.dirname, '../../src/cli/main.ts');

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('extjob dev', { timeout: 120_000 }, () => {
  it('starts Redis, Kafka and the service, and Ctrl-C stops them all', async () => {
    const noRedis = await freePort(); // nothing answers there: dev starts its own
    const env: Record<string, string | undefined> = {
      ...process.env,
      EXTJOB_REDIS_URL: `redis://127.0.0.1:${noRedis}`,
    };
    delete env.EXTJOB_KAFKA_BROKERS;
    // a group of its own, as a shell gives a foreground job: the terminal's Ctrl-C goes to the group
    const dev = spawn(process.execPath, ['--import', 'tsx', MAIN, 'dev', '--port', '0'], {
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    onTestFinished(() => {
      if (dev.exitCode === null) process.kill(-dev.pid!, 'SIGKILL');
    });
    let stdout = '';
    let stderr = '';
    dev.stdout.on('data', (d: Buffer) => {
      stdout += d;
    });
    dev.stderr.on('data', (d: Buffer) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((r) => dev.on('exit', (code) => r(code)));
    await waitFor(() => stdout.includes('extjob is running'), {
      timeoutMs: 90_000,
      what: `dev to start (${stderr})`,
    });
    const api = /API\s+(http:\/\/\S+)\/v1\/jobs/.exec(stdout)?.[1];
    expect(api).toBeDefined();
    const created = await fetch(`${api}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'hello' }),
    });
    expect(created.status).toBe(201);
    await waitFor(async () => (await fetch(`${api}/readyz`)).status === 200, { what: 'ready' });

    const children = execFileSync('ps', ['-o', 'pid=', '--ppid', String(dev.pid)], { encoding: 'utf8' })
      .split('\n')
      .map((s) => Number(s.trim()))
      .filter((pid) => pid > 0);
    expect(children.length).toBeGreaterThanOrEqual(2); // redis-server and the Kafka JVM
    process.kill(-dev.pid!, 'SIGINT');
    await waitFor(() => dev.exitCode !== null, { timeoutMs: 30_000, what: 'dev to exit after Ctrl-C' });
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/SIGINT: stopping/);
    expect(children.filter(alive)).toEqual([]);
  });

  it('Ctrl-C while it starts stops what it started and leaves no temporary directory', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'extjob-dev-test-'));
    onTestFinished(() => rmSync(tmp, { recursive: true, force: true }));
    const env: Record<string, string | undefined> = {
      ...process.env,
      EXTJOB_REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
      TMPDIR: tmp, // where its redis-server and Kafka keep their data
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
    let stderr = '';
    dev.stderr.on('data', (d: Buffer) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((r) => dev.on('exit', (code) => r(code)));
    await waitFor(() => stderr.includes('starting a local single-node Kafka broker'), {
      timeoutMs: 30_000,
      what: `dev to start Kafka (${stderr})`,
    });
    await waitFor(() => readdirSync(tmp).some((d) => d.startsWith('extjob-kafka-')), {
      what: "Kafka's data directory",
    });
    const children = execFileSync('ps', ['-o', 'pid=', '--ppid', String(dev.pid)], { encoding: 'utf8' })
      .split('\n')
      .map((s) => Number(s.trim()))
      .filter((pid) => pid > 0);
    process.kill(-dev.pid!, 'SIGINT');
    expect(await exited).toBe(130);
    await waitFor(() => children.filter(alive).length === 0, {
      timeoutMs: 20_000,
      what: 'its children gone',
    });
    expect(readdirSync(tmp).filter((d) => d.startsWith('extjob-'))).toEqual([]);
  });

  it('prints the Redis URL without its password', () => {
    expect(withoutPassword('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
    expect(withoutPassword('redis://:s3cret@h:6379/0')).toBe('redis://:***@h:6379/0');
    expect(withoutPassword('rediss://user:p%40ss@h:6380')).toBe('rediss://user:***@h:6380');
  });
});
