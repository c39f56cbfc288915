/** The Kafka client wrapper: what it configures without a broker to talk to. */
import { describe, expect, it } from 'vitest';
import { createKafka, createProducer } from '../../src/shared/kafka.js';
import { createLogger } from '../../src/shared/logger.js';

describe('createProducer', () => {
  it('names its partitioner, so kafkajs does not warn operators at every start to change it', () => {
    const lines: string[] = [];
    const logger = createLogger({ level: 'debug' }, { write: (l: string) => lines.push(l) });
    createProducer(createKafka({ brokers: ['127.0.0.1:1'], clientId: 'test' }, logger));
    expect(lines.join('')).not.toMatch(/partitioner/i);
  });
});
