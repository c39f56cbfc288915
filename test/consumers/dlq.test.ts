/**
 * sendDlqRecords decides between retrying with the values and sending without them,
 * on the errors kafkajs really throws (no Kafka here: the send is a function).
 */
import {
  KafkaJSConnectionError,
  KafkaJSNonRetriableError,
  KafkaJSNumberOfRetriesExceeded,
  KafkaJSProtocolError,
} from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { DLQ_HEADERS, sendDlqRecords } from '../../src/consumers/dlq.js';
import type { OutgoingMessage } from '../../src/consumers/kafka-types.js';

const record: OutgoingMessage = { key: 'k', value: Buffer.from('original'), headers: { trace: 't' } };

function recordingSend(...failures: Error[]) {
  const sent: OutgoingMessage[][] = [];
  const send = async (messages: OutgoingMessage[]) => {
    sent.push(messages);
    const err = failures.shift();
    if (err) throw err;
  };
  return { sent, send };
}

describe('sendDlqRecords', () => {
  it('throws an outage the client gave up on, without sending the records valueless', async () => {
    const down = new KafkaJSConnectionError('Connection error: connect ECONNREFUSED');
    const exceeded = new KafkaJSNumberOfRetriesExceeded(down, { retryCount: 5, retryTime: 3000 });
    // what kafkajs's retrier throws once it stops (its typings omit `cause`)
    const gaveUp = Reflect.construct(KafkaJSNonRetriableError, [exceeded, { cause: exceeded }]) as Error;
    expect((gaveUp as { retriable?: boolean }).retriable).toBe(false);
    const { sent, send } = recordingSend(gaveUp);
    let refused = 0;
    await expect(sendDlqRecords(send, [record], () => refused++)).rejects.toBe(gaveUp);
    expect(sent).toEqual([[record]]);
    expect(refused).toBe(0);
  });

  it('sends the records again without their values when Kafka refuses them for good', async () => {
    const tooLarge = new KafkaJSProtocolError({
      type: 'MESSAGE_TOO_LARGE',
      retriable: false,
      code: 10,
      message: 'The request included a message larger than the max message size the server will accept',
    } as never);
    const { sent, send } = recordingSend(tooLarge);
    let refused = 0;
    await sendDlqRecords(send, [record], () => refused++);
    expect(refused).toBe(1);
    expect(sent).toHaveLength(2);
    const [again] = sent[1]!;
    expect(again).toMatchObject({ key: 'k', value: null, headers: { trace: 't' } });
    expect(again!.headers?.[DLQ_HEADERS.valueDropped]).toMatch(/^MESSAGE_TOO_LARGE: /);
  });
});
