/**
 * What a start says. A first start creates its topics and joins its group once,
 * logging no error. A service that cannot reach Redis or Kafka when it starts fails
 * its start with one error that says where it looked and which setting names it,
 * instead of waiting without a word (Redis) or ending in a client library's stack
 * trace (Kafka); and /readyz says why Redis is down when the connection is refused.
 */
import { describe, expect, it } from 'vitest';
import { freePort } from '../../src/cli/local/process.js';
import { startRedis } from '../../src/cli/local/redis.js';
import { startService } from '../../src/cli/service.js';
import { loadConfig } from '../../src/shared/config.js';
import { createLogger } from '../../src/shared/logger.js';
import { isolation, kafkaBrokers, redisUrl, waitFor } from '../helpers/index.js';

const quiet = createLogger({ level: 'silent' });

function config(env: Record<string, string>) {
  const { keyPrefix, topicPrefix } = isolation();
  return loadConfig({
    EXTJOB_REDIS_URL: redisUrl(),
    EXTJOB_REDIS_PREFIX: keyPrefix,
    EXTJOB_KAFKA_BROKERS: kafkaBrokers().join(','),
    EXTJOB_TOPIC_PREFIX: topicPrefix,
    EXTJOB_TOPIC_REPLICATION: '1',
    EXTJOB_HTTP_HOST: '127.0.0.1',
    EXTJOB_HTTP_PORT: '0',
    EXTJOB_INSECURE: 'true',
    ...env,
  });
}

describe('a first start', () => {
  it('creates its topics, joins its group once and logs no error', async () => {
    const lines: string[] = [];
    const logger = createLogger({ level: 'info' }, { write: (l: string) => lines.push(l) });
    const service = await startService(config({}), logger);
    try {
      await waitFor(async () => (await fetch(`${service.url}/readyz`)).status === 200, {
        timeoutMs: 30_000,
        what: '/readyz 200',
      });
      // a consumer that started on partitions not served yet crashes and joins again
      await new Promise((r) => setTimeout(r, 3000));
    } finally {
      await service.close();
    }
    const logged = lines.map((l) => JSON.parse(l) as { level: number; msg: string });
    expect(logged.filter((l) => l.level >= 50)).toEqual([]);
    expect(logged.filter((l) => l.msg === 'joined')).toHaveLength(1);
  }, 60_000);
});

describe('a stop', () => {
  it('with log and events streams open, cuts them and logs no error', async () => {
    const lines: string[] = [];
    const logger = createLogger({ level: 'info' }, { write: (l: string) => lines.push(l) });
    const service = await startService(config({}), logger);
    await fetch(`${service.url}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'streamed', name: 'n' }),
    });
    const streams = await Promise.all(
      ['log/stream', 'log/stream', 'events/stream'].map(async (path) => {
        const res = await fetch(`${service.url}/v1/jobs/streamed/${path}`);
        const reader = res.body!.getReader();
        await reader.read(); // the stream began
        return reader;
      }),
    );
    await service.close();
    // cut: each ends, or fails as a response cut short
    for (const r of streams) while (!(await r.read().catch(() => ({ done: true }))).done);
    await new Promise((r) => setTimeout(r, 500)); // what a stream still running would log
    const logged = lines.map((l) => JSON.parse(l) as { level: number; msg: string });
    expect(logged.filter((l) => l.level >= 40)).toEqual([]);
  });
});

describe('a start without Redis or Kafka', () => {
  it('fails naming the Redis it could not reach, its password masked', async () => {
    const port = await freePort();
    const c = config({ EXTJOB_REDIS_URL: `redis://:s3cret@127.0.0.1:${port}` });
    const err = await startService(c, quiet, { redisWaitMs: 1500 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'EXTJOB_REDIS_UNAVAILABLE' });
    const message = (err as Error).message;
    expect(message).toMatch(
      new RegExp(
        `^cannot reach Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${port} \\(EXTJOB_REDIS_URL\\): .*ECONNREFUSED`,
      ),
    );
    expect(message).not.toContain('s3cret');
  });

  it('fails naming the Kafka brokers it could not reach', async () => {
    const port = await freePort();
    const c = config({ EXTJOB_KAFKA_BROKERS: `127.0.0.1:${port}` });
    const err = await startService(c, quiet).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'EXTJOB_KAFKA_UNAVAILABLE' });
    expect((err as Error).message).toMatch(
      new RegExp(`^cannot reach Kafka at 127\\.0\\.0\\.1:${port} \\(EXTJOB_KAFKA_BROKERS\\): .*ECONNREFUSED`),
    );
  }, 60_000);

  it('/readyz names the refused Redis connection rather than a slow answer', async () => {
    let redis = await startRedis();
    const service = await startService(config({ EXTJOB_REDIS_URL: redis.url }), quiet);
    try {
      await redis.stop();
      // first "not connected", then why, once a reconnect was refused
      const down = await waitFor(
        async () => (await readyz(service.url)).redis?.reason?.match(/.*ECONNREFUSED.*/)?.[0],
        {
          timeoutMs: 10_000,
          what: '/readyz to say why Redis is down',
        },
      );
      expect(down).toMatch(/^not connected \(.*ECONNREFUSED/);
    } finally {
      // back, so that the service can stop (a stop waits for Redis: see serve's shutdown timeout)
      redis = await startRedis({ port: redis.port });
      await service.close();
      await redis.stop();
    }
  }, 60_000);
});

async function readyz(url: string) {
  const res = await fetch(`${url}/readyz`);
  return ((await res.json()) as { checks: Record<string, { ok: boolean; reason?: string }> }).checks;
}
