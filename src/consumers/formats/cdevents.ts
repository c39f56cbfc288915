/**
 * CDEvents taskrun events (spec 0.x): `dev.cdevents.taskrun.started.<version>` acts as
 * accepted, `dev.cdevents.taskrun.finished.<version>` as finished (outcome success is
 * exit 0; failure and error are exit 1 with the error text). The job id is subject.id.
 * A CDEvent arrives bare ({context, subject}) or as the data of a CloudEvent.
 */
import { z } from 'zod';
import type { JobEvent } from '../../broker/types.js';
import type { CloudEvent } from './cloudevents-v1.js';
import * as f from './fields.js';
import { type Decoded, isPlainObject } from './json-bytes.js';
import { fail } from './result.js';

const TASKRUN = /^dev\.cdevents\.taskrun\.(started|finished)\.\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/;
const CDEVENTS_PREFIX = 'dev.cdevents.';

export const isCdeventsType = (t: string): boolean => t.startsWith(CDEVENTS_PREFIX);

/** 'started' | 'finished' for the taskrun types extjob handles, else undefined. */
export function taskrunKind(type: string): 'started' | 'finished' | undefined {
  const m = TASKRUN.exec(type);
  return m ? (m[1] as 'started' | 'finished') : undefined;
}

/** Error text kept from subject.content.errors; longer text is cut with a marker. */
export const MAX_ERROR_TEXT = 4096;

const context = z.looseObject({
  version: z.string().max(64).optional(),
  id: f.eventId,
  source: f.eventSource,
  type: f.eventType,
  timestamp: f.timestamp,
});

const subject = z.looseObject({
  id: f.jobId,
  source: z.string().max(1024).optional(),
  type: z.string().max(64).optional(),
  content: z
    .looseObject({
      taskName: z.string().max(1024).optional(),
      url: z.unknown().optional(), // kept when it is an http(s) URL, else left out
      outcome: z.enum(['success', 'failure', 'error']).optional(),
      errors: z
        .string()
        .max(1024 * 1024)
        .optional(),
    })
    .optional(),
});

const cdevent = z.looseObject({ context, subject });

/** Whether a structured value looks like a bare CDEvent rather than a CloudEvent. */
export function looksLikeBareCdevent(obj: Record<string, unknown>): boolean {
  return obj.specversion === undefined && isPlainObject(obj.context) && obj.subject !== undefined;
}

/**
 * Map a CDEvent to a JobEvent. `envelope` is the CloudEvent that carried it, when
 * there was one: its id, source, type and time win (the CDEvents CloudEvents binding
 * makes them equal to the context's).
 */
export function cdeventToJobEvent(value: unknown, envelope?: CloudEvent): Decoded<JobEvent> {
  // another CDEvent type is unsupported, whatever its data looks like
  const given =
    envelope?.type ?? (isPlainObject(value) && isPlainObject(value.context) ? value.context.type : undefined);
  if (typeof given === 'string' && taskrunKind(given) === undefined)
    return fail('unsupported_type', `CDEvent type "${given.slice(0, 256)}" is not handled`);
  if (!isPlainObject(value))
    return fail('invalid', envelope ? 'data must be a CDEvent object' : 'a CDEvent must be a JSON object');
  const r = cdevent.safeParse(value);
  const where = envelope ? 'data' : '';
  if (!r.success) return fail('invalid', f.describeIssues(r.error, where));
  const { context: ctx, subject: subj } = r.data;
  const type = envelope?.type ?? ctx.type;
  const kind = taskrunKind(type);
  if (kind === undefined) return fail('unsupported_type', `CDEvent type "${type}" is not handled`);
  if (envelope && taskrunKind(ctx.type) !== kind)
    return fail('invalid', `data.context.type "${ctx.type}" does not match the CloudEvent type "${type}"`);
  if (envelope?.subject !== undefined && envelope.subject !== subj.id)
    return fail('invalid', `subject "${envelope.subject}" differs from data.subject.id "${subj.id}"`);
  const ev: JobEvent = {
    kind: kind === 'started' ? 'accepted' : 'finished',
    jobId: subj.id,
    id: envelope?.id ?? ctx.id,
    source: envelope?.source ?? ctx.source,
    type,
    time: envelope?.time ?? ctx.timestamp,
  };
  const content = subj.content;
  if (kind === 'started') {
    const url = f.httpUrl.safeParse(content?.url);
    if (url.success) ev.detailsUrl = url.data;
    return { ok: true, value: ev };
  }
  const outcome = content?.outcome;
  if (outcome === undefined)
    return fail(
      'invalid',
      `${where ? 'data.' : ''}subject.content.outcome is required (success, failure or error)`,
    );
  ev.exitCode = outcome === 'success' ? 0 : 1;
  if (outcome !== 'success') {
    const text = content?.errors ?? '';
    ev.error = {
      type: outcome,
      message: text.length > MAX_ERROR_TEXT ? `${text.slice(0, MAX_ERROR_TEXT - 12)} [truncated]` : text,
    };
  }
  return { ok: true, value: ev };
}
