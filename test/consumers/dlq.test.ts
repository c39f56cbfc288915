/**
 * sendDlqRecords decides between retrying the records as they are, sending them one by
 * one, with a key or without their values, on the errors kafkajs really throws (no
 * Kafka here: the send is a function; test/consumers/dlq-refusals.test.ts has Kafka).
 */
import {
  KafkaJSConnectionError,
  KafkaJSNonRetriableError,
  KafkaJSNumberOfRetriesExceeded,
  KafkaJSProtocolError,
} from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { DLQ_HEADERS, type DlqRefusal, sendDlqRecords } from '../../src/consumers/dlq.js';
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

const refusal = (type: string, code: number, message: string) =>
  new KafkaJSProtocolError({ type, retriable: false, code, message } as never);
const tooLarge = () =>
  refusal(
    'MESSAGE_TOO_LARGE',
    10,
    'The request included a message larger than the max message size the server will accept',
  );
const invalidRecord = () => refusal('INVALID_RECORD', 87, 'This record has failed the validation on broker');

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

  it('sends a record again without its value when Kafka refuses it for good', async () => {
    const { sent, send } = recordingSend(tooLarge());
    const outcomes: DlqRefusal[] = [];
    await sendDlqRecords(send, [record], (_err, _m, outcome) => outcomes.push(outcome));
    expect(outcomes).toEqual(['value_dropped']);
    expect(sent).toHaveLength(2);
    const [again] = sent[1]!;
    expect(again).toMatchObject({ key: 'k', value: null, headers: { trace: 't' } });
    expect(again!.headers?.[DLQ_HEADERS.valueDropped]).toMatch(/^MESSAGE_TOO_LARGE: /);
  });

  it('sends refused records one by one: only one refused alone loses its value', async () => {
    const other = { ...record, key: 'k2', value: Buffer.from('too big alone') };
    const { sent, send } = recordingSend(tooLarge(), undefined as never, tooLarge());
    const outcomes: DlqRefusal[] = [];
    await sendDlqRecords(send, [record, other], (_err, _m, outcome) => outcomes.push(outcome));
    expect(sent.map((batch) => batch.map((m) => [m.key, m.value === null ? null : String(m.value)]))).toEqual(
      [
        [
          ['k', 'original'],
          ['k2', 'too big alone'],
        ],
        [['k', 'original']],
        [['k2', 'too big alone']],
        [['k2', null]],
      ],
    );
    expect(outcomes).toEqual(['value_dropped']);
  });

  it('keys a keyless record by where it came from when the DLQ refuses it keyless (compacted)', async () => {
    const keyless: OutgoingMessage = {
      key: null,
      value: Buffer.from('not json'),
      headers: { [DLQ_HEADERS.topic]: 'p.events', [DLQ_HEADERS.partition]: '2', [DLQ_HEADERS.offset]: '41' },
    };
    const { sent, send } = recordingSend(invalidRecord());
    const outcomes: DlqRefusal[] = [];
    await sendDlqRecords(send, [keyless], (_err, _m, outcome) => outcomes.push(outcome));
    expect(outcomes).toEqual(['keyed']);
    const [again] = sent[1]!;
    expect(again).toMatchObject({ key: 'p.events/2/41', value: Buffer.from('not json') });
    expect(again!.headers?.[DLQ_HEADERS.keyAdded]).toMatch(/^INVALID_RECORD: /);
  });

  it('gives up a record refused in every form rather than stall, and throws an outage met meanwhile', async () => {
    const keyless: OutgoingMessage = { key: null, value: Buffer.from('x'), headers: {} };
    const { sent, send } = recordingSend(invalidRecord(), invalidRecord(), invalidRecord());
    const outcomes: DlqRefusal[] = [];
    await sendDlqRecords(send, [keyless], (_err, _m, outcome) => outcomes.push(outcome));
    expect(outcomes).toEqual(['keyed', 'value_dropped', 'lost']);
    expect(sent).toHaveLength(3);

    const down = new KafkaJSConnectionError('Connection error: connect ECONNREFUSED');
    const outage = recordingSend(tooLarge(), down);
    await expect(sendDlqRecords(outage.send, [record, record], () => {})).rejects.toBe(down);
  });
});
