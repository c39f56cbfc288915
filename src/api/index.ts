/**
 * The /v1 API of one process: the router plus its one notification subscriber.
 */

import type { Router } from 'express';
import type { Redis } from 'ioredis';
import { NotifyHub } from './notify-hub.js';
import { type ApiOptions, createApiRouter } from './router.js';

export interface Api {
  router: Router;
  hub: NotifyHub;
  close(): Promise<void>;
}

/**
 * Build the API. `redis` is the command connection; a duplicate of it becomes the
 * subscriber of `<prefix>:notify`.
 */
export async function startApi(
  opts: Omit<ApiOptions, 'hub' | 'redisReady'> & { redis: Redis; prefix: string },
): Promise<Api> {
  const subscriber = opts.redis.duplicate();
  subscriber.on('error', (err) => opts.logger.warn({ err: err.message }, 'notification subscriber error'));
  const hub = new NotifyHub(subscriber, `${opts.prefix}:notify`, opts.logger);
  // Not awaited: with Redis down at start the API still answers (503 where Redis is needed).
  hub
    .start()
    .catch((err) => opts.logger.error({ err: (err as Error).message }, 'cannot subscribe to notifications'));
  const router = createApiRouter({ ...opts, hub, redisReady: () => opts.redis.status === 'ready' });
  return { router, hub, close: () => hub.close() };
}
