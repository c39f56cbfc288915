/**
 * The requests being answered, SSE streams aside (a stop cuts those): a stopping
 * service waits for them before it closes the Redis and Kafka connections they read,
 * so a /wait long-poll told to answer at SIGTERM still gets its answer out.
 */
import type { RequestHandler } from 'express';

export class InFlight {
  private count = 0;
  private idleNow: (() => void) | undefined;

  readonly middleware: RequestHandler = (req, res, next) => {
    if (req.path.endsWith('/stream')) return next();
    this.count++;
    res.once('close', () => {
      if (--this.count === 0) this.idleNow?.();
    });
    next();
  };

  /** Resolves once no request is being answered, or after `ms`. */
  idle(ms: number): Promise<void> {
    if (this.count === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      this.idleNow = done;
      function done() {
        clearTimeout(timer);
        resolve();
      }
    });
  }
}
