/**
 * `wait` and `logs -f` when a log hole is filled after they printed the chunks beyond
 * it: the text output stays in seq order and a note on stderr names the chunk; with
 * --json the chunk is printed, flagged filled. Across a retry they go on from one
 * attempt's log to the next.
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/cli/client.js';
import { follow } from '../../src/cli/commands/wait.js';
import { startTestApi, TOKENS } from '../api/support.js';
import { DEFAULTS, ev } from '../broker/harness.js';
import { waitFor } from '../helpers/index.js';
import { cli } from './support.js';

function sink() {
  const s = new PassThrough();
  let text = '';
  s.on('data', (d: Buffer) => {
    text += d.toString('utf8');
  });
  return { stream: s, text: () => text };
}

describe('a log hole filled while following', { timeout: 60_000 }, () => {
  it('wait and logs -f keep the text in order and name the late chunk; logs -f --json prints it flagged', async () => {
    const api = await startTestApi();
    const log = (id: string, seq: number) => ev('log', id, { seq, chunk: Buffer.from('abcd'.charAt(seq)) });
    for (const id of ['f1', 'f2', 'f3']) {
      await api.req('/v1/jobs', { json: { id, name: 'n' } });
      await api.broker.applyEvents([log(id, 1), log(id, 3)]);
    }

    const out = sink();
    const err = sink();
    const client = new ApiClient({ url: api.url, token: TOKENS.read });
    const waited = follow(client, 'f1', { stdout: out.stream, stderr: err.stream });
    await waitFor(() => out.text() === 'bd', { what: 'wait to print chunks 1 and 3' });
    await api.broker.applyEvents([log('f1', 2)]);
    await waitFor(() => err.text().includes('log chunk 2 arrived after'), { what: 'the note' });
    await api.broker.applyEvents([ev('finished', 'f1', { exitCode: 0 })]);
    expect(await waited).toBe(0);
    expect(out.text()).toBe('bd');
    expect(err.text()).toContain('`extjob logs f1` prints the log in order');

    const env = { EXTJOB_URL: api.url, EXTJOB_TOKEN: TOKENS.read };
    const spawnLogs = (id: string, seen: string, ...flags: string[]) => {
      const run = cli(['logs', id, '-f', ...flags], env);
      let stdout = '';
      run.child.stdout?.on('data', (d: Buffer) => {
        stdout += d.toString('utf8');
      });
      return { id, run, printed: () => stdout.includes(seen) };
    };
    const runs = [spawnLogs('f2', '"seq":3', '--json'), spawnLogs('f3', 'bd')];
    for (const r of runs) {
      await waitFor(r.printed, { what: `logs -f ${r.id} to print chunk 3` });
      await api.broker.applyEvents([log(r.id, 2)]);
      await api.broker.applyEvents([ev('finished', r.id, { exitCode: 0 })]);
    }
    const [json, text] = await Promise.all(runs.map((r) => r.run));
    expect(json?.code).toBe(0);
    expect(
      json?.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l)),
    ).toEqual([
      { seq: 1, text: 'b' },
      { seq: 3, text: 'd' },
      { seq: 2, text: 'c', filled: true },
    ]);
    expect(text?.code).toBe(0);
    expect(text?.stdout).toBe('bd');
    expect(text?.stderr).toContain('log chunk 2 arrived after the chunks that follow it');
  });

  it("wait and logs -f follow a retried job from one attempt's log to the next", async () => {
    const api = await startTestApi();
    const log = (id: string, seq: number, text: string) => ev('log', id, { seq, chunk: Buffer.from(text) });
    await api.req('/v1/jobs', { json: { id: 'r1', name: 'n', retry: { limit: 1 } } });
    await api.broker.applyEvents([log('r1', 0, 'a0 '), log('r1', 1, 'a1 ')]);

    const out = sink();
    const err = sink();
    const client = new ApiClient({ url: api.url, token: TOKENS.read });
    const waited = follow(client, 'r1', { stdout: out.stream, stderr: err.stream });
    const env = { EXTJOB_URL: api.url, EXTJOB_TOKEN: TOKENS.read };
    const logs = cli(['logs', 'r1', '-f'], env);
    let printed = '';
    logs.child.stdout?.on('data', (d: Buffer) => {
      printed += d.toString('utf8');
    });
    await waitFor(() => out.text() === 'a0 a1 ' && printed === 'a0 a1 ', {
      what: 'wait and logs -f to print the first attempt',
    });
    await api.broker.applyEvents([ev('finished', 'r1', { exitCode: 1 })]);
    await api.broker.applyEvents([log('r1', 0, 'b0 '), log('r1', 1, 'b1')]);
    await api.broker.applyEvents([ev('finished', 'r1', { exitCode: 0 })]);
    expect(await waited).toBe(0);
    expect(out.text()).toBe('a0 a1 b0 b1');
    expect(err.text()).toContain('r1 attempt 2 begins');
    const followed = await logs;
    expect(followed.code).toBe(0);
    expect(followed.stdout).toBe('a0 a1 b0 b1');
    expect(followed.stderr).toContain('r1 attempt 2 begins');
  });

  it('logs, logs -f and wait say at the end that the log lost chunks past its limit', async () => {
    const api = await startTestApi({ broker: { defaults: { ...DEFAULTS, logMaxBytes: 4 } } });
    await api.req('/v1/jobs', { json: { id: 't1', name: 'n' } });
    await api.broker.applyEvents([
      ev('log', 't1', { seq: 0, chunk: 'abc' }),
      ev('log', 't1', { seq: 1, chunk: 'defgh' }),
      ev('finished', 't1', { exitCode: 0 }),
    ]);
    const env = { EXTJOB_URL: api.url, EXTJOB_TOKEN: TOKENS.read };
    const note = 'the log of t1 is truncated: 1 chunks (5 bytes) past its size limit were dropped';
    for (const flags of [[], ['-f']]) {
      const r = await cli(['logs', 't1', ...flags], env);
      expect(r.code, flags.join()).toBe(0);
      expect(r.stdout, flags.join()).toBe('abc');
      expect(r.stderr, flags.join()).toContain(note);
      const json = await cli(['logs', 't1', '--json', ...flags], env);
      expect(json.stdout.trim().split('\n').at(-1), flags.join()).toBe(
        '{"truncated":{"chunks":1,"bytes":5}}',
      );
    }
    const out = sink();
    const err = sink();
    const client = new ApiClient({ url: api.url, token: TOKENS.read });
    expect(await follow(client, 't1', { stdout: out.stream, stderr: err.stream })).toBe(0);
    expect(out.text()).toBe('abc');
    expect(err.text()).toContain(note);
  });
});
