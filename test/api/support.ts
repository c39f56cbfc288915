/**
 * An in-process API on the real Redis (own key prefix) with the real broker, served
 * on a free port. Tokens: admin, read-only and write-only.
 */
import type { Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import type { Redis } from 'ioredis';
import { onTestFinished } from 'vitest';
import { createApp } from '../../src/api/app.js';
import { KafkaEventGateway } from '../../src/api/event-gateway.js';
import { startApi } from '../../src/api/index.js';
import { createRegistry } from '../../src/api/metrics.js';
import type { NotifyHub } from '../../src/api/notify-hub.js';
import type { DeliveryLog, EventGateway } from '../../src/api/ports.js';
import { Readiness } from '../../src/api/readiness.js';
import type { JobBroker } from '../../src/broker/index.js';
import { encodeHttpEvent, parseHttpEvent } from '../../src/consumers/formats/index.js';
import { sha256Hex } from '../../src/shared/config.js';
import { createKafka, createTopics } from '../../src/shared/kafka.js';
import { createLogger } from '../../src/shared/logger.js';
import { harness } from '../broker/harness.js';
import { kafkaBrokers, testKafka, unique } from '../helpers/index.js';

export const TOKENS = { admin: 'admin-token-1', read: 'read-token-1', write: 'write-token-1' } as const;

export interface TestApi {
  url: string;
  broker: JobBroker;
  prefix: string;
  redis: Redis;
  hub: NotifyHub;
  server: Server;
  /** fetch relative to the API with a token (admin by default; null: none). */
  req(path: string, init?: RequestInit & { token?: string | null; json?: unknown }): Promise<Response>;
  close(): Promise<void>;
}

export async function startTestApi(
  opts: {
    insecure?: boolean;
    events?: EventGateway;
    deliveries?: DeliveryLog;
    refuseNotifyUrl?: (url: string) => string | undefined;
    broker?: Parameters<typeof harness>[0];
  } = {},
): Promise<TestApi> {
  const h = await harness(opts.broker);
  const logger = createLogger({ level: 'silent' });
  const api = await startApi({
    broker: h.broker,
    redis: h.redis,
    prefix: h.prefix,
    tokens: [
      { sha256: sha256Hex(TOKENS.admin), scopes: ['admin'] },
      { sha256: sha256Hex(TOKENS.read), scopes: ['jobs:read'] },
      { sha256: sha256Hex(TOKENS.write), scopes: ['jobs:write'] },
    ],
    insecure: opts.insecure ?? false,
    logger,
    ...(opts.events ? { events: opts.events } : {}),
    ...(opts.deliveries ? { deliveries: opts.deliveries } : {}),
    ...(opts.refuseNotifyUrl ? { refuseNotifyUrl: opts.refuseNotifyUrl } : {}),
  });
  const app = createApp({
    readiness: new Readiness(),
    registry: createRegistry(),
    logger,
    routers: [api.router],
  });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await api.close();
    await h.cleanup();
  };
  onTestFinished(close);
  return {
    url,
    broker: h.broker,
    prefix: h.prefix,
    redis: h.redis,
    hub: api.hub,
    server,
    close,
    req: (path, init = {}) => {
      const { token = TOKENS.admin, json, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (token !== null) headers.set('authorization', `Bearer ${token}`);
      if (json !== undefined) {
        headers.set('content-type', 'application/json');
        rest.body = JSON.stringify(json);
        rest.method ??= 'POST';
      }
      return fetch(`${url}${path}`, { ...rest, headers });
    },
  };
}

/** The real HTTP-events gateway on the run's Kafka, producing to a topic of this test's own. */
export async function kafkaGateway(
  opts: { brokers?: string[]; timeoutMs?: number; topic?: string } = {},
): Promise<{
  gateway: KafkaEventGateway;
  topic: string;
}> {
  const topic = opts.topic ?? `${unique('events')}`;
  if (!opts.topic) {
    const admin = testKafka().admin();
    await admin.connect();
    await createTopics(admin, [{ topic, numPartitions: 2, replicationFactor: 1 }]);
    await admin.disconnect();
  }
  const kafka = createKafka({
    brokers: opts.brokers ?? kafkaBrokers(),
    clientId: unique('http-events'),
    retries: 1,
    connectionTimeoutMs: 1000,
  });
  const gateway = new KafkaEventGateway({
    kafka,
    topic,
    parse: (body, id) => parseHttpEvent(body, id),
    encode: encodeHttpEvent,
    timeoutMs: opts.timeoutMs ?? 5000,
  });
  onTestFinished(() => gateway.close());
  return { gateway, topic };
}

/** What a server answers `request` (written as is) until it closes the connection. */
export function rawHttp(url: string, request: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(request));
    const got: Buffer[] = [];
    socket.on('data', (d: Buffer) => got.push(d));
    socket.on('end', () => resolve(Buffer.concat(got).toString('utf8')));
    socket.on('error', reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error('no answer within 10 s')));
  });
}
