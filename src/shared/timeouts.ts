/**
 * Waiting on a promise for a bounded time: for calls to Redis, Kafka or a process that
 * may never answer.
 */

/** Rejects with `error` (a message, or what makes the error) when `promise` takes longer than `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, error: string | (() => Error)): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(typeof error === 'string' ? new Error(error) : error()), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Resolves when `p` settles or `ms` passed, whichever is first. */
export function settledWithin(p: Promise<unknown>, ms: number): Promise<void> {
  return withTimeout(p, ms, '').then(
    () => {},
    () => {},
  );
}
