/**
 * Child processes of the local stack. On Linux each child is started under
 * `setpriv --pdeathsig KILL`, so the kernel kills it when this process dies, however
 * it dies: no orphan broker (or Maven download) survives a crashed test run or a
 * killed `extjob dev`. Each child has a process group of its own: Ctrl-C on a terminal
 * reaches `extjob dev` only, which stops the service first, while Redis and Kafka still
 * answer, and then them.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let setprivAvailable: boolean | undefined;

function hasSetpriv(): boolean {
  setprivAvailable ??= spawnSync('setpriv', ['--help'], { stdio: 'ignore' }).status === 0;
  return setprivAvailable;
}

/** A child tied to this process's life, in a process group of its own. */
function spawnChild(command: string, args: string[], cwd?: string): ChildProcess {
  const [cmd, argv] = hasSetpriv() ? ['setpriv', ['--pdeathsig', 'KILL', command, ...args]] : [command, args];
  return spawn(cmd, argv, { cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Spawn `command` tied to this process's life, its output appended to `logFile`. */
export function spawnTied(command: string, args: string[], logFile: string, cwd?: string): ChildProcess {
  const out = createWriteStream(logFile, { flags: 'a' });
  const child = spawnChild(command, args, cwd);
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  return child;
}

/** Run a command to completion without blocking the event loop; collects its output. */
export function run(command: string, args: string[]): Promise<{ status: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawnChild(command, args);
    let output = '';
    child.stdout?.on('data', (d) => {
      output += d;
    });
    child.stderr?.on('data', (d) => {
      output += d;
    });
    child.once('error', (err) => resolve({ status: null, output: err.message }));
    child.once('close', (status) => resolve({ status, output }));
  });
}

/** Stop a child: SIGTERM, then SIGKILL after `graceMs`. Resolves once it has exited. */
export async function stopChild(child: ChildProcess, graceMs = 15_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** Whether something accepts TCP connections on host:port. */
export function canConnect(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A temporary directory of this process's own, removed when the process exits however
 * it does (process.exit on a second Ctrl-C, say), unless `remove()` was called first.
 */
export function ownTempDir(prefix: string): { dir: string; remove(): void } {
  removeOrphans(prefix);
  const dir = mkdtempSync(join(tmpdir(), prefix));
  writeFileSync(join(dir, OWNER), String(process.pid));
  const remove = () => {
    process.removeListener('exit', remove);
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', remove);
  return { dir, remove };
}

/** The file naming the process a temporary directory belongs to. */
const OWNER = 'extjob-owner.pid';

/**
 * Directories of `prefix` left by a process that died without its exit handlers (a
 * SIGKILL): removed when their owner is gone. One without an owner file (being made,
 * or not ours) is left alone.
 */
function removeOrphans(prefix: string): void {
  let names: string[] = [];
  try {
    names = readdirSync(tmpdir()).filter((n) => n.startsWith(prefix));
  } catch {
    return;
  }
  for (const name of names) {
    const dir = join(tmpdir(), name);
    try {
      const owner = Number(readFileSync(join(dir, OWNER), 'utf8'));
      if (Number.isInteger(owner) && owner > 0 && !isAlive(owner))
        rmSync(dir, { recursive: true, force: true });
    } catch {} // no owner file, or not ours to read: left alone
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, someone else's
  }
}

/** Poll `check` until it returns true; reject after `timeoutMs` with `what`. */
export async function waitUntil(
  check: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
