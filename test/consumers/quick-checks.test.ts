/**
 * The hand-written checks of the hot path (quickAttributes, quickData) against the
 * zod schemas they stand in for: for any input both accept or both refuse, and
 * accepted values come out the same. zod stays the definition and explains refusals.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { EventKind } from '../../src/broker/types.js';
import { attributes, quickAttributes } from '../../src/consumers/formats/cloudevents-v1.js';
import { dataSchemas, quickData } from '../../src/consumers/formats/extjob-v1.js';

const text = fc.oneof(
  fc.string({ maxLength: 8 }),
  fc
    .constantFrom(0, 1, 127, 128, 129, 255, 256, 257, 1023, 1024, 1025, 2047, 2048, 2049, 4096, 4097)
    .map((n) => 'a'.repeat(n)),
);
const numbers = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.constantFrom(0, -0, 0.5, 1, 99.5, 100, 101, 1000, 1001, 2 ** 31 - 1, 2 ** 31, -(2 ** 31)),
  fc.constantFrom(-(2 ** 31) - 1, 2 ** 32 - 1, 2 ** 32, 2 ** 53, -1, Number.NaN, Number.POSITIVE_INFINITY),
);
const times = fc.constantFrom(
  '2026-11-27T10:00:00Z',
  '2026-11-27T10:00:00.123456789+01:00',
  '2026-11-27 10:00:00z',
  '2026-13-45T10:00:00Z',
  '2026-11-27',
  `2026-11-27T10:00:00.${'1'.repeat(60)}Z`,
);
const urls = fc.constantFrom('http://x', 'https://example.com/a?b', 'ftp://x', 'javascript:x', 'not a url');
const scalar = fc.oneof(
  { weight: 4, arbitrary: text },
  { weight: 4, arbitrary: numbers },
  { weight: 1, arbitrary: times },
  { weight: 1, arbitrary: urls },
  { weight: 1, arbitrary: fc.constantFrom(true, null, [], {}) },
);
/** An object with some of `keys` (and maybe one more), values of any of the shapes. */
const objectOf = (keys: string[], value: fc.Arbitrary<unknown>) =>
  fc
    .tuple(
      fc.dictionary(fc.constantFrom(...keys), value, { maxKeys: keys.length }),
      fc.option(fc.tuple(fc.constantFrom('extra', '__proto__', 'constructor'), scalar), { nil: undefined }),
    )
    .map(([o, extra]) => {
      const out: Record<string, unknown> = JSON.parse(JSON.stringify(o ?? {}));
      if (extra) Object.defineProperty(out, extra[0], { value: extra[1], enumerable: true, writable: true });
      return out;
    });
const progress = objectOf(['percent', 'phase', 'message'], scalar);
const error = objectOf(['type', 'message'], scalar);
const value = fc.oneof({ weight: 6, arbitrary: scalar }, progress, error);

/** Every value above that fast-check can list, for the one-field-at-a-time sweep. */
const sample = <T>(a: fc.Arbitrary<T>, n: number) => fc.sample(a, { numRuns: n, seed: 7 });
const SCALARS: unknown[] = [
  ...[0, 1, 127, 128, 129, 255, 256, 257, 1023, 1024, 1025, 2047, 2048, 2049, 4095, 4096, 4097].map((n) =>
    'a'.repeat(n),
  ),
  ...[0, -0, 0.5, 1, 99.5, 100, 100.5, 101, 999, 1000, 1001, -1, -0.5, Number.NaN, Number.POSITIVE_INFINITY],
  ...[2 ** 31 - 1, 2 ** 31, -(2 ** 31), -(2 ** 31) - 1, 2 ** 32 - 1, 2 ** 32, 2 ** 53],
  ...sample(times, 30),
  ...sample(urls, 30),
  ...[true, null, [], {}, '1.0'],
];
/** Scalars, and the nested objects (progress, error) with one field set to each scalar. */
const SWEEP: unknown[] = [
  ...SCALARS,
  ...['percent', 'phase', 'message', 'extra'].flatMap((k) => SCALARS.map((v) => ({ [k]: v }))),
  ...['type', 'message', 'extra'].flatMap((k) => SCALARS.map((v) => ({ type: 't', message: 'm', [k]: v }))),
  { type: 't' },
  { message: 'm' },
  ...sample(progress, 100),
  ...sample(error, 100),
];
const BASE: Record<EventKind, Record<string, unknown>> = {
  accepted: {},
  heartbeat: {},
  log: { seq: 1 },
  finished: { exitCode: 0 },
  canceled: {},
};

const DATA_KEYS: Record<EventKind, string[]> = {
  accepted: ['attempt', 'executor', 'detailsUrl', 'message'],
  heartbeat: ['attempt', 'progress'],
  log: ['attempt', 'seq', 'text', 'base64'],
  finished: ['attempt', 'exitCode', 'error', 'summary', 'lastSeq'],
  canceled: ['attempt', 'reason'],
};

const agreeOnData = (kind: EventKind, d: Record<string, unknown>) => {
  const quick = quickData(kind, d);
  const zod = dataSchemas[kind].safeParse(d);
  expect(quick !== undefined, JSON.stringify(d).slice(0, 200)).toBe(zod.success);
  if (quick) expect(quick).toEqual(zod.data);
};

describe('quick checks agree with the zod schemas', () => {
  it('one field at a time, each value of the sweep', () => {
    for (const kind of Object.keys(DATA_KEYS) as EventKind[])
      for (const key of [...DATA_KEYS[kind], 'extra'])
        for (const v of SWEEP) agreeOnData(kind, { ...BASE[kind], [key]: v });
  });

  for (const kind of Object.keys(DATA_KEYS) as EventKind[]) {
    it(`data of ${kind}`, () => {
      fc.assert(
        fc.property(objectOf(DATA_KEYS[kind], value), (d) => agreeOnData(kind, d)),
        { numRuns: 3000 },
      );
    });
  }

  it('CloudEvents attributes', () => {
    const keys = ['specversion', 'id', 'source', 'type', 'subject', 'time', 'datacontenttype', 'dataschema'];
    const valid = { specversion: '1.0', id: 'i', source: 's', type: 't' };
    const agree = (obj: Record<string, unknown>) => {
      const quick = quickAttributes(obj);
      const zod = attributes.safeParse(obj);
      expect(quick !== undefined, JSON.stringify(obj).slice(0, 200)).toBe(zod.success);
      if (quick) for (const k of keys) expect(quick[k as keyof typeof quick]).toEqual(zod.data?.[k]);
    };
    for (const key of keys) for (const v of [...SWEEP, undefined]) agree({ ...valid, [key]: v });
    const attr = fc.oneof(scalar, fc.constant('1.0'), fc.constant('1.0'));
    fc.assert(fc.property(objectOf(keys, attr), agree), { numRuns: 5000 });
  });
});
