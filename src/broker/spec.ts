/**
 * Job specs: validation (bounded sizes, unknown fields rejected), the stored
 * form, and the hash that makes create idempotent.
 */
import { createHash, randomUUID } from 'node:crypto';
import { z } from 'zod';
import { ExtjobError } from '../shared/errors.js';
import {
  EXIT_CODE_MAX,
  EXIT_CODE_MIN,
  JOB_ID_PATTERN,
  JOB_STATES,
  type JobSpec,
  type RetryPolicy,
  type Timeouts,
} from './types.js';

export const SPEC_LIMITS = {
  nameMaxLength: 256,
  labelsMax: 64,
  labelKeyPattern: /^[A-Za-z0-9._/-]{1,63}$/,
  labelValueMaxLength: 256,
  executorMaxLength: 128,
  timeoutMaxSeconds: 31_536_000,
  retryLimitMax: 10,
  retryExitCodesMax: 32,
  backoffMaxSeconds: 86_400,
  notifyMax: 10,
  urlMaxLength: 2048,
} as const;

const L = SPEC_LIMITS;
const seconds = (min: number) => z.number().finite().min(min).max(L.timeoutMaxSeconds);

const specSchema = z.strictObject({
  id: z.string().regex(JOB_ID_PATTERN, 'must be 1-128 characters of [A-Za-z0-9._:-]').optional(),
  name: z.string().min(1).max(L.nameMaxLength),
  labels: z
    .record(
      z.string().regex(L.labelKeyPattern, 'label keys are 1-63 characters of [A-Za-z0-9._/-]'),
      z.string().max(L.labelValueMaxLength),
    )
    .refine((l) => Object.keys(l).length <= L.labelsMax, `at most ${L.labelsMax} labels`)
    .optional(),
  executor: z.string().min(1).max(L.executorMaxLength).optional(),
  timeouts: z
    .strictObject({
      acceptSeconds: seconds(0.001).optional(),
      heartbeatSeconds: seconds(0).optional(),
      runSeconds: seconds(0.001).optional(),
      cancelGraceSeconds: seconds(0).optional(),
    })
    .optional(),
  retry: z
    .strictObject({
      limit: z.number().int().min(0).max(L.retryLimitMax),
      onExitCodes: z
        .array(z.number().int().min(EXIT_CODE_MIN).max(EXIT_CODE_MAX))
        .max(L.retryExitCodesMax)
        .optional(),
      backoffSeconds: z.number().finite().min(0).max(L.backoffMaxSeconds).optional(),
    })
    .optional(),
  notify: z
    .array(
      z.strictObject({
        url: z
          .string()
          .max(L.urlMaxLength)
          .refine((u) => /^https?:\/\//i.test(u) && URL.canParse(u), 'must be an http(s) URL'),
        events: z.array(z.enum(JOB_STATES)).max(JOB_STATES.length).optional(),
        secret: z.string().min(1).max(256).optional(),
      }),
    )
    .max(L.notifyMax)
    .optional(),
});

/** A spec after validation, with defaults applied, as stored in Redis (`<job>:s`). */
export interface StoredSpec {
  n: string;
  l: Record<string, string>;
  e?: string;
  /** Timeouts in seconds: accept, heartbeat, run, cancel grace. */
  t: [number, number, number, number];
  r?: RetryPolicy;
  o?: NonNullable<JobSpec['notify']>;
}

export interface PreparedSpec {
  id: string;
  /** True when the caller chose the id (create is idempotent on it). */
  clientId: boolean;
  stored: StoredSpec;
  /** Hash of the spec as given; same id + same hash = the same job. */
  hash: string;
}

function invalidSpec(issues: { path: string; message: string }[]): ExtjobError {
  const text = issues.map((i) => `${i.path || 'spec'}: ${i.message}`).join('; ');
  return new ExtjobError('EXTJOB_VALIDATION_FAILED', `invalid job spec: ${text}`, { details: { issues } });
}

/**
 * The path of the first text (or object key) with a lone UTF-16 surrogate, which JSON
 * can carry (`"\ud83d"`) but Redis's Lua cannot decode: a spec holding one would break
 * every script that reads it.
 */
function illFormedText(v: unknown, path = ''): string | undefined {
  if (typeof v === 'string') return v.isWellFormed() ? undefined : path || 'spec';
  if (typeof v !== 'object' || v === null) return undefined;
  for (const [k, child] of Object.entries(v)) {
    const at = path ? `${path}.${k}` : k;
    if (!k.isWellFormed()) return at;
    const bad = illFormedText(child, at);
    if (bad !== undefined) return bad;
  }
  return undefined;
}

/** Canonical JSON: object keys sorted, so equal specs hash equally. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object')
    return `{${Object.keys(v)
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

export function prepareSpec(input: unknown, defaults: Timeouts): PreparedSpec {
  // zod drops a label named __proto__ without a word (a plain object cannot hold it)
  const labels = (input as { labels?: unknown } | null)?.labels;
  if (typeof labels === 'object' && labels !== null && Object.hasOwn(labels, '__proto__'))
    throw invalidSpec([{ path: 'labels.__proto__', message: 'the key __proto__ is reserved' }]);
  const parsed = specSchema.safeParse(input);
  if (!parsed.success)
    throw invalidSpec(parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })));
  const s = parsed.data;
  const illFormed = illFormedText(s);
  if (illFormed !== undefined)
    throw invalidSpec([{ path: illFormed, message: 'not well-formed Unicode (a lone surrogate)' }]);
  const { id, ...rest } = s;
  const t: Timeouts = { ...defaults, ...s.timeouts };
  // executor first: the scripts read it from the start of the JSON line
  const stored: StoredSpec = {
    ...(s.executor !== undefined ? { e: s.executor } : {}),
    n: s.name,
    l: s.labels ?? {},
    t: [t.acceptSeconds, t.heartbeatSeconds, t.runSeconds, t.cancelGraceSeconds],
  };
  if (s.retry !== undefined) stored.r = s.retry;
  if (s.notify !== undefined) stored.o = s.notify;
  // Webhook secrets are not part of what makes a create the same: a create sent again
  // with another secret would otherwise tell 409 from 200, an oracle for guessing them
  // (they are never returned). The first create's secrets stay.
  const compared = rest.notify
    ? { ...rest, notify: rest.notify.map((n) => (n.secret === undefined ? n : { ...n, secret: true })) }
    : rest;
  const hash = createHash('sha256').update(canonicalJson(compared)).digest('base64url').slice(0, 16);
  return { id: id ?? `j-${randomUUID()}`, clientId: id !== undefined, stored, hash };
}
