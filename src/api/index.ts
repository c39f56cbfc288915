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
  opts: Omit<ApiOptions, 'hub' | 'redisReady' | 'onRedisLost'> & { redis: Redis; prefix: string },
): Promise<Api> {
  const subscriber = opts.redis.duplicate();
  subscriber.on('error', (err) => opts.logger.warn({ err: err.message }, 'notification subscriber error'));
  const hub = new NotifyHub(subscriber, `${opts.prefix}:notify`, opts.logger);
  // Waited for a little only: with Redis down at start the API still answers (503 where
  // Redis is needed) and the subscription completes when Redis returns.
  const subscribed = hub.start().then(
    () => true,
    (err) => {
      opts.logger.error({ err: (err as Error).message }, 'cannot subscribe to notifications');
      return false;
    },
  );
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([subscribed, new Promise((r) => (timer = setTimeout(r, 3000)))]);
  clearTimeout(timer);
  const down = new Set(['reconnecting', 'close', 'end']);
  let lost: (() => void) | undefined;
  const router = createApiRouter({
    ...opts,
    hub,
    redisReady: () => !down.has(opts.redis.status),
    onRedisLost: (listener) => {
      lost = listener;
      opts.redis.on('close', listener);
    },
  });
  return {
    router,
    hub,
    close: () => {
      if (lost) opts.redis.off('close', lost);
      return hub.close();
    },
  };
}
