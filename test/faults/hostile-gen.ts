/**
 * Hostile Kafka messages for the hostile-input drill, generated from a fixed seed:
 * random bytes, mutated valid events, deep nesting, huge strings, wrong types, header
 * garbage, tombstones. None of them may have an effect: every one names a job that does
 * not exist (or none at all), so each must end in the DLQ with a reason, whatever the
 * parser makes of it.
 */
import fc from 'fast-check';

export interface Hostile {
  kind: string;
  key: Buffer | string | null;
  value: Buffer | null;
  headers?: Record<string, string | Buffer>;
}

const ghost = fc
  .string({ minLength: 1, maxLength: 12 })
  .map((s) => `ghost-${Buffer.from(s).toString('hex')}`);

const validEvent = fc.record({
  specversion: fc.constant('1.0'),
  id: fc.uuid(),
  source: fc.constantFrom('/x', 'tekton/ci', 'urn:a'),
  type: fc.constantFrom(
    'dev.extjob.accepted.v1',
    'dev.extjob.heartbeat.v1',
    'dev.extjob.log.v1',
    'dev.extjob.finished.v1',
    'dev.extjob.canceled.v1',
    'dev.cdevents.taskrun.started.0.2.0',
  ),
  subject: ghost,
  data: fc.oneof(
    fc.record({ seq: fc.nat(100), text: fc.string() }),
    fc.record({ exitCode: fc.integer({ min: -1, max: 255 }) }),
    fc.record({ progress: fc.record({ percent: fc.nat(100) }) }),
    fc.constant({}),
  ),
});

const anyJson = fc.jsonValue({ maxDepth: 4 });

/** Field-level mutations of a valid event (still aimed at a ghost job). */
const mutated = fc
  .tuple(
    validEvent,
    fc.constantFrom('delete', 'retype', 'replace-data', 'truncate', 'flip', 'append', 'nest-data'),
    fc.constantFrom('specversion', 'id', 'source', 'type', 'subject', 'data', 'time'),
    anyJson,
    fc.nat(),
  )
  .map(([ev, op, field, junk, n]): Hostile => {
    const obj: Record<string, unknown> = { ...ev };
    let text: string;
    switch (op) {
      case 'delete':
        delete obj[field];
        text = JSON.stringify(obj);
        break;
      case 'retype':
        obj[field] = field === 'subject' ? { id: ev.subject, junk } : junk;
        text = JSON.stringify(obj);
        break;
      case 'replace-data':
        obj.data = junk;
        text = JSON.stringify(obj);
        break;
      case 'nest-data':
        obj.data = { ...(ev.data as object), extra: junk, seq: junk, exitCode: junk };
        text = JSON.stringify(obj);
        break;
      case 'truncate': {
        const t = JSON.stringify(obj);
        text = t.slice(0, n % t.length);
        break;
      }
      case 'flip': {
        const b = Buffer.from(JSON.stringify(obj));
        b[n % b.length] = (b[n % b.length] ?? 0) ^ (1 << (n % 8));
        return { kind: 'mutated', key: ev.subject, value: b };
      }
      default:
        text = `${JSON.stringify(obj)}${String(junk)}`;
    }
    return { kind: 'mutated', key: ev.subject, value: Buffer.from(text) };
  });

const randomBytes = fc
  .tuple(fc.uint8Array({ maxLength: 2048 }), fc.option(fc.uint8Array({ maxLength: 64 })))
  .map(
    ([v, k]): Hostile => ({ kind: 'random-bytes', key: k ? Buffer.from(k) : null, value: Buffer.from(v) }),
  );

const deep = fc
  .tuple(validEvent, fc.integer({ min: 33, max: 20_000 }), fc.constantFrom('[', '{"a":'), fc.boolean())
  .map(([ev, depth, open, inData]): Hostile => {
    const close = open === '[' ? ']' : '}';
    const nest = `${open.repeat(depth)}1${close.repeat(depth)}`;
    const text = inData ? JSON.stringify({ ...ev, data: '__N__' }).replace('"__N__"', nest) : nest;
    return { kind: 'deep-nesting', key: ev.subject, value: Buffer.from(text) };
  });

/** Near the topic's record limit: log chunks and attributes far over their bounds. */
const huge = fc
  .tuple(validEvent, fc.integer({ min: 600_000, max: 1_000_000 }), fc.constantFrom('text', 'id', 'source'))
  .map(([ev, size, where]): Hostile => {
    const big = 'x'.repeat(size);
    const obj: Record<string, unknown> = { ...ev, type: 'dev.extjob.log.v1' };
    if (where === 'text') obj.data = { seq: 1, text: big };
    else obj[where] = big;
    return { kind: 'huge-string', key: ev.subject, value: Buffer.from(JSON.stringify(obj)) };
  });

const wrongTypes = fc
  .tuple(
    validEvent,
    fc.constantFrom(
      ['specversion', 1],
      ['specversion', '2.0'],
      ['id', 42],
      ['id', ''],
      ['source', null],
      ['type', ['dev.extjob.accepted.v1']],
      ['subject', 7],
      ['time', 'yesterday'],
      ['data', 'not an object'],
      ['data', { seq: -1, text: 'x' }],
      ['data', { seq: 1.5, text: 'x' }],
      ['data', { seq: 1, text: 7 }],
      ['data', { seq: 1, base64: '!!!' }],
      ['data', { exitCode: '0' }],
      ['data', { exitCode: 1e20 }],
      ['data', { attempt: 0 }],
      ['data', { attempt: 'one' }],
      ['data', { progress: { percent: 400 } }],
      ['data', { error: 'boom' }],
    ),
  )
  .map(([ev, [field, v]]): Hostile => {
    const obj: Record<string, unknown> = { ...ev, [field as string]: v };
    return { kind: 'wrong-types', key: ev.subject, value: Buffer.from(JSON.stringify(obj)) };
  });

const headerGarbage = fc
  .tuple(
    validEvent,
    fc.dictionary(
      fc.oneof(
        fc.constantFrom('ce_specversion', 'ce_id', 'ce_type', 'ce_subject', 'ce_source', 'content-type'),
        fc.string(),
      ),
      fc.oneof(
        fc.string(),
        fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
        fc.constant('x'.repeat(10_000)),
      ),
      { maxKeys: 8 },
    ),
    fc.oneof(
      fc.uint8Array({ maxLength: 256 }).map((a) => Buffer.from(a)),
      anyJson.map((j) => Buffer.from(JSON.stringify(j))),
    ),
    fc.boolean(),
  )
  .map(([ev, garbage, value, binary]): Hostile => {
    const headers: Record<string, string | Buffer> = binary
      ? {
          ce_specversion: '1.0',
          ce_id: ev.id,
          ce_source: ev.source,
          ce_type: ev.type,
          ce_subject: ev.subject,
          ...garbage,
        }
      : garbage;
    return { kind: 'header-garbage', key: ev.subject, value, headers };
  });

const tombstone = fc
  .tuple(ghost, fc.boolean())
  .map(([k, empty]): Hostile => ({ kind: 'tombstone', key: k, value: empty ? Buffer.alloc(0) : null }));

/** `total` hostile messages in a fixed mix, reproducible from `seed`. */
export function hostileMessages(total: number, seed: number): Hostile[] {
  const mix: [fc.Arbitrary<Hostile>, number][] = [
    [randomBytes, 0.2],
    [mutated, 0.35],
    [deep, 0.03],
    [huge, 0.002],
    [wrongTypes, 0.25],
    [headerGarbage, 0.158],
    [tombstone, 0.01],
  ];
  const out: Hostile[] = [];
  mix.forEach(([arb, share], i) => {
    const n = i === mix.length - 1 ? total - out.length : Math.round(total * share);
    out.push(...fc.sample(arb, { numRuns: n, seed: seed + i }));
  });
  // Interleave the kinds deterministically.
  const rng = fc.sample(fc.nat(), { numRuns: out.length, seed });
  return out
    .map((m, i) => ({ m, r: rng[i] ?? i }))
    .sort((a, b) => a.r - b.r)
    .map((x) => x.m);
}
