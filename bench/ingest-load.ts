/**
 * The executor side of bench/ingest-latency.ts, run as its own process so the load it
 * generates does not share an event loop with the consumer it measures. Produces log
 * chunks at a steady rate and prints one line per message: "<jobId>/<seq> <epoch ms>",
 * the wall-clock time just before the send, then "done".
 */

import { encodeStructured } from '../src/consumers/formats/index.js';
import { createKafka, createProducer } from '../src/shared/kafka.js';

const env = (n: string) => {
  const v = process.env[n];
  if (v === undefined) throw new Error(`${n} is required`);
  return v;
};
const brokers = env('LOAD_BROKERS').split(',');
const topic = env('LOAD_TOPIC');
const jobs = env('LOAD_JOBS').split(',');
const rate = Number(env('LOAD_RATE'));
const seconds = Number(env('LOAD_SECONDS'));
const perSend = Number(env('LOAD_PER_SEND'));
const seqBase = Number(env('LOAD_SEQ_BASE'));
const tag = env('LOAD_TAG');

const now = () => performance.timeOrigin + performance.now();
const kafka = createKafka({ brokers, clientId: `load-${tag}` });
const producer = createProducer(kafka);
await producer.connect();
const total = rate * seconds;
const tickMs = (perSend / rate) * 1000;
const start = performance.now();
const lines: string[] = [];
const inflight: Promise<unknown>[] = [];
for (let i = 0; i < total; i += perSend) {
  const wait = start + (i / perSend) * tickMs - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const messages = [];
  const t = now();
  for (let k = i; k < Math.min(total, i + perSend); k++) {
    const jobId = jobs[k % jobs.length]!;
    const seq = seqBase + Math.floor(k / jobs.length);
    lines.push(`${jobId}/${seq} ${t.toFixed(3)}`);
    messages.push(
      encodeStructured({
        kind: 'log',
        jobId,
        id: `${tag}-${k}`,
        source: `bench-${tag}`,
        type: 'dev.extjob.log.v1',
        seq,
        chunk: Buffer.from(`line ${seq}\n`),
      }),
    );
  }
  inflight.push(producer.send({ topic, acks: -1, messages }));
}
await Promise.all(inflight);
await producer.disconnect();
process.stdout.write(`${lines.join('\n')}\ndone\n`);
