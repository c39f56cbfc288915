/**
 * What the HTTP API needs from the rest of the process, as narrow interfaces. The
 * service wires the real JobBroker, the event parser and producer and the webhook
 * deliveries in; unit tests can hand in fakes.
 */
import type { Cause, HistoryEntry, Job, JobEvent, JobSpec, JobState } from '../broker/types.js';
import type { DeliveryView } from '../consumers/webhooks.js';

export interface LogChunk {
  seq: number;
  data: Buffer;
  late?: boolean;
}

export interface LogPage {
  chunks: LogChunk[];
  nextSeq: number;
  complete: boolean;
  gaps: [number, number][];
  /** The page stopped at its limit or byte cap: more stored chunks may follow nextSeq. */
  more: boolean;
  truncated?: { chunks: number; bytes: number };
}

/** The part of JobBroker the API calls. */
export interface BrokerPort {
  createJob(
    spec: JobSpec,
    cause?: Cause,
    idempotencyKey?: string,
  ): Promise<{ job: Job; created: boolean; eventToken?: string }>;
  getJob(id: string): Promise<Job | undefined>;
  /** Several jobs in one round trip (used to batch wake-up reads when present). */
  getJobs?(ids: string[]): Promise<(Job | undefined)[]>;
  listJobs(q: {
    state?: JobState;
    executor?: string;
    label?: [string, string];
    limit?: number;
    cursor?: string;
  }): Promise<{ jobs: Job[]; nextCursor?: string }>;
  readLog(
    id: string,
    q: { fromSeq?: number; limit?: number; maxBytes?: number; attempt?: number },
  ): Promise<LogPage | undefined>;
  history(id: string): Promise<HistoryEntry[] | undefined>;
  cancelJob(id: string, cause: Cause): Promise<Job>;
  verifyEventToken(jobId: string, token: string): Promise<boolean>;
}

export type EventParse = { ok: true; event: JobEvent } | { ok: false; reason: string; detail: string };

/** Executor events posted over HTTP: parsed like Kafka input, then produced to Kafka. */
export interface EventGateway {
  parse(body: Buffer, jobId: string): EventParse;
  /** Resolves once Kafka acknowledged the event (parsed from `body`) on the events topic. */
  publish(event: JobEvent, body: Buffer): Promise<void>;
}

/** A webhook delivery as the API shows it. */
export type Delivery = DeliveryView;

/** Webhook deliveries of a job (kept after the last failed try for inspection). */
export interface DeliveryLog {
  /** `created`: when the job was created (not an earlier job with the same id). */
  list(jobId: string, created?: string): Promise<Delivery[]>;
}
