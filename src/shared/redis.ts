/** What every Redis client of extjob shares about its connection. */
import type { Redis } from 'ioredis';

/** Whether an error is the connection's (refused, reset, closed), not the command's. */
export const isConnectionError = (err: unknown): boolean =>
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EHOSTUNREACH|Connection is closed|MaxRetriesPerRequest/i.test(
    err instanceof Error ? err.message : String(err),
  );

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
