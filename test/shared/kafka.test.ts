/** The Kafka client wrapper: what it does without a broker to talk to. */

import { KafkaJSProtocolError } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { createKafka, createProducer, waitWhileRetriable } from '../../src/shared/kafka.js';
import { createLogger } from '../../src/shared/logger.js';

describe('createProducer', () => {
  it('names its partitioner, so kafkajs does not warn operators at every start to change it', () => {
    const lines: string[] = [];
    const logger = createLogger({ level: 'debug' }, { write: (l: string) => lines.push(l) });
    createProducer(createKafka({ brokers: ['127.0.0.1:1'], clientId: 'test' }, logger));
    expect(lines.join('')).not.toMatch(/partitioner/i);
  });
});

describe('waitWhileRetriable', () => {
  const unknownTopic = Object.assign(
    new KafkaJSProtocolError('This server does not host this topic-partition'),
    {
      retriable: true,
    },
  );

  it('waits out retriable errors and what the probe still waits for', async () => {
    const answers = [unknownTopic, unknownTopic, 'a leader', undefined];
    let calls = 0;
    await waitWhileRetriable(
      async () => {
        const answer = answers[calls++];
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
    const probe = async () => {
      calls++;
      throw denied;
    };
    await expect(waitWhileRetriable(probe, 5000, 1)).rejects.toBe(denied);
    expect(calls).toBe(1);
  });

  it('says what it waited for when the time is up', async () => {
    await expect(waitWhileRetriable(async () => 'a leader for t', 30, 1)).rejects.toThrow(
      /waited 30 ms for a leader for t/,
    );
    const stillUnknown = async () => {
      throw unknownTopic;
    };
    await expect(waitWhileRetriable(stillUnknown, 30, 1)).rejects.toThrow(
      /Kafka to serve the topics \(This server does not host/,
    );
  });
});
