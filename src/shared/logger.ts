import { type DestinationStream, type Logger, type LoggerOptions, pino } from 'pino';

export type { Logger };

/** Paths whose values are never written to a log line. */
export const REDACTED_PATHS = [
  'token',
  'eventToken',
  'secret',
  'password',
  'authorization',
  '*.token',
  '*.eventToken',
  '*.secret',
  '*.password',
  '*.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'notify[*].secret',
  '*.notify[*].secret',
  'cookie',
  '*.cookie',
  'headers.cookie',
  'headers["set-cookie"]',
  '*.headers.authorization',
  '*.headers.cookie',
  '*.*.password',
  '*.*.secret',
  'kafkaSaslPassword',
  '*.kafkaSaslPassword',
  'apiTokens',
  '*.apiTokens',
];

export function createLogger(
  options: { level?: string; name?: string } = {},
  destination?: DestinationStream,
): Logger {
  const opts: LoggerOptions = {
    level: options.level ?? 'info',
    base: { service: options.name ?? 'extjob' },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(opts, destination) : pino(opts);
}
