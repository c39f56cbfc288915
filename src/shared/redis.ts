/** What every Redis client of extjob shares about its connection. */
import type { Redis } from 'ioredis';

/** Whether an error is the connection's (refused, reset, closed), not the command's. */
export const isConnectionError = (err: unknown): boolean =>
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EHOSTUNREACH|Connection is closed|MaxRetriesPerRequest/i.test(
    err instanceof Error ? err.message : String(err),
  );

/**
 * Whether Redis refused a command for now, while answering: out of memory under
 * noeviction, a replica (or a primary demoted by a failover), a failed save, a busy
 * script, still loading its data.
 */
export const isRefusedForNow = (err: unknown): boolean =>
  /LOADING|READONLY|OOM command not allowed|MISCONF|BUSY Redis is busy|MASTERDOWN/.test(
    err instanceof Error ? err.message : String(err),
  );

/**
 * A worker (BullMQ) whose Redis refuses commands for now is paused for a while, not
 * let spin: BullMQ fetches again at once after such an error, thousands of times a
 * second, each logged, against a Redis that is already in trouble. One warning a pause.
 */
export function pauseWhileRefused(
  worker: { pause(doNotWaitActive?: boolean): Promise<void>; resume(): unknown; closing: unknown },
  warn: (err: unknown, pauseMs: number) => void,
  pauseMs = 5000,
): (err: unknown) => boolean {
  let paused = false;
  return (err) => {
    if (!isRefusedForNow(err)) return false;
    if (paused) return true;
    paused = true;
    warn(err, pauseMs);
    void worker.pause(true).catch(() => {});
    setTimeout(() => {
      paused = false;
      // a closed worker stays closed (resume would start it again)
      if (!worker.closing) void Promise.resolve(worker.resume()).catch(() => {});
    }, pauseMs).unref();
    return true;
  };
}

/** Close a connection: QUIT when it is up (replies first), cut it when not (a QUIT would wait). */
export async function closeConnection(connection: Redis): Promise<void> {
  if (connection.status === 'ready') await connection.quit().catch(() => connection.disconnect());
  else connection.disconnect();
}

/**
 * Cut a connection that is not up. BullMQ's close() waits for its connection to be
 * ready, which with Redis away is forever; once cut, close() returns at once.
 */
export function disconnectIfDown(connection: Redis | undefined): void {
  if (connection && connection.status !== 'ready') connection.disconnect();
}
