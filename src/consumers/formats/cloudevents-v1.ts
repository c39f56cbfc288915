/**
 * CloudEvents 1.0 envelopes in the two Kafka protocol bindings:
 * - structured: the value is the JSON event (content type application/cloudevents+json,
 *   or plain JSON without a content type);
 * - binary: `ce_<attribute>` headers carry the attributes, `content-type` the data's
 *   media type, and the value is the data.
 * This module checks the envelope only; the data is read by the type's own module.
 */
import { z } from 'zod';
import { describeIssues, eventId, eventSource, eventType, isTimestamp, timestamp } from './fields.js';
import {
  type Decoded,
  decodeUtf8,
  isAsciiText,
  isJsonMediaType,
  isPlainObject,
  parseJsonBytes,
} from './json-bytes.js';
import { type FormatLimits, fail, type ParseFailure, type RawMessage } from './result.js';

export const STRUCTURED_CONTENT_TYPE = 'application/cloudevents+json';

export interface CloudEvent {
  mode: 'structured' | 'binary';
  id: string;
  source: string;
  type: string;
  subject?: string;
  time?: string;
  datacontenttype?: string;
  /** The data, parsed from JSON; undefined when the event has none. */
  data: unknown;
}

export const attributes = z.looseObject({
  specversion: z.literal('1.0', { error: 'must be "1.0"' }),
  id: eventId,
  source: eventSource,
  type: eventType,
  subject: z.string().min(1).max(256).optional(),
  time: timestamp.optional(),
  datacontenttype: z.string().max(256).optional(),
  dataschema: z.string().max(2048).optional(),
});

const isText = (v: unknown, min: number, max: number): v is string =>
  typeof v === 'string' && v.length >= min && v.length <= max;
const optionalText = (v: unknown, max: number) => v === undefined || isText(v, 0, max);

/**
 * The attributes when `attributes` would accept them, checked by hand (zod costs
 * more than the rest of parsing an event); undefined otherwise, and zod then says
 * why. A property test holds the two to the same answers.
 */
export function quickAttributes(obj: Record<string, unknown>): z.infer<typeof attributes> | undefined {
  const { specversion, id, source, type, subject, time, datacontenttype, dataschema } = obj;
  if (
    specversion !== '1.0' ||
    !isText(id, 1, 256) ||
    !isText(source, 1, 1024) ||
    !isText(type, 1, 256) ||
    !(subject === undefined || isText(subject, 1, 256)) ||
    !(time === undefined || isTimestamp(time)) ||
    !optionalText(datacontenttype, 256) ||
    !optionalText(dataschema, 2048)
  )
    return undefined;
  return obj as z.infer<typeof attributes>;
}

function checkAttributes(obj: Record<string, unknown>, mode: CloudEvent['mode']): Decoded<CloudEvent> {
  if (obj.specversion === undefined) return fail('invalid', 'specversion is required');
  let a = quickAttributes(obj);
  if (!a) {
    const r = attributes.safeParse(obj);
    if (!r.success) return fail('invalid', describeIssues(r.error, mode === 'binary' ? 'ce' : ''));
    a = r.data;
  }
  if (a.datacontenttype !== undefined && !isJsonMediaType(a.datacontenttype))
    return fail(
      'invalid',
      `datacontenttype "${a.datacontenttype}" is not JSON; extjob events carry JSON data`,
    );
  const ev: CloudEvent = { mode, id: a.id, source: a.source, type: a.type, data: undefined };
  if (a.subject !== undefined) ev.subject = a.subject;
  if (a.time !== undefined) ev.time = a.time;
  if (a.datacontenttype !== undefined) ev.datacontenttype = a.datacontenttype;
  return { ok: true, value: ev };
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export function isBase64(s: string): boolean {
  return s.length % 4 === 0 && BASE64.test(s);
}

/** Members whose JSON null means unset (CloudEvents JSON format 2.2). */
const NULLABLE = ['subject', 'time', 'datacontenttype', 'dataschema', 'data', 'data_base64'];

/** A structured-mode event already parsed from JSON. */
export function fromStructured(json: Record<string, unknown>, limits: FormatLimits): Decoded<CloudEvent> {
  let obj = json;
  if (NULLABLE.some((k) => json[k] === null))
    obj = Object.fromEntries(Object.entries(json).filter(([, v]) => v !== null));
  const checked = checkAttributes(obj, 'structured');
  if (!checked.ok) return checked;
  const ev = checked.value;
  const hasData = obj.data !== undefined;
  const b64 = obj.data_base64;
  if (hasData && b64 !== undefined) return fail('invalid', 'data and data_base64 are both present');
  if (b64 !== undefined && b64 !== '') {
    if (typeof b64 !== 'string' || !isBase64(b64)) return fail('invalid', 'data_base64 is not base64');
    const parsed = parseJsonBytes(Buffer.from(b64, 'base64'), limits, 'data_base64');
    if (!parsed.ok) return parsed;
    ev.data = parsed.value;
  } else if (hasData) {
    ev.data = obj.data;
  }
  return { ok: true, value: ev };
}

export type Headers = NonNullable<RawMessage['headers']>;

/**
 * The last text read of a header whose values repeat from message to message
 * (specversion, type, source, content type): bytes equal to it cost no new string.
 * One slot a header and binding: a stream mixing the bindings would otherwise
 * alternate the content type's text and never match.
 */
export interface Slot {
  text: string | undefined;
}
export const newSlot = (): Slot => ({ text: undefined });

/**
 * One header's value as text; undefined when absent; a failure on repeats, bad UTF-8
 * or size. No result object around the text: a binary-mode event reads six headers.
 */
export function headerText(
  headers: Headers,
  name: string,
  limits: FormatLimits,
  slot?: Slot,
): string | undefined | ParseFailure {
  let raw = headers[name];
  if (Array.isArray(raw)) {
    if (raw.length > 1) return fail('invalid', `header ${name} appears ${raw.length} times`);
    raw = raw[0];
  }
  if (raw === undefined || raw === null) return undefined;
  const size = typeof raw === 'string' ? Buffer.byteLength(raw) : raw.length;
  if (size > limits.maxHeaderBytes)
    return fail('too_large', `header ${name} is ${size} bytes, more than ${limits.maxHeaderBytes}`);
  if (slot === undefined) return decodeUtf8(raw) ?? fail('malformed', `header ${name} is not valid UTF-8`);
  const last = slot.text;
  if (last !== undefined && typeof raw !== 'string' && isAsciiText(raw, last)) return last;
  const text = decodeUtf8(raw);
  if (text === undefined) return fail('malformed', `header ${name} is not valid UTF-8`);
  slot.text = text;
  return text;
}

/** Header names as sent, found case-insensitively ("content-type", "Content-Type"). */
export function findHeader(headers: Headers, lowerName: string): string | undefined {
  if (lowerName in headers) return lowerName;
  for (const k in headers) if (k.length === lowerName.length && k.toLowerCase() === lowerName) return k;
  return undefined;
}

/**
 * The attribute a `ce_*` header carries (lower-cased); undefined for other headers.
 * The names most producers send are matched as they are: no new string for them.
 */
function ceAttribute(name: string): string | undefined {
  switch (name) {
    case 'ce_specversion':
      return 'specversion';
    case 'ce_id':
      return 'id';
    case 'ce_source':
      return 'source';
    case 'ce_type':
      return 'type';
    case 'ce_subject':
      return 'subject';
    case 'ce_time':
      return 'time';
  }
  const lower = name.toLowerCase();
  return lower.startsWith('ce_') ? lower.slice(3) : undefined;
}

/** The attributes extjob reads; fromBinary keeps their values in this order. */
const ATTRIBUTES = [
  'specversion',
  'id',
  'source',
  'type',
  'subject',
  'time',
  'datacontenttype',
  'dataschema',
];
/** The slots of attributes whose values repeat from event to event (see Slot). */
const SLOTS = [newSlot(), undefined, newSlot(), newSlot(), undefined, undefined, newSlot(), undefined];
const CONTENT_TYPE = newSlot();

const givenTwice = (attr: string) => fail('invalid', `attribute ${attr} is given by two headers`);

/** A binary-mode event: attributes from `ce_*` headers, data from the value. */
export function fromBinary(msg: RawMessage, limits: FormatLimits): Decoded<CloudEvent> {
  const headers = msg.headers ?? {};
  // by index into ATTRIBUTES: named or array stores, not stores by a computed key
  const values: (string | undefined)[] = [
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
  ];
  let extensions: Set<string> | undefined;
  for (const name in headers) {
    const attr = ceAttribute(name);
    if (attr === undefined) continue;
    const at = ATTRIBUTES.indexOf(attr);
    const text = headerText(headers, name, limits, SLOTS[at]);
    if (typeof text === 'object') return text;
    if (text === undefined) continue;
    if (at >= 0) {
      if (values[at] !== undefined) return givenTwice(attr);
      values[at] = text;
    } else {
      // an extension attribute: not read, and given once at most too
      extensions ??= new Set();
      if (extensions.has(attr)) return givenTwice(attr);
      extensions.add(attr);
    }
  }
  const ctName = findHeader(headers, 'content-type');
  if (ctName !== undefined) {
    const ct = headerText(headers, ctName, limits, CONTENT_TYPE);
    if (typeof ct === 'object') return ct;
    if (ct !== undefined) values[6] = ct; // datacontenttype
  }
  const attrs = {
    specversion: values[0],
    id: values[1],
    source: values[2],
    type: values[3],
    subject: values[4],
    time: values[5],
    datacontenttype: values[6],
    dataschema: values[7],
  };
  const checked = checkAttributes(attrs, 'binary');
  if (!checked.ok) return checked;
  const ev = checked.value;
  const value = msg.value;
  if (value !== null && value !== undefined && value.length > 0) {
    const parsed = parseJsonBytes(value, limits, 'value (data)');
    if (!parsed.ok) return parsed;
    ev.data = parsed.value;
  }
  return { ok: true, value: ev };
}

const STRUCTURED_PREFIX = 'application/cloudevents';

/**
 * Whether a message is in binary mode: it has a ce_specversion header, and its content
 * type does not say structured mode (application/cloudevents...: the binding lets a
 * structured message carry the ce_ headers too, and its value is then the event).
 */
export function isBinaryMode(headers: Headers | undefined): boolean {
  if (headers === undefined || findHeader(headers, 'ce_specversion') === undefined) return false;
  const ctName = findHeader(headers, 'content-type');
  const ct = ctName === undefined ? undefined : headers[ctName];
  return !(typeof ct === 'string' || Buffer.isBuffer(ct)) || !startsCaseless(ct, STRUCTURED_PREFIX);
}

/** Whether `value` starts with the lower-case ASCII `prefix`, in any case (no string made). */
function startsCaseless(value: string | Buffer, prefix: string): boolean {
  if (value.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) {
    const c = typeof value === 'string' ? value.charCodeAt(i) : value[i]!;
    if ((c >= 0x41 && c <= 0x5a ? c | 0x20 : c) !== prefix.charCodeAt(i)) return false;
  }
  return true;
}

export { isPlainObject };
