/**
 * What the Lua scripts answer, as one enum, and the one factory that turns an
 * answer or a script error into an ExtjobError.
 */
import { ExtjobError } from '../shared/errors.js';
import { isConnectionError, isRefusedForNow } from '../shared/redis.js';

export const ScriptResult = {
  Created: 'created',
  Exists: 'exists',
  Conflict: 'conflict',
  Applied: 'applied',
  Duplicate: 'duplicate',
  Stale: 'stale',
  Late: 'late',
  UnknownJob: 'unknown_job',
  Invalid: 'invalid',
  Fired: 'fired',
  Rearmed: 'rearmed',
  Noop: 'noop',
  Gone: 'gone',
  Canceled: 'canceled',
  Canceling: 'canceling',
  Unchanged: 'unchanged',
  NotFound: 'not_found',
} as const;
export type ScriptResult = (typeof ScriptResult)[keyof typeof ScriptResult];

/** The error a script answer means for the caller, or undefined when it is not an error. */
export function scriptError(result: ScriptResult, jobId: string): ExtjobError | undefined {
  switch (result) {
    case ScriptResult.Conflict:
      return new ExtjobError('EXTJOB_JOB_CONFLICT', `job ${jobId} exists with a different spec`, {
        details: { jobId },
      });
    case ScriptResult.NotFound:
    case ScriptResult.UnknownJob:
    case ScriptResult.Gone:
      return new ExtjobError('EXTJOB_JOB_NOT_FOUND', `no job with id ${jobId}`, { details: { jobId } });
    default:
      return undefined;
  }
}

/** Map an error thrown by a Redis call (script error, connection loss) to an ExtjobError. */
export function redisError(err: unknown, what: string): ExtjobError {
  if (err instanceof ExtjobError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (/EXTJOB_ILLEGAL_TRANSITION|EXTJOB_BAD_ARGUMENT/.test(message))
    return new ExtjobError('EXTJOB_INTERNAL', `${what}: ${message}`, { cause: err });
  if (isConnectionError(err))
    return new ExtjobError('EXTJOB_REDIS_UNAVAILABLE', `${what}: Redis did not answer (${message})`, {
      cause: err,
    });
  // Redis answers but takes no writes for now: loading, a replica, out of memory
  // (maxmemory), failing to persist, busy with a long script, no primary
  if (isRefusedForNow(err))
    return new ExtjobError('EXTJOB_REDIS_UNAVAILABLE', `${what}: Redis refused for now (${message})`, {
      cause: err,
    });
  return new ExtjobError('EXTJOB_INTERNAL', `${what}: ${message}`, { cause: err });
}
