/**
 * Webhooks against real HTTP receivers: signed deliveries, retry until success,
 * failures kept and listed, a hanging receiver leaves event ingestion alone, the
 * outbox drainer enqueueing deliveries as it publishes, and the address guard refusing
 * receivers on internal addresses (the receivers here listen on 127.0.0.1, so the
 * other tests allow private addresses).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { describe, expect, it, onTestFinished } from 'vitest';
import { instrumentMetrics } from '../../src/api/metrics.js';
import type { JobBroker } from '../../src/broker/index.js';
import { OutboxDrainer } from '../../src/consumers/outbox-drainer.js';
import { type DeliveryView, Webhooks } from '../../src/consumers/webhooks.js';
import type { AllowPrivate } from '../../src/consumers/webhooks-guard.js';
import { SIGNATURE_HEADER, TIMESTAMP_HEADER, verify } from '../../src/consumers/webhooks-sign.js';
import { createConsumer, createProducer, createTopics } from '../../src/shared/kafka.js';
import { createLogger } from '../../src/shared/logger.js';
import { startTestApi, TOKENS } from '../api/support.js';
import { DEFAULTS, ev, harness } from '../broker/harness.js';
import { testKafka, unique, waitFor } from '../helpers/index.js';

interface Received {
  headers: IncomingMessage['headers'];
  body: string;
}

/** A receiver whose answer to the n-th request (0-based) is decided by `answer`. */
async function receiver(answer: (n: number, res: ServerResponse) => void) {
  const got: Received[] = [];
  const open = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => {
      body += d;
    });
    req.on('end', () => {
      got.push({ headers: req.headers, body });
      open.add(res);
      res.on('close', () => open.delete(res));
      answer(got.length - 1, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  onTestFinished(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, got, open };
}

async function setup(
  opts: {
    attempts?: number;
    timeoutMs?: number;
    concurrency?: number;
    allowPrivate?: AllowPrivate;
    keepSeconds?: number;
    on?: { broker: JobBroker; redis: Redis; prefix: string };
  } = {},
) {
  let h = opts.on;
  if (!h) {
    const hh = await harness();
    onTestFinished(() => hh.cleanup());
    h = hh;
  }
  const { broker } = h;
  const webhooks = new Webhooks({
    redis: h.redis,
    prefix: h.prefix,
    targets: (id, createdAt) => broker.notifyTargets(id, createdAt),
    attempts: opts.attempts ?? 3,
    backoffMs: 50,
    timeoutMs: opts.timeoutMs ?? 2000,
    concurrency: opts.concurrency ?? 4,
    allowPrivate: opts.allowPrivate ?? true,
    ...(opts.keepSeconds !== undefined ? { keepSeconds: opts.keepSeconds } : {}),
  });
  const results: string[] = [];
  webhooks.instrumentation.on('delivery', (p: { result: string }) => results.push(p.result));
  await webhooks.startWorker();
  onTestFinished(() => webhooks.close());
  return { broker, webhooks, results, redis: h.redis, prefix: h.prefix };
}

/** Enqueue what the outbox holds (as the drainer would), then acknowledge it. */
async function drain(broker: JobBroker, webhooks: Webhooks): Promise<number> {
  const entries = await broker.readOutbox('0', 1000);
  const n = await webhooks.enqueueWebhooks(entries);
  await broker.ackOutbox(entries.map((e) => e.id));
  return n;
}

describe('webhooks', () => {
  it('POSTs each change as a signed CloudEvent that the receiver can verify', async () => {
    const { broker, webhooks, redis, prefix } = await setup();
    const rx = await receiver((_n, res) => res.writeHead(204).end());
    await broker.createJob({ id: 'wh1', name: 'n', notify: [{ url: rx.url, secret: 's3cret-key' }] });
    await broker.applyEvents([ev('accepted', 'wh1'), ev('finished', 'wh1', { exitCode: 0 })]);
    expect(await drain(broker, webhooks)).toBe(3);
    await waitFor(() => rx.got.length === 3, { what: '3 deliveries' });
    for (const r of rx.got) {
      const ok = verify(
        's3cret-key',
        {
          signature: r.headers[SIGNATURE_HEADER.toLowerCase()] as string,
          timestamp: r.headers[TIMESTAMP_HEADER.toLowerCase()] as string,
        },
        r.body,
      );
      expect(ok).toBe(true);
      expect(
        verify(
          'other-key',
          {
            signature: r.headers[SIGNATURE_HEADER.toLowerCase()] as string,
            timestamp: r.headers[TIMESTAMP_HEADER.toLowerCase()] as string,
          },
          r.body,
        ),
      ).toBe(false);
      expect(r.headers['content-type']).toMatch(/^application\/cloudevents\+json/);
    }
    const events = rx.got.map((r) => JSON.parse(r.body));
    expect(events.map((e) => e.type)).toEqual(Array(3).fill('dev.extjob.job.changed.v1'));
    expect(events.map((e) => e.data.to).sort()).toEqual(['passed', 'pending', 'running']);
    expect(JSON.stringify(events)).not.toContain('s3cret-key');
    // nor do the delivery records keep it: it stays with the job, and goes with it
    const records = await redis.keys(`${prefix}:webhooks:*`);
    expect(records.length).toBeGreaterThan(3);
    for (const key of records)
      if ((await redis.type(key)) === 'hash')
        expect(JSON.stringify(await redis.hgetall(key))).not.toContain('s3cret-key');

    // enqueueing the same changes again delivers nothing twice
    const again = await broker.readOutbox('0', 1000);
    expect(again).toEqual([]);
  });

  it('a job id used again after retention is a new job: its changes are delivered, its list is its own', async () => {
    const hh = await harness({ defaults: { ...DEFAULTS, retentionSeconds: 0.2 } });
    onTestFinished(() => hh.cleanup());
    const { broker, webhooks } = await setup({ on: hh });
    const rx = await receiver((_n, res) => res.writeHead(204).end());
    const spec = { id: 'again', name: 'n', notify: [{ url: rx.url }] };
    await broker.createJob(spec);
    await broker.applyEvents([ev('finished', 'again', { exitCode: 0 })]);
    expect(await drain(broker, webhooks)).toBe(3);
    await waitFor(() => rx.got.length === 3, { what: "the first job's deliveries" });
    await new Promise((r) => setTimeout(r, 300));
    expect(await broker.sweepRetention()).toBe(1);

    const { job } = await broker.createJob(spec);
    await broker.applyEvents([ev('finished', 'again', { exitCode: 1 })]);
    expect(await drain(broker, webhooks)).toBe(3);
    await waitFor(() => rx.got.length === 6, { what: "the second job's deliveries" });
    expect(
      rx.got
        .slice(3)
        .map((r) => JSON.parse(r.body).data.to)
        .sort(),
    ).toEqual(['failed', 'pending', 'running']);
    const listed = await webhooks.list('again', job.createdAt);
    expect(listed.map((d) => d.to).sort()).toEqual(['failed', 'pending', 'running']);
  });

  it("a removed job's changes that arrive late go to no later job of its id", async () => {
    const hh = await harness({ defaults: { ...DEFAULTS, retentionSeconds: 0.2 } });
    onTestFinished(() => hh.cleanup());
    const { broker, webhooks } = await setup({ on: hh });
    const first = await receiver((_n, res) => res.writeHead(204).end());
    const second = await receiver((_n, res) => res.writeHead(204).end());
    await broker.createJob({ id: 'late', name: 'first', notify: [{ url: first.url, secret: 'secret-one' }] });
    await broker.applyEvents([ev('finished', 'late', { exitCode: 0 })]);
    // the changes wait in the outbox (Kafka away) while retention removes the job
    const old = await broker.readOutbox('0', 1000);
    await broker.ackOutbox(old.map((e) => e.id));
    await new Promise((r) => setTimeout(r, 300));
    expect(await broker.sweepRetention()).toBe(1);
    await broker.createJob({
      id: 'late',
      name: 'second',
      notify: [{ url: second.url, secret: 'secret-two' }],
    });

    expect(await webhooks.enqueueWebhooks(old)).toBe(0);
    expect(await drain(broker, webhooks)).toBe(1);
    await waitFor(() => second.got.length === 1, { what: "the second job's delivery" });
    await new Promise((r) => setTimeout(r, 200));
    expect(second.got.map((r) => JSON.parse(r.body).data.job.name)).toEqual(['second']);
    expect(first.got).toEqual([]);
  });

  it('removes delivery records the retention period after they finished, also on a quiet system', async () => {
    const hh = await harness();
    onTestFinished(() => hh.cleanup());
    const { broker, webhooks } = await setup({ on: hh, keepSeconds: 1, attempts: 1 });
    const ok = await receiver((_n, res) => res.writeHead(200).end());
    const refusing = await receiver((_n, res) => res.writeHead(400).end());
    await broker.createJob({ id: 'kept', name: 'n', notify: [{ url: ok.url }, { url: refusing.url }] });
    expect(await drain(broker, webhooks)).toBe(2);
    await waitFor(async () => (await webhooks.list('kept')).filter((d) => d.finishedAt).length === 2, {
      what: 'both deliveries finished',
    });
    expect((await webhooks.list('kept')).map((d) => d.state).sort()).toEqual(['completed', 'failed']);
    const records = async () => (await hh.redis.keys(`${hh.prefix}:webhooks:wh-*`)).length;
    expect(await records()).toBeGreaterThan(0);
    // nothing else finishes after them: only the sweep can remove them
    await waitFor(async () => (await records()) === 0, { timeoutMs: 10_000, what: 'the records removed' });
    expect(await webhooks.list('kept')).toEqual([]);
  });

  it('filters by target state and skips jobs without notify', async () => {
    const { broker, webhooks } = await setup();
    const rx = await receiver((_n, res) => res.writeHead(200).end());
    await broker.createJob({ id: 'f1', name: 'n', notify: [{ url: rx.url, events: ['passed', 'failed'] }] });
    await broker.createJob({ id: 'f2', name: 'n' });
    await broker.applyEvents([ev('finished', 'f1', { exitCode: 1 }), ev('finished', 'f2', { exitCode: 0 })]);
    expect(await drain(broker, webhooks)).toBe(1);
    await waitFor(() => rx.got.length === 1);
    expect(JSON.parse(rx.got[0]!.body).data).toMatchObject({ to: 'failed', job: { id: 'f1', exitCode: 1 } });
  });

  it('retries a 500 until the receiver answers 200; keeps a delivery that never succeeds and lists both', async () => {
    let hooks: Webhooks | undefined;
    const api = await startTestApi({ deliveries: { list: (id, created) => hooks!.list(id, created) } });
    const { broker, webhooks, results } = await setup({ attempts: 3, on: api });
    hooks = webhooks;
    const flaky = await receiver((n, res) => res.writeHead(n === 0 ? 500 : 200).end());
    const broken = await receiver((_n, res) => res.writeHead(503).end());
    await broker.createJob({
      id: 'r1',
      name: 'n',
      notify: [
        { url: flaky.url, events: ['passed'] },
        { url: broken.url, events: ['passed'] },
      ],
    });
    await broker.applyEvents([ev('finished', 'r1', { exitCode: 0 })]);
    expect(await drain(broker, webhooks)).toBe(2);
    await waitFor(() => flaky.got.length === 2 && broken.got.length === 3, { what: 'all tries' });
    // an identical body on each try
    expect(flaky.got[0]!.body).toBe(flaky.got[1]!.body);

    const list = await waitFor(async () => {
      const r = await api.req('/v1/jobs/r1/deliveries', { token: TOKENS.read });
      const l = ((await r.json()) as { deliveries: DeliveryView[] }).deliveries;
      return l.every((d) => d.state === 'completed' || d.state === 'failed') && l.length === 2
        ? l
        : undefined;
    });
    const byUrl = Object.fromEntries(list.map((d) => [d.url, d]));
    expect(byUrl[flaky.url]).toMatchObject({ state: 'completed', attempts: 2, status: 200, to: 'passed' });
    expect(byUrl[flaky.url]?.error).toBeUndefined();
    expect(byUrl[broken.url]).toMatchObject({ state: 'failed', attempts: 3, status: 503 });
    expect(byUrl[broken.url]?.error).toMatch(/HTTP 503/);
    expect(results.filter((r) => r === 'delivered')).toHaveLength(1);
    expect(results.filter((r) => r === 'failed')).toHaveLength(1);
    expect(results.filter((r) => r === 'retried')).toHaveLength(3);
    expect(JSON.stringify(list)).not.toContain('secret');
    expect((await api.req('/v1/jobs/nope/deliveries')).status).toBe(404);
  });

  it('a 4xx other than 408/409/425/429 is not retried', async () => {
    const { broker, webhooks } = await setup({ attempts: 5 });
    const rx = await receiver((_n, res) => res.writeHead(410).end());
    await broker.createJob({ id: 'g1', name: 'n', notify: [{ url: rx.url, events: ['passed'] }] });
    await broker.applyEvents([ev('finished', 'g1', { exitCode: 0 })]);
    await drain(broker, webhooks);
    const [d] = await waitFor(async () => {
      const l = await webhooks.list('g1');
      return l[0]?.state === 'failed' ? l : undefined;
    });
    expect(d).toMatchObject({ attempts: 1, status: 410 });
    expect(rx.got).toHaveLength(1);
  });

  it('a hanging receiver does not hold up applying events', async () => {
    const { broker, webhooks } = await setup({ timeoutMs: 20_000, concurrency: 2 });
    const rx = await receiver(() => {}); // never answers
    await broker.createJob({ id: 'slow', name: 'n', notify: [{ url: rx.url }] });
    await broker.applyEvents([ev('accepted', 'slow')]);
    await drain(broker, webhooks);
    await waitFor(() => rx.open.size === 2, { what: 'both worker slots stuck on the receiver' });
    // Ingestion goes on: 200 more jobs are created, run and finished meanwhile.
    for (let i = 0; i < 200; i++) await broker.createJob({ id: `other-${i}`, name: 'n' });
    const results = await broker.applyEvents(
      Array.from({ length: 200 }, (_, i) => ev('finished', `other-${i}`, { exitCode: 0 })),
    );
    expect(results.every((r) => r === 'applied')).toBe(true);
    expect((await broker.getJob('other-199'))?.state).toBe('passed');
    // ... all while the receiver still holds both requests.
    expect(rx.open.size).toBe(2);
  });

  it('the outbox drainer enqueues them as it publishes: the body is the change on the topic, byte for byte', async () => {
    const { broker, webhooks } = await setup();
    const rx = await receiver((_n, res) => res.writeHead(200).end());
    const topicPrefix = unique('t');
    const changes = `${topicPrefix}.changes`;
    const kafka = testKafka();
    const admin = kafka.admin();
    await admin.connect();
    await createTopics(
      admin,
      ['changes', 'commands'].map((t) => ({
        topic: `${topicPrefix}.${t}`,
        numPartitions: 2,
        replicationFactor: 1,
      })),
    );
    await admin.disconnect();
    const producer = createProducer(kafka);
    await producer.connect();
    const { job } = await broker.createJob({
      id: 'k1',
      name: 'n',
      notify: [{ url: rx.url, events: ['failed'], secret: 'receiver-secret' }],
    });
    // Whoever can write to the topic cannot have a change signed and delivered, nor
    // take the id of the real change so that it is dropped as a duplicate.
    const forged = {
      specversion: '1.0',
      id: `k1/${Date.parse(job.createdAt)}/v3/a1/changed`,
      source: '/extjob',
      type: 'dev.extjob.job.changed.v1',
      subject: 'k1',
      extjobseq: 3,
      data: { job: { ...job, state: 'failed', exitCode: 99 }, from: 'running', to: 'failed' },
    };
    await producer.send({
      topic: changes,
      acks: -1,
      messages: [{ key: 'k1', value: JSON.stringify(forged) }],
    });
    const logger = createLogger({ level: 'silent' });
    const drainer = new OutboxDrainer({
      source: broker,
      producer,
      topicPrefix,
      logger,
      idleMs: 50,
      ceSource: '/custom',
      webhooks,
    });
    await drainer.start();
    onTestFinished(async () => {
      await drainer.stop();
      await producer.disconnect();
    });
    await broker.applyEvents([ev('finished', 'k1', { exitCode: 7 })]);
    await waitFor(() => rx.got.length === 1, { timeoutMs: 30_000, what: 'the delivery' });
    const published = await waitFor(
      async () =>
        (await readTopic(changes)).find(
          (v) => JSON.parse(v).source === '/custom' && JSON.parse(v).extjobseq === 3,
        ),
      { timeoutMs: 30_000, what: 'the change on the topic' },
    );
    expect(rx.got[0]!.body).toBe(published);
    expect(JSON.parse(rx.got[0]!.body)).toMatchObject({
      id: forged.id,
      source: '/custom',
      data: { to: 'failed', job: { exitCode: 7 } },
    });
    const { headers, body } = rx.got[0]!;
    const signed = {
      signature: headers[SIGNATURE_HEADER.toLowerCase()] as string,
      timestamp: headers[TIMESTAMP_HEADER.toLowerCase()] as string,
    };
    expect(verify('receiver-secret', signed, body)).toBe(true);
    await new Promise((r) => setTimeout(r, 300));
    expect(rx.got).toHaveLength(1);
  });

  it('reach receivers while Kafka refuses the changes, once each, and the changes are published after', async () => {
    const { broker, webhooks } = await setup();
    const rx = await receiver((_n, res) => res.writeHead(204).end());
    let kafkaUp = false;
    const sent: string[] = [];
    const producer = {
      sendBatch: async (b: { topicMessages: { messages: { key: string }[] }[] }) => {
        if (!kafkaUp)
          throw Object.assign(new Error('Connection error: connect ECONNREFUSED'), {
            name: 'KafkaJSConnectionError',
            retriable: true,
          });
        for (const t of b.topicMessages) for (const m of t.messages) sent.push(m.key);
        return [];
      },
      disconnect: async () => {},
    };
    const drainer = new OutboxDrainer({
      source: broker,
      producer: producer as never,
      topicPrefix: unique('t'),
      logger: createLogger({ level: 'silent' }),
      webhooks,
      idleMs: 50,
      batchSize: 2, // a backlog of several batches behind the stuck one
    });
    await drainer.start();
    onTestFinished(() => drainer.stop());
    const ids = ['o0', 'o1', 'o2', 'o3', 'o4', 'o5', 'o6'];
    for (const id of ids) await broker.createJob({ id, name: 'n', notify: [{ url: rx.url }] });
    await waitFor(() => rx.got.length === ids.length, { timeoutMs: 30_000, what: 'every delivery' });
    expect(sent).toEqual([]);
    expect(await broker.outboxPending()).toBeGreaterThan(0);
    kafkaUp = true;
    await waitFor(async () => (await broker.outboxPending()) === 0, { timeoutMs: 30_000, what: 'the drain' });
    expect(new Set(sent)).toEqual(new Set(ids));
    await new Promise((r) => setTimeout(r, 300));
    expect(rx.got.map((g) => JSON.parse(g.body).subject).sort()).toEqual(ids);
  });

  it('counts a delivery failed at its own last try, however many tries the worker is set to', async () => {
    const h = await harness();
    onTestFinished(() => h.cleanup());
    // enqueued by a process set to 4 tries, delivered by one set to 2
    const enqueuer = new Webhooks({
      redis: h.redis,
      prefix: h.prefix,
      targets: (id, createdAt) => h.broker.notifyTargets(id, createdAt),
      attempts: 4,
      backoffMs: 20,
      allowPrivate: true,
    });
    onTestFinished(() => enqueuer.close());
    const { results } = await setup({ attempts: 2, on: h });
    const rx = await receiver((_n, res) => res.writeHead(503).end());
    await h.broker.createJob({ id: 'tries', name: 'n', notify: [{ url: rx.url, events: ['passed'] }] });
    await h.broker.applyEvents([ev('finished', 'tries', { exitCode: 0 })]);
    expect(await drain(h.broker, enqueuer)).toBe(1);
    await waitFor(() => results.length === 4, { what: 'four tries' });
    expect(results).toEqual(['retried', 'retried', 'retried', 'failed']);
    expect(rx.got).toHaveLength(4);
  });
});

/** The values on a topic so far, read from its beginning. */
async function readTopic(topic: string): Promise<string[]> {
  const admin = testKafka().admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    const total = offsets.reduce((n, p) => n + Number(p.high) - Number(p.low), 0);
    const consumer = createConsumer(testKafka(), { groupId: unique('read') });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const values: string[] = [];
    await consumer.run({
      eachMessage: async ({ message }) => {
        values.push(String(message.value));
      },
    });
    await waitFor(() => values.length >= total, {
      timeoutMs: 30_000,
      what: `the ${total} messages of ${topic}`,
    });
    await consumer.disconnect();
    return values;
  } finally {
    await admin.disconnect();
  }
}

describe('webhook address guard', () => {
  /** Deliveries of `jobId` once none is waiting or active any more. */
  const settled = (webhooks: Webhooks, jobId: string, n: number) =>
    waitFor(
      async () => {
        const l = await webhooks.list(jobId);
        return l.length === n && l.every((d) => d.state === 'completed' || d.state === 'failed')
          ? l
          : undefined;
      },
      { what: `${n} settled deliveries of ${jobId}` },
    );

  it('refuses a receiver on 127.0.0.1 at once, says why in the delivery record and counts it as failed', async () => {
    let hooks: Webhooks | undefined;
    const api = await startTestApi({ deliveries: { list: (id, created) => hooks!.list(id, created) } });
    const { broker, webhooks, results } = await setup({ attempts: 5, allowPrivate: false, on: api });
    hooks = webhooks;
    const registry = new Registry();
    onTestFinished(instrumentMetrics(registry, { webhooks }));
    const rx = await receiver((_n, res) => res.writeHead(200).end());
    await broker.createJob({ id: 'ssrf1', name: 'n', notify: [{ url: rx.url, events: ['passed'] }] });
    await broker.applyEvents([ev('finished', 'ssrf1', { exitCode: 0 })]);
    expect(await drain(broker, webhooks)).toBe(1);
    await settled(webhooks, 'ssrf1', 1);

    const r = await api.req('/v1/jobs/ssrf1/deliveries', { token: TOKENS.read });
    const [d] = ((await r.json()) as { deliveries: DeliveryView[] }).deliveries;
    expect(d).toMatchObject({
      state: 'failed',
      attempts: 1,
      error: 'address 127.0.0.1 is not allowed (loopback)',
    });
    expect(rx.got).toHaveLength(0);
    await waitFor(() => results.length === 1, { what: 'the delivery result' });
    expect(results).toEqual(['failed']);
    const metric = await registry.getSingleMetricAsString('extjob_webhook_deliveries_total');
    expect(metric).toContain('extjob_webhook_deliveries_total{result="failed"} 1');
    expect(metric).toContain('extjob_webhook_deliveries_total{result="retried"} 0');
  });

  it('refuses a host name resolving to loopback, an IPv4-mapped loopback and the metadata address', async () => {
    const { broker, webhooks, results } = await setup({ attempts: 5, allowPrivate: false });
    const rx = await receiver((_n, res) => res.writeHead(200).end());
    const port = new URL(rx.url).port;
    const urls = [
      `http://localhost:${port}/hook`,
      `http://[::ffff:127.0.0.1]:${port}/hook`,
      'http://169.254.169.254/latest/meta-data/',
    ];
    await broker.createJob({
      id: 'ssrf2',
      name: 'n',
      notify: urls.map((url) => ({ url, events: ['passed'] })),
    });
    await broker.applyEvents([ev('finished', 'ssrf2', { exitCode: 0 })]);
    expect(await drain(broker, webhooks)).toBe(3);
    const list = await settled(webhooks, 'ssrf2', 3);
    const byUrl = Object.fromEntries(list.map((d) => [d.url, d]));
    expect(byUrl[urls[0]!]?.error).toMatch(
      /^localhost: address (127\.0\.0\.1|::1) is not allowed \(loopback\)$/,
    );
    expect(byUrl[urls[1]!]?.error).toBe('address ::ffff:7f00:1 is not allowed (loopback, as 127.0.0.1)');
    expect(byUrl[urls[2]!]?.error).toBe('address 169.254.169.254 is not allowed (link-local)');
    for (const d of list) expect(d).toMatchObject({ state: 'failed', attempts: 1 });
    expect(rx.got).toHaveLength(0);
    await waitFor(() => results.length === 3, { what: 'three delivery results' });
    expect(results).toEqual(['failed', 'failed', 'failed']);
  });

  it('delivers to an allowed network through a host name, and still refuses what is not listed', async () => {
    const { broker, webhooks } = await setup({ attempts: 5, allowPrivate: ['127.0.0.1/32'] });
    const rx = await receiver((_n, res) => res.writeHead(204).end());
    const port = new URL(rx.url).port;
    const allowed = `http://localhost:${port}/hook`;
    const refused = `http://[::1]:${port}/hook`;
    await broker.createJob({
      id: 'allow1',
      name: 'n',
      notify: [allowed, refused].map((url) => ({ url, events: ['passed'] })),
    });
    await broker.applyEvents([ev('finished', 'allow1', { exitCode: 0 })]);
    expect(await drain(broker, webhooks)).toBe(2);
    const list = await settled(webhooks, 'allow1', 2);
    const byUrl = Object.fromEntries(list.map((d) => [d.url, d]));
    expect(byUrl[allowed]).toMatchObject({ state: 'completed', status: 204 });
    expect(byUrl[refused]).toMatchObject({
      state: 'failed',
      attempts: 1,
      error: 'address ::1 is not allowed (loopback)',
    });
    expect(rx.got).toHaveLength(1);
  });

  it('does not follow a redirect, and a redirect is not retried', async () => {
    const { broker, webhooks } = await setup({ attempts: 5 });
    const target = await receiver((_n, res) => res.writeHead(200).end());
    const rx = await receiver((_n, res) => res.writeHead(307, { location: target.url }).end());
    await broker.createJob({ id: 'redir1', name: 'n', notify: [{ url: rx.url, events: ['passed'] }] });
    await broker.applyEvents([ev('finished', 'redir1', { exitCode: 0 })]);
    await drain(broker, webhooks);
    const [d] = await settled(webhooks, 'redir1', 1);
    expect(d).toMatchObject({ state: 'failed', attempts: 1, status: 307 });
    expect(d?.error).toMatch(/redirects are not followed/);
    expect(rx.got).toHaveLength(1);
    expect(target.got).toHaveLength(0);
  });
});
