/**
 * Waiting and streaming: /wait answers when the change lands (not by polling), many
 * waiters share one subscriber, SSE streams resume with Last-Event-ID without loss or
 * repeats.
 */
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ApiClient, type SseEvent } from '../../src/cli/client.js';
import { ev } from '../broker/harness.js';
import { waitFor } from '../helpers/index.js';
import { startTestApi, TOKENS } from './support.js';

describe('GET /v1/jobs/{id}/wait', () => {
  it('answers once the job turns terminal, not before', async () => {
    const api = await startTestApi();
    await api.req('/v1/jobs', { json: { id: 'w1', name: 'n' } });
    let answered = false;
    const pending = api.req('/v1/jobs/w1/wait?until=terminal&timeoutSeconds=30').then((r) => {
      answered = true;
      return r;
    });
    await waitFor(() => api.hub.size === 1, { what: 'the waiter to subscribe' });
    await api.broker.applyEvents([ev('accepted', 'w1')]);
    await waitFor(async () => (await api.broker.getJob('w1'))?.state === 'running');
    expect(answered).toBe(false);
    const t0 = Date.now();
    await api.broker.applyEvents([ev('finished', 'w1', { exitCode: 3 })]);
    const res = await pending;
    const elapsed = Date.now() - t0;
    expect(res.status).toBe(200);
    expect(res.headers.get('extjob-condition-met')).toBe('true');
    expect(await res.json()).toMatchObject({ id: 'w1', state: 'failed', exitCode: 3 });
    // Reported, not asserted: speed targets belong to benchmarks.
    console.log(`wait answered ${elapsed} ms after the finish event`);
    await waitFor(() => api.hub.size === 0, { what: 'the waiter to unsubscribe' });
  });

  it('answers at once when the condition already holds; until=running; timeout returns the current job', async () => {
    const api = await startTestApi();
    await api.req('/v1/jobs', { json: { id: 'w2', name: 'n' } });
    const timedOut = await api.req('/v1/jobs/w2/wait?timeoutSeconds=1');
    expect(timedOut.status).toBe(200);
    expect(timedOut.headers.get('extjob-condition-met')).toBe('false');
    expect(await timedOut.json()).toMatchObject({ id: 'w2', state: 'pending' });

    const running = api.req('/v1/jobs/w2/wait?until=running&timeoutSeconds=30');
    await waitFor(() => api.hub.size === 1);
    await api.broker.applyEvents([ev('accepted', 'w2')]);
    expect(await (await running).json()).toMatchObject({ state: 'running' });
    const again = await api.req('/v1/jobs/w2/wait?until=running&timeoutSeconds=0');
    expect(again.headers.get('extjob-condition-met')).toBe('true');

    expect((await api.req('/v1/jobs/nope/wait?timeoutSeconds=1')).status).toBe(404);
    for (const q of ['timeoutSeconds=301', 'until=done', 'timeoutSeconds=-1'])
      expect((await api.req(`/v1/jobs/w2/wait?${q}`)).status, q).toBe(400);
  });

  it('holds 2,000 waiters on one subscriber and releases them all on the change', async () => {
    const api = await startTestApi();
    await api.req('/v1/jobs', { json: { id: 'many', name: 'n' } });
    const n = 2000;
    const { Agent, request } = await import('node:http');
    const agent = new Agent({ keepAlive: true, maxSockets: n });
    const url = new URL(`${api.url}/v1/jobs/many/wait?timeoutSeconds=60`);
    const waiters = Array.from(
      { length: n },
      () =>
        new Promise<string>((resolve, reject) => {
          const r = request(url, { agent, headers: { authorization: `Bearer ${TOKENS.read}` } }, (res) => {
            let body = '';
            res.on('data', (d) => {
              body += d;
            });
            res.on('end', () => resolve(body));
          });
          r.on('error', reject);
          r.end();
        }),
    );
    await waitFor(() => api.hub.size === n, { timeoutMs: 20_000, what: `${n} waiters` });
    const t0 = Date.now();
    await api.broker.applyEvents([ev('finished', 'many', { exitCode: 0 })]);
    const bodies = await Promise.all(waiters);
    console.log(`${n} waiters released in ${Date.now() - t0} ms`);
    for (const b of bodies) expect(JSON.parse(b)).toMatchObject({ id: 'many', state: 'passed' });
    agent.destroy();
  });
});

async function collect(
  gen: AsyncGenerator<SseEvent>,
  until: (e: SseEvent, all: SseEvent[]) => boolean,
): Promise<SseEvent[]> {
  const all: SseEvent[] = [];
  for await (const e of gen) {
    all.push(e);
    if (until(e, all)) break;
  }
  return all;
}

/** Events of a stream read a few at a time; fails instead of hanging when none comes. */
function reader(gen: AsyncGenerator<SseEvent>) {
  return {
    async until(stop: (e: SseEvent) => boolean, timeoutMs = 10_000): Promise<SseEvent[]> {
      const got: SseEvent[] = [];
      for (;;) {
        let timer: NodeJS.Timeout | undefined;
        const r = await Promise.race([
          gen.next(),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no event within ${timeoutMs} ms`)), timeoutMs);
          }),
        ]).finally(() => clearTimeout(timer));
        if (r.done) throw new Error(`the stream ended after ${JSON.stringify(got)}`);
        got.push(r.value);
        if (stop(r.value)) return got;
      }
    },
  };
}

describe('SSE streams', () => {
  it('log stream: live chunks, resumable with Last-Event-ID, ends when the job finishes', async () => {
    const api = await startTestApi();
    const client = new ApiClient({ url: api.url, token: TOKENS.read });
    await api.req('/v1/jobs', { json: { id: 's1', name: 'n' } });
    await api.broker.applyEvents([ev('log', 's1', { seq: 0, chunk: Buffer.from('a') })]);

    const abort = new AbortController();
    const first = collect(
      client.events('/v1/jobs/s1/log/stream', { signal: abort.signal }),
      (e) => e.event === 'chunk' && e.id === '2',
    );
    await waitFor(() => api.hub.size === 1);
    await api.broker.applyEvents([ev('log', 's1', { seq: 1, chunk: Buffer.from('b') })]);
    await api.broker.applyEvents([ev('log', 's1', { seq: 2, chunk: Buffer.from('c') })]);
    const got1 = await first;
    abort.abort();
    expect(got1.filter((e) => e.event === 'chunk').map((e) => JSON.parse(e.data).text)).toEqual([
      'a',
      'b',
      'c',
    ]);

    // While nobody listens, more chunks land; the resumed stream gets exactly those.
    await api.broker.applyEvents([
      ev('log', 's1', { seq: 3, chunk: Buffer.from('d') }),
      ev('log', 's1', { seq: 4, chunk: Buffer.from('e') }),
    ]);
    const second = collect(
      client.events('/v1/jobs/s1/log/stream', { lastEventId: '2' }),
      (e) => e.event === 'end',
    );
    await waitFor(() => api.hub.size === 1);
    await api.broker.applyEvents([
      ev('log', 's1', { seq: 5, chunk: Buffer.from('f') }),
      ev('finished', 's1', { exitCode: 0, lastSeq: 5 }),
    ]);
    const got2 = await second;
    const chunks = got2.filter((e) => e.event === 'chunk');
    expect(chunks.map((e) => e.id)).toEqual(['3', '4', '5']);
    expect(chunks.map((e) => JSON.parse(e.data).text).join('')).toBe('def');
    const end = JSON.parse(got2.at(-1)!.data);
    expect(end).toMatchObject({ state: 'passed', complete: true, nextSeq: 6 });
  });

  it('log stream: a hole filled after the stream passed it comes as `filled` without an id; resume repeats nothing', async () => {
    const api = await startTestApi();
    const client = new ApiClient({ url: api.url, token: TOKENS.read });
    const log = (seq: number) => ev('log', 'h1', { seq, chunk: Buffer.from('abcdefghijk'.charAt(seq)) });
    await api.req('/v1/jobs', { json: { id: 'h1', name: 'n' } });
    // Holes: 2, 4, 6-7 (0 is none: the log starts at 1).
    await api.broker.applyEvents([log(1), log(3), log(5), log(8)]);
    const reads: { fromSeq?: number; limit?: number }[] = [];
    const readLog = api.broker.readLog.bind(api.broker);
    api.broker.readLog = (id, q = {}) => {
      reads.push(q);
      return readLog(id, q);
    };

    const abort = new AbortController();
    const first = reader(client.events('/v1/jobs/h1/log/stream', { signal: abort.signal }));
    const live = await first.until((e) => e.id === '8');
    expect(live.map((e) => [e.event, e.id])).toEqual([
      ['chunk', '1'],
      ['chunk', '3'],
      ['chunk', '5'],
      ['chunk', '8'],
    ]);
    reads.length = 0;
    await api.broker.applyEvents([log(2)]);
    const [filled] = await first.until(() => true);
    expect(filled?.event).toBe('filled');
    expect(JSON.parse(filled?.data ?? '')).toEqual({ seq: 2, text: 'c', filled: true });
    // No id line: the client's Last-Event-ID stays at the highest chunk sent.
    expect(filled?.id).toBe('8');
    // The wake-up read from the stream's position and the filled hole, not the whole log.
    expect(reads.filter((q) => q.fromSeq !== 9)).toEqual([{ fromSeq: 2, limit: 1, attempt: 1 }]);
    abort.abort();

    // Away: 6 fills a hole (GET /log has it; the stream cannot know the client lacks
    // it) and 9 lands. Resuming after 8 sends 9 only, and the hole 4, still open when
    // it connected, once it is filled.
    await api.broker.applyEvents([log(6), log(9)]);
    const second = reader(client.events('/v1/jobs/h1/log/stream', { lastEventId: '8' }));
    expect((await second.until((e) => e.id === '9')).map((e) => [e.event, e.id])).toEqual([['chunk', '9']]);
    await api.broker.applyEvents([log(4)]);
    const [four] = await second.until(() => true);
    expect(four).toMatchObject({ event: 'filled', id: '9' });
    expect(JSON.parse(four?.data ?? '')).toEqual({ seq: 4, text: 'e', filled: true });
    await api.broker.applyEvents([ev('finished', 'h1', { exitCode: 0, lastSeq: 10 })]);
    const [end] = await second.until((e) => e.event === 'end');
    expect(JSON.parse(end?.data ?? '')).toEqual({
      state: 'passed',
      complete: false,
      nextSeq: 10,
      attempt: 1,
      gaps: [
        [7, 7],
        [10, 10],
      ],
      unwatched: 0,
    });

    // Reconnecting after the last id gets nothing again, just the end.
    const third = await collect(
      client.events('/v1/jobs/h1/log/stream', { lastEventId: '9' }),
      (e) => e.event === 'end',
    );
    expect(third.map((e) => e.event)).toEqual(['end']);
    const full = (await (await api.req('/v1/jobs/h1/log')).json()) as { chunks: { text: string }[] };
    expect(full.chunks.map((c) => c.text).join('')).toBe('bcdefgij');
  });

  it('log stream: a log larger than one read (4 MiB) is sent whole', async () => {
    const api = await startTestApi();
    const client = new ApiClient({ url: api.url, token: TOKENS.read });
    await api.req('/v1/jobs', { json: { id: 'big', name: 'n' } });
    const chunk = (seq: number) => Buffer.alloc(20 * 1024, 97 + (seq % 26));
    for (let seq = 0; seq < 300; seq += 50)
      await api.broker.applyEvents(
        Array.from({ length: 50 }, (_, i) => ev('log', 'big', { seq: seq + i, chunk: chunk(seq + i) })),
      );
    await api.broker.applyEvents([ev('finished', 'big', { exitCode: 0, lastSeq: 299 })]);
    const all = await collect(client.events('/v1/jobs/big/log/stream'), (e) => e.event === 'end');
    const chunks = all.filter((e) => e.event === 'chunk');
    expect(chunks.map((e) => Number(e.id))).toEqual([...Array(300).keys()]);
    expect(JSON.parse(chunks[299]!.data).text).toBe(chunk(299).toString());
    expect(JSON.parse(all.at(-1)!.data)).toMatchObject({ complete: true, nextSeq: 300 });
  });

  it('log stream: a client that reads slowly holds no more than a frame or two in server memory', async () => {
    const api = await startTestApi();
    await api.req('/v1/jobs', { json: { id: 'slow', name: 'n' } });
    // 32 MiB of log: more than the kernel's socket buffers hold for a client not reading
    const chunk = (seq: number) => 'abcdefghijklmnopqrstuvwxyz'[seq % 26]!.repeat(512 * 1024);
    for (let seq = 0; seq < 64; seq += 8)
      await api.broker.applyEvents(
        Array.from({ length: 8 }, (_, i) => ev('log', 'slow', { seq: seq + i, chunk: chunk(seq + i) })),
      );
    await api.broker.applyEvents([ev('finished', 'slow', { exitCode: 0, lastSeq: 63 })]);
    let res: ServerResponse | undefined;
    api.server.on('request', (_req, r: ServerResponse) => {
      res = r;
    });
    const socket = connect(Number(new URL(api.url).port), '127.0.0.1');
    await once(socket, 'connect');
    socket.pause(); // reads nothing for now
    socket.write(
      `GET /v1/jobs/slow/log/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKENS.read}\r\n\r\n`,
    );
    await waitFor(() => res !== undefined && res.writableLength > 0, { what: 'the stream to start' });
    // the server goes on only as the client reads: what it buffers stays small
    let most = 0;
    for (let i = 0; i < 20; i++) {
      most = Math.max(most, res!.writableLength);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(most).toBeLessThan(2 * 1024 * 1024);
    // and a client that reads again gets all of it
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      text += d;
    });
    socket.resume();
    await waitFor(() => text.includes('event: end'), { timeoutMs: 30_000, what: 'the whole log' });
    socket.destroy();
    expect(text.match(/^event: chunk$/gm)).toHaveLength(64);
  });

  it("log stream: after a retry, the new attempt's log from its start; ids name the attempt", async () => {
    const api = await startTestApi();
    const client = new ApiClient({ url: api.url, token: TOKENS.read });
    await api.req('/v1/jobs', { json: { id: 'r1', name: 'n', retry: { limit: 1 } } });
    const log = (seq: number, text: string) => ev('log', 'r1', { seq, chunk: Buffer.from(text) });
    const live = collect(client.events('/v1/jobs/r1/log/stream'), (e) => e.event === 'end');
    await waitFor(() => api.hub.size === 1);
    await api.broker.applyEvents([log(0, 'a0'), log(1, 'a1'), log(2, 'a2')]);
    await api.broker.applyEvents([ev('finished', 'r1', { exitCode: 1 })]);
    await waitFor(async () => (await api.broker.getJob('r1'))?.attempt === 2);
    await api.broker.applyEvents([0, 1, 2, 3, 4].map((s) => log(s, `b${s}`)));
    await api.broker.applyEvents([ev('finished', 'r1', { exitCode: 0, lastSeq: 4 })]);
    const got = await live;
    const shown = (events: SseEvent[]) =>
      events.map((e) => (e.event === 'chunk' ? `${e.id}=${JSON.parse(e.data).text}` : e.event));
    expect(shown(got)).toEqual([
      '0=a0',
      '1=a1',
      '2=a2',
      'attempt',
      '2:0=b0',
      '2:1=b1',
      '2:2=b2',
      '2:3=b3',
      '2:4=b4',
      'end',
    ]);
    expect(JSON.parse(got[3]!.data)).toEqual({ attempt: 2 });
    expect(JSON.parse(got.at(-1)!.data)).toMatchObject({ state: 'passed', attempt: 2, complete: true });

    // Resuming from the first attempt sends its rest, then the second's whole log.
    const fromFirst = await collect(
      client.events('/v1/jobs/r1/log/stream', { lastEventId: '1' }),
      (e) => e.event === 'end',
    );
    expect(shown(fromFirst)).toEqual(['2=a2', 'attempt', ...shown(got).slice(4)]);
    const fromSecond = await collect(
      client.events('/v1/jobs/r1/log/stream', { lastEventId: '2:2' }),
      (e) => e.event === 'end',
    );
    expect(shown(fromSecond)).toEqual(['2:3=b3', '2:4=b4', 'end']);
    // the attempt event's id resumes at the new attempt's first chunk, not before it
    expect(got[3]!.id).toBe('2:');
    const fromAttempt = await collect(
      client.events('/v1/jobs/r1/log/stream', { lastEventId: '2:' }),
      (e) => e.event === 'end',
    );
    expect(shown(fromAttempt)).toEqual(shown(got).slice(4));
    // an id of an attempt the job never reached (the id of a job removed and created
    // again): the whole log, nothing skipped
    await api.req('/v1/jobs', { json: { id: 'r2', name: 'n' } });
    await api.broker.applyEvents([log(0, 'c0'), log(1, 'c1')].map((e) => ({ ...e, jobId: 'r2' })));
    await api.broker.applyEvents([ev('finished', 'r2', { exitCode: 0 })]);
    const fromOther = await collect(
      client.events('/v1/jobs/r2/log/stream', { lastEventId: '2:0' }),
      (e) => e.event === 'end',
    );
    expect(shown(fromOther)).toEqual(['0=c0', '1=c1', 'end']);
  });

  it('log stream: a job several retries on is streamed attempt by attempt', async () => {
    const api = await startTestApi();
    const client = new ApiClient({ url: api.url, token: TOKENS.read });
    await api.req('/v1/jobs', { json: { id: 'r3', name: 'n', retry: { limit: 2 } } });
    const log = (seq: number, text: string, attempt: number) =>
      ev('log', 'r3', { seq, chunk: Buffer.from(text), attempt });
    await api.broker.applyEvents([log(0, 'a0', 1), log(1, 'a1', 1)]);
    const live = collect(client.events('/v1/jobs/r3/log/stream'), (e) => e.event === 'end');
    await waitFor(() => api.hub.size === 1);
    // two retries in one batch: the stream wakes once, at attempt 3
    await api.broker.applyEvents([
      ev('finished', 'r3', { exitCode: 1, attempt: 1 }),
      log(0, 'b0', 2),
      ev('finished', 'r3', { exitCode: 1, attempt: 2 }),
      log(0, 'c0', 3),
      ev('finished', 'r3', { exitCode: 0, attempt: 3 }),
    ]);
    const shown = (events: SseEvent[]) =>
      events.map((e) =>
        e.event === 'chunk'
          ? `${e.id}=${JSON.parse(e.data).text}`
          : e.event === 'attempt'
            ? `attempt ${e.id}`
            : e.event,
      );
    const all = ['0=a0', '1=a1', 'attempt 2:', '2:0=b0', 'attempt 3:', '3:0=c0', 'end'];
    expect(shown(await live)).toEqual(all);
    // resuming from attempt 1 after all of it
    const resumed = await collect(
      client.events('/v1/jobs/r3/log/stream', { lastEventId: '0' }),
      (e) => e.event === 'end',
    );
    expect(shown(resumed)).toEqual(all.slice(1));
  });

  it('a client gone before its stream began holds nothing', async () => {
    const api = await startTestApi();
    await api.req('/v1/jobs', { json: { id: 'gone', name: 'n' } });
    const getJob = api.broker.getJob.bind(api.broker);
    let reads = 0;
    api.broker.getJob = async (id) => {
      reads++;
      await new Promise((r) => setTimeout(r, 300)); // a slow Redis
      return getJob(id);
    };
    const client = new ApiClient({ url: api.url, token: TOKENS.read });
    for (const path of ['log/stream', 'events/stream']) {
      const leave = new AbortController();
      const stream = collect(client.events(`/v1/jobs/gone/${path}`, { signal: leave.signal }), () => true);
      await waitFor(() => reads > 0);
      leave.abort();
      await stream.catch(() => {});
      // the stream's own read of the job, once the client left: then nothing is held
      await waitFor(() => reads >= 2);
      await new Promise((r) => setTimeout(r, 400));
      expect(api.hub.size).toBe(0);
      reads = 0;
    }
  });

  it('events stream: history entries with their index as id, progress, end; resumable', async () => {
    const api = await startTestApi();
    const client = new ApiClient({ url: api.url, token: TOKENS.admin });
    await api.req('/v1/jobs', { json: { id: 's2', name: 'n' } });
    const live = collect(client.events('/v1/jobs/s2/events/stream'), (e) => e.event === 'end');
    await waitFor(() => api.hub.size === 1);
    await api.broker.applyEvents([ev('accepted', 's2')]);
    await api.broker.applyEvents([ev('heartbeat', 's2', { progress: { percent: 50, phase: 'sync' } })]);
    await waitFor(async () => (await api.broker.getJob('s2'))?.progress?.percent === 50);
    await api.broker.applyEvents([ev('finished', 's2', { exitCode: 2 })]);
    const all = await live;
    const history = all.filter((e) => e.event === 'history');
    expect(history.map((e) => Number(e.id))).toEqual(history.map((_, i) => i));
    const transitions = history.map((e) => JSON.parse(e.data)).filter((h) => h.kind === 'transition');
    expect(transitions.map((h) => h.to)).toEqual(['pending', 'running', 'failed']);
    expect(all.some((e) => e.event === 'progress' && JSON.parse(e.data).percent === 50)).toBe(true);
    expect(JSON.parse(all.at(-1)!.data)).toMatchObject({ state: 'failed', exitCode: 2 });

    const fullLen = history.length;
    const resumed = await collect(
      client.events('/v1/jobs/s2/events/stream', { lastEventId: '0' }),
      (e) => e.event === 'end',
    );
    expect(resumed.filter((e) => e.event === 'history').map((e) => Number(e.id))).toEqual(
      Array.from({ length: fullLen - 1 }, (_, i) => i + 1),
    );
    expect((await api.req('/v1/jobs/nope/events/stream')).status).toBe(404);
  });

  it('events stream: an event with no effect (a duplicate) comes as it is recorded', async () => {
    const api = await startTestApi();
    const client = new ApiClient({ url: api.url, token: TOKENS.read });
    await api.req('/v1/jobs', { json: { id: 'dup', name: 'n' } });
    const accepted = ev('accepted', 'dup');
    await api.broker.applyEvents([accepted]);
    const abort = new AbortController();
    const stream = reader(client.events('/v1/jobs/dup/events/stream', { signal: abort.signal }));
    await stream.until((e) => e.event === 'history' && JSON.parse(e.data).to === 'running');
    expect(await api.broker.applyEvents([accepted])).toEqual(['duplicate']);
    const got = await stream.until((e) => e.event === 'history', 5000);
    expect(JSON.parse(got.at(-1)!.data)).toMatchObject({ kind: 'duplicate' });
    abort.abort();
  });

  it('a stream that fails after it began ends with an error event, and the server stays up', async () => {
    const api = await startTestApi();
    const client = new ApiClient({ url: api.url, token: TOKENS.read });
    for (const [id, path] of [
      ['gone-e', 'events/stream'],
      ['gone-l', 'log/stream'],
    ] as const) {
      await api.req('/v1/jobs', { json: { id, name: 'n' } });
      const got = collect(client.events(`/v1/jobs/${id}/${path}`), (e) => e.event === 'error');
      await waitFor(() => api.hub.size === 1);
      // the job vanishes under the stream (retention, or a Redis that lost its data)
      const keys = await api.redis.keys(`${api.broker.keys.job(id)}*`);
      await api.redis.del(...keys);
      await api.redis.publish(api.hub.channel, JSON.stringify({ id, v: 9, state: 'running', kind: 'state' }));
      const error = (await got).at(-1)!;
      expect(JSON.parse(error.data)).toMatchObject({ code: 'EXTJOB_JOB_NOT_FOUND' });
      await waitFor(() => api.hub.size === 0);
    }
    expect((await api.req('/healthz')).status).toBe(200);
  });
});
