/**
 * The data extjob's job broker speaks in: jobs, their specs, the normalized events
 * executors send (whatever their wire format), and history entries. Field names
 * follow SPEC section 3 and are part of the public API.
 */

export const JOB_STATES = [
  'pending',
  'running',
  'canceling',
  'passed',
  'failed',
  'canceled',
  'timed_out',
  'expired',
] as const;
export type JobState = (typeof JOB_STATES)[number];

export const TERMINAL_STATES: ReadonlySet<JobState> = new Set([
  'passed',
  'failed',
  'canceled',
  'timed_out',
  'expired',
]);

export const isTerminal = (s: JobState): boolean => TERMINAL_STATES.has(s);

/** Job ids chosen by clients: 1-128 characters of [A-Za-z0-9._:-]. */
export const JOB_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/** Exit codes: signed or unsigned 32-bit (POSIX 0-255, Windows NTSTATUS such as 0xC0000005). */
export const EXIT_CODE_MIN = -(2 ** 31);
export const EXIT_CODE_MAX = 2 ** 32 - 1;

export interface Timeouts {
  /** pending -> expired after this many seconds. */
  acceptSeconds: number;
  /** running with no heartbeat, log or progress for this long -> timed_out; 0 is off. */
  heartbeatSeconds: number;
  /** running longer than this since accepted -> timed_out. */
  runSeconds: number;
  /** canceling -> canceled (forced) after this long without an acknowledgement. */
  cancelGraceSeconds: number;
}

export interface RetryPolicy {
  /** Further attempts allowed after the first (0-10). */
  limit: number;
  /** Retry only when the exit code is one of these; absent: any non-zero code, and timeouts. */
  onExitCodes?: number[];
  /** Delay before the next attempt is announced. */
  backoffSeconds?: number;
}

export interface NotifyTarget {
  url: string;
  /** Only these target states (e.g. ["passed","failed"]); absent: every change. */
  events?: string[];
  /** HMAC key for X-Extjob-Signature. Never returned by the API. */
  secret?: string;
}

/** What a client asks for when it creates a job (POST /v1/jobs). */
export interface JobSpec {
  id?: string;
  name: string;
  labels?: Record<string, string>;
  executor?: string;
  timeouts?: Partial<Timeouts>;
  retry?: RetryPolicy;
  notify?: NotifyTarget[];
}

export interface JobError {
  type: string;
  message: string;
}

export interface Progress {
  percent?: number;
  phase?: string;
  message?: string;
}

/** A job as the API returns it (no log, no history, no secrets). */
export interface Job {
  id: string;
  name: string;
  labels: Record<string, string>;
  executor?: string;
  timeouts: Timeouts;
  retry?: RetryPolicy;
  /** Webhook targets without their secrets. */
  notify?: Omit<NotifyTarget, 'secret'>[];
  state: JobState;
  attempt: number;
  exitCode?: number;
  error?: JobError;
  progress?: Progress;
  summary?: string;
  detailsUrl?: string;
  /** Set when a cancel was forced after the grace period. */
  forced?: boolean;
  createdAt: string;
  acceptedAt?: string;
  finishedAt?: string;
  lastHeartbeatAt?: string;
  /** Incremented on every state transition; carried in each change message. */
  version: number;
}

export type EventKind = 'accepted' | 'heartbeat' | 'log' | 'finished' | 'canceled';

/** What became of one executor event. */
export interface ApplyOutcome {
  result: ApplyResult;
  /** Why an event is invalid (for the DLQ reason). */
  reason?: string;
  /** The chunk was over the per-chunk limit (EXTJOB_PAYLOAD_TOO_LARGE). */
  tooLarge?: boolean;
}

/**
 * An executor's event after parsing, whatever its wire format (CloudEvents
 * structured or binary, CDEvents, HTTP). `source` + `id` identify it for dedupe.
 */
export interface JobEvent {
  kind: EventKind;
  jobId: string;
  /** CloudEvents `id`. */
  id: string;
  /** CloudEvents `source`. */
  source: string;
  /** CloudEvents `type`, as received (for history and metrics). */
  type: string;
  /** CloudEvents `time` (ISO 8601), when given. */
  time?: string;
  attempt?: number;
  executor?: string;
  detailsUrl?: string;
  message?: string;
  progress?: Progress;
  /** log: chunk sequence number (0-based or 1-based, as the executor counts). */
  seq?: number;
  /**
   * log: the chunk, as text (stored as its UTF-8 bytes) or as bytes (base64 decoded).
   * Text stays a string all the way to Redis: no copy into a Buffer on the hot path.
   */
  chunk?: Buffer | string;
  /** finished */
  exitCode?: number;
  error?: JobError;
  summary?: string;
  lastSeq?: number;
  /** canceled */
  reason?: string;
}

/** Who or what caused a transition or an applied event. */
export type Cause =
  | { kind: 'event'; eventId: string; source: string; type: string }
  | { kind: 'timer'; timer: 'accept' | 'heartbeat' | 'run' | 'cancel_grace' | 'retry' | 'retention' }
  | { kind: 'api'; caller: string; reason?: string };

export interface HistoryEntry {
  at: string;
  /** "transition", or what happened to an event: applied, duplicate, stale, late. */
  kind: 'transition' | 'applied' | 'duplicate' | 'stale' | 'late';
  from?: JobState;
  to?: JobState;
  attempt: number;
  cause: Cause;
  /** Extra facts (e.g. forced: true, exitCode). */
  detail?: Record<string, unknown>;
}

/**
 * Result of applying one event. 'invalid': the event cannot apply to this job as
 * given (e.g. a log chunk over the size limit, an attempt that does not exist
 * yet); the caller dead-letters it.
 */
export type ApplyResult = 'applied' | 'duplicate' | 'stale' | 'late' | 'unknown_job' | 'invalid';

/** What an outbox entry says of its job (the changes and commands records carry it). */
export interface OutboxPayload {
  job: Job;
  from?: JobState | null;
  to?: JobState;
  cause?: Cause;
  /** What the transition's history entry says besides (a retry's outcome and exit code, a forced cancel). */
  detail?: Record<string, unknown>;
}
