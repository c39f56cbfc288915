/**
 * SIGTERM of a process that only serves the API (docs/operations.md, "Probes and
 * graceful shutdown"): the /wait long-polls under way are answered with the job as it
 * is, before the connections they read from close. In an all-roles process, stopping
 * the consumer leaves them time; an api-only process stops in milliseconds.
 */
import { describe, expect, it } from 'vitest';
import { auditBroker, createJobs, isolation, serveEnv } from '../faults/helpers.js';
import { startServe } from '../helpers/serve.js';

describe('graceful shutdown of the api role', () => {
  it('answers the /wait long-polls under way with the job as it is', async () => {
    const names = isolation();
    auditBroker(names); // removes the test's keys at the end
    const api = await startServe(serveEnv(names), { roles: ['api'], readyTimeoutMs: 60_000 });
    await createJobs(api.url, ['w-1']);
    const waits = Array.from({ length: 5 }, () =>
      fetch(`${api.url}/v1/jobs/w-1/wait?until=terminal&timeoutSeconds=60`).then(
        async (r) => ({
          status: r.status,
          met: r.headers.get('extjob-condition-met'),
          connection: r.headers.get('connection'), // a pool does not send its next request here
          state: ((await r.json()) as { state: string }).state,
        }),
        (err: Error) => ({ error: String(err.cause ?? err) }),
      ),
    );
    await new Promise((r) => setTimeout(r, 1500)); // the long-polls are waiting
    expect(await api.kill('SIGTERM')).toBe(0);
    for (const answer of await Promise.all(waits))
      expect(answer).toEqual({ status: 200, met: 'false', connection: 'close', state: 'pending' });
  }, 120_000);
});
