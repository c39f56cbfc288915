import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { JobEvent } from '../../src/broker/types.js';
import {
  DEFAULT_LIMITS,
  DLQ_REASONS,
  encodeBinary,
  encodeHttpEvent,
  encodeStructured,
  type ParseResult,
  parseHttpEvent,
  parseMessage,
  type RawMessage,
} from '../../src/consumers/formats/index.js';
import { decodesTo, decodeUtf8, jsonDepthExceeds } from '../../src/consumers/formats/json-bytes.js';

const fixture = (name: string): Record<string, unknown> =>
  JSON.parse(readFileSync(new URL(`../fixtures/cdevents/${name}.json`, import.meta.url), 'utf8'));

const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const structured = (ce: Record<string, unknown>, key: string | null = 'job-1'): RawMessage => ({
  key: key === null ? null : Buffer.from(key),
  value: json(ce),
  headers: { 'content-type': Buffer.from('application/cloudevents+json') },
});
const binary = (attrs: Record<string, string>, data: unknown, key: string | null = 'job-1'): RawMessage => ({
  key: key === null ? null : Buffer.from(key),
  value: data === undefined ? null : json(data),
  headers: {
    ...Object.fromEntries(Object.entries(attrs).map(([k, v]) => [`ce_${k}`, Buffer.from(v)])),
    'content-type': Buffer.from('application/json'),
  },
});
const attrs = (type: string, extra: Record<string, string> = {}) => ({
  specversion: '1.0',
  id: 'e-1',
  source: '/argo/app',
  type,
  subject: 'job-1',
  ...extra,
});

function ok(r: ParseResult): JobEvent {
  if (!r.ok) throw new Error(`expected ok, got ${r.reason}: ${r.detail}`);
  return r.event;
}
function reason(r: ParseResult): string {
  if (r.ok) throw new Error(`expected a failure, got ${JSON.stringify(r.event)}`);
  return r.reason;
}

/** Each extjob type: its data and the JobEvent fields it must produce. */
const CASES: [string, unknown, Partial<JobEvent>][] = [
  [
    'dev.extjob.accepted.v1',
    { attempt: 1, executor: 'argocd', detailsUrl: 'https://argo.example/app/x', message: 'syncing' },
    {
      kind: 'accepted',
      attempt: 1,
      executor: 'argocd',
      detailsUrl: 'https://argo.example/app/x',
      message: 'syncing',
    },
  ],
  [
    'dev.extjob.heartbeat.v1',
    { progress: { percent: 42.5, phase: 'sync', message: '3/7 resources' } },
    { kind: 'heartbeat', progress: { percent: 42.5, phase: 'sync', message: '3/7 resources' } },
  ],
  // text stays text (Redis stores its UTF-8 bytes), base64 becomes bytes
  ['dev.extjob.log.v1', { seq: 3, text: 'héllo\n' }, { kind: 'log', seq: 3, chunk: 'héllo\n' }],
  [
    'dev.extjob.log.v1',
    { attempt: 2, seq: 0, base64: Buffer.from([0, 255, 10]).toString('base64') },
    { kind: 'log', attempt: 2, seq: 0, chunk: Buffer.from([0, 255, 10]) },
  ],
  [
    'dev.extjob.finished.v1',
    { exitCode: 2, error: { type: 'SyncFailed', message: 'boom' }, summary: 'failed', lastSeq: 9 },
    {
      kind: 'finished',
      exitCode: 2,
      error: { type: 'SyncFailed', message: 'boom' },
      summary: 'failed',
      lastSeq: 9,
    },
  ],
  ['dev.extjob.finished.v1', { exitCode: 0 }, { kind: 'finished', exitCode: 0 }],
  ['dev.extjob.canceled.v1', { reason: 'asked to' }, { kind: 'canceled', reason: 'asked to' }],
];

describe('dev.extjob.*.v1 in both bindings', () => {
  for (const [type, data, expected] of CASES) {
    it(`${type} ${JSON.stringify(data).slice(0, 40)} structured`, () => {
      const ev = ok(parseMessage(structured({ ...attrs(type), time: '2026-01-02T03:04:05Z', data })));
      expect(ev).toEqual({
        jobId: 'job-1',
        id: 'e-1',
        source: '/argo/app',
        type,
        time: '2026-01-02T03:04:05Z',
        ...expected,
      });
    });
    it(`${type} ${JSON.stringify(data).slice(0, 40)} binary`, () => {
      const ev = ok(parseMessage(binary(attrs(type), data)));
      expect(ev).toEqual({ jobId: 'job-1', id: 'e-1', source: '/argo/app', type, ...expected });
    });
  }

  it('takes a leap second (second 60 of 23:59 UTC) in any offset', () => {
    for (const time of ['2016-12-31T23:59:60Z', '1990-12-31T15:59:60-08:00', '2017-01-01T05:29:60.5+05:30'])
      expect(ok(parseMessage(structured({ ...attrs('dev.extjob.accepted.v1'), time }))).time, time).toBe(
        time,
      );
  });

  it('reads a plain JSON value without a content type as structured', () => {
    const msg = structured({ ...attrs('dev.extjob.accepted.v1') });
    msg.headers = {};
    expect(ok(parseMessage(msg)).kind).toBe('accepted');
  });

  it('accepts data_base64 in structured mode', () => {
    const data_base64 = Buffer.from(JSON.stringify({ exitCode: 0 })).toString('base64');
    expect(ok(parseMessage(structured({ ...attrs('dev.extjob.finished.v1'), data_base64 }))).exitCode).toBe(
      0,
    );
  });

  it('accepts events with no data when every data field is optional', () => {
    expect(ok(parseMessage(binary(attrs('dev.extjob.canceled.v1'), undefined))).kind).toBe('canceled');
    expect(ok(parseMessage(structured({ ...attrs('dev.extjob.heartbeat.v1'), data: null }))).kind).toBe(
      'heartbeat',
    );
  });

  it('ignores unknown data fields and CloudEvents extensions', () => {
    const ev = ok(
      parseMessage(
        structured({ ...attrs('dev.extjob.finished.v1'), traceparent: 'x', data: { exitCode: 0, x: 1 } }),
      ),
    );
    expect(ev).not.toHaveProperty('x');
  });

  it('flags a key that differs from the subject, but not a missing key', () => {
    const ce = attrs('dev.extjob.accepted.v1');
    expect(parseMessage(structured(ce, 'other'))).toMatchObject({ ok: true, keyMismatch: true });
    expect(parseMessage(structured(ce, null))).not.toHaveProperty('keyMismatch');
    expect(parseMessage(structured(ce, 'job-1'))).not.toHaveProperty('keyMismatch');
  });

  it('takes binary mode headers given as strings or single-element arrays', () => {
    const msg = binary(attrs('dev.extjob.accepted.v1'), {});
    msg.headers = {
      ce_specversion: '1.0',
      ce_id: ['e-1'],
      ce_source: 's',
      ce_type: 'dev.extjob.accepted.v1',
      ce_subject: 'job-1',
    };
    expect(ok(parseMessage(msg)).source).toBe('s');
  });
});

describe('CloudEvents binding details', () => {
  it('reads a structured message that also carries ce_ headers as structured', () => {
    const value = { ...attrs('dev.extjob.accepted.v1'), data: { executor: 'argo' } };
    const msg: RawMessage = {
      key: Buffer.from('job-1'),
      value: json(value),
      headers: {
        ...binary(attrs('dev.extjob.accepted.v1'), undefined).headers,
        'content-type': Buffer.from('Application/CloudEvents+JSON; charset=UTF-8'),
      },
    };
    expect(ok(parseMessage(msg))).toMatchObject({ kind: 'accepted', executor: 'argo' });
    const finished = { ...value, type: 'dev.extjob.finished.v1', data: { exitCode: 3 } };
    expect(ok(parseMessage({ ...msg, value: json(finished) }))).toMatchObject({
      kind: 'finished',
      exitCode: 3,
    });
  });

  it('takes a null optional attribute as unset (JSON format 2.2)', () => {
    const ce = {
      ...attrs('dev.extjob.finished.v1'),
      time: null,
      datacontenttype: null,
      dataschema: null,
      data_base64: null,
      data: { exitCode: 0 },
    };
    expect(ok(parseMessage(structured(ce)))).toMatchObject({ kind: 'finished', exitCode: 0 });
    const noSubject = { ...ce, subject: null };
    expect(ok(parseHttpEvent(noSubject, 'job-9')).jobId).toBe('job-9');
    expect(reason(parseMessage(structured({ ...ce, id: null })))).toBe('invalid');
  });

  it('takes an empty data_base64 as no data, as an empty binary value is', () => {
    expect(ok(parseMessage(structured({ ...attrs('dev.extjob.accepted.v1'), data_base64: '' }))).kind).toBe(
      'accepted',
    );
  });
});

describe('CDEvents (recorded conformance examples)', () => {
  const started = fixture('taskrun_started');
  const finished = fixture('taskrun_finished');

  it('bare taskrun.started acts as accepted', () => {
    const ev = ok(parseMessage({ key: Buffer.from('mySubject123'), value: json(started), headers: {} }));
    expect(ev).toEqual({
      kind: 'accepted',
      jobId: 'mySubject123',
      id: '271069a8-fc18-44f1-b38f-9d70a1695819',
      source: '/event/source/123',
      type: 'dev.cdevents.taskrun.started.0.3.0-draft',
      time: '2023-03-20T14:27:05.315384Z',
      detailsUrl: 'https://www.example.com/mySubject123',
    });
  });

  it('bare taskrun.finished with outcome failure is exit 1 with the error text', () => {
    const ev = ok(parseMessage({ key: null, value: json(finished), headers: {} }));
    expect(ev).toMatchObject({
      kind: 'finished',
      jobId: 'mySubject123',
      exitCode: 1,
      error: { type: 'failure', message: 'Something went wrong\nWith some more details' },
      type: 'dev.cdevents.taskrun.finished.0.3.0-draft',
    });
  });

  it('outcomes: success 0, error 1, missing is invalid', () => {
    const withOutcome = (outcome: unknown) => {
      const f = structuredClone(finished) as { subject: { content: Record<string, unknown> } };
      f.subject.content.outcome = outcome;
      return parseMessage({ key: null, value: json(f), headers: {} });
    };
    expect(ok(withOutcome('success'))).not.toHaveProperty('error');
    expect(ok(withOutcome('success')).exitCode).toBe(0);
    expect(ok(withOutcome('error'))).toMatchObject({ exitCode: 1, error: { type: 'error' } });
    expect(reason(withOutcome(undefined))).toBe('invalid');
    expect(reason(withOutcome('maybe'))).toBe('invalid');
  });

  for (const [name, doc] of [
    ['started', started],
    ['finished', finished],
  ] as const) {
    const ctx = doc.context as Record<string, string>;
    const ceAttrs = {
      specversion: '1.0',
      id: ctx.id!,
      source: ctx.source!,
      type: ctx.type!,
      subject: 'mySubject123',
    };
    it(`taskrun.${name} as the data of a structured CloudEvent`, () => {
      const ev = ok(parseMessage(structured({ ...ceAttrs, data: doc }, 'mySubject123')));
      expect(ev.jobId).toBe('mySubject123');
      expect(ev.kind).toBe(name === 'started' ? 'accepted' : 'finished');
    });
    it(`taskrun.${name} as the data of a binary CloudEvent`, () => {
      const ev = ok(parseMessage(binary(ceAttrs, doc, 'mySubject123')));
      expect(ev.jobId).toBe('mySubject123');
      expect(ev.id).toBe(ctx.id);
    });
  }

  it('rejects a CloudEvent subject that differs from subject.id', () => {
    const ctx = started.context as Record<string, string>;
    const r = parseMessage(
      structured({
        specversion: '1.0',
        id: 'x',
        source: 's',
        type: ctx.type,
        subject: 'other',
        data: started,
      }),
    );
    expect(reason(r)).toBe('invalid');
  });

  it('other CDEvents types are unsupported, whatever their subject looks like', () => {
    const other = structuredClone(started) as {
      context: Record<string, unknown>;
      subject: Record<string, unknown>;
    };
    other.context.type = 'dev.cdevents.pipelinerun.started.0.3.0';
    expect(reason(parseMessage({ key: null, value: json(other), headers: {} }))).toBe('unsupported_type');
    // an artifact's subject id is a purl, no job id
    other.context.type = 'dev.cdevents.artifact.published.0.1.0';
    other.subject.id = 'pkg:golang/mygit.com/myorg/myapp@234fd47e07d1004f0aed9c';
    expect(reason(parseMessage({ key: null, value: json(other), headers: {} }))).toBe('unsupported_type');
    const wrapped = structured({ ...attrs('dev.cdevents.pipelinerun.started.0.3.0'), data: undefined });
    expect(reason(parseMessage(wrapped))).toBe('unsupported_type');
  });

  it('leaves out a details URL it cannot use rather than refusing the event', () => {
    const long = structuredClone(started) as { subject: { content: Record<string, unknown> } };
    long.subject.content.url = `https://ci.example/${'x'.repeat(3000)}`;
    const ev = ok(parseMessage({ key: null, value: json(long), headers: {} }));
    expect(ev.kind).toBe('accepted');
    expect(ev.detailsUrl).toBeUndefined();
  });
});

describe('bad input is classified, never thrown', () => {
  const finishedCe = attrs('dev.extjob.finished.v1');
  const bad: [string, RawMessage, string][] = [
    ['random bytes', { key: null, value: Buffer.from([0xff, 0xfe, 0x00, 0x81]), headers: {} }, 'malformed'],
    ['invalid JSON', { key: null, value: Buffer.from('{"specversion":'), headers: {} }, 'malformed'],
    ['no value', { key: null, value: null, headers: {} }, 'malformed'],
    ['a JSON array', { key: null, value: Buffer.from('[1,2]'), headers: {} }, 'invalid'],
    ['missing specversion', structured({ id: 'x', source: 's', type: 'dev.extjob.accepted.v1' }), 'invalid'],
    ['specversion 0.3', structured({ ...attrs('dev.extjob.accepted.v1'), specversion: '0.3' }), 'invalid'],
    ['missing id', structured({ ...attrs('dev.extjob.accepted.v1'), id: undefined }), 'invalid'],
    ['missing subject', structured({ ...attrs('dev.extjob.accepted.v1'), subject: undefined }), 'invalid'],
    ['bad job id', structured({ ...attrs('dev.extjob.accepted.v1'), subject: 'a b' }), 'invalid'],
    ['bad time', structured({ ...attrs('dev.extjob.accepted.v1'), time: 'yesterday' }), 'invalid'],
    // Date.parse alone takes these for other days
    [
      'February 30',
      structured({ ...attrs('dev.extjob.accepted.v1'), time: '2024-02-30T00:00:00Z' }),
      'invalid',
    ],
    [
      'April 31',
      structured({ ...attrs('dev.extjob.accepted.v1'), time: '2024-04-31T10:00:00+02:00' }),
      'invalid',
    ],
    ['hour 24', structured({ ...attrs('dev.extjob.accepted.v1'), time: '2024-04-01T24:00:00Z' }), 'invalid'],
    // second 60 only as a leap second: 23:59:60 UTC
    [
      'second 60',
      structured({ ...attrs('dev.extjob.accepted.v1'), time: '2016-12-31T12:59:60Z' }),
      'invalid',
    ],
    ['exitCode a string', structured({ ...finishedCe, data: { exitCode: '0' } }), 'invalid'],
    ['exitCode fractional', structured({ ...finishedCe, data: { exitCode: 0.5 } }), 'invalid'],
    ['exitCode missing', structured({ ...finishedCe, data: {} }), 'invalid'],
    ['finished without data', structured(finishedCe), 'invalid'],
    ['attempt 0', structured({ ...finishedCe, data: { exitCode: 0, attempt: 0 } }), 'invalid'],
    [
      'percent 101',
      structured({ ...attrs('dev.extjob.heartbeat.v1'), data: { progress: { percent: 101 } } }),
      'invalid',
    ],
    [
      'log with text and base64',
      structured({ ...attrs('dev.extjob.log.v1'), data: { seq: 1, text: 'a', base64: 'YQ==' } }),
      'invalid',
    ],
    ['log with neither', structured({ ...attrs('dev.extjob.log.v1'), data: { seq: 1 } }), 'invalid'],
    [
      'log with bad base64',
      structured({ ...attrs('dev.extjob.log.v1'), data: { seq: 1, base64: 'a*b=' } }),
      'invalid',
    ],
    [
      'log seq negative',
      structured({ ...attrs('dev.extjob.log.v1'), data: { seq: -1, text: 'a' } }),
      'invalid',
    ],
    [
      'detailsUrl not http',
      structured({ ...attrs('dev.extjob.accepted.v1'), data: { detailsUrl: 'javascript:x' } }),
      'invalid',
    ],
    ['data not an object', structured({ ...finishedCe, data: 'x' }), 'invalid'],
    ['unknown type', structured(attrs('com.example.thing.v1')), 'unsupported_type'],
    ['unknown extjob version', structured(attrs('dev.extjob.finished.v2')), 'unsupported_type'],
    [
      'nested too deep',
      { key: null, value: Buffer.from(`${'['.repeat(100)}${']'.repeat(100)}`), headers: {} },
      'invalid',
    ],
    ['huge value', { key: null, value: Buffer.alloc(2 * 1024 * 1024, 0x20), headers: {} }, 'too_large'],
    [
      'huge log chunk',
      structured({
        ...attrs('dev.extjob.log.v1'),
        data: { seq: 1, base64: Buffer.alloc(600 * 1024).toString('base64') },
      }),
      'too_large',
    ],
    [
      'binary header not UTF-8',
      { key: null, value: null, headers: { ce_specversion: '1.0', ce_id: Buffer.from([0xc3, 0x28]) } },
      'malformed',
    ],
    [
      'binary header too long',
      binary({ ...attrs('dev.extjob.accepted.v1'), source: 'x'.repeat(5000) }, {}),
      'too_large',
    ],
    [
      'binary data not JSON',
      { ...binary(attrs('dev.extjob.accepted.v1'), {}), value: Buffer.from('not json') },
      'malformed',
    ],
    [
      'binary non-JSON content type',
      {
        ...binary(attrs('dev.extjob.accepted.v1'), {}),
        headers: { ...binary(attrs('dev.extjob.accepted.v1'), {}).headers, 'content-type': 'text/plain' },
      },
      'invalid',
    ],
    [
      'structured with a non-JSON content type',
      { key: null, value: json(attrs('dev.extjob.accepted.v1')), headers: { 'content-type': 'text/plain' } },
      'invalid',
    ],
    [
      'CDEvent missing context.id',
      {
        key: null,
        value: json({
          context: {
            source: 's',
            type: 'dev.cdevents.taskrun.started.0.3.0',
            timestamp: '2023-03-20T14:27:05Z',
          },
          subject: { id: 'j' },
        }),
        headers: {},
      },
      'invalid',
    ],
  ];
  for (const [name, msg, want] of bad)
    it(`${name} -> ${want}`, () => {
      const r = parseMessage(msg);
      expect(reason(r)).toBe(want);
      if (!r.ok) expect(r.detail.length).toBeGreaterThan(5);
    });

  it('names the offending field in the detail', () => {
    const r = parseMessage(structured({ ...finishedCe, data: { exitCode: 'zero' } }));
    expect(r.ok ? '' : r.detail).toMatch(/^data\.exitCode: /);
  });
});

describe('HTTP bodies', () => {
  it('takes the job id from the path when subject is absent', () => {
    const body = {
      specversion: '1.0',
      id: 'h1',
      source: 'cli',
      type: 'dev.extjob.finished.v1',
      data: { exitCode: 0 },
    };
    expect(ok(parseHttpEvent(json(body), 'job-9')).jobId).toBe('job-9');
    expect(ok(parseHttpEvent(body, 'job-9')).jobId).toBe('job-9');
  });
  it('rejects a subject that is not the path job', () => {
    const body = {
      specversion: '1.0',
      id: 'h1',
      source: 'cli',
      type: 'dev.extjob.accepted.v1',
      subject: 'job-8',
    };
    expect(reason(parseHttpEvent(body, 'job-9'))).toBe('invalid');
  });
  it('accepts a bare CDEvent for the path job', () => {
    expect(ok(parseHttpEvent(fixture('taskrun_started'), 'mySubject123')).kind).toBe('accepted');
    expect(reason(parseHttpEvent(fixture('taskrun_started'), 'other'))).toBe('invalid');
  });
  it('classifies bad bodies', () => {
    expect(reason(parseHttpEvent(Buffer.from('{'), 'j'))).toBe('malformed');
    expect(reason(parseHttpEvent(Buffer.alloc(2_000_000, 32), 'j'))).toBe('too_large');
  });
  it('refuses a body at the limit that the consumers would refuse once written to Kafka', () => {
    const limits = { ...DEFAULT_LIMITS, maxValueBytes: 300 };
    const event = (text: string) =>
      json({
        specversion: '1.0',
        id: 'h2',
        source: 'cli',
        type: 'dev.extjob.log.v1',
        data: { seq: 0, text },
      });
    const body = event('x'.repeat(300 - event('').length)); // the subject and datacontenttype go on top
    expect(body.length).toBe(300);
    const ev = ok(parseHttpEvent(body, 'job-9', limits));
    expect(() => encodeHttpEvent(ev, body, limits)).toThrow(
      expect.objectContaining({ code: 'EXTJOB_PAYLOAD_TOO_LARGE' }),
    );
    // what fits is written, and read back as sent
    const small = event('x');
    const m = encodeHttpEvent(ok(parseHttpEvent(small, 'job-9', limits)), small, limits);
    expect(ok(parseMessage(m, limits))).toMatchObject({ jobId: 'job-9', chunk: 'x' });
  });
});

// ---- properties -------------------------------------------------------------

const headerValue = fc.oneof(
  fc.string(),
  fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
);
const headerName = fc.oneof(
  fc.constantFrom('ce_specversion', 'ce_id', 'ce_source', 'ce_type', 'ce_subject', 'ce_time', 'content-type'),
  fc.string({ maxLength: 12 }),
);
const anyBytes = fc.oneof(
  fc.uint8Array({ maxLength: 512 }).map((a) => Buffer.from(a)),
  fc.json().map((s) => Buffer.from(s)),
  fc.jsonValue().map((v) => json({ ...attrs('dev.extjob.log.v1'), data: v })),
);

describe('properties', () => {
  it('any bytes and headers never throw and give a known reason', () => {
    fc.assert(
      fc.property(
        fc.option(anyBytes, { nil: null }),
        fc.option(anyBytes, { nil: null }),
        fc.dictionary(headerName, headerValue, { maxKeys: 8 }),
        (key, value, headers) => {
          const r = parseMessage({ key, value, headers });
          if (!r.ok) expect(DLQ_REASONS).toContain(r.reason);
          const h = parseHttpEvent(value ?? Buffer.alloc(0), 'job-1');
          if (!h.ok) expect(DLQ_REASONS).toContain(h.reason);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('structured-looking values with random attributes never throw', () => {
    const attr = fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.jsonValue());
    fc.assert(
      fc.property(
        fc.record(
          {
            specversion: fc.constantFrom('1.0', 1, undefined),
            id: attr,
            source: attr,
            type: fc.constantFrom(...CASES.map((c) => c[0]), 'x'),
            subject: attr,
            data: fc.jsonValue(),
          },
          { requiredKeys: [] },
        ),
        (ce) => {
          const r = parseMessage({ key: null, value: json(ce), headers: {} });
          if (!r.ok) expect(DLQ_REASONS).toContain(r.reason);
        },
      ),
      { numRuns: 500 },
    );
  });

  const text = (max: number) => fc.string({ maxLength: max, unit: 'grapheme' });
  const jobId = fc.stringMatching(/^[A-Za-z0-9._:-]{1,40}$/);
  const common = {
    jobId,
    id: text(40).filter((s) => s.length > 0),
    source: text(40).filter((s) => s.length > 0),
    time: fc.option(
      fc
        .date({ min: new Date('2000-01-01'), max: new Date('2100-01-01'), noInvalidDate: true })
        .map((d) => d.toISOString()),
      { nil: undefined },
    ),
    attempt: fc.option(fc.integer({ min: 1, max: 1000 }), { nil: undefined }),
  };
  const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });
  const event: fc.Arbitrary<JobEvent> = fc
    .oneof(
      fc.record({
        ...common,
        kind: fc.constant('accepted' as const),
        executor: opt(text(30)),
        detailsUrl: opt(fc.webUrl()),
        message: opt(text(50)),
      }),
      fc.record({
        ...common,
        kind: fc.constant('heartbeat' as const),
        progress: opt(
          fc.record(
            { percent: fc.double({ min: 0, max: 100, noNaN: true }), phase: text(20), message: text(40) },
            { requiredKeys: [] },
          ),
        ),
      }),
      fc.record({
        ...common,
        kind: fc.constant('log' as const),
        seq: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        chunk: fc.oneof(
          text(100).map((s) => Buffer.from(s)),
          fc.uint8Array({ maxLength: 100 }).map((a) => Buffer.from(a)),
        ),
      }),
      fc.record({
        ...common,
        kind: fc.constant('finished' as const),
        exitCode: fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 }),
        error: opt(fc.record({ type: text(20).filter((s) => s.length > 0), message: text(50) })),
        summary: opt(text(50)),
        lastSeq: opt(fc.nat()),
      }),
      fc.record({ ...common, kind: fc.constant('canceled' as const), reason: opt(text(50)) }),
    )
    .map((ev) => {
      const out = { ...ev, type: `dev.extjob.${ev.kind}.v1` } as Record<string, unknown>;
      for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
      return out as unknown as JobEvent;
    });

  it('valid events round-trip through both bindings', () => {
    fc.assert(
      fc.property(event, fc.boolean(), (ev, bin) => {
        const m = bin ? encodeBinary(ev) : encodeStructured(ev);
        const r = parseMessage({ key: Buffer.from(m.key), value: m.value, headers: m.headers });
        // a chunk may come back as text or bytes: the same bytes either way
        const bytes = (e: JobEvent) => (e.chunk === undefined ? e : { ...e, chunk: Buffer.from(e.chunk) });
        expect(r.ok && { ok: true, event: bytes(r.event) }).toEqual({ ok: true, event: bytes(ev) });
      }),
      { numRuns: 500 },
    );
  });
});

describe('log chunks going out', () => {
  // docs/cli.md (emit log): text unless not UTF-8 or larger as JSON than as base64
  it('are text when JSON carries them in no more room than base64, else base64', () => {
    const data = (chunk: Buffer) => {
      const ev: JobEvent = {
        id: 'e',
        source: 's',
        type: 'dev.extjob.log.v1',
        jobId: 'job-1',
        kind: 'log',
        seq: 0,
        chunk,
      };
      return JSON.parse(encodeStructured(ev).value.toString()).data as Record<string, unknown>;
    };
    expect(data(Buffer.from('step one: ok\n'))).toEqual({ seq: 0, text: 'step one: ok\n' });
    for (const chunk of [
      Buffer.from([0x6f, 0x6b, 0xff]), // not UTF-8
      Buffer.from('\x1b[31mred\x1b[0m\x1b[1m'), // UTF-8, but escapes outgrow base64
      Buffer.from('""""""'), // quotes: two characters each as JSON
    ])
      expect(data(chunk), JSON.stringify(chunk.toString())).toEqual({
        seq: 0,
        base64: chunk.toString('base64'),
      });
  });
});

describe('JSON nesting depth', () => {
  it('counts nesting, not brackets, and ignores brackets in strings', () => {
    const many = JSON.stringify(Array.from({ length: 100 }, () => ({ a: [] })));
    expect(jsonDepthExceeds(many, 32)).toBe(false);
    expect(jsonDepthExceeds(`${'['.repeat(33)}${']'.repeat(33)}`, 32)).toBe(true);
    expect(jsonDepthExceeds(`${'['.repeat(32)}${']'.repeat(32)}`, 32)).toBe(false);
    expect(jsonDepthExceeds(JSON.stringify({ s: '{'.repeat(100) }), 32)).toBe(false);
  });
});

describe('header names that are object keys', () => {
  it('treats ce_constructor and ce___proto__ as ordinary (ignored) attributes', () => {
    const msg = {
      key: null,
      value: null,
      headers: {
        ce_specversion: '1.0',
        ce_id: 'i',
        ce_source: 's',
        ce_type: 'dev.extjob.canceled.v1',
        ce_subject: 'job-1',
        ce_constructor: 'x',
        ce___proto__: 'y',
      },
    };
    expect(parseMessage(msg)).toMatchObject({ ok: true, event: { kind: 'canceled', jobId: 'job-1' } });
  });
});

describe('binary-mode header names', () => {
  const headers = {
    ce_specversion: '1.0',
    ce_id: 'i',
    ce_source: 's',
    ce_type: 'dev.extjob.canceled.v1',
    ce_subject: 'job-1',
  };
  const parse = (h: Record<string, string>) => parseMessage({ key: null, value: null, headers: h });

  it('reads attributes from headers in any case', () => {
    const upper = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toUpperCase(), v]));
    expect(parse(upper)).toMatchObject({ ok: true, event: { kind: 'canceled', id: 'i', source: 's' } });
  });

  it('refuses an attribute given by two headers, extensions too', () => {
    expect(parse({ ...headers, Ce_Id: 'j' })).toEqual({
      ok: false,
      reason: 'invalid',
      detail: 'attribute id is given by two headers',
    });
    expect(parse({ ...headers, ce_ext: 'a', CE_EXT: 'b' })).toEqual({
      ok: false,
      reason: 'invalid',
      detail: 'attribute ext is given by two headers',
    });
    expect(parse({ ...headers, ce_ext: 'a', ce_other: 'b' })).toMatchObject({ ok: true });
  });
});

describe('decoding header and key bytes', () => {
  const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  const expected = (b: Uint8Array) => {
    try {
      return strict.decode(b);
    } catch {
      return undefined;
    }
  };
  it('decodes exactly what a strict decoder accepts, and nothing else', () => {
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 12 }),
      // valid text, with U+FFFD itself, a BOM and astral characters among it
      fc.string({ unit: 'binary' }).map((s) => new TextEncoder().encode(`${s}\ufffd\ufeff\u{1f600}`)),
      // valid text with one byte changed
      fc
        .tuple(fc.string({ unit: 'binary', minLength: 1 }), fc.nat(), fc.integer({ min: 0x80, max: 0xff }))
        .map(([s, at, byte]) => {
          const b = new TextEncoder().encode(s);
          b[at % b.length] = byte;
          return b;
        }),
    );
    fc.assert(
      fc.property(bytes, (b) => {
        expect(decodeUtf8(Buffer.from(b))).toBe(expected(b));
      }),
      { numRuns: 3000 },
    );
  });

  // Keys are compared with the job id byte by byte when they can be.
  it('decodesTo answers whether the bytes decode to the text', () => {
    const latin1 = fc.integer({ min: 0x20, max: 0xff }).map((c) => String.fromCharCode(c));
    const text = fc.oneof(
      fc.string({ maxLength: 6 }),
      fc.string({ unit: latin1, maxLength: 6 }),
      fc.string({ unit: 'binary', maxLength: 6 }),
    );
    // the same text as bytes, as Latin-1 bytes (one byte a character), or changed
    const pair = text.chain((t) =>
      fc.tuple(
        fc.constant(t),
        fc.oneof(
          fc.constant(Buffer.from(t)),
          fc.constant(Buffer.from(t, 'latin1')),
          fc.uint8Array({ maxLength: 8 }).map((b) => Buffer.from(b)),
        ),
      ),
    );
    fc.assert(
      fc.property(pair, ([t, b]) => {
        expect(decodesTo(b, t)).toBe(expected(b) === t);
      }),
      { numRuns: 3000 },
    );
  });

  // Repeating header values reuse the last text read: a changed value must never get it.
  it('each binary event gets the attributes its own header bytes say', () => {
    const utf8 = (s: string) => Buffer.from(s);
    const values = [
      utf8('/argo'),
      utf8('/argx'),
      utf8('/é'),
      Buffer.from('/é', 'latin1'), // same length as the text "/é": not UTF-8
      Buffer.from([0x2f, 0xff]),
      utf8('/a'),
    ];
    const types = ['dev.extjob.canceled.v1', 'dev.extjob.heartbeat.v1', 'dev.extjob.accepted.v1'];
    const contentTypes = ['application/json', 'text/json', 'text/plain', 'application/jsoné'];
    const message = fc.record({
      source: fc.constantFrom(...values),
      type: fc.constantFrom(...types),
      specversion: fc.constantFrom('1.0', '1.1'),
      contentType: fc.constantFrom(...contentTypes),
      // a structured event between binary ones: its content type is read too
      structured: fc.boolean(),
    });
    const structured = (contentType: string) =>
      parseMessage({
        key: utf8('job-1'),
        value: utf8(
          JSON.stringify({ specversion: '1.0', id: 'e-2', source: '/s', type: types[0], subject: 'job-1' }),
        ),
        headers: { 'content-type': utf8(contentType) },
      });
    fc.assert(
      fc.property(fc.array(message, { minLength: 2, maxLength: 30 }), (msgs) => {
        for (const m of msgs) {
          if (m.structured) {
            const ct = m.contentType.replace('application/json', 'application/cloudevents+json');
            const r = structured(ct);
            if (ct.endsWith('json')) expect(r).toMatchObject({ ok: true, event: { source: '/s' } });
            else expect(r).toMatchObject({ ok: false, reason: 'invalid' });
          }
          const r = parseMessage({
            key: utf8('job-1'),
            value: null,
            headers: {
              ce_specversion: utf8(m.specversion),
              ce_id: utf8('e-1'),
              ce_source: m.source,
              ce_type: utf8(m.type),
              ce_subject: utf8('job-1'),
              'content-type': utf8(m.contentType),
            },
          });
          const source = expected(m.source);
          if (source === undefined) expect(r).toMatchObject({ ok: false, reason: 'malformed' });
          else if (m.specversion !== '1.0' || !m.contentType.endsWith('json'))
            expect(r).toMatchObject({ ok: false, reason: 'invalid' });
          else expect(r).toMatchObject({ ok: true, event: { source, type: m.type } });
        }
      }),
      { numRuns: 300 },
    );
  });
});
