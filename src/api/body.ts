/**
 * Request bodies: JSON only (415 otherwise), at most 1 MiB (413), nesting bounded
 * (400). The raw bytes stay available (the events route hands them to the parser).
 */
import express, { type NextFunction, type Request, type RequestHandler } from 'express';
import { ExtjobError } from '../shared/errors.js';
import { LIMITS } from './schemas.js';

const readRaw = express.raw({ limit: LIMITS.bodyBytes, type: () => true });

export function isJsonType(contentType: string | undefined): boolean {
  if (!contentType) return false;
  const mt = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
  return mt === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(mt);
}

/** Depth of nested objects/arrays, stopping early past `max`. */
export function jsonDepth(value: unknown, max: number): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (d > deepest) deepest = d;
    if (deepest > max) return deepest;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, d + 1]);
  }
  return deepest;
}

/**
 * The path of the first key named __proto__ in a parsed JSON body, if any. JSON.parse
 * makes it an own key, but zod's copy of an object drops it without a word (a plain
 * object cannot hold it): the API refuses it rather than lose it. Bodies are depth-checked first.
 */
export function protoKeyPath(value: unknown, path = 'body'): string | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  if (!Array.isArray(value) && Object.hasOwn(value, '__proto__')) return `${path}.__proto__`;
  for (const [k, v] of Object.entries(value)) {
    const found = protoKeyPath(v, Array.isArray(value) ? `${path}[${k}]` : `${path}.${k}`);
    if (found) return found;
  }
  return undefined;
}

/**
 * Parse a JSON body into req.body (raw bytes in res.locals.rawBody). With
 * `optional`, a request without a body yields {}. With `leaveBadToRoute`, a body that
 * is not JSON or is nested too deep is not refused here (req.body is undefined): the
 * events route hands the raw bytes to the event parser, which names the reason of the
 * rejection (`malformed`, `invalid`) as it does for the same bytes on Kafka.
 */
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function jsonBody(optional = false, leaveBadToRoute = false): RequestHandler[] {
  const refuse = (req: Request, next: NextFunction, detail: string) => {
    if (!leaveBadToRoute) return next(new ExtjobError('EXTJOB_VALIDATION_FAILED', detail));
    req.body = undefined;
    next();
  };
  return [
    (req, _res, next) => {
      const length = req.get('content-length');
      const hasBody = req.get('transfer-encoding') !== undefined || (length !== undefined && length !== '0');
      if (!hasBody) {
        if (optional) {
          req.body = {};
          return next();
        }
        return next(new ExtjobError('EXTJOB_VALIDATION_FAILED', 'a JSON body is required'));
      }
      if (!isJsonType(req.get('content-type')))
        return next(
          new ExtjobError(
            'EXTJOB_UNSUPPORTED_MEDIA_TYPE',
            `send Content-Type: application/json (got ${JSON.stringify(req.get('content-type') ?? null)})`,
          ),
        );
      if (length !== undefined && Number(length) > LIMITS.bodyBytes)
        return next(new ExtjobError('EXTJOB_PAYLOAD_TOO_LARGE', 'the request body exceeds 1 MiB'));
      next();
    },
    readRaw,
    (req, res, next) => {
      const raw: Buffer = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      res.locals.rawBody = raw;
      if (raw.length === 0 && optional) {
        req.body = {};
        return next();
      }
      let text: string;
      try {
        text = utf8.decode(raw);
      } catch {
        // decoded leniently, two different bodies would read the same (U+FFFD)
        return refuse(req, next, 'the body is not valid UTF-8');
      }
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (err) {
        return refuse(req, next, `the body is not valid JSON: ${(err as Error).message}`);
      }
      if (jsonDepth(value, LIMITS.maxDepth) > LIMITS.maxDepth)
        return refuse(req, next, `the body is nested deeper than ${LIMITS.maxDepth} levels`);
      req.body = value;
      next();
    },
  ];
}
