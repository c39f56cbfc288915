/**
 * Waiting and streaming: /wait answers when the change lands (not by polling), many
 * waiters share one subscriber, SSE streams resume with Last-Event-ID without loss or
 * repeats.
 */
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
    expect(reads.filter((q) => q.fromSeq !== 9)).toEqual([{ fromSeq: 2, limit: 1 }]);
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
});
