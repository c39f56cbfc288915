/** The Kafka client wrapper: what it does without a broker to talk to. */

import { KafkaJSProtocolError } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { createKafka, createProducer, waitForLeaders } from '../../src/shared/kafka.js';
import { createLogger } from '../../src/shared/logger.js';

describe('createProducer', () => {
  it('names its partitioner, so kafkajs does not warn operators at every start to change it', () => {
    const lines: string[] = [];
    const logger = createLogger({ level: 'debug' }, { write: (l: string) => lines.push(l) });
    createProducer(createKafka({ brokers: ['127.0.0.1:1'], clientId: 'test' }, logger));
    expect(lines.join('')).not.toMatch(/partitioner/i);
  });
});

describe('waitForLeaders', () => {
  const unknownTopic = Object.assign(
    new KafkaJSProtocolError('This server does not host this topic-partition'),
    {
      retriable: true,
    },
  );
  const metadata = (leader: number) => ({ topics: [{ name: 't', partitions: [{ leader: 0 }, { leader }] }] });

  it('waits while the broker does not know the new topic yet, then until every partition has a leader', async () => {
    const answers = [unknownTopic, unknownTopic, metadata(-1), metadata(0)];
    let calls = 0;
    await waitForLeaders(
      async () => {
        const answer = answers[calls++]!;
        if (answer instanceof Error) throw answer;
        return answer;
      },
      5000,
      1,
    );
    expect(calls).toBe(4);
  });

  it('gives up at once on an error that waiting does not cure', async () => {
    let calls = 0;
    const denied = Object.assign(new KafkaJSProtocolError('Topic authorization failed'), {
      retriable: false,
    });
    const fetch = async () => {
      calls++;
      throw denied;
    };
    await expect(waitForLeaders(fetch, 5000, 1)).rejects.toBe(denied);
    expect(calls).toBe(1);
  });

  it('says what it waited for when the time is up', async () => {
    await expect(waitForLeaders(async () => metadata(-1), 30, 1)).rejects.toThrow(
      /waited 30 ms for a leader for every partition of t/,
    );
    const stillUnknown = async () => {
      throw unknownTopic;
    };
    await expect(waitForLeaders(stillUnknown, 30, 1)).rejects.toThrow(/the broker to know the topic/);
  });
});
