/**
 * The request and response shapes of the /v1 API, as zod schemas. Requests are
 * validated with them (unknown fields are rejected) and /openapi.json is generated
 * from the same objects, so the document cannot drift from what the server checks.
 */
import { z } from 'zod';
import { SPEC_LIMITS } from '../broker/spec.js';
import { EXIT_CODE_MAX, EXIT_CODE_MIN, JOB_STATES } from '../broker/types.js';

/** Bounds of request bodies (SPEC 10: bounded nesting and label counts). */
export const LIMITS = {
  bodyBytes: 1024 * 1024,
  maxDepth: 32,
  /** Executor names in list filters (the executor an `accepted` event names may be long). */
  executorChars: 256,
  listLimit: 500,
  logLimit: 1000,
  waitSeconds: 300,
} as const;

export const jobId = z
  .string()
  .regex(/^[A-Za-z0-9._:-]{1,128}$/, 'a job id is 1-128 characters of [A-Za-z0-9._:-]')
  .meta({ description: 'Job id: 1-128 characters of [A-Za-z0-9._:-].' });

export const jobState = z.enum(JOB_STATES);

const seconds = (max: number) => z.int().min(0).max(max);

export const timeouts = z.strictObject({
  acceptSeconds: seconds(31_536_000).min(1).optional(),
  heartbeatSeconds: seconds(31_536_000).optional().meta({ description: '0 turns the heartbeat check off.' }),
  runSeconds: seconds(31_536_000).min(1).optional(),
  cancelGraceSeconds: seconds(86_400).optional(),
});

export const retryPolicy = z.strictObject({
  limit: z.int().min(0).max(10),
  onExitCodes: z
    .array(z.int().min(EXIT_CODE_MIN).max(EXIT_CODE_MAX))
    .max(SPEC_LIMITS.retryExitCodesMax)
    .optional(),
  backoffSeconds: z.number().min(0).max(86_400).optional(),
});

/** A webhook URL: http(s) only, no credentials (a target authenticates by its `secret`). */
const httpUrl = z
  .string()
  .max(SPEC_LIMITS.urlMaxLength)
  .superRefine((s, ctx) => {
    const u = URL.canParse(s) ? new URL(s) : undefined;
    if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:'))
      ctx.addIssue({ code: 'custom', message: 'must be an http:// or https:// URL' });
    else if (u.username || u.password)
      ctx.addIssue({ code: 'custom', message: 'must not carry credentials (user:password@); use secret' });
  })
  .meta({ format: 'uri' });

export const notifyTarget = z.strictObject({
  url: httpUrl,
  events: z.array(jobState).max(JOB_STATES.length).optional().meta({
    description: 'Only changes to these states are delivered; absent: every change.',
  }),
  secret: z.string().min(1).max(256).optional().meta({ description: 'HMAC key; never returned.' }),
});

const labelKey = z
  .string()
  .regex(SPEC_LIMITS.labelKeyPattern, 'a label key is 1-63 characters of [A-Za-z0-9._/-]');

export const labels = z
  .record(labelKey, z.string().max(SPEC_LIMITS.labelValueMaxLength))
  .refine((r) => Object.keys(r).length <= SPEC_LIMITS.labelsMax, `at most ${SPEC_LIMITS.labelsMax} labels`)
  .meta({ maxProperties: SPEC_LIMITS.labelsMax });

export const createJobBody = z
  .strictObject({
    id: jobId.optional(),
    name: z.string().min(1).max(SPEC_LIMITS.nameMaxLength),
    labels: labels.optional(),
    executor: z.string().min(1).max(SPEC_LIMITS.executorMaxLength).optional(),
    timeouts: timeouts.optional(),
    retry: retryPolicy.optional(),
    notify: z.array(notifyTarget).max(SPEC_LIMITS.notifyMax).optional(),
  })
  .meta({ id: 'JobSpec' });

export const cancelBody = z
  .strictObject({ reason: z.string().max(1024).optional() })
  .meta({ id: 'CancelRequest' });

/** Query strings arrive as text: a digit string parsed to a bounded integer. */
const intParam = (min: number, max: number) =>
  z
    .string()
    .regex(new RegExp(`^\\d{1,${String(max).length}}$`), 'must be a non-negative integer')
    .transform(Number)
    .pipe(z.int().min(min).max(max));

export const listQuery = z.strictObject({
  state: jobState.optional(),
  executor: z.string().min(1).max(LIMITS.executorChars).optional(),
  label: z
    .string()
    .regex(/^[A-Za-z0-9._/-]{1,128}:.{0,1024}$/s, 'label is key:value')
    .optional()
    .meta({ description: 'key:value; only jobs with that label.' }),
  limit: intParam(1, LIMITS.listLimit).optional(),
  cursor: z.string().min(1).max(512).optional(),
});

export const logQuery = z.strictObject({
  fromSeq: intParam(0, Number.MAX_SAFE_INTEGER).optional(),
  limit: intParam(1, LIMITS.logLimit).optional(),
});

export const waitQuery = z.strictObject({
  until: z.enum(['terminal', 'running']).optional().meta({ description: 'Default terminal.' }),
  timeoutSeconds: intParam(0, LIMITS.waitSeconds).optional().meta({ description: 'Default 30, max 300.' }),
});

export const emptyQuery = z.strictObject({});

// ---- responses (documented; the server builds them from broker types) ----

const progress = z.object({
  percent: z.number().optional(),
  phase: z.string().optional(),
  message: z.string().optional(),
});

export const jobSchema = z
  .object({
    id: jobId,
    name: z.string(),
    labels: z.record(z.string(), z.string()),
    executor: z.string().optional(),
    timeouts: z.object({
      acceptSeconds: z.number(),
      heartbeatSeconds: z.number(),
      runSeconds: z.number(),
      cancelGraceSeconds: z.number(),
    }),
    retry: retryPolicy.optional(),
    notify: z.array(z.object({ url: z.string(), events: z.array(jobState).optional() })).optional(),
    state: jobState,
    attempt: z.int(),
    exitCode: z.int().optional(),
    error: z.object({ type: z.string(), message: z.string() }).optional(),
    progress: progress.optional(),
    summary: z.string().optional(),
    detailsUrl: z.string().optional(),
    forced: z.boolean().optional(),
    createdAt: z.string(),
    acceptedAt: z.string().optional(),
    finishedAt: z.string().optional(),
    lastHeartbeatAt: z.string().optional(),
    version: z.int(),
  })
  .meta({ id: 'Job' });

/** The Idempotency-Key header of POST /v1/jobs: random enough that nobody else can present it. */
export const IDEMPOTENCY_KEY = /^[\x21-\x7e]{16,256}$/;

export const createResponse = z
  .object({
    job: jobSchema,
    eventToken: z.string().optional().meta({
      description: 'On 201; on 200 only to a caller presenting the Idempotency-Key the job was created with.',
    }),
  })
  .meta({ id: 'CreateJobResponse' });

export const jobResponse = z.object({ job: jobSchema }).meta({ id: 'JobResponse' });

export const listResponse = z
  .object({ jobs: z.array(jobSchema), nextCursor: z.string().optional() })
  .meta({ id: 'JobList' });

export const logResponse = z
  .object({
    chunks: z.array(
      z.object({
        seq: z.int(),
        text: z.string().optional(),
        base64: z.string().optional().meta({ description: 'Instead of text when the bytes are not UTF-8.' }),
        late: z.boolean().optional(),
      }),
    ),
    nextSeq: z.int(),
    more: z.boolean().meta({
      description: 'The page stopped at limit or at its byte cap: more chunks may follow nextSeq.',
    }),
    complete: z.boolean(),
    gaps: z.array(z.tuple([z.int(), z.int()])),
    truncated: z.object({ chunks: z.int(), bytes: z.int() }).optional(),
  })
  .meta({ id: 'Log' });

const cause = z.union([
  z.object({ kind: z.literal('event'), eventId: z.string(), source: z.string(), type: z.string() }),
  z.object({ kind: z.literal('timer'), timer: z.string() }),
  z.object({ kind: z.literal('api'), caller: z.string(), reason: z.string().optional() }),
]);

export const historyEntry = z
  .object({
    at: z.string(),
    kind: z.enum(['transition', 'applied', 'duplicate', 'stale', 'late']),
    from: jobState.optional(),
    to: jobState.optional(),
    attempt: z.int(),
    cause,
    detail: z.record(z.string(), z.unknown()).optional(),
  })
  .meta({ id: 'HistoryEntry' });

export const historyResponse = z.object({ history: z.array(historyEntry) }).meta({ id: 'History' });

export const acceptedEvent = z
  .object({ accepted: z.literal(true), jobId, eventId: z.string(), type: z.string() })
  .meta({ id: 'EventAccepted' });

export const delivery = z
  .object({
    id: z.string(),
    url: z.string(),
    version: z.int(),
    to: z.string().optional(),
    state: z.string().meta({ description: 'waiting, delayed, active, completed or failed.' }),
    attempts: z.int(),
    status: z.int().optional().meta({ description: 'HTTP status of the last attempt.' }),
    error: z.string().optional(),
    createdAt: z.string(),
    finishedAt: z.string().optional(),
  })
  .meta({ id: 'Delivery' });

export const deliveriesResponse = z.object({ deliveries: z.array(delivery) }).meta({ id: 'Deliveries' });

/** RFC 9457: members beyond these carry the error's details (jobId, state, issues, ...). */
export const problemSchema = z
  .looseObject({
    type: z.string(),
    title: z.string(),
    status: z.int(),
    detail: z.string(),
    code: z.string(),
    retriable: z.boolean(),
    instance: z.string().optional(),
  })
  .meta({ id: 'Problem' });

export const cloudEventBody = z
  .looseObject({
    specversion: z.literal('1.0').optional(),
    id: z.string().optional(),
    source: z.string().optional(),
    type: z.string().optional(),
    subject: z.string().optional(),
    data: z.unknown().optional(),
  })
  .meta({
    id: 'ExecutorEvent',
    description:
      'A structured CloudEvent 1.0 (dev.extjob.*.v1 or CDEvents taskrun) or a bare CDEvent; see docs/events.md. subject defaults to the job id of the path.',
  });

/** Format zod issues as one readable line per problem. */
export function describeIssues(error: z.ZodError, where: string): string {
  return error.issues
    .slice(0, 10)
    .map((i) => `${where}${i.path.length ? `.${i.path.join('.')}` : ''}: ${i.message}`)
    .join('; ');
}
