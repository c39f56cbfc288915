import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JobBroker, type JobEvent, type JobSpec } from '../../src/broker/index.js';
import { listJobs } from '../../src/broker/listing.js';
import { runScript } from '../../src/broker/scripts.js';
import { startRedis } from '../../src/cli/local/redis.js';
import { outboundCloudEvent } from '../../src/consumers/formats/changes-v1.js';
import { isExtjobError } from '../../src/shared/errors.js';
import { DEFAULTS, ev, type Harness, harness, redisUrl, waitFor } from './harness.js';

let h: Harness;
beforeEach(async () => {
  h = await harness();
});
afterEach(async () => {
  await h.cleanup();
});

const api = { kind: 'api', caller: 'tester' } as const;

describe('createJob', () => {
  it('derives ids and tokens from idempotency keys with the secret of the installation as it is now', async () => {
    const other = h.reopen(); // another process
    const created = await h.broker.createJob({ name: 'x' }, undefined, 'key-one-0123456789');
    expect(created.created).toBe(true);
    await h.redis.del(h.broker.keys.keySecret); // lost: a restore, a failover
    const a = await other.createJob({ name: 'y' }, undefined, 'key-two-0123456789');
    const b = await h.broker.createJob({ name: 'y' }, undefined, 'key-two-0123456789');
    expect(a.created).toBe(true);
    expect(b).toMatchObject({ created: false, job: { id: a.job.id }, eventToken: a.eventToken });
  });

  it('creates a pending job with a token, and is idempotent on the same spec', async () => {
    const spec = {
      id: 'build:42.step-1',
      name: 'deploy',
      labels: { repo: 'r', build: '42' },
      executor: 'argo',
    };
    const a = await h.broker.createJob(spec, api);
    expect(a.created).toBe(true);
    expect(a.eventToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a.job).toMatchObject({ id: spec.id, state: 'pending', attempt: 1, version: 1, executor: 'argo' });
    const b = await h.broker.createJob({ ...spec, labels: { build: '42', repo: 'r' } }, api);
    expect(b.created).toBe(false);
    expect(b.eventToken).toBeUndefined();
    expect(b.job).toEqual(a.job);
    await expect(h.broker.createJob({ ...spec, name: 'other' })).rejects.toMatchObject({
      code: 'EXTJOB_JOB_CONFLICT',
    });
    // a process with other default timeouts answers with the job as it was created
    const other = h.reopen({
      defaults: { ...DEFAULTS, timeouts: { ...DEFAULTS.timeouts, acceptSeconds: 10 } },
    });
    expect((await other.createJob(spec, api)).job).toEqual(a.job);
  });

  it('refuses text with a lone surrogate, which the scripts could not read back', async () => {
    const cases: [JobSpec, string][] = [
      [{ name: 'deploy \ud83d' }, 'name'],
      [{ name: 'n', labels: { team: 'x\udc00' } }, 'labels.team'],
      [{ name: 'n', executor: 'ex\ud800' }, 'executor'],
      [{ name: 'n', notify: [{ url: 'https://h.example/\ud83d' }] }, 'notify.0.url'],
    ];
    for (const [spec, path] of cases) {
      await expect(h.broker.createJob({ id: 'lone', ...spec })).rejects.toMatchObject({
        code: 'EXTJOB_VALIDATION_FAILED',
        message: expect.stringContaining(`${path}: not well-formed`),
      });
    }
    expect(await h.broker.getJob('lone')).toBeUndefined();
    // a well-formed pair is fine, and the job finishes
    const { job } = await h.broker.createJob({ id: 'lone', name: 'deploy \ud83d\ude80', executor: 'ex' });
    expect(await h.broker.applyEvent(ev('finished', job.id, { exitCode: 2 }))).toBe('applied');
    expect(await h.broker.getJob(job.id)).toMatchObject({ state: 'failed', name: 'deploy 🚀' });
  });

  it('refuses a label named __proto__ rather than dropping it', async () => {
    const spec = JSON.parse('{"id":"proto","name":"n","labels":{"__proto__":"x","a":"b"}}');
    await expect(h.broker.createJob(spec)).rejects.toMatchObject({
      code: 'EXTJOB_VALIDATION_FAILED',
      message: expect.stringContaining('__proto__ is reserved'),
    });
    expect(await h.broker.getJob('proto')).toBeUndefined();
  });

  it('stores only a hash of the event token and verifies it', async () => {
    const { job, eventToken } = await h.broker.createJob({ name: 'n' });
    expect(job.id).toMatch(/^j-/);
    const stored = await h.redis.hget(h.broker.keys.job(job.id), 'tk');
    expect(stored).not.toBe(eventToken);
    expect(await h.broker.verifyEventToken(job.id, eventToken as string)).toBe(true);
    expect(await h.broker.verifyEventToken(job.id, `${eventToken}x`)).toBe(false);
    expect(await h.broker.verifyEventToken('nope', eventToken as string)).toBe(false);
  });

  it.each([
    [{ name: '' }, 'name'],
    [{ name: 'n', id: 'bad id!' }, 'id'],
    [{ name: 'n', id: 'x'.repeat(129) }, 'id'],
    [
      { name: 'n', labels: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) },
      'labels',
    ],
    [{ name: 'n', labels: { 'bad key': 'v' } }, 'labels'],
    [{ name: 'n', retry: { limit: 11 } }, 'retry.limit'],
    [{ name: 'n', timeouts: { acceptSeconds: -1 } }, 'timeouts.acceptSeconds'],
    [{ name: 'n', unknown: 1 }, 'spec'],
    [{ name: 'n', notify: [{ url: 'ftp://x' }] }, 'notify.0.url'],
  ])('rejects %j (%s)', async (spec, path) => {
    const err = await h.broker.createJob(spec as never).catch((e: unknown) => e);
    expect(isExtjobError(err, 'EXTJOB_VALIDATION_FAILED')).toBe(true);
    expect((err as Error).message).toContain(path);
  });
});

describe('applyEvents', () => {
  it('runs a job through accepted, heartbeat, log and finished, exactly once each', async () => {
    const { job } = await h.broker.createJob({ id: 'j1', name: 'n', executor: 'flux' });
    const accepted = ev('accepted', job.id, { detailsUrl: 'https://ci/1' });
    const hb = ev('heartbeat', job.id, { progress: { percent: 50, phase: 'sync' } });
    const fin = ev('finished', job.id, { exitCode: 0, summary: 'ok' });
    const results = await h.broker.applyEvents([accepted, hb, accepted, hb, fin, fin]);
    expect(results).toEqual(['applied', 'applied', 'duplicate', 'duplicate', 'applied', 'duplicate']);
    const j = await h.broker.getJob(job.id);
    expect(j).toMatchObject({
      state: 'passed',
      exitCode: 0,
      summary: 'ok',
      detailsUrl: 'https://ci/1',
      progress: { percent: 50, phase: 'sync' },
      version: 3,
    });
    expect(j?.acceptedAt).toBeDefined();
    expect(j?.finishedAt).toBeDefined();
    const hist = await h.broker.history(job.id);
    expect(hist?.filter((e) => e.kind === 'transition').map((e) => `${e.from ?? ''}>${e.to}`)).toEqual([
      '>pending',
      'pending>running',
      'running>passed',
    ]);
    expect(hist?.filter((e) => e.kind === 'duplicate')).toHaveLength(3);
    expect(await h.broker.applyEvent(ev('heartbeat', job.id))).toBe('late');
    expect(await h.broker.applyEvent(ev('heartbeat', 'missing'))).toBe('unknown_job');
  });

  it('remembers applied events for the dedupe window, then folds the last ones into a finished job', async () => {
    let clock = Date.now();
    const t = await harness({ now: () => clock, defaults: { ...DEFAULTS, dedupeWindowSeconds: 60 } });
    try {
      const { job } = await t.broker.createJob({ id: 'hb', name: 'n' });
      const kd = `${t.broker.keys.job(job.id)}:d`;
      const first = ev('heartbeat', job.id);
      const beats = [first, ...Array.from({ length: 99 }, () => ev('heartbeat', job.id))];
      expect(new Set(await t.broker.applyEvents(beats))).toEqual(new Set(['applied']));
      // a hundred events later, the first one is still a duplicate
      expect(await t.broker.applyEvent(first)).toBe('duplicate');
      expect(await t.redis.zcard(kd)).toBe(100);
      // past the window, entries are dropped (every 16 applied events): the replay applies
      clock += 61_000;
      const later = Array.from({ length: 16 }, () => ev('heartbeat', job.id));
      expect(new Set(await t.broker.applyEvents(later))).toEqual(new Set(['applied']));
      expect(await t.redis.zcard(kd)).toBe(16);
      expect(await t.broker.applyEvent(first)).toBe('applied');

      const done = ev('finished', job.id, { exitCode: 0 });
      expect(await t.broker.applyEvent(done)).toBe('applied');
      // no dedupe key left for a finished job; its last events are still duplicates
      expect(await t.redis.exists(kd)).toBe(0);
      expect(await t.broker.applyEvent(done)).toBe('duplicate');
      expect(await t.broker.applyEvent(first)).toBe('duplicate');
      expect(await t.broker.applyEvent(beats[50] as JobEvent)).toBe('late');
    } finally {
      await t.cleanup();
    }
  });

  it('caps the dedupe memory of a live job', async () => {
    const { job } = await h.broker.createJob({ id: 'cap', name: 'n' });
    const beats = Array.from({ length: 300 }, () => ev('heartbeat', job.id));
    expect(new Set(await h.broker.applyEvents(beats))).toEqual(new Set(['applied']));
    expect(await h.redis.zcard(`${h.broker.keys.job(job.id)}:d`)).toBe(256);
    expect(await h.broker.applyEvent(beats[299] as JobEvent)).toBe('duplicate');
  });

  it('drops heartbeats first at the cap: a replayed finished cannot end the next attempt', async () => {
    const { job } = await h.broker.createJob({ id: 'cap-retry', name: 'n', retry: { limit: 1 } });
    await h.broker.applyEvent(ev('accepted', job.id));
    const fin = ev('finished', job.id, { exitCode: 1 }); // names no attempt
    expect(await h.broker.applyEvent(fin)).toBe('applied');
    expect(await h.broker.getJob(job.id)).toMatchObject({ state: 'pending', attempt: 2 });
    await h.broker.applyEvent(ev('accepted', job.id));
    const beats = Array.from({ length: 300 }, () => ev('heartbeat', job.id));
    for (let i = 0; i < beats.length; i += 50) await h.broker.applyEvents(beats.slice(i, i + 50));
    expect(await h.redis.zcard(`${h.broker.keys.job(job.id)}:d`)).toBe(256);
    expect(await h.broker.applyEvent(fin)).toBe('duplicate');
    expect(await h.broker.getJob(job.id)).toMatchObject({ state: 'running', attempt: 2 });
    // the oldest heartbeats went: a replay of one refreshes the heartbeat, as documented
    expect(await h.broker.applyEvent(beats[0] as JobEvent)).toBe('applied');
  });

  it('treats finished on a pending job as accepted then finished; exit != 0 fails', async () => {
    const { job } = await h.broker.createJob({ name: 'n' });
    expect(
      await h.broker.applyEvent(
        ev('finished', job.id, { exitCode: 3, error: { type: 'SyncFailed', message: 'boom' } }),
      ),
    ).toBe('applied');
    const j = await h.broker.getJob(job.id);
    expect(j).toMatchObject({ state: 'failed', exitCode: 3, error: { type: 'SyncFailed', message: 'boom' } });
    const hist = await h.broker.history(job.id);
    expect(hist?.[1]).toMatchObject({ from: 'pending', to: 'running', detail: { implied: true } });
  });

  it('fences events of an older attempt and reports invalid ones', async () => {
    const { job } = await h.broker.createJob({ name: 'n', retry: { limit: 1 } });
    await h.broker.applyEvents([ev('accepted', job.id), ev('finished', job.id, { exitCode: 1 })]);
    let j = await h.broker.getJob(job.id);
    expect(j).toMatchObject({ state: 'pending', attempt: 2 });
    expect(j?.exitCode).toBeUndefined();
    expect(await h.broker.applyEvent(ev('finished', job.id, { attempt: 1, exitCode: 0 }))).toBe('stale');
    expect(await h.broker.applyEvent(ev('accepted', job.id, { attempt: 3 }))).toBe('invalid');
    expect(await h.broker.applyEvent(ev('log', job.id, { seq: 0 }))).toBe('invalid');
    const [tooBig] = await h.broker.applyEventsDetailed([
      ev('log', job.id, { seq: 0, chunk: Buffer.alloc(512 * 1024 + 1) }),
    ]);
    expect(tooBig).toMatchObject({ result: 'invalid', tooLarge: true });
    await h.broker.applyEvent(ev('finished', job.id, { exitCode: 1 }));
    j = await h.broker.getJob(job.id);
    expect(j).toMatchObject({ state: 'failed', attempt: 2, exitCode: 1 });
    const hist = await h.broker.history(job.id);
    expect(hist?.filter((e) => e.kind === 'transition').map((e) => `${e.attempt}:${e.from}>${e.to}`)).toEqual(
      [
        '1:undefined>pending',
        '1:pending>running',
        '1:running>pending',
        '2:pending>running',
        '2:running>failed',
      ],
    );
    expect(hist?.some((e) => e.kind === 'stale' && e.attempt === 1)).toBe(true);
    const outbox = await h.broker.readOutbox('0', 100);
    const created = outbox.filter((e) => e.type === 'job.created');
    expect(created.map((e) => e.attempt)).toEqual([1, 2]);
    // the retry's change says how the attempt ended: the job no longer shows its exit code
    const retried = outbox.find(
      (e) => e.type === 'job.changed' && e.payload.to === 'pending' && e.attempt === 2,
    );
    expect(retried?.payload.job.exitCode).toBeUndefined();
    expect(retried?.payload.detail).toEqual({ outcome: 'failed', next: 2, exitCode: 1 });
    expect(outboundCloudEvent(retried!).data).toMatchObject({
      from: 'running',
      to: 'pending',
      detail: { exitCode: 1 },
    });
  });

  it('keeps a retry that waits out its backoff closed to events until it is announced', async () => {
    const { job } = await h.broker.createJob({ name: 'n', retry: { limit: 2, backoffSeconds: 60 } });
    await h.broker.applyEvents([ev('accepted', job.id), ev('finished', job.id, { exitCode: 1 })]);
    expect(await h.broker.getJob(job.id)).toMatchObject({ state: 'pending', attempt: 2 });
    // A repeat of the finish without an attempt belongs to attempt 1: stale, no second retry.
    expect(await h.broker.applyEvent(ev('finished', job.id, { exitCode: 1 }))).toBe('stale');
    // Nobody was told of attempt 2 yet: naming it is an error, not an early start.
    expect(await h.broker.applyEvent(ev('accepted', job.id, { attempt: 2 }))).toBe('invalid');
    expect(await h.broker.getJob(job.id)).toMatchObject({ state: 'pending', attempt: 2 });
    const created = (await h.broker.readOutbox('0', 100)).filter((e) => e.type === 'job.created');
    expect(created.map((e) => e.attempt)).toEqual([1]);
  });

  it('reports the accept latency of an attempt that an implied accept began and a retry ended at once', async () => {
    const latencies: (number | undefined)[] = [];
    h.broker.instrumentation.on('job_transition', (t) => {
      if (t.to === 'running') latencies.push(t.acceptLatencySeconds);
    });
    const { job } = await h.broker.createJob({ name: 'n', retry: { limit: 1 } });
    // finished on a pending job: pending -> running (implied) -> pending (retry), one event
    await h.broker.applyEvent(ev('finished', job.id, { exitCode: 1 }));
    expect(await h.broker.getJob(job.id)).toMatchObject({ state: 'pending', attempt: 2 });
    expect(latencies).toHaveLength(1);
    expect(latencies[0]).toBeGreaterThanOrEqual(0);
  });

  it('retries only on the listed exit codes', async () => {
    const { job } = await h.broker.createJob({ name: 'n', retry: { limit: 3, onExitCodes: [75] } });
    await h.broker.applyEvent(ev('finished', job.id, { exitCode: 75 }));
    expect(await h.broker.getJob(job.id)).toMatchObject({ state: 'pending', attempt: 2 });
    await h.broker.applyEvent(ev('finished', job.id, { exitCode: 1 }));
    expect(await h.broker.getJob(job.id)).toMatchObject({ state: 'failed', attempt: 2 });
  });

  it('a replay of the last attempt after a retry began is duplicates: it neither accepts the next attempt nor fills its log', async () => {
    const logOf = async (id: string, attempt: number) =>
      (await h.broker.readLog(id, { attempt }))?.chunks.map((c) => c.data.toString());
    // no backoff: the next attempt is open to events at once
    await h.broker.createJob({ id: 'R', name: 'n', retry: { limit: 2 } });
    const batch = [
      ev('accepted', 'R'),
      ev('log', 'R', { seq: 0, chunk: Buffer.from('attempt 1, seq 0') }),
      ev('log', 'R', { seq: 1, chunk: Buffer.from('attempt 1, seq 1') }),
      ev('finished', 'R', { exitCode: 1 }),
    ];
    expect(await h.broker.applyEvents(batch)).toEqual(['applied', 'applied', 'applied', 'applied']);
    expect(await h.broker.getJob('R')).toMatchObject({ state: 'pending', attempt: 2 });
    // a crash before the commit: the batch again, all duplicates, the job untouched
    expect(await h.broker.applyEvents(batch)).toEqual(['duplicate', 'duplicate', 'duplicate', 'duplicate']);
    expect(await h.broker.getJob('R')).toMatchObject({ state: 'pending', attempt: 2 });
    expect(await logOf('R', 2)).toEqual([]);

    // attempt 2 running with its own seq 0: a replay of attempt 1's chunks (one call
    // each, and one call with the next attempt's chunk) leaves its log alone
    await h.broker.applyEvents([ev('log', 'R', { seq: 0, chunk: Buffer.from('attempt 2, seq 0') })]);
    expect(await h.broker.applyEvents(batch.slice(1, 3))).toEqual(['duplicate', 'duplicate']);
    expect(
      await h.broker.applyEvents([
        batch[2]!,
        ev('log', 'R', { seq: 1, chunk: Buffer.from('attempt 2, seq 1') }),
      ]),
    ).toEqual(['duplicate', 'applied']);
    expect(await logOf('R', 2)).toEqual(['attempt 2, seq 0', 'attempt 2, seq 1']);
    expect(await logOf('R', 1)).toEqual(['attempt 1, seq 0', 'attempt 1, seq 1']);

    // one call holding an event twice (a producer's retry) across the retry
    await h.broker.createJob({ id: 'S', name: 'n', retry: { limit: 1 } });
    const chunk = ev('log', 'S', { seq: 0, chunk: Buffer.from('once') });
    expect(await h.broker.applyEvents([chunk, ev('finished', 'S', { exitCode: 1 }), chunk])).toEqual([
      'applied',
      'applied',
      'duplicate',
    ]);
    expect(await h.broker.getJob('S')).toMatchObject({ state: 'pending', attempt: 2 });
  });

  it('a replay of an earlier attempt after the job ended is duplicates, not late chunks of the last attempt', async () => {
    await h.broker.createJob({ id: 'E', name: 'n', retry: { limit: 1 } });
    const first = [
      ev('log', 'E', { seq: 0, chunk: Buffer.from('a1-0') }),
      ev('log', 'E', { seq: 1, chunk: Buffer.from('a1-1') }),
      ev('finished', 'E', { exitCode: 1 }),
    ];
    const second = [
      ev('log', 'E', { seq: 0, chunk: Buffer.from('a2-0') }),
      ev('finished', 'E', { exitCode: 0, lastSeq: 0 }),
    ];
    await h.broker.applyEvents([...first, ...second]);
    expect(await h.broker.getJob('E')).toMatchObject({ state: 'passed', attempt: 2 });
    // a crash before the commit: all of it again, within the late grace
    expect(await h.broker.applyEvents([...first, ...second])).toEqual(Array(5).fill('duplicate'));
    const log = await h.broker.readLog('E');
    expect(log?.chunks.map((c) => c.data.toString())).toEqual(['a2-0']);
    expect(log).toMatchObject({ complete: true, gaps: [] });
  });

  it('takes chunks naming no attempt for the one before when the job ended before its attempt was accepted', async () => {
    const { job } = await h.broker.createJob({ name: 'n', retry: { limit: 1, backoffSeconds: 60 } });
    await h.broker.applyEvents([
      ev('log', job.id, { seq: 0, chunk: Buffer.from('a1-0') }),
      ev('finished', job.id, { exitCode: 1 }),
    ]);
    expect(await h.broker.cancelJob(job.id, { kind: 'api', caller: 't' })).toMatchObject({
      state: 'canceled',
      attempt: 2,
    });
    expect(await h.broker.applyEvent(ev('log', job.id, { seq: 1, chunk: Buffer.from('a1-1') }))).toBe(
      'stale',
    );
    expect((await h.broker.readLog(job.id))?.chunks).toEqual([]);
  });

  it('a replay of a long attempt (more chunks than the dedupe memory holds) is duplicates too, heartbeats included', async () => {
    const chunks = (id: string) =>
      Array.from({ length: 300 }, (_, seq) => ev('log', id, { seq, chunk: Buffer.from(`line ${seq}`) }));
    await h.broker.createJob({ id: 'L', name: 'n', retry: { limit: 1 } });
    const batch = [ev('accepted', 'L'), ...chunks('L'), ev('finished', 'L', { exitCode: 1 })];
    await h.broker.applyEvents(batch);
    const replay = await h.broker.applyEvents(batch);
    expect(replay.filter((r) => r !== 'duplicate')).toEqual([]);
    expect(await h.broker.getJob('L')).toMatchObject({ state: 'pending', attempt: 2 });

    // a job that may retry remembers its heartbeats as one that cannot does
    await h.broker.createJob({ id: 'P', name: 'n', retry: { limit: 1 } });
    const beats = [
      ev('accepted', 'P'),
      ev('heartbeat', 'P', { progress: { percent: 10 } }),
      ...chunks('P'),
      ev('heartbeat', 'P', { progress: { percent: 50 } }),
    ];
    await h.broker.applyEvents(beats);
    expect((await h.broker.applyEvents(beats)).filter((r) => r !== 'duplicate')).toEqual([]);
    expect((await h.broker.getJob('P'))?.progress).toEqual({ percent: 50 });
  });

  it('takes every exit code the event formats take: signed and unsigned 32-bit (NTSTATUS)', async () => {
    const status = 0xc0000005; // a Windows access violation, as an unsigned exit code
    const { job } = await h.broker.createJob({ name: 'n', retry: { limit: 1, onExitCodes: [status] } });
    expect(await h.broker.applyEvent(ev('finished', job.id, { exitCode: status }))).toBe('applied');
    expect(await h.broker.getJob(job.id)).toMatchObject({ state: 'pending', attempt: 2 });
    expect(await h.broker.applyEvent(ev('finished', job.id, { exitCode: 2 ** 32 - 1, attempt: 2 }))).toBe(
      'applied',
    );
    expect(await h.broker.getJob(job.id)).toMatchObject({ state: 'failed', exitCode: 2 ** 32 - 1 });
    const other = await h.broker.createJob({ name: 'n' });
    expect(await h.broker.applyEvent(ev('finished', other.job.id, { exitCode: -(2 ** 31) }))).toBe('applied');
    expect(await h.broker.getJob(other.job.id)).toMatchObject({ state: 'failed', exitCode: -(2 ** 31) });
    const past = await h.broker.createJob({ name: 'n' });
    expect(await h.broker.applyEvent(ev('finished', past.job.id, { exitCode: 2 ** 32 }))).toBe('invalid');
  });

  it('stores log chunks by seq, reports gaps, late chunks and truncation', async () => {
    const small = await harness({
      defaults: { ...(await import('./harness.js')).DEFAULTS, logMaxBytes: 10 },
    });
    try {
      const b = small.broker;
      const { job } = await b.createJob({ name: 'n' });
      const chunk = (s: string) => Buffer.from(s);
      const r = await b.applyEvents([
        ev('log', job.id, { seq: 0, chunk: chunk('aaa') }),
        ev('log', job.id, { seq: 3, chunk: chunk('ddd') }),
        ev('log', job.id, { seq: 0, chunk: chunk('zzz') }),
        ev('log', job.id, { seq: 1, chunk: chunk('bbb') }),
        ev('log', job.id, { seq: 4, chunk: chunk('eeeeeee') }),
      ]);
      expect(r).toEqual(['applied', 'applied', 'duplicate', 'applied', 'applied']);
      let log = await b.readLog(job.id);
      expect(log?.chunks.map((c) => [c.seq, c.data.toString()])).toEqual([
        [0, 'aaa'],
        [1, 'bbb'],
        [3, 'ddd'],
      ]);
      expect(log).toMatchObject({
        gaps: [[2, 2]],
        complete: false,
        nextSeq: 4,
        truncated: { chunks: 1, bytes: 7 },
      });
      await b.applyEvent(ev('finished', job.id, { exitCode: 0, lastSeq: 5 }));
      expect(await b.applyEvent(ev('log', job.id, { seq: 2, chunk: chunk('c') }))).toBe('late');
      log = await b.readLog(job.id, { fromSeq: 2, limit: 1 });
      expect(log?.chunks).toEqual([{ seq: 2, data: chunk('c'), late: true }]);
      // 4 was seen (dropped at the limit): only 5 is missing
      expect(log).toMatchObject({ nextSeq: 3, gaps: [[5, 5]], complete: false });
      // 5 comes late, past the first dropped chunk: dropped too, and now every chunk
      // up to lastSeq arrived, stored or dropped
      expect(await b.applyEvent(ev('log', job.id, { seq: 5, chunk: chunk('f') }))).toBe('late');
      log = await b.readLog(job.id);
      expect(log).toMatchObject({ gaps: [], complete: true, truncated: { chunks: 2, bytes: 8 } });
      expect(await b.readLog('missing')).toBeUndefined();
    } finally {
      await small.cleanup();
    }
  });

  it('counts a dropped chunk once when it comes again; an ended attempt keeps its drops and lastSeq', async () => {
    const small = await harness({
      defaults: { ...(await import('./harness.js')).DEFAULTS, logMaxBytes: 4 },
    });
    try {
      const b = small.broker;
      const { job } = await b.createJob({ name: 'n', retry: { limit: 1 } });
      const log = (seq: number, chunk: string) => ev('log', job.id, { attempt: 1, seq, chunk });
      // 1 does not fit, and what follows is dropped too, though 3 would fit (no text
      // spliced over a hole); a crash replays the whole batch
      const batch = [log(0, 'aaa'), log(1, 'bbb'), log(2, 'cc'), log(3, 'd'), log(4, 'eeee')];
      expect(await b.applyEvents(batch)).toEqual(['applied', 'applied', 'applied', 'applied', 'applied']);
      expect(await b.applyEvents(batch)).toEqual(Array(5).fill('duplicate'));
      expect((await b.readLog(job.id))?.truncated).toEqual({ chunks: 4, bytes: 10 });
      await b.applyEvent(ev('finished', job.id, { attempt: 1, exitCode: 1, lastSeq: 6 }));
      expect(await b.getJob(job.id)).toMatchObject({ state: 'pending', attempt: 2 });
      const first = await b.readLog(job.id, { attempt: 1 });
      // 1-4 were dropped, 5 and 6 never came
      expect(first).toMatchObject({ truncated: { chunks: 4, bytes: 10 }, gaps: [[5, 6]], complete: false });
      // a dropped chunk past a stored one (which came before anything was dropped)
      // extends the run of dropped seqs over it
      const { job: other } = await b.createJob({ name: 'n' });
      const chunk = (seq: number, text: string) => ev('log', other.id, { seq, chunk: text });
      const more = [chunk(2, 'cc'), chunk(0, 'aaa'), chunk(1, 'b'), chunk(3, 'dddd')];
      expect(await b.applyEvents(more)).toEqual(Array(4).fill('applied'));
      expect(await b.applyEvents(more)).toEqual(Array(4).fill('duplicate'));
      expect((await b.readLog(other.id))?.truncated).toEqual({ chunks: 3, bytes: 8 });
      const second = await b.readLog(job.id);
      expect(second?.truncated).toBeUndefined();
      expect(second?.gaps).toEqual([]);
    } finally {
      await small.cleanup();
    }
  });

  it('takes chunks dropped at the limit as arrived, in whatever order they come', async () => {
    let clock = Date.now();
    const small = await harness({
      now: () => clock,
      defaults: { ...(await import('./harness.js')).DEFAULTS, logMaxBytes: 10, retentionSeconds: 1 },
    });
    try {
      const b = small.broker;
      const { job } = await b.createJob({ name: 'n' });
      const log = (seq: number, chunk: string) => ev('log', job.id, { seq, chunk });
      const dropped = [log(1, 'bbbbbbbb'), log(5, 'f'), log(3, 'd'), log(2, 'c'), log(4, 'e')];
      expect(await b.applyEvents([log(0, 'aaaaaaaa'), ...dropped])).toEqual(Array(6).fill('applied'));
      // each counted once, whatever order they come again in
      expect(await b.applyEvents([...dropped].reverse())).toEqual(Array(5).fill('duplicate'));
      await b.applyEvent(ev('finished', job.id, { exitCode: 0, lastSeq: 6 }));
      expect(await b.applyEvent(log(6, 'g'))).toBe('late');
      expect(await b.readLog(job.id)).toMatchObject({
        chunks: [{ seq: 0 }],
        gaps: [],
        complete: true,
        truncated: { chunks: 6, bytes: 13 },
      });
      expect(await small.redis.zrange(small.broker.keys.logDropped(job.id, 1), 0, -1)).toEqual(['1 6']);
      // and retention takes the dropped seqs with the rest of the job
      clock += 2000;
      expect(await b.sweepRetention()).toBe(1);
      expect(await small.redis.keys(`${small.prefix}:job:{${job.id}}*`)).toEqual([]);
    } finally {
      await small.cleanup();
    }
  });

  it('keeps at most 1000 ranges of dropped seqs, whatever an executor sends', async () => {
    const small = await harness({
      defaults: { ...(await import('./harness.js')).DEFAULTS, logMaxBytes: 1 },
    });
    try {
      const b = small.broker;
      const { job } = await b.createJob({ name: 'n' });
      const log = (seq: number) => ev('log', job.id, { seq, chunk: 'xx' });
      // every other seq: each a range of its own, all dropped (the first does not fit)
      const even = Array.from({ length: 1002 }, (_, i) => log(2 * i));
      expect(await b.applyEvents(even)).toEqual(Array(1002).fill('applied'));
      const key = b.keys.logDropped(job.id, 1);
      expect(await small.redis.zcard(key)).toBe(1000);
      expect((await b.readLog(job.id))?.truncated).toEqual({ chunks: 1002, bytes: 2004 });
      // a kept seq comes again: a duplicate; one past the cap counts again
      expect(await b.applyEvents([log(0), log(2002)])).toEqual(['duplicate', 'applied']);
      // a seq between two ranges joins them
      expect(await b.applyEvent(log(1))).toBe('applied');
      expect(await small.redis.zrange(key, 0, 0)).toEqual(['0 2']);
      expect(await small.redis.zcard(key)).toBe(999);
    } finally {
      await small.cleanup();
    }
  });

  it('keeps a heartbeat timeout under a millisecond on (0 turns it off)', async () => {
    const { job } = await h.broker.createJob({ name: 'n', timeouts: { heartbeatSeconds: 0.0004 } });
    await h.broker.applyEvent(ev('accepted', job.id));
    const [th, hd] = await h.redis.hmget(h.broker.keys.job(job.id), 'th', 'hd');
    expect(th).toBe('1');
    expect(hd).not.toBeNull();
  });

  it('takes a log chunk that comes again for no sign of life: the heartbeat deadline stays', async () => {
    const { job } = await h.broker.createJob({ name: 'n', timeouts: { heartbeatSeconds: 60 } });
    const chunks = [0, 1, 2].map((seq) => ev('log', job.id, { seq, chunk: 'x' }));
    expect(await h.broker.applyEvents([ev('accepted', job.id), ...chunks])).toEqual(Array(4).fill('applied'));
    const alive = () => h.redis.hmget(h.broker.keys.job(job.id), 'hb', 'hd');
    const before = await alive();
    await new Promise((r) => setTimeout(r, 20));
    // replayed (a consumer crash), or resent by an executor stuck on its last chunk
    expect(await h.broker.applyEvents(chunks)).toEqual(Array(3).fill('duplicate'));
    expect(await h.broker.applyEvent(chunks[2]!)).toBe('duplicate');
    expect(await alive()).toEqual(before);
    // a new chunk is one
    expect(await h.broker.applyEvent(ev('log', job.id, { seq: 3, chunk: 'x' }))).toBe('applied');
    expect(Number((await alive())[1])).toBeGreaterThan(Number(before[1]));
  });

  it('stores text and byte chunks as sent; a lone surrogate in text becomes U+FFFD', async () => {
    const { job } = await h.broker.createJob({ name: 'n' });
    const bytes = Buffer.from([0xff, 0x00, 0xc3, 0x28, 0x22, 0x5c]); // not UTF-8, NUL, quote, backslash
    const r = await h.broker.applyEvents([
      ev('accepted', job.id, { executor: 'ex\ud800' }),
      ev('log', job.id, { seq: 0, chunk: 'caf\u00e9 "q" \\ \u{1f600}\n' }),
      ev('log', job.id, { seq: 1, chunk: bytes }),
      ev('log', job.id, { seq: 2, chunk: 'a\ud800b\udc00' }),
      ev('log', job.id, { seq: 3, chunk: Buffer.from('plain') }),
    ]);
    expect(r).toEqual(['applied', 'applied', 'applied', 'applied', 'applied']);
    const log = await h.broker.readLog(job.id);
    expect(log?.chunks.map((c) => c.data)).toEqual([
      Buffer.from('caf\u00e9 "q" \\ \u{1f600}\n'),
      bytes,
      Buffer.from('a\ufffdb\ufffd'),
      Buffer.from('plain'),
    ]);
    expect((await h.broker.getJob(job.id))?.executor).toBe('ex\ufffd');
  });
  it('publishes notifications for state, progress and log', async () => {
    const sub = new Redis(redisUrl());
    const got: { kind: string; state: string; seq?: number }[] = [];
    await sub.subscribe(h.broker.keys.notify);
    sub.on('message', (_c, m) => got.push(JSON.parse(m)));
    const { job } = await h.broker.createJob({ name: 'n' });
    await h.broker.applyEvents([
      ev('heartbeat', job.id, { progress: { percent: 1 } }),
      ev('log', job.id, { seq: 7, chunk: Buffer.from('x') }),
    ]);
    await waitFor(() => got.length >= 4, 5000, 'notifications');
    expect(got.map((g) => g.kind)).toEqual(['state', 'state', 'progress', 'log']);
    expect(got[3]).toMatchObject({ id: job.id, state: 'running', seq: 7 });
    sub.disconnect();
  });
});

describe('getJobs', () => {
  it('reads many jobs in one pipeline, in the order asked, undefined where none exists', async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `many-${i}`);
    for (const id of ids) await h.broker.createJob({ id, name: id });
    const asked = [...ids, 'missing', 'bad id!', ids[3] as string];
    const jobs = await h.broker.getJobs(asked);
    expect(jobs.map((j) => j?.id)).toEqual([...ids, undefined, undefined, ids[3]]);
    expect(jobs[5]).toEqual(await h.broker.getJob(ids[5] as string));
    expect(await h.broker.getJobs([])).toEqual([]);
  });
});

describe('cancelJob', () => {
  it('cancels a pending job at once (telling executors that may have picked it up) and leaves terminal jobs unchanged', async () => {
    const { job } = await h.broker.createJob({ name: 'n' });
    expect(await h.broker.cancelJob(job.id, api)).toMatchObject({ state: 'canceled' });
    expect(await h.broker.cancelJob(job.id, api)).toMatchObject({ state: 'canceled', version: 2 });
    const commands = async (id: string) =>
      (await h.broker.readOutbox('0', 100)).filter((e) => e.jobId === id && e.type !== 'job.changed');
    expect((await commands(job.id)).map((e) => e.type)).toEqual(['job.created', 'job.cancel_requested']);
    // in a retry's backoff the next attempt was never announced: nothing to call off
    const retried = await h.broker.createJob({ name: 'n', retry: { limit: 1, backoffSeconds: 60 } });
    await h.broker.applyEvent(ev('finished', retried.job.id, { exitCode: 1 }));
    expect(await h.broker.cancelJob(retried.job.id, api)).toMatchObject({ state: 'canceled', attempt: 2 });
    expect((await commands(retried.job.id)).map((e) => e.type)).toEqual(['job.created']);
    await expect(h.broker.cancelJob('nope', api)).rejects.toMatchObject({ code: 'EXTJOB_JOB_NOT_FOUND' });
  });

  it('asks the executor to cancel a running job and finishes on its acknowledgement', async () => {
    const { job } = await h.broker.createJob({ name: 'n' });
    await h.broker.applyEvent(ev('accepted', job.id));
    expect(await h.broker.cancelJob(job.id, { ...api, reason: 'user' })).toMatchObject({
      state: 'canceling',
    });
    const out = await h.broker.readOutbox('0', 100);
    const req = out.find((e) => e.type === 'job.cancel_requested');
    expect(req?.payload.job.state).toBe('canceling');
    expect(req?.payload.cause).toEqual({ kind: 'api', caller: 'tester', reason: 'user' });
    await h.broker.applyEvent(ev('canceled', job.id));
    expect(await h.broker.getJob(job.id)).toMatchObject({ state: 'canceled' });
  });

  it('fails a running job whose executor gives up unasked, without a retry (docs/events.md)', async () => {
    const { job } = await h.broker.createJob({ name: 'n', retry: { limit: 2 } });
    await h.broker.applyEvent(ev('accepted', job.id));
    await h.broker.applyEvent(ev('canceled', job.id, { reason: 'disk full' }));
    const got = await h.broker.getJob(job.id);
    expect(got).toMatchObject({
      state: 'failed',
      attempt: 1,
      error: { type: 'canceled_by_executor', message: 'disk full' },
    });
    expect(got?.exitCode).toBeUndefined();
  });
});

describe('outbox, listing and counters', () => {
  it('writes one outbox entry per transition in commit order, acknowledged by id', async () => {
    const { job } = await h.broker.createJob({ name: 'n' });
    await h.broker.applyEvents([ev('accepted', job.id), ev('finished', job.id, { exitCode: 0 })]);
    const out = await h.broker.readOutbox('0', 100);
    expect(out.map((e) => [e.type, e.version, e.payload.from, e.payload.to])).toEqual([
      ['job.changed', 1, null, 'pending'],
      ['job.created', 1, undefined, undefined],
      ['job.changed', 2, 'pending', 'running'],
      ['job.changed', 3, 'running', 'passed'],
    ]);
    expect(out[3]?.payload.job).toMatchObject({ state: 'passed', exitCode: 0, version: 3 });
    expect(await h.broker.readOutbox(out[1]?.id as string, 1)).toEqual([out[2]]);
    await h.broker.ackOutbox(out.slice(0, 2).map((e) => e.id));
    expect((await h.broker.readOutbox('0', 100)).map((e) => e.version)).toEqual([2, 3]);
    expect(await h.broker.acquireOutboxLease('a', 10_000)).toBe(true);
    expect(await h.broker.acquireOutboxLease('b', 10_000)).toBe(false);
    expect(await h.broker.acquireOutboxLease('a', 10_000)).toBe(true);
  });

  it('lists newest first with a cursor, by state, executor and label', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      const { job } = await h.broker.createJob({
        id: `job-${i}`,
        name: 'n',
        executor: i % 2 ? 'odd' : 'even',
        labels: { n: String(i % 3) },
      });
      ids.push(job.id);
      if (i % 2) await h.broker.applyEvent(ev('accepted', job.id));
    }
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await h.broker.listJobs({ limit: 3, ...(cursor ? { cursor } : {}) });
      seen.push(...page.jobs.map((j) => j.id));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());
    expect((await h.broker.listJobs({ state: 'running' })).jobs.map((j) => j.id)).toEqual([
      'job-5',
      'job-3',
      'job-1',
    ]);
    expect((await h.broker.listJobs({ executor: 'even', limit: 2 })).jobs.map((j) => j.id)).toEqual([
      'job-6',
      'job-4',
    ]);
    expect((await h.broker.listJobs({ label: ['n', '0'], state: 'pending' })).jobs.map((j) => j.id)).toEqual([
      'job-6',
      'job-0',
    ]);
    await expect(h.broker.listJobs({ cursor: 'garbage' })).rejects.toMatchObject({
      code: 'EXTJOB_VALIDATION_FAILED',
    });
    expect(await h.broker.countsByState()).toMatchObject({ pending: 4, running: 3, passed: 0 });
  });
});

describe('listing while jobs move', () => {
  it('pages list every job once while jobs change state between and during the reads', async () => {
    let clock = Date.now();
    const t = await harness({ now: () => clock });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 12; i++) {
        if (i % 4 === 0) clock += 1; // four jobs a millisecond: pages end inside one
        ids.push((await t.broker.createJob({ id: `j${String(i).padStart(2, '0')}`, name: 'n' })).job.id);
      }
      // Before each read of the pending index one more job moves on (to running,
      // newest first), as on a busy installation while somebody pages.
      let moved = 0;
      const move = async () => {
        if (moved < ids.length) await t.broker.applyEvent(ev('accepted', ids[ids.length - 1 - moved++]!));
      };
      const busy = new Proxy(t.redis, {
        get(target, prop) {
          if (prop === 'zrange')
            return async (...args: unknown[]) => {
              if (args[0] === t.broker.keys.state('pending')) await move();
              return (target.zrange as (...a: unknown[]) => Promise<unknown>)(...args);
            };
          if (prop === 'multi')
            return () => {
              const tx = target.multi();
              const exec = tx.exec.bind(tx);
              tx.exec = (async () => {
                await move();
                return exec();
              }) as typeof tx.exec;
              return tx;
            };
          const v = Reflect.get(target, prop);
          return typeof v === 'function' ? v.bind(target) : v;
        },
      });
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await listJobs(busy, t.broker.keys, (x) => t.broker.getJobs(x), {
          limit: 3,
          ...(cursor ? { cursor } : {}),
        });
        seen.push(...page.jobs.map((j) => j.id));
        cursor = page.nextCursor;
      } while (cursor);
      expect(moved).toBeGreaterThan(3);
      expect(seen).toEqual([...ids].reverse());
    } finally {
      await t.cleanup();
    }
  });
});

describe('listing by executor', () => {
  it('lists a job created without an executor under the one that accepted it, until retention', async () => {
    let clock = Date.now();
    const t = await harness({ now: () => clock, defaults: { ...DEFAULTS, retentionSeconds: 1 } });
    try {
      const by = async (executor: string, label?: [string, string]) =>
        (await t.broker.listJobs({ executor, ...(label ? { label } : {}) })).jobs.map((j) => j.id);
      await t.broker.createJob({ id: 'ax1', name: 'n', labels: { team: 'a' } });
      await t.broker.createJob({ id: 'ax2', name: 'n', retry: { limit: 1 } });
      await t.broker.createJob({ id: 'ax3', name: 'n', executor: 'runner-c' });
      await t.broker.applyEvents([
        ev('accepted', 'ax1', { executor: 'runner-a' }),
        ev('accepted', 'ax2', { executor: 'runner-a' }),
        ev('accepted', 'ax3', { executor: 'runner-a' }), // named at create: stays runner-c's
      ]);
      expect(await by('runner-a')).toEqual(['ax2', 'ax1']);
      expect(await by('runner-a', ['team', 'a'])).toEqual(['ax1']);
      expect(await by('runner-c')).toEqual(['ax3']);
      // a job a log chunk began (an implied accept names nobody) is that of the accept that follows
      await t.broker.createJob({ id: 'ax4', name: 'n' });
      expect(await t.broker.applyEvent(ev('log', 'ax4', { seq: 0, chunk: 'x' }))).toBe('applied');
      expect(await t.broker.getJob('ax4')).toMatchObject({ state: 'running' });
      expect((await t.broker.getJob('ax4'))?.executor).toBeUndefined();
      await t.broker.applyEvent(ev('accepted', 'ax4', { executor: 'runner-d', detailsUrl: 'https://d/4' }));
      expect(await t.broker.getJob('ax4')).toMatchObject({
        state: 'running',
        executor: 'runner-d',
        detailsUrl: 'https://d/4',
      });
      expect(await by('runner-d')).toEqual(['ax4']);
      await t.broker.applyEvent(ev('finished', 'ax4', { exitCode: 0 }));
      // a retry accepted by another executor is that one's
      await t.broker.applyEvent(ev('finished', 'ax2', { exitCode: 1 }));
      await t.broker.applyEvent(ev('accepted', 'ax2', { executor: 'runner-b' }));
      expect((await t.broker.getJob('ax2'))?.executor).toBe('runner-b');
      expect(await by('runner-b')).toEqual(['ax2']);
      expect(await by('runner-a')).toEqual(['ax1']);
      expect(await t.redis.zscore(t.broker.keys.executor('runner-a'), 'ax2')).toBeNull();

      await t.broker.applyEvents(['ax1', 'ax2', 'ax3'].map((id) => ev('finished', id, { exitCode: 0 })));
      clock += 2000;
      expect(await t.broker.sweepRetention()).toBe(4);
      for (const e of ['runner-a', 'runner-b', 'runner-c', 'runner-d'])
        expect(await t.redis.exists(t.broker.keys.executor(e))).toBe(0);
    } finally {
      await t.cleanup();
    }
  });
});

describe('instrumentation', () => {
  it('times a Redis round trip only when one was made', async () => {
    const seen: (number | undefined)[] = [];
    h.broker.instrumentation.on('events_applied', (p) => seen.push(p.applySeconds));
    const { job } = await h.broker.createJob({ name: 'n' });
    const refused = ev('log', job.id, { seq: 0, chunk: Buffer.alloc(DEFAULTS.logChunkMaxBytes + 1) });
    expect(await h.broker.applyEvents([refused])).toEqual(['invalid']);
    expect(await h.broker.applyEvents([ev('accepted', job.id)])).toEqual(['applied']);
    expect(seen[0]).toBeUndefined();
    expect(seen[1]).toBeGreaterThan(0);
  });
});

describe('retention', () => {
  it('removes every due job in one sweep, however many buckets they fall in', async () => {
    let now = 1_700_000_000_000;
    const t = await harness({ now: () => now, defaults: { ...DEFAULTS, retentionSeconds: 1 } });
    try {
      // buckets are 10 ms wide here: each job in one of its own, more than a call takes
      for (let i = 0; i < 150; i++) {
        await t.broker.createJob({ id: `rb${i}`, name: 'n' });
        await t.broker.applyEvent(ev('finished', `rb${i}`, { exitCode: 0 }));
        now += 10;
      }
      now += 60_000;
      expect(await t.broker.sweepRetention()).toBe(150);
      expect(await t.broker.getJob('rb149')).toBeUndefined();
      expect(await t.redis.zcard(t.broker.keys.retain)).toBe(0);
    } finally {
      await t.cleanup();
    }
  });
});

describe('transitions by executor (metrics)', () => {
  it('name the executor that accepted a job created without one', async () => {
    const seen: string[] = [];
    h.broker.instrumentation.on('job_transition', (t) => seen.push(`${t.jobId} ${t.to} ${t.executor}`));
    await h.broker.createJob({ id: 'te1', name: 'n' });
    await h.broker.createJob({ id: 'te2', name: 'n', executor: 'runner-c' });
    await h.broker.applyEvents([
      ev('accepted', 'te1', { executor: 'runner-a' }),
      ev('accepted', 'te2', { executor: 'runner-a' }), // named at create: stays runner-c's
    ]);
    await h.broker.applyEvents(['te1', 'te2'].map((id) => ev('finished', id, { exitCode: 0 })));
    expect(seen.filter((l) => !l.includes(' pending '))).toEqual([
      'te1 running runner-a',
      'te2 running runner-c',
      'te1 passed runner-a',
      'te2 passed runner-c',
    ]);
  });
});

describe('hash-tagged prefix (Redis Cluster: every key in one slot)', () => {
  it('works unchanged with a {tag} prefix', async () => {
    const t = await harness({}, true);
    try {
      const { job } = await t.broker.createJob({ id: 'a:1', name: 'n', labels: { k: 'v' }, executor: 'e' });
      await t.broker.applyEvents([ev('accepted', job.id), ev('finished', job.id, { exitCode: 0 })]);
      expect(await t.broker.getJob(job.id)).toMatchObject({ state: 'passed', version: 3 });
      expect((await t.broker.listJobs({ label: ['k', 'v'] })).jobs.map((j) => j.id)).toEqual(['a:1']);
      const keys = await t.keys();
      expect(keys.length).toBeGreaterThan(5);
      // Redis hashes a key on the text inside its first {...}: the prefix tag for every key
      const tags = new Set(keys.map((k) => /\{([^}]*)\}/.exec(k)?.[1]));
      expect([...tags]).toEqual([t.prefix.slice(1, -1)]);
    } finally {
      await t.cleanup();
    }
  });
});

describe('the function library', () => {
  it('says Redis 7 is needed when the server does not know FUNCTION', async () => {
    // a stand-in for a Redis 6 server: only the error it answers matters here
    const old = {
      function: () => Promise.reject(new Error("ERR unknown command 'FUNCTION', with args beginning with: ")),
    } as unknown as Redis;
    const err = await runScript(old, 'get', ['k'], []).catch((e: unknown) => e);
    expect(isExtjobError(err, 'EXTJOB_CONFIG_INVALID')).toBe(true);
    expect((err as Error).message).toMatch(/Redis 7\.0 or later/);
  });

  it('is loaded again when the server lost it (restart without persistence, FUNCTION FLUSH)', async () => {
    const server = await startRedis();
    const redis = new Redis(server.url);
    try {
      const broker = new JobBroker({ redis, prefix: 'lib', defaults: DEFAULTS });
      const { job } = await broker.createJob({ id: 'lost', name: 'n' });
      await redis.function('FLUSH');
      // a pipelined batch (applyEvents) and a single call (getJob) each find it missing
      expect(await broker.applyEvents([ev('accepted', job.id), ev('heartbeat', job.id)])).toEqual([
        'applied',
        'applied',
      ]);
      await redis.function('FLUSH');
      expect((await broker.getJob(job.id))?.state).toBe('running');
      await broker.close();
    } finally {
      redis.disconnect();
      await server.stop();
    }
  });
});
