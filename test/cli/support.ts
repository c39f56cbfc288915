/**
 * A running extjob service (in-process, real Redis and Kafka, its own key prefix,
 * topics and consumer group) and the CLI spawned against it as a real process.
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { onTestFinished } from 'vitest';
import { type Service, startService } from '../../src/cli/service.js';
import { loadConfig } from '../../src/shared/config.js';
import { createLogger } from '../../src/shared/logger.js';
import { isolation, kafkaBrokers, redisUrl } from '../helpers/index.js';

const MAIN = resolve(import.meta.dirname, '../../src/cli/main.ts');
export const ADMIN_TOKEN = 'cli-admin-token';

export interface Stack {
  service: Service;
  url: string;
  topicPrefix: string;
  env: Record<string, string>;
}

/** A service's environment on the test's Redis and Kafka, with names of its own. */
export function stackEnv(extraEnv: Record<string, string> = {}) {
  const { topicPrefix, keyPrefix, group } = isolation();
  const env: Record<string, string> = {
    EXTJOB_REDIS_URL: redisUrl(),
    EXTJOB_REDIS_PREFIX: keyPrefix,
    EXTJOB_KAFKA_BROKERS: kafkaBrokers().join(','),
    EXTJOB_TOPIC_PREFIX: topicPrefix,
    EXTJOB_TOPIC_PARTITIONS: '2',
    EXTJOB_TOPIC_REPLICATION: '1',
    EXTJOB_CONSUMER_GROUP: group,
    EXTJOB_HTTP_PORT: '0',
    EXTJOB_HTTP_HOST: '127.0.0.1',
    EXTJOB_API_TOKENS: `${ADMIN_TOKEN}=admin`,
    ...extraEnv,
  };
  return { env, topicPrefix, group };
}

export async function startStack(extraEnv: Record<string, string> = {}): Promise<Stack> {
  const { env, topicPrefix } = stackEnv(extraEnv);
  const service = await startService(loadConfig(env), createLogger({ level: 'silent' }));
  onTestFinished(() => service.close());
  // Events posted over HTTP are applied by the consumers once they joined their group.
  const deadline = Date.now() + 60_000;
  while ((await fetch(`${service.url}/readyz`)).status !== 200) {
    if (Date.now() > deadline) throw new Error('the service did not become ready');
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    service,
    url: service.url,
    topicPrefix,
    env: { EXTJOB_URL: service.url, EXTJOB_TOKEN: ADMIN_TOKEN, EXTJOB_TOPIC_PREFIX: topicPrefix },
  };
}

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run `extjob <args>` as a child process; resolves when it exits. */
export function cli(
  args: string[],
  env: Record<string, string>,
  /** stdout: a descriptor the child's stdout goes to instead of a pipe (stdout is then '') */
  opts: { stdin?: string | Buffer; timeoutMs?: number; stdout?: number } = {},
): Promise<Run> & { child: ReturnType<typeof spawn> } {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], {
    env: { ...process.env, EXTJOB_EVENT_TOKEN: '', ...env },
    stdio: ['pipe', opts.stdout ?? 'pipe', 'pipe'],
  });
  // Bytes first, text at the end: a character may straddle two reads.
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout?.on('data', (d: Buffer) => out.push(d));
  child.stderr!.on('data', (d: Buffer) => err.push(d));
  if (opts.stdin !== undefined) child.stdin!.end(opts.stdin);
  else child.stdin!.end();
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  const done = new Promise<Run>((res) => {
    child.on('exit', (code) => {
      clearTimeout(timer);
      res({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  }) as Promise<Run> & { child: typeof child };
  done.child = child;
  return done;
}
