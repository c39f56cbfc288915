/**
 * The service process (`extjob serve`, and `extjob dev` after it started its local
 * stack): wires Redis, Kafka, the broker, the consumers and the HTTP API for the
 * roles this process runs, and takes them down again in order.
 *
 * Roles: `api` serves HTTP (/v1, wait and SSE); `consume` reads the events topic;
 * `schedule` runs the BullMQ timer workers and the outbox drainer. Probes and
 * /metrics are served by every process.
 */
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
import { Redis } from 'ioredis';
import { createApp } from '../api/app.js';
import { KafkaEventGateway } from '../api/event-gateway.js';
import { InFlight } from '../api/in-flight.js';
import { type Api, startApi } from '../api/index.js';
import { createRegistry, instrumentMetrics } from '../api/metrics.js';
import { httpObservability } from '../api/metrics-http.js';
import { answerClientError } from '../api/problem.js';
import { Readiness } from '../api/readiness.js';
import { type BrokerDefaults, JobBroker } from '../broker/index.js';
import { encodeHttpEvent, parseHttpEvent } from '../consumers/formats/index.js';
import { formatLimits, type KafkaSide, startKafkaSide } from '../consumers/index.js';
import { createInstrumentation } from '../consumers/instrumentation.js';
import { Webhooks } from '../consumers/webhooks.js';
import { addressPolicy, literalRefusal } from '../consumers/webhooks-guard.js';
import { type Config, topicNames, withoutPassword } from '../shared/config.js';
import { ExtjobError } from '../shared/errors.js';
import { createKafka, kafkaSettings } from '../shared/kafka.js';
import type { Logger } from '../shared/logger.js';
import { closeConnection } from '../shared/redis.js';
import { withTimeout } from '../shared/timeouts.js';

export interface Service {
  url: string;
  port: number;
  readiness: Readiness;
  broker: JobBroker;
  /** Graceful stop: not ready, stop taking work, finish in-flight work, close. */
  close(): Promise<void>;
}

/** The URL a client on this machine reaches the service at, listening on `host`. */
export function serviceUrl(host: string, port: number): string {
  // any address: reach it on loopback; an IPv6 literal goes in brackets
  const reach = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `http://${reach.includes(':') ? `[${reach}]` : reach}:${port}`;
}

export function redisOptions(config: Config) {
  return {
    // Workers and blocking commands must wait for Redis rather than fail a request.
    maxRetriesPerRequest: null,
    retryStrategy: (times: number) => Math.min(times * 100, 2000),
    // A failover demoted the primary this connection reached: connect again (to the
    // new primary, behind the same name); the command fails (503) rather than waits.
    reconnectOnError: (err: Error) => (err.message.startsWith('READONLY') ? 1 : false),
    ...(config.redisTlsCaFile ? { tls: { ca: [readFileSync(config.redisTlsCaFile, 'utf8')] } } : {}),
  };
}

export function brokerDefaults(config: Config): BrokerDefaults {
  return {
    timeouts: {
      acceptSeconds: config.acceptTimeoutSeconds,
      heartbeatSeconds: config.heartbeatTimeoutSeconds,
      runSeconds: config.runTimeoutSeconds,
      cancelGraceSeconds: config.cancelGraceSeconds,
    },
    retentionSeconds: config.retentionSeconds,
    lateLogGraceSeconds: config.lateLogGraceSeconds,
    logChunkMaxBytes: config.logChunkMaxBytes,
    logMaxBytes: config.logMaxBytes,
    dedupeWindowSeconds: config.dedupeWindowSeconds,
  };
}

/**
 * Bind the HTTP port for a moment, so that a port in use is said at once, naming its
 * setting, before anything starts (Kafka, consumers, timers). startService's own bind,
 * last, says the same (after stopping what it started) if the port was taken since.
 */
export async function checkHttpPort(host: string, port: number, setting = 'EXTJOB_HTTP_PORT'): Promise<void> {
  if (port === 0) return;
  const probe = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen(port, host, () => probe.close(() => resolve()));
    });
  } catch (err) {
    throw listenError(err, host, port, setting);
  }
}

function listenError(err: unknown, host: string, port: number, setting = 'EXTJOB_HTTP_PORT'): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'EADDRINUSE')
    return new ExtjobError('EXTJOB_CONFIG_INVALID', `${setting}: port ${port} on ${host} is in use`);
  if (code === 'EACCES')
    return new ExtjobError(
      'EXTJOB_CONFIG_INVALID',
      `${setting}: port ${port} needs privileges this process lacks`,
    );
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND')
    return new ExtjobError(
      'EXTJOB_CONFIG_INVALID',
      `EXTJOB_HTTP_HOST: ${host} is not an address of this machine`,
    );
  return err;
}

/** How long a start waits for Redis to answer before it fails. */
export const REDIS_START_WAIT_MS = 30_000;

export async function startService(
  config: Config,
  logger: Logger,
  opts: { redisWaitMs?: number } = {},
): Promise<Service> {
  const roles = new Set(config.roles);
  const redis = new Redis(config.redisUrl, redisOptions(config));
  /** Why the connection is down, while it is: said by the start and by /readyz. */
  let redisProblem: string | undefined;
  redis.on('error', (err) => {
    redisProblem = err.message;
    logger.warn({ err: err.message }, 'redis connection error');
  });
  redis.on('ready', () => {
    redisProblem = undefined;
  });
  const broker = new JobBroker({
    redis,
    prefix: config.redisKeyPrefix,
    defaults: brokerDefaults(config),
    logger,
  });

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
      run: async () => {
        if (redis.status !== 'ready') return `not connected${redisProblem ? ` (${redisProblem})` : ''}`;
        return (await redis.ping()) === 'PONG' ? undefined : 'unexpected PING answer';
      },
    })
    .add({
      name: 'kafka',
      run: async () => {
        await admin.connect();
        const cluster = await admin.describeCluster();
        return cluster.brokers.length > 0 ? undefined : 'no brokers in the cluster';
      },
    });

  // Webhooks: deliveries are BullMQ jobs. In the schedule role the outbox drainer
  // enqueues them and a worker delivers them; the api role lists them
  // (GET /v1/jobs/{id}/deliveries).
  const webhooks = new Webhooks({
    redis,
    prefix: config.redisKeyPrefix,
    targets: (id, createdAt) => broker.notifyTargets(id, createdAt),
    attempts: config.webhookAttempts,
    backoffMs: config.webhookBackoffMs,
    timeoutMs: config.webhookTimeoutSeconds * 1000,
    concurrency: config.webhookConcurrency,
    keepSeconds: config.retentionSeconds,
    allowPrivate: config.webhookAllowPrivate,
    logger,
  });
  // Metrics listen before anything starts: timers that fell due while extjob was
  // down fire at start, and events are applied as soon as the consumer joins.
  const kafkaEvents = createInstrumentation();
  const registry = createRegistry();
  const stopMetrics = instrumentMetrics(registry, {
    broker,
    consumers: { instrumentation: kafkaEvents },
    webhooks,
    ready: async () => (await readiness.report()).ready,
    roles: config.roles,
    logger,
  });

  let kafkaSide: KafkaSide | undefined;
  let api: Api | undefined;
  let events: KafkaEventGateway | undefined;
  const inFlight = new InFlight();
  /** Stop what started, in order: the in-flight batch finishes and commits first. */
  const stopParts = async () => {
    await api?.close(); // first: long-polls answer with the job as it is...
    await inFlight.idle(config.shutdownTimeoutSeconds * 1000); // ...read before Redis closes
    await kafkaSide?.stop();
    await webhooks.close();
    await broker.close();
    await events?.close();
    stopMetrics();
  };
  /** Close the connections no part owns. */
  const disconnect = async () => {
    await admin.disconnect().catch(() => {});
    await closeConnection(redis);
  };

  let server: Server;
  try {
    // Every part waits for Redis while it is away: at the start, that would be a
    // process that never serves and never says why.
    const waitMs = opts.redisWaitMs ?? REDIS_START_WAIT_MS;
    await withTimeout(redis.ping(), waitMs, `no answer within ${waitMs / 1000} s`).catch((err: Error) => {
      throw new ExtjobError(
        'EXTJOB_REDIS_UNAVAILABLE',
        `cannot reach Redis at ${withoutPassword(config.redisUrl)} (EXTJOB_REDIS_URL): ${redisProblem ?? err.message}`,
        { cause: err },
      );
    });
    // Timers first: they need only Redis, and starting the Kafka side waits for the
    // consumer to join its group, which after a crash takes up to the session timeout;
    // timers that fell due while extjob was down must not wait for that.
    if (roles.has('schedule')) await broker.startTimers();

    const side = await startKafkaSide({
      config,
      broker,
      redis,
      notifyChannel: broker.keys.notify,
      logger,
      consume: roles.has('consume'),
      drain: roles.has('schedule'),
      webhooks,
      instrumentation: kafkaEvents,
    });
    kafkaSide = side;
    if (roles.has('consume'))
      readiness.add({
        name: 'consumers',
        run: async () => (side.isReady() ? undefined : 'the events consumer has not joined its group'),
      });

    if (roles.has('schedule')) await webhooks.startWorker();

    if (roles.has('api')) {
      const limits = formatLimits(config);
      // the same policy refuses, at creation, notify URLs whose literal address it forbids
      const notifyPolicy = addressPolicy(config.webhookAllowPrivate);
      events = new KafkaEventGateway({
        kafka: createKafka(kafkaSettings(config), logger),
        topic: topicNames(config.topicPrefix).events,
        parse: (body, jobId) => parseHttpEvent(body, jobId, limits),
        encode: (event, body) => encodeHttpEvent(event, body, limits),
        logger,
      });
      api = await startApi({
        broker,
        events,
        deliveries: webhooks,
        tokens: config.apiTokens,
        insecure: config.insecure,
        logger,
        redis,
        prefix: config.redisKeyPrefix,
        refuseNotifyUrl: (url) => literalRefusal(url, notifyPolicy),
      });
      const hub = api.hub;
      // /wait and the streams need the notification subscription.
      readiness.add({
        name: 'notifications',
        run: async () => (hub.ready ? undefined : 'not subscribed to job notifications'),
      });
    }

    const app = createApp({
      readiness,
      registry,
      logger,
      routers: api ? [api.router] : [],
      requestLog: httpObservability(registry, logger),
      inFlight: inFlight.middleware,
    });
    server = await new Promise((resolve, reject) => {
      const s = app.listen(config.httpPort, config.httpHost, (err?: Error) =>
        err ? reject(listenError(err, config.httpHost, config.httpPort)) : resolve(s),
      );
      s.on('clientError', answerClientError);
    });
  } catch (err) {
    // A process that cannot start leaves its consumer groups at once: its partitions
    // would otherwise wait out its session before its peers get them.
    await stopParts().catch((e) => logger.warn({ err: e }, 'stopping after a failed start failed'));
    await disconnect();
    throw err;
  }
  const port = (server.address() as AddressInfo).port;
  logger.info({ port, roles: config.roles }, 'extjob service started');

  return {
    url: serviceUrl(config.httpHost, port),
    port,
    readiness,
    broker,
    close: async () => {
      readiness.markStopping();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const grace = setTimeout(() => server.closeAllConnections(), config.shutdownTimeoutSeconds * 1000);
      await stopParts();
      server.closeAllConnections();
      await closed;
      clearTimeout(grace);
      await disconnect();
      logger.info('extjob service stopped');
    },
  };
}
