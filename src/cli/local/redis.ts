/**
 * Redis for local runs: the configured one when it answers, else a private
 * `redis-server` (the Debian package) on a free loopback port, keeping nothing on disk.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { ExtjobError } from '../../shared/errors.js';
import { freePort, ownTempDir, spawnTied, stopChild, waitUntil } from './process.js';

/** Whether a Redis at `url` answers PING within `timeoutMs`. */
export async function redisAnswers(url: string, timeoutMs = 1500): Promise<boolean> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

export interface LocalRedis {
  url: string;
  port: number;
  stop(): Promise<void>;
}

export interface LocalRedisOptions {
  port?: number;
  /** Extra redis-server arguments, e.g. ['--appendonly', 'yes']. */
  args?: string[];
  /** Working directory (AOF files); a temporary one, removed at stop, when absent. */
  dir?: string;
}

export async function startRedis(opts: LocalRedisOptions = {}): Promise<LocalRedis> {
  if (spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status !== 0)
    throw new ExtjobError(
      'EXTJOB_LOCAL_STACK_FAILED',
      'redis-server is not installed; install it (Debian: apt-get install -y redis-server) or set EXTJOB_REDIS_URL',
    );
  const port = opts.port ?? (await freePort());
  const own = opts.dir === undefined ? ownTempDir('extjob-redis-') : undefined;
  const dir = opts.dir ?? own!.dir;
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
  args.push('--dir', dir, '--daemonize', 'no', ...(opts.args ?? []));
  const child = spawnTied('redis-server', args, join(dir, 'redis.log'));
  const url = `redis://127.0.0.1:${port}`;
  const stop = async () => {
    await stopChild(child, 5000);
    own?.remove();
  };
  try {
    await waitUntil(() => redisAnswers(url, 500), 15_000, `redis-server on ${port}`);
  } catch (err) {
    await stop();
    throw new ExtjobError(
      'EXTJOB_LOCAL_STACK_FAILED',
      `local Redis did not start: ${(err as Error).message}`,
    );
  }
  return { url, port, stop };
}
