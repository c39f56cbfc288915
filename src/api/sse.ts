/**
 * Server-Sent Events on an express response: headers, framing, keep-alive comments
 * (so proxies keep the connection open), and the client's Last-Event-ID.
 */
import type { Request, Response } from 'express';

export class SseStream {
  private readonly keepAlive: NodeJS.Timeout | undefined;
  private readonly abort = new AbortController();

  constructor(
    private readonly res: Response,
    keepAliveMs = 15_000,
  ) {
    if (res.destroyed) {
      // the client left before the stream began (while the job was read): nothing to
      // hold open, and no close event will come
      this.abort.abort();
      return;
    }
    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('Cache-Control', 'no-cache, no-transform');
    res.setHeader('Connection', 'keep-alive');
    res.setHeader('X-Accel-Buffering', 'no');
    res.flushHeaders();
    res.write('retry: 1000\n\n');
    this.keepAlive = setInterval(() => this.comment('keep-alive'), keepAliveMs);
    this.keepAlive.unref();
    res.on('close', () => {
      clearInterval(this.keepAlive);
      this.abort.abort();
    });
  }

  /** Aborts when the client goes away. */
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /** The client left, or the stream was ended: nothing more can be written. */
  get closed(): boolean {
    return this.abort.signal.aborted || this.res.writableEnded;
  }

  /**
   * One event; `data` is JSON-encoded onto a single line. Without `id` the frame has no
   * `id:` line, and the client's Last-Event-ID stays what the last id made it. A stream
   * that sends much awaits the result: a slow client then holds no more than a frame
   * or two in memory.
   */
  send(event: string, data: unknown, id?: number | string): Promise<void> | undefined {
    if (this.closed) return;
    let frame = `event: ${event}\n`;
    if (id !== undefined) frame += `id: ${id}\n`;
    frame += `data: ${JSON.stringify(data)}\n\n`;
    if (!this.res.write(frame)) return this.drained();
  }

  /** Resolves once the client took what was written, or left. */
  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.res.off('drain', done);
        this.abort.signal.removeEventListener('abort', done);
        resolve();
      };
      this.res.on('drain', done);
      this.abort.signal.addEventListener('abort', done);
      if (this.closed) done();
    });
  }

  comment(text: string): void {
    if (!this.closed) this.res.write(`: ${text}\n\n`);
  }

  end(): void {
    clearInterval(this.keepAlive);
    if (!this.res.writableEnded) this.res.end();
  }
}

/** The resume point a reconnecting client sends, as a non-negative integer. */
export function lastEventId(req: Request): number | undefined {
  const raw = req.get('last-event-id');
  if (raw === undefined || !/^\d{1,15}$/.test(raw.trim())) return undefined;
  return Number(raw.trim());
}
