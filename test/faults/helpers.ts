/**
 * What the fault drills share: a steady event load produced to Kafka while something
 * breaks, an audit that counts every expected effect in Redis (lost, doubled), a read
 * of the changes topic, private Kafka and Redis servers that a drill may stop and
 * restart, and the one line every drill prints:
 * `drill <name>: events sent N, effects applied N, lost N, doubled N`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { onTestFinished } from 'vitest';
import { JobBroker } from '../../src/broker/index.js';
import type { JobEvent, JobState } from '../../src/broker/types.js';
import { type LocalKafka, startKafka } from '../../src/cli/local/kafka.js';
import { freePort } from '../../src/cli/local/process.js';
import { type LocalRedis, startRedis } from '../../src/cli/local/redis.js';
import { brokerDefaults } from '../../src/cli/service.js';
import { encodeBinary, encodeStructured } from '../../src/consumers/formats/index.js';
import { loadConfig, topicNames } from '../../src/shared/config.js';
import { createConsumer, createKafka, createProducer, type Producer } from '../../src/shared/kafka.js';
import { dropKeys, isolation, kafkaBrokers, redisUrl, unique, waitFor } from '../helpers/index.js';
import { type ServeProcess, spawnCli, startServe } from '../helpers/serve.js';

export type Names = ReturnType<typeof isolation>;

export interface Tally {
  sent: number;
  applied: number;
  lost: number;
  doubled: number;
}

/** The one line a drill prints (and returns, for the assertion message). */
export function drillLine(name: string, t: Tally, extra = ''): string {
  const line = `drill ${name}: events sent ${t.sent}, effects applied ${t.applied}, lost ${t.lost}, doubled ${t.doubled}${extra ? `; ${extra}` : ''}`;
  console.log(line);
  return line;
}

// ---------------------------------------------------------------------------
// Services

/** Environment of an `extjob serve` on these names, the run's Kafka and Redis unless given. */
export function serveEnv(names: Names, extra: Record<string, string> = {}): Record<string, string> {
  return {
    EXTJOB_REDIS_URL: redisUrl(),
    EXTJOB_KAFKA_BROKERS: kafkaBrokers().join(','),
    EXTJOB_REDIS_PREFIX: names.keyPrefix,
    EXTJOB_TOPIC_PREFIX: names.topicPrefix,
    EXTJOB_CONSUMER_GROUP: names.group,
    EXTJOB_TOPIC_PARTITIONS: '6',
    // A killed member's partitions move after this; the default 30 s only slows the drills.
    EXTJOB_CONSUMER_SESSION_TIMEOUT_SECONDS: '10',
    EXTJOB_INSECURE: 'true',
    // info: the helper reads the port from the 'service started' line
    EXTJOB_LOG_LEVEL: 'info',
    ...extra,
  };
}

export function serve(env: Record<string, string>, readyTimeoutMs = 60_000): Promise<ServeProcess> {
  return startServe(env, { readyTimeoutMs });
}

/**
 * Start `extjob serve` without waiting for readiness (which, after a group member
 * died, waits out that member's Kafka session); SIGKILLed when the test ends.
 */
export function spawnServe(env: Record<string, string>): ReturnType<typeof spawnCli> {
  const p = spawnCli(['serve'], { EXTJOB_HTTP_PORT: '0', EXTJOB_HTTP_HOST: '127.0.0.1', ...env });
  onTestFinished(() => {
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  });
  return p;
}

/**
 * A Kafka broker of the drill's own, on fixed ports and a data directory that
 * survive a stop, so it can be restarted as the same broker.
 */
export async function privateKafka(): Promise<{
  brokers: string[];
  stop(): Promise<void>;
  restart(): Promise<void>;
}> {
  const dataDir = mkdtempSync(join(tmpdir(), 'extjob-drill-kafka-'));
  const port = await freePort();
  const controllerPort = await freePort();
  let current: LocalKafka | undefined = await startKafka({ port, controllerPort, dataDir, heap: '384m' });
  const brokers = current.brokers;
  onTestFinished(async () => {
    await current?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });
  return {
    brokers,
    stop: async () => {
      await current?.stop();
      current = undefined;
    },
    restart: async () => {
      // The start probe can trip over a partition whose leader is not elected yet
      // (a retriable error right after a restart); try again rather than fail the drill.
      for (let attempt = 1; ; attempt++) {
        try {
          current = await startKafka({ port, controllerPort, dataDir, heap: '384m' });
          return;
        } catch (err) {
          if (attempt >= 3) throw err;
        }
      }
    },
  };
}

/** A Redis of the drill's own that writes every command to its AOF before answering. */
export async function privateRedis(): Promise<{
  url: string;
  /** SIGKILL the server: no shutdown, no last save; only what the AOF holds survives. */
  crash(): Promise<void>;
  restart(): Promise<void>;
}> {
  const dir = mkdtempSync(join(tmpdir(), 'extjob-drill-redis-'));
  const port = await freePort();
  const args = ['--appendonly', 'yes', '--appendfsync', 'always'];
  let current: LocalRedis | undefined = await startRedis({ port, dir, args });
  onTestFinished(async () => {
    await current?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const url = current.url;
  return {
    url,
    crash: async () => {
      const probe = new Redis(url, { maxRetriesPerRequest: 1 });
      const info = await probe.info('server');
      probe.disconnect();
      const pid = Number(/process_id:(\d+)/.exec(info)?.[1]);
      process.kill(pid, 'SIGKILL');
      await waitFor(
        () => {
          try {
            process.kill(pid, 0);
            return false;
          } catch {
            return true;
          }
        },
        { timeoutMs: 10_000, what: `redis-server ${pid} to exit` },
      );
      await current?.stop();
      current = undefined;
    },
    restart: async () => {
      current = await startRedis({ port, dir, args });
    },
  };
}

/** A JobBroker reading the drill's keys (for audits), closed and its keys removed at the end. */
export function auditBroker(names: Names, url = redisUrl()): { redis: Redis; broker: JobBroker } {
  const redis = new Redis(url, { maxRetriesPerRequest: null, retryStrategy: () => 200 });
  redis.on('error', () => {});
  const broker = new JobBroker({
    redis,
    prefix: names.keyPrefix,
    defaults: brokerDefaults(loadConfig({})),
  });
  onTestFinished(async () => {
    await broker.close().catch(() => {});
    await dropKeys(redis, `${names.keyPrefix}:`).catch(() => {});
    redis.disconnect();
  });
  return { redis, broker };
}

/** Create jobs through the HTTP API (insecure mode); returns their ids. */
export async function createJobs(
  url: string,
  ids: string[],
  extra: Record<string, unknown> = {},
): Promise<string[]> {
  for (let i = 0; i < ids.length; i += 20)
    await Promise.all(
      ids.slice(i, i + 20).map(async (id) => {
        const res = await fetch(`${url}/v1/jobs`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ id, name: 'drill', executor: 'drill', ...extra }),
        });
        if (res.status !== 201) throw new Error(`create ${id}: ${res.status} ${await res.text()}`);
      }),
    );
  return ids;
}

/** The URL of a spawned serve process once it listens (not necessarily ready). */
export async function listeningUrl(p: ReturnType<typeof spawnCli>, timeoutMs = 30_000): Promise<string> {
  const port = await waitFor(
    () => {
      if (p.child.exitCode !== null) throw new Error(`serve exited (${p.child.exitCode}): ${p.output()}`);
      return /"port":(\d+)/.exec(p.output())?.[1];
    },
    { timeoutMs, what: 'serve to listen' },
  );
  return `http://127.0.0.1:${port}`;
}

// ---------------------------------------------------------------------------
// Load

export interface Plan {
  jobs: string[];
  heartbeats: number;
  chunks: number;
}

export const chunkText = (jobId: string, seq: number) => `${jobId} line ${seq}\n`;

/**
 * The usual start of a drill: `jobs` jobs named `<tag>-<i>` created through the API at
 * `url`, and their planned events (see planMessages) streaming into the events topic.
 */
export async function startDrill(
  url: string,
  names: Names,
  shape: {
    tag: string;
    jobs: number;
    heartbeats: number;
    chunks: number;
    perSecond: number;
    brokers?: string[];
  },
) {
  const plan: Plan = {
    jobs: await createJobs(
      url,
      Array.from({ length: shape.jobs }, (_, i) => `${shape.tag}-${i}`),
    ),
    heartbeats: shape.heartbeats,
    chunks: shape.chunks,
  };
  const messages = planMessages(plan);
  const load = startLoad(topicNames(names.topicPrefix).events, messages, {
    perSecond: shape.perSecond,
    ...(shape.brokers ? { brokers: shape.brokers } : {}),
  });
  return { plan, messages, load };
}

/**
 * Each job: accepted, `heartbeats` heartbeats and `chunks` log chunks interleaved,
 * finished with exit 0. Jobs are interleaved with each other; a job's own events stay
 * in order. Binding modes alternate.
 */
export function planMessages(plan: Plan) {
  const perJob = plan.jobs.map((jobId) => {
    const base = { jobId, source: '/drill' };
    const evs: JobEvent[] = [
      { ...base, kind: 'accepted', id: `${jobId}-acc`, type: 'dev.extjob.accepted.v1' },
    ];
    const steps = Math.max(plan.heartbeats, plan.chunks);
    for (let i = 0; i < steps; i++) {
      if (i < plan.chunks)
        evs.push({
          ...base,
          kind: 'log',
          id: `${jobId}-log-${i}`,
          type: 'dev.extjob.log.v1',
          seq: i,
          chunk: Buffer.from(chunkText(jobId, i)),
        });
      if (i < plan.heartbeats)
        evs.push({
          ...base,
          kind: 'heartbeat',
          id: `${jobId}-hb-${i}`,
          type: 'dev.extjob.heartbeat.v1',
          progress: { percent: Math.round((100 * i) / steps), phase: 'drill' },
        });
    }
    evs.push({
      ...base,
      kind: 'finished',
      id: `${jobId}-fin`,
      type: 'dev.extjob.finished.v1',
      exitCode: 0,
      lastSeq: plan.chunks - 1,
    });
    return evs;
  });
  const out: ReturnType<typeof encodeStructured>[] = [];
  const longest = Math.max(...perJob.map((e) => e.length));
  for (let i = 0; i < longest; i++)
    for (const evs of perJob) {
      const e = evs[i];
      if (e) out.push(out.length % 2 ? encodeBinary(e) : encodeStructured(e));
    }
  return out;
}

export interface Load {
  /** Messages Kafka acknowledged so far. */
  sent(): number;
  /** Resolves when every message was acknowledged. */
  done: Promise<void>;
  /** Failed sends that were retried (e.g. while the broker was down). */
  retries(): number;
}

/**
 * Produce `messages` to `topic` at about `perSecond`, in order, each send retried until
 * Kafka acknowledges it (a retried send may duplicate messages; extjob must not
 * double their effects). `brokers` defaults to the run's Kafka.
 */
export function startLoad(
  topic: string,
  messages: { key: string; value: Buffer; headers?: Record<string, string> }[],
  { perSecond = 500, batch = 20, brokers = kafkaBrokers(), giveUpMs = 120_000 } = {},
): Load {
  const kafka = createKafka({
    brokers,
    clientId: unique('drill-load'),
    retries: 2,
    connectionTimeoutMs: 1000,
  });
  let producer: Producer = createProducer(kafka);
  let sent = 0;
  let retries = 0;
  let stopped = false;
  const started = Date.now();
  const done = (async () => {
    await producer.connect();
    try {
      while (sent < messages.length) {
        if (stopped) throw new Error('load stopped');
        const due = Math.min(
          messages.length,
          Math.floor(((Date.now() - started) / 1000) * perSecond) + batch,
        );
        if (due <= sent) {
          await new Promise((r) => setTimeout(r, 10));
          continue;
        }
        const slice = messages.slice(sent, Math.min(due, sent + batch));
        const deadline = Date.now() + giveUpMs;
        for (;;) {
          try {
            await producer.send({ topic, acks: -1, messages: slice });
            break;
          } catch (err) {
            retries++;
            if (stopped || Date.now() > deadline) throw err;
            await new Promise((r) => setTimeout(r, 250));
            // A producer whose broker vanished can stay wedged; start over with a fresh one.
            await producer.disconnect().catch(() => {});
            producer = createProducer(kafka);
            await producer.connect().catch(() => {});
          }
        }
        sent += slice.length;
      }
    } finally {
      await producer.disconnect().catch(() => {});
    }
  })();
  done.catch(() => {});
  onTestFinished(() => {
    stopped = true;
    return done.catch(() => {});
  });
  return { sent: () => sent, done, retries: () => retries };
}

// ---------------------------------------------------------------------------
// Audit

const EXPECTED_TRANSITIONS: JobState[] = ['pending', 'running', 'passed'];

/**
 * Count the plan's effects in Redis. Per job the expected effects are the two
 * transitions the events cause (running, passed), one stored chunk per seq with the
 * exact bytes, and one application per heartbeat. Missing or corrupted: lost.
 * Present more than once (a transition repeated, more non-log events applied than
 * sent): doubled.
 */
export async function audit(
  broker: JobBroker,
  redis: Redis,
  plan: Plan,
  sent: number,
): Promise<Tally & { problems: string[]; states: Record<string, number>; replays: number }> {
  const t = {
    sent,
    applied: 0,
    lost: 0,
    doubled: 0,
    /** Events recognized as already applied (replays after a crash or a retried send). */
    replays: 0,
    problems: [] as string[],
    states: {} as Record<string, number>,
  };
  for (const id of plan.jobs) {
    const job = await broker.getJob(id);
    t.states[job?.state ?? 'missing'] = (t.states[job?.state ?? 'missing'] ?? 0) + 1;
    const history = (await broker.history(id)) ?? [];
    const transitions = history.filter((h) => h.kind === 'transition').map((h) => h.to as JobState);
    for (const s of EXPECTED_TRANSITIONS) {
      const n = transitions.filter((x) => x === s).length;
      if (s !== 'pending') {
        if (n >= 1) t.applied++;
        else t.lost++;
      }
      if (n > 1) {
        t.doubled += n - 1;
        t.problems.push(`${id}: transition to ${s} ${n} times`);
      }
      if (n === 0) t.problems.push(`${id}: no transition to ${s}`);
    }
    const strange = transitions.filter((s) => !EXPECTED_TRANSITIONS.includes(s));
    if (strange.length) t.problems.push(`${id}: unexpected transitions ${strange.join(',')}`);
    const log = await broker.readLog(id, { fromSeq: 0, limit: 1000 });
    const bySeq = new Map<number, string[]>();
    for (const c of log?.chunks ?? []) bySeq.set(c.seq, [...(bySeq.get(c.seq) ?? []), c.data.toString()]);
    for (let seq = 0; seq < plan.chunks; seq++) {
      const got = bySeq.get(seq) ?? [];
      if (got.length >= 1 && got[0] === chunkText(id, seq)) t.applied++;
      else {
        t.lost++;
        if (t.problems.length < 50)
          t.problems.push(`${id}: chunk ${seq} ${got.length ? 'corrupted' : 'missing'}`);
      }
      if (got.length > 1) t.doubled += got.length - 1;
    }
    // Counters of the job hash (internal layout, see the broker's Lua): dn counts the
    // non-log events applied (each enters the dedupe ring once), nd the duplicates
    // recognized. The plan's non-log events are accepted, the heartbeats, finished.
    const [dn, nd] = await redis.hmget(broker.keys.job(id), 'dn', 'nd');
    const nonLog = Number(dn ?? 0);
    const want = plan.heartbeats + 2;
    t.replays += Number(nd ?? 0);
    // the transitions already counted accepted and finished; here the heartbeats
    t.applied += Math.max(0, Math.min(nonLog, want) - 2);
    t.lost += Math.max(0, want - nonLog);
    if (nonLog > want) {
      t.doubled += nonLog - want;
      t.problems.push(`${id}: ${nonLog} non-log events applied, ${want} sent`);
    } else if (nonLog < want) t.problems.push(`${id}: ${nonLog}/${want} non-log events applied`);
  }
  return t;
}

/** Effects the plan should produce in total (for the lost count before the end). */
export const expectedEffects = (plan: Plan) => plan.jobs.length * (2 + plan.chunks + plan.heartbeats);

/** Every job of the plan passed (checked through the audit broker, one round trip). */
export async function allPassed(broker: JobBroker, jobs: string[]): Promise<boolean> {
  const all = await broker.getJobs(jobs);
  return all.every((j) => j?.state === 'passed');
}

/** Wait for every job to pass; on timeout the error says how many did not. */
export async function waitAllPassed(broker: JobBroker, jobs: string[], timeoutMs: number): Promise<void> {
  await waitFor(
    async () => {
      if (await allPassed(broker, jobs)) return true;
      const all = await broker.getJobs(jobs);
      const counts: Record<string, number> = {};
      for (const j of all) counts[j?.state ?? 'missing'] = (counts[j?.state ?? 'missing'] ?? 0) + 1;
      throw new Error(`states ${JSON.stringify(counts)}`);
    },
    { timeoutMs, intervalMs: 250, what: `${jobs.length} jobs to pass` },
  );
}

// ---------------------------------------------------------------------------
// Topics

export interface TopicRecord {
  key: string | null;
  value: Buffer | null;
  headers: Record<string, string>;
}

/** Read a topic from the start until `enough(records)` holds; `brokers` defaults to the run's. */
export async function readTopic(
  topic: string,
  enough: (records: TopicRecord[]) => boolean,
  { timeoutMs = 30_000, brokers = kafkaBrokers() } = {},
): Promise<TopicRecord[]> {
  const kafka = createKafka({ brokers, clientId: unique('drill-reader') });
  const consumer = createConsumer(kafka, { groupId: unique('drill-reader'), maxBytesPerPartition: 4 << 20 });
  const got: TopicRecord[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(message.headers ?? {}))
          if (v !== undefined) headers[k] = Array.isArray(v) ? v.map(String).join(',') : String(v);
        got.push({ key: message.key?.toString() ?? null, value: message.value, headers });
      },
    });
    await waitFor(() => enough(got), {
      timeoutMs,
      intervalMs: 100,
      what: `records of ${topic} (have ${got.length})`,
    });
  } finally {
    await consumer.disconnect();
  }
  return got;
}

/**
 * The changes topic against the transitions in Redis: every (job, version) of a
 * transition must have been published; `duplicates` counts (job, version) pairs
 * published more than once (allowed: publishing is at least once, readers dedupe by
 * `extjobseq`).
 */
export async function auditChanges(
  broker: JobBroker,
  names: Names,
  jobs: string[],
  brokers = kafkaBrokers(),
): Promise<{ expected: number; missing: number; duplicates: number }> {
  let expected = 0;
  const want = new Set<string>();
  for (const id of jobs) {
    const job = await broker.getJob(id);
    for (let v = 1; v <= (job?.version ?? 0); v++) want.add(`${id}/${v}`);
    expected += job?.version ?? 0;
  }
  const seen = new Map<string, number>();
  const count = () => [...want].filter((k) => seen.has(k)).length;
  await readTopic(
    topicNames(names.topicPrefix).changes,
    (records) => {
      for (const r of records.splice(0)) {
        const ce = JSON.parse(String(r.value)) as { subject: string; extjobseq: number };
        const k = `${ce.subject}/${ce.extjobseq}`;
        seen.set(k, (seen.get(k) ?? 0) + 1);
      }
      return count() >= want.size;
    },
    { brokers, timeoutMs: 30_000 },
  ).catch(() => {});
  const duplicates = [...seen.values()].filter((n) => n > 1).length;
  return { expected, missing: want.size - count(), duplicates };
}

/** Poll `url` every `everyMs` until stopped; counts answers by status (0: no answer). */
export function sampler(url: string, everyMs = 200) {
  const counts = new Map<number, number>();
  let running = true;
  const loop = (async () => {
    while (running) {
      let status = 0;
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
        status = res.status;
        await res.arrayBuffer();
      } catch {}
      counts.set(status, (counts.get(status) ?? 0) + 1);
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    counts,
    stop: async () => {
      running = false;
      await loop;
      return counts;
    },
  };
}

export { isolation, topicNames, unique, waitFor };
