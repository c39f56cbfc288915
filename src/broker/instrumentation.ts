/**
 * Typed instrumentation events the broker emits; the metrics module listens.
 * The broker itself never imports a metrics library.
 */
import { EventEmitter } from 'node:events';
import type { ApplyOutcome, JobEvent, JobState } from './types.js';

export type TimerKind = 'accept' | 'heartbeat' | 'run' | 'cancel_grace' | 'retry';

export interface BrokerEventMap {
  job_created: [{ executor: string }];
  job_transition: [
    {
      jobId: string;
      from: JobState | 'none';
      to: JobState;
      executor: string;
      /** pending -> running: seconds from created to accepted. */
      acceptLatencySeconds?: number;
      /** into a terminal state: seconds from accepted (or created) to finished. */
      durationSeconds?: number;
    },
  ];
  /**
   * One applyEvents call: its events and their outcomes, index for index, and the time
   * of its Redis round trip. One emission a call rather than one an event: listeners
   * loop, and nothing is allocated per event on the hot path.
   */
  events_applied: [
    {
      events: readonly JobEvent[];
      outcomes: readonly ApplyOutcome[];
      /** Undefined when no event reached Redis (the broker refused them all first). */
      applySeconds: number | undefined;
    },
  ];
  /** A timer expired a job, timed it out or forced a cancel. */
  timeout: [{ kind: TimerKind }];
  /** Every timer firing, with how late it ran past its due time. */
  timer_fired: [{ kind: TimerKind; lateSeconds: number; effect: string }];
}

export class BrokerInstrumentation extends EventEmitter<BrokerEventMap> {}

/** Executor label for metrics when a job names none. */
export const NO_EXECUTOR = 'unknown';
