/**
 * POST /v1/jobs/{id}/events: event-token auth, validation by the consumers' parser,
 * produced to the events topic keyed by job id, 202 after Kafka acknowledged, 503
 * when Kafka is away.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseMessage } from '../../src/consumers/formats/index.js';
import { createTopics } from '../../src/shared/kafka.js';
import { testKafka, unique, waitFor } from '../helpers/index.js';
import { kafkaGateway, startTestApi, TOKENS } from './support.js';

const accepted = (jobId: string) => ({
  specversion: '1.0',
  id: unique('ce'),
  source: '/test/executor',
  type: 'dev.extjob.accepted.v1',
  subject: jobId,
  data: { detailsUrl: 'https://argocd.example/app/web' },
});

async function consumeAll(topic: string, n: number) {
  const consumer = testKafka().consumer({ groupId: unique('g') });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const got: { key: string; value: Buffer; headers: Record<string, unknown> }[] = [];
  await consumer.run({
    eachMessage: async ({ message }) => {
      got.push({ key: String(message.key), value: message.value!, headers: message.headers ?? {} });
    },
  });
  await waitFor(() => got.length >= n, { timeoutMs: 20_000, what: `${n} messages on ${topic}` });
  await consumer.disconnect();
  return got;
}

describe('POST /v1/jobs/{id}/events', () => {
  it('accepts an event with the job event token and produces it keyed by job id', async () => {
    const { gateway, topic } = await kafkaGateway();
    const api = await startTestApi({ events: gateway });
    const { eventToken } = (await (await api.req('/v1/jobs', { json: { id: 'e1', name: 'n' } })).json()) as {
      eventToken: string;
    };
    const body = accepted('e1');
    const r = await api.req('/v1/jobs/e1/events', { token: eventToken, json: body });
    expect(r.status).toBe(202);
    expect(await r.json()).toMatchObject({ accepted: true, jobId: 'e1', eventId: body.id });

    // without subject (the path names the job), as a CloudEvents content type, and a bare CDEvent
    const { subject: _s, ...noSubject } = accepted('e1');
    const r2 = await api.req('/v1/jobs/e1/events', {
      token: eventToken,
      method: 'POST',
      body: JSON.stringify({ ...noSubject, type: 'dev.extjob.log.v1', data: { seq: 0, text: 'hi' } }),
      headers: { 'content-type': 'application/cloudevents+json' },
    });
    expect(r2.status).toBe(202);
    // CDEvents keep their own type on the events topic, as if sent to Kafka directly
    const cdevent = (name: string) => {
      const e = JSON.parse(
        readFileSync(new URL(`../fixtures/cdevents/${name}.json`, import.meta.url), 'utf8'),
      );
      e.subject.id = 'e1';
      return e;
    };
    const started = cdevent('taskrun_started');
    expect((await api.req('/v1/jobs/e1/events', { token: eventToken, json: started })).status).toBe(202);
    const finished = cdevent('taskrun_finished');
    const wrapped = {
      specversion: '1.0',
      id: 'w1',
      source: 'ci',
      type: finished.context.type,
      data: finished,
    };
    expect((await api.req('/v1/jobs/e1/events', { token: eventToken, json: wrapped })).status).toBe(202);
    const msgs = await consumeAll(topic, 4);
    expect(msgs.map((m) => m.key)).toEqual(['e1', 'e1', 'e1', 'e1']);
    const parsed = msgs.map((m) => parseMessage({ key: m.key, value: m.value, headers: m.headers as never }));
    expect(parsed.map((p) => p.ok && p.event.kind)).toEqual(['accepted', 'log', 'accepted', 'finished']);
    expect(parsed[0]?.ok && parsed[0].event.detailsUrl).toBe('https://argocd.example/app/web');
    expect(parsed[1]?.ok && parsed[1].event.chunk?.toString()).toBe('hi');
    expect(parsed.map((p) => p.ok && p.event.type)).toEqual([
      'dev.extjob.accepted.v1',
      'dev.extjob.log.v1',
      started.context.type,
      finished.context.type,
    ]);
    expect(parsed.map((p) => p.ok && p.event.jobId)).toEqual(['e1', 'e1', 'e1', 'e1']);
  });

  it('keeps a base64 chunk that JSON text would blow up as base64; a record Kafka refuses is 413, not 503', async () => {
    const { gateway, topic } = await kafkaGateway();
    const api = await startTestApi({ events: gateway });
    const { eventToken } = (await (await api.req('/v1/jobs', { json: { id: 'b1', name: 'n' } })).json()) as {
      eventToken: string;
    };
    // 400 KiB of control bytes: valid UTF-8, 2.4 MB as JSON text, 550 KB as base64
    const chunk = Buffer.alloc(400 * 1024, 0x01);
    const log = {
      ...accepted('b1'),
      type: 'dev.extjob.log.v1',
      data: { seq: 0, base64: chunk.toString('base64') },
    };
    const r = await api.req('/v1/jobs/b1/events', { token: eventToken, json: log });
    expect(r.status).toBe(202);
    const [msg] = await consumeAll(topic, 1);
    const parsed = parseMessage({ key: msg!.key, value: msg!.value, headers: msg!.headers as never });
    expect(parsed.ok && parsed.event.chunk).toEqual(chunk);

    // a topic that takes 2 KB at most: Kafka refuses the record for good
    const small = unique('small');
    const admin = testKafka().admin();
    await admin.connect();
    await createTopics(admin, [
      {
        topic: small,
        numPartitions: 1,
        replicationFactor: 1,
        configEntries: [{ name: 'max.message.bytes', value: '2000' }],
      },
    ]);
    await admin.disconnect();
    const { gateway: refusing } = await kafkaGateway({ topic: small });
    const api2 = await startTestApi({ events: refusing });
    const { eventToken: t2 } = (await (
      await api2.req('/v1/jobs', { json: { id: 'b2', name: 'n' } })
    ).json()) as {
      eventToken: string;
    };
    const big = { ...accepted('b2'), type: 'dev.extjob.log.v1', data: { seq: 0, text: 'x'.repeat(4000) } };
    const refused = await api2.req('/v1/jobs/b2/events', { token: t2, json: big });
    expect(refused.status).toBe(413);
    expect(await refused.json()).toMatchObject({ code: 'EXTJOB_PAYLOAD_TOO_LARGE', retriable: false });
  });

  it('401 without or with a wrong token (for a missing job too), 400 for invalid events, 413', async () => {
    const { gateway } = await kafkaGateway();
    const api = await startTestApi({ events: gateway });
    const { eventToken } = (await (await api.req('/v1/jobs', { json: { id: 'e2', name: 'n' } })).json()) as {
      eventToken: string;
    };
    await api.req('/v1/jobs', { json: { id: 'other', name: 'n' } });
    expect((await api.req('/v1/jobs/e2/events', { token: null, json: accepted('e2') })).status).toBe(401);
    expect(
      (await api.req('/v1/jobs/e2/events', { token: 'x'.repeat(43), json: accepted('e2') })).status,
    ).toBe(401);
    // a job's token acts on that job only
    expect(
      (await api.req('/v1/jobs/other/events', { token: eventToken, json: accepted('other') })).status,
    ).toBe(401);
    // read/write API tokens are not event tokens; admin is
    expect((await api.req('/v1/jobs/e2/events', { token: TOKENS.write, json: accepted('e2') })).status).toBe(
      401,
    );
    expect((await api.req('/v1/jobs/e2/events', { token: TOKENS.admin, json: accepted('e2') })).status).toBe(
      202,
    );
    // a missing job is answered as an existing one is: nothing tells which ids exist
    const missing = await api.req('/v1/jobs/nope/events', { token: eventToken, json: accepted('nope') });
    const wrong = await api.req('/v1/jobs/e2/events', { token: 'x'.repeat(43), json: accepted('e2') });
    expect(missing.status).toBe(401);
    const { instance: _, ...answer } = (await missing.json()) as Record<string, unknown>;
    expect(await wrong.json()).toMatchObject(answer);

    const bad: [unknown, string][] = [
      [{ ...accepted('e2'), type: 'com.example.other' }, 'unsupported_type'],
      [{ ...accepted('e2'), subject: 'other' }, 'invalid'],
      [{ ...accepted('e2'), type: 'dev.extjob.finished.v1', data: { exitCode: 'zero' } }, 'invalid'],
      [{ ...accepted('e2'), specversion: '0.3' }, 'invalid'],
      ['just a string', 'invalid'],
      // nested too deep: refused by the parser, as on Kafka
      [{ ...accepted('e2'), data: JSON.parse(`${'['.repeat(40)}${']'.repeat(40)}`) }, 'invalid'],
    ];
    for (const [body, reason] of bad) {
      const r = await api.req('/v1/jobs/e2/events', { token: eventToken, json: body });
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(await r.json()).toMatchObject({ code: 'EXTJOB_VALIDATION_FAILED', reason });
    }
    // bytes that are not JSON (or not UTF-8) are malformed, as the same bytes on Kafka are
    for (const body of ['{"specversion":"1.0",', Buffer.from([0x7b, 0xff, 0x7d])]) {
      const r = await api.req('/v1/jobs/e2/events', {
        token: eventToken,
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json' },
      });
      expect(r.status, String(body)).toBe(400);
      expect(await r.json()).toMatchObject({ code: 'EXTJOB_VALIDATION_FAILED', reason: 'malformed' });
    }
    const big = {
      ...accepted('e2'),
      type: 'dev.extjob.log.v1',
      data: { seq: 1, text: 'x'.repeat(600 * 1024) },
    };
    const r413 = await api.req('/v1/jobs/e2/events', { token: eventToken, json: big });
    expect(r413.status).toBe(413);
    const r415 = await api.req('/v1/jobs/e2/events', {
      token: eventToken,
      method: 'POST',
      body: 'x',
      headers: { 'content-type': 'text/plain' },
    });
    expect(r415.status).toBe(415);
  });

  it('insecure mode takes events without a token but still rejects a wrong one', async () => {
    const { gateway } = await kafkaGateway();
    const api = await startTestApi({ events: gateway, insecure: true });
    await api.req('/v1/jobs', { token: null, json: { id: 'e3', name: 'n' } });
    expect((await api.req('/v1/jobs/e3/events', { token: null, json: accepted('e3') })).status).toBe(202);
    expect((await api.req('/v1/jobs/e3/events', { token: 'wrong-token', json: accepted('e3') })).status).toBe(
      401,
    );
    // a token presented but unreadable is refused too, as in production
    for (const authorization of [
      '',
      '   ',
      'Basic d3Jvbmc6d3Jvbmc=',
      'Bearer',
      'Bearer ',
      'Bearer two words',
      `Bearer ${'a'.repeat(5000)}`,
    ]) {
      const r = await api.req('/v1/jobs/e3/events', {
        token: null,
        json: accepted('e3'),
        headers: { authorization },
      });
      expect({ authorization: authorization.slice(0, 20), status: r.status }).toEqual({
        authorization: authorization.slice(0, 20),
        status: 401,
      });
    }
  });

  it('answers 413, not 202, for a body at the limit that the consumers would refuse once written to Kafka', async () => {
    // a topic that takes such a record: only the consumers' limit is in the way
    const topic = unique('events');
    const admin = testKafka().admin();
    await admin.connect();
    await createTopics(admin, [
      {
        topic,
        numPartitions: 1,
        replicationFactor: 1,
        configEntries: [{ name: 'max.message.bytes', value: String(4 * 1024 * 1024) }],
      },
    ]);
    await admin.disconnect();
    const { gateway } = await kafkaGateway({ topic });
    const api = await startTestApi({ events: gateway });
    await api.req('/v1/jobs', { json: { id: 'e5', name: 'n' } });
    const body = (text: string) =>
      JSON.stringify({
        specversion: '1.0',
        id: unique('ce'),
        source: '/t',
        type: 'dev.extjob.log.v1',
        data: { seq: 0, text },
      });
    // quotes take two bytes each in JSON: a chunk under its limit, a body at the value limit
    const room = 1024 * 1024 - Buffer.byteLength(body(''));
    const text = '"'.repeat(Math.floor(room / 2)) + 'x'.repeat(room % 2);
    expect(Buffer.byteLength(body(text))).toBe(1024 * 1024);
    const r = await api.req('/v1/jobs/e5/events', {
      method: 'POST',
      body: body(text),
      headers: { 'content-type': 'application/cloudevents+json' },
    });
    expect(r.status).toBe(413);
    expect(await r.json()).toMatchObject({ code: 'EXTJOB_PAYLOAD_TOO_LARGE' });
  });

  it('answers 503 when Kafka is away', async () => {
    const { gateway } = await kafkaGateway({ brokers: ['127.0.0.1:1'], timeoutMs: 3000 });
    const api = await startTestApi({ events: gateway });
    const { eventToken } = (await (await api.req('/v1/jobs', { json: { id: 'e4', name: 'n' } })).json()) as {
      eventToken: string;
    };
    const r = await api.req('/v1/jobs/e4/events', { token: eventToken, json: accepted('e4') });
    expect(r.status).toBe(503);
    expect(r.headers.get('retry-after')).toBe('1');
    expect(await r.json()).toMatchObject({ code: 'EXTJOB_KAFKA_UNAVAILABLE', retriable: true });
  });
});

describe('POST /v1/jobs/{id}/events for a missing job', () => {
  it('is a 404 for admin and insecure callers too', async () => {
    const { gateway } = await kafkaGateway();
    const api = await startTestApi({ events: gateway });
    const r = await api.req('/v1/jobs/nope/events', { token: TOKENS.admin, json: accepted('nope') });
    expect(r.status).toBe(404);
    const insecure = await startTestApi({ events: gateway, insecure: true });
    expect((await insecure.req('/v1/jobs/nope/events', { token: null, json: accepted('nope') })).status).toBe(
      404,
    );
  });
});
