/**
 * A process running a webhook feed, for the session test: the feed of
 * webhooks-feed.ts on TOPIC in group GROUP with SESSION_MS, printing "got" for each
 * change it hands on.
 */
import { WebhookFeed } from '../../src/consumers/webhooks-feed.js';
import { createKafka } from '../../src/shared/kafka.js';

const feed = new WebhookFeed({
  kafka: createKafka({
    brokers: String(process.env.KAFKA_BROKERS).split(','),
    clientId: `feed-${process.pid}`,
  }),
  topic: String(process.env.TOPIC),
  groupId: String(process.env.GROUP),
  sessionTimeoutMs: Number(process.env.SESSION_MS),
  webhooks: {
    enqueueChange: async () => {
      process.stdout.write('got\n');
      return 0; // deliveries enqueued
    },
  },
});
await feed.start();
