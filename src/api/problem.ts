/**
 * Errors on the wire: RFC 9457 problem details (application/problem+json) carrying
 * the stable `code` of src/shared/errors.ts. The one place that maps a code to an
 * HTTP status; every route throws ExtjobError and the handler below answers.
 */
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ErrorRequestHandler, RequestHandler, Response } from 'express';
import { ERROR_CODES, type ErrorCode, ExtjobError, isExtjobError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** HTTP status of every error code (a test keeps this total over the catalogue). */
export const STATUS_OF: Record<ErrorCode, number> = {
  EXTJOB_CONFIG_INVALID: 500,
  EXTJOB_VALIDATION_FAILED: 400,
  EXTJOB_UNAUTHORIZED: 401,
  EXTJOB_FORBIDDEN: 403,
  EXTJOB_JOB_NOT_FOUND: 404,
  EXTJOB_ROUTE_NOT_FOUND: 404,
  EXTJOB_JOB_CONFLICT: 409,
  EXTJOB_JOB_TERMINAL: 409,
  EXTJOB_PAYLOAD_TOO_LARGE: 413,
  EXTJOB_HEADERS_TOO_LARGE: 431,
  EXTJOB_UNSUPPORTED_MEDIA_TYPE: 415,
  EXTJOB_NOT_ACCEPTABLE: 406,
  EXTJOB_REDIS_UNAVAILABLE: 503,
  EXTJOB_KAFKA_UNAVAILABLE: 503,
  EXTJOB_NOT_READY: 503,
  EXTJOB_LOCAL_STACK_FAILED: 500,
  EXTJOB_INTERNAL: 500,
};

const TITLE_OF = Object.fromEntries(
  Object.entries(ERROR_CODES).map(([code, v]) => [code, v.description.replace(/\.$/, '')]),
) as Record<ErrorCode, string>;

/** The problem document (RFC 9457) for an error. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  retriable: boolean;
  instance?: string;
  [extension: string]: unknown;
}

export function problemOf(err: ExtjobError, instance?: string): Problem {
  const status = STATUS_OF[err.code];
  const p: Problem = {
    type: `https://extjob.dev/problems/${err.code.toLowerCase().replace(/_/g, '-')}`,
    title: TITLE_OF[err.code],
    status,
    detail: err.message,
    code: err.code,
    retriable: err.retriable,
  };
  if (instance) p.instance = instance;
  if (err.details) for (const [k, v] of Object.entries(err.details)) if (!(k in p)) p[k] = v;
  return p;
}

export function sendProblem(res: Response, err: ExtjobError, instance?: string): void {
  const p = problemOf(err, instance);
  if (err.code === 'EXTJOB_UNAUTHORIZED') res.setHeader('WWW-Authenticate', 'Bearer realm="extjob"');
  if (err.retriable) res.setHeader('Retry-After', '1');
  res.status(p.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(p));
}

/** Errors express's own body parsing raises, turned into catalogue codes. */
function fromFrameworkError(err: unknown): ExtjobError | undefined {
  const e = err as { type?: string; status?: number; message?: string } | undefined;
  if (!e || typeof e !== 'object') return undefined;
  switch (e.type) {
    case 'entity.too.large':
      return new ExtjobError('EXTJOB_PAYLOAD_TOO_LARGE', 'the request body exceeds 1 MiB');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new ExtjobError('EXTJOB_UNSUPPORTED_MEDIA_TYPE', e.message ?? 'unsupported encoding');
    case 'request.aborted':
    case 'request.size.invalid':
    case 'stream.encoding.set':
    case 'entity.verify.failed':
    case 'entity.parse.failed':
      return new ExtjobError('EXTJOB_VALIDATION_FAILED', e.message ?? 'the request body could not be read');
  }
  if (typeof e.status === 'number' && e.status >= 400 && e.status < 500)
    return new ExtjobError('EXTJOB_VALIDATION_FAILED', e.message ?? 'bad request');
  return undefined;
}

/** The error handler installed last: every error becomes a problem document. */
export function problemHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const known = isExtjobError(err) ? err : fromFrameworkError(err);
    const problem = known ?? new ExtjobError('EXTJOB_INTERNAL', 'unexpected error; see the service log');
    if (!known) logger.error({ err, method: req.method, path: req.path }, 'unhandled error in a request');
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendProblem(res, problem, req.originalUrl.split('?')[0]);
  };
}

/** The last route: anything unmatched is a 404 problem. */
export const routeNotFound: RequestHandler = (req, _res, next) => {
  next(new ExtjobError('EXTJOB_ROUTE_NOT_FOUND', `no route ${req.method} ${req.path}`));
};

/**
 * The HTTP server's 'clientError' listener: a request Node's parser refuses before any
 * route sees it (headers over its size limit, a malformed request line or header) is
 * answered with a problem document too, and the connection closed.
 */
export function answerClientError(
  err: Error & { code?: string },
  socket: Duplex & { bytesWritten?: number },
): void {
  if (!socket.writable || (socket.bytesWritten ?? 0) > 0 || err.code === 'ECONNRESET') {
    socket.destroy();
    return;
  }
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    socket.end('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n');
    return;
  }
  const p = problemOf(
    err.code === 'HPE_HEADER_OVERFLOW'
      ? new ExtjobError('EXTJOB_HEADERS_TOO_LARGE', 'the request headers are larger than the server takes')
      : err.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW'
        ? new ExtjobError('EXTJOB_PAYLOAD_TOO_LARGE', 'the chunk extensions are larger than the server takes')
        : new ExtjobError(
            'EXTJOB_VALIDATION_FAILED',
            `the request is not valid HTTP (${err.code ?? err.message})`,
          ),
  );
  const body = JSON.stringify(p);
  socket.end(
    `HTTP/1.1 ${p.status} ${STATUS_CODES[p.status]}\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}
