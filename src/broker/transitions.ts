/**
 * The job state machine (SPEC section 3): every legal transition, once, in one
 * readable table. The Lua scripts get the same table generated from this object
 * at load time (see luaTransitionTable), so TypeScript and Redis cannot drift.
 */
import type { JobState } from './types.js';

/** `none` is the state before a job exists. */
export type FromState = JobState | 'none';

/** from -> to -> why. Anything not listed is illegal. Terminal states have no exits. */
export const TRANSITIONS = {
  none: {
    pending: 'job created',
  },
  pending: {
    running: 'accepted event, or finished/log/heartbeat implying it',
    expired: 'accept timeout passed',
    canceled: 'cancel requested, or the executor gave up before accepting',
  },
  running: {
    passed: 'finished with exitCode 0',
    failed: 'finished with exitCode != 0 or an error',
    timed_out: 'heartbeat or run timeout passed',
    canceling: 'cancel requested',
    pending: 'attempt failed or timed out and the retry policy allows another (attempt + 1)',
  },
  canceling: {
    canceled: 'executor acknowledged (canceled or finished event) or cancel grace passed (forced)',
  },
  passed: {},
  failed: {},
  canceled: {},
  timed_out: {},
  expired: {},
} as const satisfies Record<FromState, Partial<Record<JobState, string>>>;

export function canTransition(from: FromState, to: JobState): boolean {
  return Object.hasOwn(TRANSITIONS[from], to);
}

/** Every legal [from, to] pair. */
export function legalTransitions(): [FromState, JobState][] {
  return (Object.entries(TRANSITIONS) as [FromState, Record<string, string>][]).flatMap(([from, tos]) =>
    Object.keys(tos).map((to) => [from, to as JobState] as [FromState, JobState]),
  );
}

/** The same table as a Lua expression: { ["pending"] = { ["running"] = true, ... }, ... }. */
export function luaTransitionTable(): string {
  const rows = (Object.entries(TRANSITIONS) as [FromState, Record<string, string>][]).map(
    ([from, tos]) =>
      `[${JSON.stringify(from)}] = {${Object.keys(tos)
        .map((to) => `[${JSON.stringify(to)}] = true`)
        .join(', ')}}`,
  );
  return `{${rows.join(', ')}}`;
}
