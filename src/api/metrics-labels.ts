/**
 * Label values with a bounded number of series. Prometheus keeps one series per label
 * combination, so free text from clients (executor names, CloudEvents types) is
 * folded into a fixed vocabulary or capped, never used as is.
 */

/** The value when it is one of `allowed`, else "other". */
export function boundedLabel(value: string | undefined, allowed: ReadonlySet<string>): string {
  return value !== undefined && allowed.has(value) ? value : 'other';
}

const EXTJOB_TYPE = /^dev\.extjob\.(accepted|heartbeat|log|finished|canceled)\.v1$/;
const CDEVENTS_TYPE = /^dev\.cdevents\.taskrun\.(started|finished)\.[0-9A-Za-z.+-]{1,32}$/;

/**
 * The `type` label of extjob_events_total: the extjob types as they are, CDEvents
 * taskrun types without their version, "unknown" when the message had no readable
 * type, anything else "other".
 */
export function eventTypeLabel(type: string | undefined): string {
  if (type === undefined || type === '') return 'unknown';
  let label = typeLabels.get(type);
  if (label === undefined) {
    const cd = CDEVENTS_TYPE.exec(type);
    label = EXTJOB_TYPE.test(type) ? type : cd ? `dev.cdevents.taskrun.${cd[1]}` : 'other';
    // the few types a deployment sends, remembered (bounded: types are client text)
    if (typeLabels.size < 256) typeLabels.set(type, label);
  }
  return label;
}
const typeLabels = new Map<string, string>();

/**
 * Keeps the first `max` distinct values it sees (trimmed to 64 characters of a safe
 * alphabet); later new values become "other". Missing values are "none".
 */
export class LabelLimiter {
  private readonly seen = new Set<string>();

  constructor(private readonly max: number) {}

  label(value: string | undefined): string {
    if (value === undefined || value === '') return 'none';
    const clean = value.replace(/[^A-Za-z0-9._:/@-]/g, '_').slice(0, 64);
    if (this.seen.has(clean)) return clean;
    if (this.seen.size >= this.max) return 'other';
    this.seen.add(clean);
    return clean;
  }
}
