/**
 * `extjob serve` as a child process for a whole describe block (started in beforeAll,
 * stopped in afterAll), unlike test/helpers/serve.ts whose process lives for one test.
 */

import { isolation, kafkaBrokers, redisUrl } from '../helpers/index.js';
import { spawnCli, untilServing } from '../helpers/serve.js';

export interface Service {
  url: string;
  /** host:port, for a scrape target. */
  host: string;
  iso: ReturnType<typeof isolation>;
  output(): string;
  exited: Promise<number | null>;
  signal(signal: NodeJS.Signals): void;
  /** SIGKILL if still running; resolves with the exit code. */
  stop(): Promise<number | null>;
}

export async function startService(
  env: Record<string, string> = {},
  iso = isolation(),
  readyTimeoutMs = 60_000,
): Promise<Service> {
  const { child, output } = spawnCli(['serve'], {
    EXTJOB_HTTP_PORT: '0',
    EXTJOB_HTTP_HOST: '127.0.0.1',
    EXTJOB_REDIS_URL: redisUrl(),
    EXTJOB_KAFKA_BROKERS: kafkaBrokers().join(','),
    EXTJOB_REDIS_PREFIX: iso.keyPrefix,
    EXTJOB_TOPIC_PREFIX: iso.topicPrefix,
    EXTJOB_CONSUMER_GROUP: iso.group,
    EXTJOB_TOPIC_PARTITIONS: '3',
    EXTJOB_INSECURE: 'true',
    ...env,
  });
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    return exited;
  };
  try {
    const url = await untilServing(child, output, readyTimeoutMs);
    return {
      url,
      host: new URL(url).host,
      iso,
      output,
      exited,
      signal: (s) => child.kill(s),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
