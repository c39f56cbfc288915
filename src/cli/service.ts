/**
 * The service process (`extjob serve`, and `extjob dev` after it started its local
 * stack): wires Redis, Kafka, the broker, the consumers and the HTTP API for the
 * roles this process runs, and takes them down again in order.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { createApp } from '../api/app.js';
import { createRegistry } from '../api/metrics.js';
import { Readiness } from '../api/readiness.js';
import { type Config, topicNames } from '../shared/config.js';
import { createKafka, ensureTopics, kafkaSettings } from '../shared/kafka.js';
import type { Logger } from '../shared/logger.js';

export interface Service {
  url: string;
  port: number;
  readiness: Readiness;
  /** Graceful stop: not ready, stop taking work, finish in-flight work, close. */
  close(): Promise<void>;
}

export function redisOptions(config: Config) {
  return {
    // Workers and blocking commands must wait for Redis rather than fail a request.
    maxRetriesPerRequest: null,
    enableAutoPipelining: true,
    retryStrategy: (times: number) => Math.min(times * 100, 2000),
    ...(config.redisTlsCaFile ? { tls: {} } : {}),
  };
}

export async function startService(config: Config, logger: Logger): Promise<Service> {
  const redis = new Redis(config.redisUrl, redisOptions(config));
  redis.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));
  // A separate client whose calls fail fast, for readiness probes.
  const probeKafka = createKafka({
    ...kafkaSettings(config),
    clientId: `${config.kafkaClientId}-probe`,
    retries: 0,
  });
  const admin = probeKafka.admin();
  const readiness = new Readiness()
    .add({
      name: 'redis',
      run: async () => ((await redis.ping()) === 'PONG' ? undefined : 'unexpected PING answer'),
    })
    .add({
      name: 'kafka',
      run: async () => {
        await admin.connect();
        const cluster = await admin.describeCluster();
        return cluster.brokers.length > 0 ? undefined : 'no brokers in the cluster';
      },
    });

  const kafka = createKafka(kafkaSettings(config), logger);
  const setupAdmin = kafka.admin();
  await setupAdmin.connect();
  try {
    const topics = topicNames(config.topicPrefix);
    const created = await ensureTopics(
      setupAdmin,
      Object.values(topics).map((topic) => ({
        topic,
        partitions: config.topicPartitions,
        replication: config.topicReplication,
      })),
    );
    if (created.length > 0) logger.info({ topics: created }, 'created topics');
  } finally {
    await setupAdmin.disconnect();
  }

  const registry = createRegistry();
  const app = createApp({ readiness, registry, logger });
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(config.httpPort, config.httpHost, (err?: Error) => (err ? reject(err) : resolve(s)));
  });
  const port = (server.address() as AddressInfo).port;
  const host = config.httpHost === '0.0.0.0' ? '127.0.0.1' : config.httpHost;
  logger.info({ port, roles: config.roles }, 'extjob service started');

  return {
    url: `http://${host}:${port}`,
    port,
    readiness,
    close: async () => {
      readiness.markStopping();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const grace = setTimeout(() => server.closeAllConnections(), config.shutdownTimeoutSeconds * 1000);
      await closed;
      clearTimeout(grace);
      await admin.disconnect().catch(() => {});
      await redis.quit().catch(() => redis.disconnect());
      logger.info('extjob service stopped');
    },
  };
}
