/**
 * The one catalogue of extjob error codes. Every error the system raises carries a
 * stable `code` from here and a `retriable` flag; callers decide to retry, skip or
 * dead-letter by reading the flag, never the message. The HTTP layer maps codes to
 * statuses in one place (src/api/problem.ts); docs/errors.md lists the same codes
 * and a test keeps the two in step.
 */
export const ERROR_CODES = {
  EXTJOB_CONFIG_INVALID: { retriable: false, description: 'The configuration is invalid.' },
  EXTJOB_VALIDATION_FAILED: { retriable: false, description: 'The request or event failed validation.' },
  EXTJOB_UNAUTHORIZED: { retriable: false, description: 'No valid credentials were presented.' },
  EXTJOB_FORBIDDEN: { retriable: false, description: 'The credentials lack the required scope.' },
  EXTJOB_JOB_NOT_FOUND: { retriable: false, description: 'No job has that id.' },
  EXTJOB_JOB_CONFLICT: { retriable: false, description: 'A job with that id exists with a different body.' },
  EXTJOB_JOB_TERMINAL: { retriable: false, description: 'The job is in a terminal state.' },
  EXTJOB_PAYLOAD_TOO_LARGE: { retriable: false, description: 'The body or chunk exceeds the size limit.' },
  EXTJOB_HEADERS_TOO_LARGE: { retriable: false, description: 'The request headers exceed the size limit.' },
  EXTJOB_UNSUPPORTED_MEDIA_TYPE: { retriable: false, description: 'The content type is not accepted.' },
  EXTJOB_NOT_ACCEPTABLE: { retriable: false, description: 'No representation matches the Accept header.' },
  EXTJOB_ROUTE_NOT_FOUND: { retriable: false, description: 'No such route.' },
  EXTJOB_REDIS_UNAVAILABLE: { retriable: true, description: 'Redis did not answer.' },
  EXTJOB_KAFKA_UNAVAILABLE: { retriable: true, description: 'Kafka did not answer.' },
  EXTJOB_NOT_READY: { retriable: true, description: 'The service is starting or stopping.' },
  EXTJOB_LOCAL_STACK_FAILED: {
    retriable: false,
    description: 'A local Kafka or Redis could not be started.',
  },
  EXTJOB_INTERNAL: { retriable: false, description: 'An unexpected internal error.' },
} as const satisfies Record<string, { retriable: boolean; description: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class ExtjobError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ExtjobError';
    this.code = code;
    this.retriable = ERROR_CODES[code].retriable;
    this.details = options.details;
  }
}

export function isExtjobError(err: unknown, code?: ErrorCode): err is ExtjobError {
  return err instanceof ExtjobError && (code === undefined || err.code === code);
}

/** Whether an operation that failed with `err` may succeed if tried again. */
export function isRetriable(err: unknown): boolean {
  return err instanceof ExtjobError ? err.retriable : false;
}
