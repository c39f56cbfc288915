import { type Env, loadConfig, withoutPassword } from '../../shared/config.js';
import { createLogger } from '../../shared/logger.js';
import { type LocalKafka, startKafka } from '../local/kafka.js';
import { canConnect } from '../local/process.js';
import { type LocalRedis, redisAnswers, startRedis } from '../local/redis.js';
import { checkHttpPort, startService } from '../service.js';
import { untilSignal } from '../signals.js';

export const devHelp = `Usage: extjob dev [--port N]

Starts everything on this machine for development: the configured Kafka and Redis when
they answer, else a local single-node Kafka (fetched from Maven Central once) and a
private redis-server; then the service in INSECURE mode (no API tokens, webhooks to
any address, local receivers included), listening on 127.0.0.1 only unless
EXTJOB_HTTP_HOST says otherwise. Ctrl-C stops everything it started.`;

async function kafkaAnswers(brokers: string): Promise<boolean> {
  const first = brokers.split(',')[0] ?? '';
  const i = first.lastIndexOf(':');
  return canConnect(first.slice(0, i), Number(first.slice(i + 1)), 1000);
}

export async function dev(args: { port?: string }): Promise<number> {
  const say = (msg: string) => process.stderr.write(`extjob dev: ${msg}\n`);
  // Local webhook receivers are the point of development, and an API without tokens
  // is for this machine only (unless set otherwise).
  const env: Env = {
    EXTJOB_WEBHOOK_ALLOW_PRIVATE: 'true',
    EXTJOB_HTTP_HOST: '127.0.0.1',
    ...process.env,
    EXTJOB_INSECURE: 'true',
    EXTJOB_TOPIC_REPLICATION: '1',
  };
  if (args.port !== undefined) {
    if (!/^\d{1,5}$/.test(args.port) || Number(args.port) > 65535) {
      process.stderr.write(`extjob dev: --port takes a port number, not "${args.port}"\n\n${devHelp}\n`);
      return 2;
    }
    env.EXTJOB_HTTP_PORT = args.port;
  }
  // the configuration checked before anything starts (Kafka takes seconds): the
  // addresses of what dev may start are filled in later
  const config = loadConfig(env);
  await checkHttpPort(config.httpHost, config.httpPort, args.port === undefined ? undefined : '--port');
  const started: (LocalKafka | LocalRedis)[] = [];
  const stopAll = () => Promise.all(started.map((s) => s.stop()));
  // Ctrl-C while starting: exit at once; the children go with the process (tied to
  // it) and their temporary directories with its exit
  let running = false;
  const signalled = untilSignal();
  void signalled.then((signal) => {
    if (!running) process.exit(signal === 'SIGINT' ? 130 : 143);
  });
  try {
    const redisUrl = env.EXTJOB_REDIS_URL ?? 'redis://127.0.0.1:6379';
    if (await redisAnswers(redisUrl)) say(`using Redis at ${withoutPassword(redisUrl)}`);
    else {
      say(`no Redis answers at ${withoutPassword(redisUrl)}; starting a private redis-server`);
      const redis = await startRedis();
      started.push(redis);
      env.EXTJOB_REDIS_URL = redis.url;
    }
    const brokers = env.EXTJOB_KAFKA_BROKERS ?? '127.0.0.1:9092';
    if (env.EXTJOB_KAFKA_BROKERS && (await kafkaAnswers(brokers))) say(`using Kafka at ${brokers}`);
    else {
      say('starting a local single-node Kafka broker');
      const t0 = Date.now();
      const kafka = await startKafka({ log: say });
      started.push(kafka);
      env.EXTJOB_KAFKA_BROKERS = kafka.brokers.join(',');
      say(`Kafka ready at ${env.EXTJOB_KAFKA_BROKERS} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
    const config = loadConfig(env);
    const logger = createLogger({ level: config.logLevel });
    const service = await startService(config, logger);
    say('INSECURE MODE: the API accepts requests without a token. Never expose this port.');
    if (!isLoopback(config.httpHost))
      say(`INSECURE MODE: listening on ${config.httpHost} (EXTJOB_HTTP_HOST): other machines can reach it.`);
    if (config.webhookAllowPrivate === true)
      say('INSECURE MODE: webhooks may go to any address, loopback and private networks included.');
    process.stdout.write(
      [
        '',
        `  extjob is running (Ctrl-C stops everything it started)`,
        `  API        ${service.url}/v1/jobs`,
        `  OpenAPI    ${service.url}/openapi.json`,
        `  readiness  ${service.url}/readyz`,
        `  metrics    ${service.url}/metrics`,
        `  Kafka      ${config.kafkaBrokers.join(',')} (topics ${config.topicPrefix}.*)`,
        `  Redis      ${withoutPassword(config.redisUrl)} (keys ${config.redisKeyPrefix}:*)`,
        `  try        EXTJOB_URL=${service.url} npx extjob create --name hello`,
        '',
        '',
      ].join('\n'),
    );
    running = true;
    const signal = await signalled;
    say(`${signal}: stopping`);
    await service.close();
    return 0;
  } finally {
    await stopAll();
  }
}

const isLoopback = (host: string) => host === 'localhost' || host === '::1' || host.startsWith('127.');
