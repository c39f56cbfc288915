/**
 * Turning what Redis holds (short hash fields, compact history entries, cause
 * arrays) into the public types, and causes into their compact form.
 */
import type { StoredSpec } from './spec.js';
import type { Cause, HistoryEntry, Job, JobState } from './types.js';

const OUR_TYPES = 'dev.extjob.';
/** Our own event types are stored as "~<rest>" (they appear in every history entry). */
export function shortType(t: string): string {
  let short = shortTypes.get(t);
  if (short === undefined) {
    short = t.startsWith(OUR_TYPES) ? `~${t.slice(OUR_TYPES.length)}` : t;
    // every event names one of a few types: a new string each would be garbage (bounded)
    if (shortTypes.size < 64) shortTypes.set(t, short);
  }
  return short;
}
const shortTypes = new Map<string, string>();
const longType = (t: string) => (t.startsWith('~') ? `${OUR_TYPES}${t.slice(1)}` : t);

/** Compact cause as stored in history and outbox records. */
export function encodeCause(c: Cause): string {
  switch (c.kind) {
    case 'event':
      return JSON.stringify(['e', c.eventId, c.source, shortType(c.type)]);
    case 'timer':
      return JSON.stringify(['t', c.timer]);
    case 'api':
      return JSON.stringify(c.reason === undefined ? ['a', c.caller] : ['a', c.caller, c.reason]);
  }
}

export function decodeCause(raw: unknown): Cause {
  const a = Array.isArray(raw) ? raw.map(String) : [];
  switch (a[0]) {
    case 'e':
      return { kind: 'event', eventId: a[1] ?? '', source: a[2] ?? '', type: longType(a[3] ?? '') };
    case 't':
      return { kind: 'timer', timer: (a[1] ?? 'accept') as Extract<Cause, { kind: 'timer' }>['timer'] };
    default:
      return a[2] === undefined
        ? { kind: 'api', caller: a[1] ?? '' }
        : { kind: 'api', caller: a[1] ?? '', reason: a[2] };
  }
}

/** A flat [field, value, ...] list (HGETALL as cjson encodes it; `{}` when empty) to a record. */
export function pairs(list: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!Array.isArray(list)) return out;
  for (let i = 0; i + 1 < list.length; i += 2) out[String(list[i])] = String(list[i + 1]);
  return out;
}

const iso = (ms: string | undefined) => (ms === undefined ? undefined : new Date(Number(ms)).toISOString());

function parseJson<T>(s: string | undefined): T | undefined {
  if (s === undefined) return undefined;
  try {
    return JSON.parse(s) as T;
  } catch {
    return undefined;
  }
}

/** The spec line of the `<job>:s` string (history lines follow it). */
export function specLine(raw: string | null | undefined): string | undefined {
  if (!raw) return undefined;
  const nl = raw.indexOf('\n');
  return nl < 0 ? raw : raw.slice(0, nl);
}

/** The history lines of the `<job>:s` string. */
export function historyLines(raw: string | null | undefined): string[] {
  if (!raw) return [];
  return raw.split('\n').slice(1);
}

export function decodeJob(
  id: string,
  h: Record<string, string>,
  specJson: string | null | undefined,
  long: Record<string, string>,
): Job | undefined {
  const line = specLine(specJson);
  if (h.s === undefined || !line) return undefined;
  const spec = JSON.parse(line) as StoredSpec;
  // short text fields live in the job hash, long ones in <job>:x
  const x = { ...h, ...long };
  const [acceptSeconds, heartbeatSeconds, runSeconds, cancelGraceSeconds] = spec.t;
  const job: Job = {
    id,
    name: spec.n,
    labels: spec.l ?? {},
    timeouts: { acceptSeconds, heartbeatSeconds, runSeconds, cancelGraceSeconds },
    state: h.s as JobState,
    attempt: Number(h.a ?? 1),
    createdAt: iso(h.c) ?? new Date(0).toISOString(),
    version: Number(h.v ?? 0),
  };
  const executor = spec.e ?? x.ax;
  if (executor !== undefined) job.executor = executor;
  if (spec.r) job.retry = spec.r;
  if (spec.o) job.notify = spec.o.map(({ secret: _secret, ...rest }) => rest);
  if (h.x !== undefined) job.exitCode = Number(h.x);
  const error = parseJson<Job['error']>(x.er);
  if (error) job.error = error;
  const progress = parseJson<Job['progress']>(x.pg);
  if (progress) job.progress = progress;
  if (x.sm !== undefined) job.summary = x.sm;
  if (x.du !== undefined) job.detailsUrl = x.du;
  if (h.fo !== undefined) job.forced = true;
  if (h.ac !== undefined) job.acceptedAt = iso(h.ac);
  if (h.f !== undefined) job.finishedAt = iso(h.f);
  if (h.hb !== undefined) job.lastHeartbeatAt = iso(h.hb);
  return job;
}

const HISTORY_KINDS = { t: 'transition', a: 'applied', d: 'duplicate', s: 'stale', l: 'late' } as const;

/** One compact history entry: [ms since createdAt, kind, from, to, attempt, cause, detail?]. */
export function decodeHistoryEntry(raw: string, createdAtMs: number): HistoryEntry {
  const [at, kind, from, to, attempt, cause, detail] = JSON.parse(raw) as [
    number,
    keyof typeof HISTORY_KINDS,
    JobState | null,
    JobState | null,
    number,
    unknown,
    Record<string, unknown> | undefined,
  ];
  const e: HistoryEntry = {
    at: new Date(createdAtMs + at).toISOString(),
    kind: HISTORY_KINDS[kind] ?? 'applied',
    attempt,
    cause: decodeCause(cause),
  };
  if (from) e.from = from;
  if (to) e.to = to;
  if (detail && typeof detail === 'object') e.detail = detail;
  return e;
}
