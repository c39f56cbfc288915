/**
 * The CLI's HTTP client against servers that misbehave (plain HTTP servers: no Redis
 * or Kafka): an answer that is not JSON, and an event stream that goes silent.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ApiClient, ClientError, type SseEvent } from '../../src/cli/client.js';

async function server(handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const s = createServer(handle);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  onTestFinished(async () => {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  });
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

describe('the CLI client', () => {
  it('takes a 200 that is not JSON (a proxy page) for an unknown outcome, not a failure', async () => {
    const url = await server((_req, res) =>
      res.writeHead(200, { 'content-type': 'text/html' }).end('<html>login</html>'),
    );
    const err = await new ApiClient({ url }).json('/v1/jobs/x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ClientError);
    expect((err as ClientError).unreachable).toBe(true);
    expect((err as ClientError).message).toMatch(/answered 200 without a JSON body \(text\/html\)/);
  });

  it('reconnects with Last-Event-ID when a stream goes silent, and gives up after its retries', async () => {
    const asked: (string | undefined)[] = [];
    const url = await server((req, res) => {
      asked.push(req.headers['last-event-id'] as string | undefined);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      // the first connection sends one event and then nothing (a frozen server); the
      // second ends the stream; later ones send their headers and nothing more
      if (asked.length === 1) res.write('id: 7\nevent: chunk\ndata: a\n\n');
      else if (asked.length === 2) res.end('event: end\ndata: {}\n\n');
      else res.flushHeaders();
    });
    const client = new ApiClient({ url });
    const got: SseEvent[] = [];
    for await (const ev of client.events('/s', { idleMs: 300 })) got.push(ev);
    expect(got.map((e) => e.event)).toEqual(['chunk', 'end']);
    expect(asked).toEqual([undefined, '7']);

    // from now on every connection stays silent after its headers
    const silent = client.events('/s', { idleMs: 100, retries: 2 });
    await expect(silent.next()).rejects.toThrow(/stream broke: nothing arrived for 0.1 s/);
    expect(asked.length).toBe(5); // the first try and two retries
  });

  it('takes a page that is not an event stream for an unknown outcome at once', async () => {
    const url = await server((_req, res) =>
      res.writeHead(200, { 'content-type': 'text/html' }).end('<html>maintenance</html>'),
    );
    const err = await new ApiClient({ url })
      .events('/s')
      .next()
      .catch((e: unknown) => e);
    expect((err as ClientError).unreachable).toBe(true);
    expect((err as ClientError).message).toMatch(/answered 200 with text\/html, not an event stream/);
  });

  it('gives up on a stream that closes at once, again and again, before its end', async () => {
    let asked = 0;
    const url = await server((_req, res) => {
      asked++;
      res.writeHead(200, { 'content-type': 'text/event-stream' }).end(': hello\n\n');
    });
    const err = await new ApiClient({ url })
      .events('/s', { retries: 2 })
      .next()
      .catch((e: unknown) => e);
    expect((err as ClientError).message).toMatch(/stream broke: the server closed the stream/);
    expect(asked).toBe(3);
  });

  it('gives up on a server that never answers a stream request', async () => {
    let asked = 0;
    const url = await server(() => {
      asked++; // no answer, not even headers
    });
    const err = await new ApiClient({ url })
      .events('/s', { idleMs: 100, retries: 1 })
      .next()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ClientError);
    expect((err as ClientError).unreachable).toBe(true);
    expect((err as ClientError).message).toMatch(/no answer for 0.1 s/);
    expect(asked).toBe(2);
  });
});
