/**
 * A real `extjob serve` (or any CLI command) as a child process, for tests that kill,
 * restart or signal the service.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { onTestFinished } from 'vitest';
import { waitFor } from './index.js';

const MAIN = resolve(import.meta.dirname, '../../src/cli/main.ts');

export interface ServeProcess {
  child: ChildProcess;
  url: string;
  /** Everything the process wrote so far (stdout and stderr). */
  output(): string;
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Spawn the CLI with `args`; returns at once (see startServe to wait for readiness). */
export function spawnCli(
  args: string[],
  env: Record<string, string>,
): { child: ChildProcess; output(): string } {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], {
    env: { ...process.env, EXTJOB_LOG_LEVEL: 'info', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    out += d;
  });
  return { child, output: () => out };
}

/** Wait until a spawned `extjob serve` listens and its /readyz answers 200; returns its URL. */
export async function untilServing(
  child: ChildProcess,
  output: () => string,
  timeoutMs: number,
): Promise<string> {
  const port = await waitFor(
    () => {
      if (child.exitCode !== null) throw new Error(`serve exited (${child.exitCode}): ${output()}`);
      return /"port":(\d+)/.exec(output())?.[1];
    },
    { timeoutMs, what: 'serve to listen' },
  );
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${url}/readyz`)).status === 200, {
    timeoutMs,
    what: `${url}/readyz to answer 200`,
  });
  return url;
}

/** Start `extjob serve` with `env` on a free port and wait until /readyz answers 200. */
export async function startServe(
  env: Record<string, string>,
  { roles, readyTimeoutMs = 30_000 }: { roles?: string[]; readyTimeoutMs?: number } = {},
): Promise<ServeProcess> {
  const args = ['serve', ...(roles ?? []).flatMap((r) => ['--role', r])];
  const { child, output } = spawnCli(args, { EXTJOB_HTTP_PORT: '0', EXTJOB_HTTP_HOST: '127.0.0.1', ...env });
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  const url = await untilServing(child, output, readyTimeoutMs);
  const kill = async (signal: NodeJS.Signals = 'SIGKILL') => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    return exited;
  };
  onTestFinished(async () => {
    await kill('SIGKILL');
  });
  return { child, url, output, exited, kill };
}
