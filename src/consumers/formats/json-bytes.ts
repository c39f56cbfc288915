/**
 * Bytes to JSON, defensively: size first, then strict UTF-8, then a nesting-depth
 * scan (so a hostile value cannot blow the stack of anything that walks the result),
 * then JSON.parse. Never throws.
 */
import { type FormatLimits, fail, type ParseFailure } from './result.js';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export type Decoded<T> = { ok: true; value: T } | ParseFailure;

/** Strict UTF-8 decode; undefined when the bytes are not valid UTF-8. */
export function decodeUtf8(bytes: Buffer | string): string | undefined {
  if (typeof bytes === 'string') return bytes;
  // The lenient decoder is faster, and marks every invalid sequence with U+FFFD: text
  // without one is the strict decoding too.
  const text = bytes.toString(); // utf8; without arguments Buffer skips its encoding lookup
  if (!text.includes('\ufffd')) return text;
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/** Whether `bytes` are the ASCII text `text`, byte for byte (no string is made). */
export function isAsciiText(bytes: Uint8Array, text: string): boolean {
  if (bytes.length !== text.length) return false;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b > 0x7f || b !== text.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * Whether `bytes` decode (strict UTF-8) to `text`. A Kafka key is mostly the short
 * ASCII job id it is compared with: no string is made for it then.
 */
export const decodesTo = (bytes: Buffer | string, text: string): boolean =>
  (typeof bytes !== 'string' && isAsciiText(bytes, text)) || decodeUtf8(bytes) === text;

/** Whether `text` opens more than `limit` objects and arrays in all (cheap: indexOf). */
function opensMoreThan(text: string, limit: number): boolean {
  let n = 0;
  for (const open of ['{', '[']) {
    for (let i = text.indexOf(open); i !== -1; i = text.indexOf(open, i + 1)) if (++n > limit) return true;
  }
  return false;
}

/** Depth of the deepest object/array nesting in JSON text, stopping early past `limit`. */
export function jsonDepthExceeds(text: string, limit: number): boolean {
  // nesting deeper than limit needs more than limit brackets: most texts stop here
  if (!opensMoreThan(text, limit)) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > limit) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

export function parseJsonText(text: string, limits: FormatLimits, what: string): Decoded<unknown> {
  if (jsonDepthExceeds(text, limits.maxDepth))
    return fail('invalid', `${what} is nested deeper than ${limits.maxDepth} levels`);
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (err) {
    return fail('malformed', `${what} is not JSON: ${(err as Error).message.slice(0, 200)}`);
  }
}

export function parseJsonBytes(bytes: Buffer | string, limits: FormatLimits, what: string): Decoded<unknown> {
  const size = typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.length;
  if (size > limits.maxValueBytes)
    return fail('too_large', `${what} is ${size} bytes, more than the limit of ${limits.maxValueBytes}`);
  const text = decodeUtf8(bytes);
  if (text === undefined) return fail('malformed', `${what} is not valid UTF-8`);
  return parseJsonText(text, limits, what);
}

export const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Whether a media type (parameters ignored) denotes JSON: application/json, text/json, or any +json. */
export function isJsonMediaType(contentType: string): boolean {
  let known = mediaTypes.get(contentType);
  if (known === undefined) {
    const base = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
    known = base === 'application/json' || base === 'text/json' || base.endsWith('+json');
    // the few content types a deployment sends, remembered (bounded)
    if (mediaTypes.size < 64) mediaTypes.set(contentType, known);
  }
  return known;
}
const mediaTypes = new Map<string, boolean>();
