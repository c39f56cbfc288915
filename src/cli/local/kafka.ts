/**
 * A real single-node Apache Kafka broker (KRaft, broker + controller in one JVM) on
 * loopback, for `extjob dev`, the tests and CI. The broker's jars come from Maven
 * Central (scripts/kafka/pom.xml pins the version) into a cache directory outside the
 * repository; the first fetch takes a while, later starts only start the JVM.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ExtjobError } from '../../shared/errors.js';
import { createConsumer, createKafka, createProducer, createTopics } from '../../shared/kafka.js';
import { withTimeout } from '../../shared/timeouts.js';
import { canConnect, freePort, ownTempDir, run, spawnTied, stopChild, waitUntil } from './process.js';

/** scripts/kafka: three levels up from source, four from the compiled dist/src/cli/local. */
function pomDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = ['../../../scripts/kafka', '../../../../scripts/kafka'].map((p) => resolve(here, p));
  const dir = candidates.find((d) => existsSync(join(d, 'pom.xml')));
  if (!dir)
    throw new ExtjobError(
      'EXTJOB_LOCAL_STACK_FAILED',
      `scripts/kafka/pom.xml not found (looked in ${candidates.join(', ')})`,
    );
  return dir;
}

export function kafkaVersion(): string {
  const pom = readFileSync(join(pomDir(), 'pom.xml'), 'utf8');
  const m = /<kafka\.version>([^<]+)<\/kafka\.version>/.exec(pom);
  if (!m?.[1])
    throw new ExtjobError('EXTJOB_LOCAL_STACK_FAILED', 'scripts/kafka/pom.xml has no <kafka.version>');
  return m[1];
}

/** Where downloaded jars live: $EXTJOB_CACHE_DIR, $XDG_CACHE_HOME/extjob or ~/.cache/extjob. */
export function cacheDir(env = process.env): string {
  return env.EXTJOB_CACHE_DIR ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'extjob');
}

/** Make sure the broker's jars are in the cache; returns the directory holding them. */
export async function ensureKafkaJars(log: (msg: string) => void = () => {}): Promise<string> {
  const version = kafkaVersion();
  const libs = join(cacheDir(), `kafka-${version}`, 'libs');
  if (existsSync(join(libs, '.complete'))) return libs;
  log(`fetching Apache Kafka ${version} from Maven Central into ${libs} (once)`);
  const staging = `${libs}.${process.pid}.tmp`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(dirname(libs), { recursive: true });
  const mvn = await run('mvn', [
    '-q',
    '-B',
    '-f',
    join(pomDir(), 'pom.xml'),
    'dependency:copy-dependencies',
    '-DincludeScope=runtime',
    `-DoutputDirectory=${staging}`,
  ]);
  if (mvn.status !== 0) {
    throw new ExtjobError(
      'EXTJOB_LOCAL_STACK_FAILED',
      `could not fetch Kafka ${version} with Maven (is mvn installed?): ${mvn.output}`,
    );
  }
  writeFileSync(join(staging, '.complete'), `${version}\n`);
  rmSync(libs, { recursive: true, force: true });
  renameSync(staging, libs);
  return libs;
}

export interface LocalKafkaOptions {
  /** Client port; a free one when absent. */
  port?: number;
  controllerPort?: number;
  /** Storage directory; a new temporary one (removed at stop) when absent. */
  dataDir?: string;
  /** Largest heap of the JVM (default 768m). */
  heap?: string;
  log?: (msg: string) => void;
}

export interface LocalKafka {
  brokers: string[];
  port: number;
  controllerPort: number;
  dataDir: string;
  logFile: string;
  pid: number | undefined;
  stop(): Promise<void>;
}

function serverProperties(port: number, controllerPort: number, logDir: string): string {
  return `${[
    'process.roles=broker,controller',
    'node.id=1',
    `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
    `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${port}`,
    'controller.listener.names=CONTROLLER',
    'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'inter.broker.listener.name=PLAINTEXT',
    `log.dirs=${logDir}`,
    // One node: every internal topic must live with a single replica.
    'offsets.topic.replication.factor=1',
    'offsets.topic.num.partitions=10',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'share.coordinator.state.topic.replication.factor=1',
    'share.coordinator.state.topic.min.isr=1',
    'default.replication.factor=1',
    'min.insync.replicas=1',
    'num.partitions=1',
    // Groups join at once instead of waiting for more members.
    'group.initial.rebalance.delay.ms=0',
    // extjob creates its topics; a typo must not create one silently.
    'auto.create.topics.enable=false',
    'log.retention.hours=24',
    'log.segment.bytes=67108864',
  ].join('\n')}\n`;
}

/** Start a broker and wait until it takes produce, consume and group joins. */
export async function startKafka(opts: LocalKafkaOptions = {}): Promise<LocalKafka> {
  const log = opts.log ?? (() => {});
  const libs = await ensureKafkaJars(log);
  const port = opts.port ?? (await freePort());
  const controllerPort = opts.controllerPort ?? (await freePort());
  const own = opts.dataDir === undefined ? ownTempDir('extjob-kafka-') : undefined;
  const dataDir = opts.dataDir ?? own!.dir;
  const logDir = join(dataDir, 'data');
  mkdirSync(logDir, { recursive: true });
  const props = join(dataDir, 'server.properties');
  writeFileSync(props, serverProperties(port, controllerPort, logDir));
  const logFile = join(dataDir, 'kafka.log');
  const classpath = `${libs}/*`;
  const jvm = [
    `-Xmx${opts.heap ?? '768m'}`,
    '-Xms128m',
    '-XX:+UseG1GC',
    '-XX:MaxGCPauseMillis=20',
    '-Djava.awt.headless=true',
    `-Dlog4j2.configurationFile=${join(pomDir(), 'log4j2.properties')}`,
    '-cp',
    classpath,
  ];
  if (!existsSync(join(logDir, 'meta.properties'))) {
    const format = await run('java', [
      ...jvm,
      'kafka.tools.StorageTool',
      'format',
      // One argument with '=': a base64url id may start with '-' and would read as an option.
      `--cluster-id=${clusterId()}`,
      '-c',
      props,
      '--ignore-formatted',
    ]);
    if (format.status !== 0)
      throw new ExtjobError('EXTJOB_LOCAL_STACK_FAILED', `formatting Kafka storage failed: ${format.output}`);
  }
  const child = spawnTied('java', [...jvm, 'kafka.Kafka', props], logFile);
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  const brokers = [`127.0.0.1:${port}`];
  const stop = async () => {
    await stopChild(child);
    own?.remove();
  };
  try {
    await waitUntil(
      async () => {
        if (exited) throw new Error(`the broker exited; see ${logFile}`);
        return canConnect('127.0.0.1', port);
      },
      60_000,
      `Kafka to listen on ${port}`,
    );
    await probeKafka(brokers);
  } catch (err) {
    await stop();
    throw new ExtjobError(
      'EXTJOB_LOCAL_STACK_FAILED',
      `local Kafka did not start: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  return { brokers, port, controllerPort, dataDir, logFile, pid: child.pid, stop };
}

/** A KRaft cluster id: 16 random bytes, base64url without padding (22 characters). */
function clusterId(): string {
  return Buffer.from(randomUUID().replaceAll('-', ''), 'hex').toString('base64url');
}

/**
 * Prove the broker works end to end: create a topic, produce with an idempotent
 * producer, consume it back in a consumer group.
 */
export async function probeKafka(brokers: string[], timeoutMs = 60_000): Promise<void> {
  const kafka = createKafka({ brokers, clientId: 'extjob-probe', retries: 20 });
  const topic = `__extjob-probe-${randomUUID()}`;
  const admin = kafka.admin();
  const producer = createProducer(kafka);
  const consumer = createConsumer(kafka, { groupId: topic });
  const run = async () => {
    await admin.connect();
    await createTopics(admin, [{ topic, numPartitions: 1, replicationFactor: 1 }]);
    await producer.connect();
    await producer.send({ topic, acks: -1, messages: [{ key: 'probe', value: 'probe' }] });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      consumer.run({ eachMessage: async () => resolve() }).catch(reject);
    });
  };
  try {
    await withTimeout(run(), timeoutMs, `Kafka at ${brokers.join(',')} did not produce/consume in a group`);
  } finally {
    await consumer.disconnect().catch(() => {});
    await producer.disconnect().catch(() => {});
    await admin.deleteTopics({ topics: [topic] }).catch(() => {});
    await admin.disconnect().catch(() => {});
  }
}
