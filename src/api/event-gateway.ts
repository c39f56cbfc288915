/**
 * POST /v1/jobs/{id}/events to Kafka: the body is parsed by the same format modules
 * as Kafka input (handed in by the service), encoded for the events topic (an extjob
 * event afresh, a CDEvent as sent) keyed by the job id, and produced to <prefix>.events with acks from all in-sync
 * replicas. The request is answered only after that acknowledgement; a Kafka outage
 * answers 503 within a bounded time.
 */
import type { JobEvent } from '../broker/types.js';
import { refusedBy } from '../consumers/retry.js';
import { ExtjobError } from '../shared/errors.js';
import { type createKafka, createProducer, type Producer } from '../shared/kafka.js';
import type { Logger } from '../shared/logger.js';
import { withTimeout } from '../shared/timeouts.js';
import type { EventGateway, EventParse } from './ports.js';

export interface KafkaEventGatewayOptions {
  kafka: ReturnType<typeof createKafka>;
  topic: string;
  parse(body: Buffer, jobId: string): EventParse;
  encode(event: JobEvent, body: Buffer): { key: string; value: Buffer; headers: Record<string, string> };
  /** Longest connect + send may take before the request answers 503. */
  timeoutMs?: number;
  logger?: Logger;
}

export class KafkaEventGateway implements EventGateway {
  private producer: Producer | undefined;
  private connecting: Promise<Producer> | undefined;

  constructor(private readonly opts: KafkaEventGatewayOptions) {}

  parse(body: Buffer, jobId: string): EventParse {
    return this.opts.parse(body, jobId);
  }

  async publish(event: JobEvent, body: Buffer): Promise<void> {
    const timeoutMs = this.opts.timeoutMs ?? 10_000;
    const msg = this.opts.encode(event, body); // may refuse the event: no Kafka error
    try {
      const producer = await withTimeout(
        this.connect(),
        timeoutMs,
        `no Kafka connection within ${timeoutMs} ms`,
      );
      await withTimeout(
        producer.send({ topic: this.opts.topic, acks: -1, messages: [msg] }),
        timeoutMs,
        `Kafka did not acknowledge within ${timeoutMs} ms`,
      );
    } catch (err) {
      this.opts.logger?.warn(
        { err: (err as Error).message, jobId: event.jobId },
        'producing an HTTP event failed',
      );
      // Kafka refusing this record (too large, ...) is no outage: sending it again cannot help
      const refused = refusedBy(err);
      if (refused)
        throw new ExtjobError(
          refused.endsWith('_TOO_LARGE') ? 'EXTJOB_PAYLOAD_TOO_LARGE' : 'EXTJOB_VALIDATION_FAILED',
          `Kafka refused the event (${refused}): ${(err as Error).message}`,
          { cause: err },
        );
      throw new ExtjobError('EXTJOB_KAFKA_UNAVAILABLE', `Kafka: ${(err as Error).message}`, { cause: err });
    }
  }

  async close(): Promise<void> {
    const p = this.producer ?? (await this.connecting?.catch(() => undefined));
    this.producer = undefined;
    await p?.disconnect().catch(() => {});
  }

  private connect(): Promise<Producer> {
    if (this.producer) return Promise.resolve(this.producer);
    this.connecting ??= (async () => {
      const p = createProducer(this.opts.kafka);
      p.on(p.events.DISCONNECT, () => {
        if (this.producer === p) this.producer = undefined;
      });
      try {
        await p.connect();
        this.producer = p;
        return p;
      } catch (err) {
        await p.disconnect().catch(() => {});
        throw err;
      } finally {
        this.connecting = undefined;
      }
    })();
    return this.connecting;
  }
}
