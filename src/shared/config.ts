/**
 * Configuration: the environment turned once, at start, into a checked and frozen
 * object. Every option is defined in OPTIONS below, once, with its default and a
 * sentence of documentation; docs/operations.md is checked against this table by a
 * test. Nothing here runs at import time.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { ExtjobError } from './errors.js';

type Parser<T> = (raw: string, name: string) => T;

interface Option<T> {
  env: string;
  default: string | undefined;
  doc: string;
  parse: Parser<T>;
}

const fail = (name: string, raw: string, what: string): never => {
  throw new ConfigProblem(`${name}: "${raw}" is not ${what}`);
};

class ConfigProblem extends Error {}

const str: Parser<string> = (raw) => raw;
/** A Kafka name (consumer group, client id): 1-249 characters, no control characters. */
const kafkaName: Parser<string> = (raw, name) =>
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  /^[^\x00-\x1f\x7f]{1,249}$/.test(raw) ? raw : fail(name, raw, 'a name of 1 to 249 printable characters');
const int =
  (min: number, max: number): Parser<number> =>
  (raw, name) => {
    const n = Number(raw);
    if (!/^-?\d+$/.test(raw.trim()) || n < min || n > max)
      return fail(name, raw, `an integer from ${min} to ${max}`);
    return n;
  };
const bool: Parser<boolean> = (raw, name) => {
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(v)) return false;
  return fail(name, raw, 'a boolean (true or false)');
};
const oneOf =
  <T extends string>(...values: T[]): Parser<T> =>
  (raw, name) =>
    values.includes(raw as T) ? (raw as T) : fail(name, raw, `one of ${values.join(', ')}`);
const redisUrl: Parser<string> = (raw, name) => {
  try {
    const u = new URL(raw);
    if (u.protocol === 'redis:' || u.protocol === 'rediss:') return raw;
  } catch {}
  // not repeated: it may carry a password
  return fail(name, '(hidden: it may hold a password)', 'a redis:// or rediss:// URL');
};
const hostPorts: Parser<string[]> = (raw, name) => {
  const list = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (list.length === 0) return fail(name, raw, 'a comma-separated list of host:port');
  for (const hp of list) {
    // the Kafka client splits an address at its first colon: no IPv6 literal
    if (hp.startsWith('['))
      fail(name, hp, 'host:port (the Kafka client takes no IPv6 literal: use a host name)');
    const m = /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(hp);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) fail(name, hp, 'host:port');
  }
  return list;
};
const topicPrefix: Parser<string> = (raw, name) =>
  /^[A-Za-z0-9._-]{1,200}$/.test(raw) ? raw : fail(name, raw, 'a Kafka topic prefix ([A-Za-z0-9._-])');
const keyPrefix: Parser<string> = (raw, name) =>
  /^[A-Za-z0-9._:{}-]{1,100}$/.test(raw) ? raw : fail(name, raw, 'a Redis key prefix ([A-Za-z0-9._:{}-])');
/** true, false, or a comma-separated list of CIDRs (a bare address is one address). */
const allowNetworks: Parser<boolean | readonly string[]> = (raw, name) => {
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(v)) return false;
  const list = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const cidr of list) {
    const [net = '', bits, extra] = cidr.split('/');
    const family = isIP(net);
    const max = family === 6 ? 128 : 32;
    if (
      family === 0 ||
      extra !== undefined ||
      (bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= max))
    )
      fail(
        name,
        cidr,
        'true, false or a comma-separated list of CIDRs (for example 10.20.0.0/16,fd00:1::/64)',
      );
  }
  return Object.freeze(list);
};
const roles: Parser<Role[]> = (raw, name) => {
  const list = raw.split(',').map((s) => s.trim());
  for (const r of list) if (!ROLES.includes(r as Role)) fail(name, r, `a role (${ROLES.join(', ')})`);
  return [...new Set(list)] as Role[];
};

export const ROLES = ['api', 'consume', 'schedule'] as const;
export type Role = (typeof ROLES)[number];
export const SCOPES = ['jobs:read', 'jobs:write', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

/** Every option, with its environment name, default and documentation. */
export const OPTIONS = {
  redisUrl: {
    env: 'EXTJOB_REDIS_URL',
    default: 'redis://127.0.0.1:6379',
    doc: 'Redis holding job state, timers and the outbox. Use rediss:// for TLS.',
    parse: redisUrl,
  },
  redisTlsCaFile: {
    env: 'EXTJOB_REDIS_TLS_CA_FILE',
    default: undefined,
    doc: 'PEM file of the CA that signed the Redis server certificate (rediss:// only).',
    parse: str,
  },
  redisKeyPrefix: {
    env: 'EXTJOB_REDIS_PREFIX',
    default: 'extjob',
    doc: 'Prefix of every Redis key extjob writes; several installations can share one Redis.',
    parse: keyPrefix,
  },
  kafkaBrokers: {
    env: 'EXTJOB_KAFKA_BROKERS',
    default: '127.0.0.1:9092',
    doc: 'Kafka bootstrap brokers, comma-separated host:port (a host name or IPv4 address: the Kafka client takes no IPv6 literal).',
    parse: hostPorts,
  },
  kafkaClientId: {
    env: 'EXTJOB_KAFKA_CLIENT_ID',
    default: 'extjob',
    doc: 'Kafka client id reported to the brokers.',
    parse: kafkaName,
  },
  kafkaSsl: { env: 'EXTJOB_KAFKA_SSL', default: 'false', doc: 'Connect to Kafka over TLS.', parse: bool },
  kafkaSslCaFile: {
    env: 'EXTJOB_KAFKA_SSL_CA_FILE',
    default: undefined,
    doc: 'PEM file of the CA that signed the Kafka broker certificates.',
    parse: str,
  },
  kafkaSaslMechanism: {
    env: 'EXTJOB_KAFKA_SASL_MECHANISM',
    default: undefined,
    doc: 'SASL mechanism: plain, scram-sha-256 or scram-sha-512. Unset: no SASL.',
    parse: oneOf('plain', 'scram-sha-256', 'scram-sha-512'),
  },
  kafkaSaslUsername: {
    env: 'EXTJOB_KAFKA_SASL_USERNAME',
    default: undefined,
    doc: 'SASL user name.',
    parse: str,
  },
  kafkaSaslPassword: {
    env: 'EXTJOB_KAFKA_SASL_PASSWORD',
    default: undefined,
    doc: 'SASL password.',
    parse: str,
  },
  topicPrefix: {
    env: 'EXTJOB_TOPIC_PREFIX',
    default: 'extjob',
    doc: 'Prefix of the topics: <prefix>.events, .changes, .commands and .events.dlq.',
    parse: topicPrefix,
  },
  topicPartitions: {
    env: 'EXTJOB_TOPIC_PARTITIONS',
    default: '6',
    doc: 'Partitions of the topics extjob creates when they are missing.',
    parse: int(1, 10_000),
  },
  topicReplication: {
    env: 'EXTJOB_TOPIC_REPLICATION',
    default: '-1',
    doc: 'Replication factor of the topics extjob creates; -1 takes the broker default.',
    parse: (raw, name) => {
      const n = int(-1, 100)(raw, name);
      return n === 0 ? fail(name, raw, '-1 (the broker default) or an integer from 1 to 100') : n;
    },
  },
  consumerGroup: {
    env: 'EXTJOB_CONSUMER_GROUP',
    default: 'extjob',
    doc: 'Kafka consumer group of the events consumers.',
    parse: kafkaName,
  },
  consumerSessionTimeoutSeconds: {
    env: 'EXTJOB_CONSUMER_SESSION_TIMEOUT_SECONDS',
    default: '30',
    doc: 'How long a consumer that died without leaving its group keeps its partitions idle before the group takes them over.',
    parse: int(6, 300),
  },
  httpHost: {
    env: 'EXTJOB_HTTP_HOST',
    default: '0.0.0.0',
    doc: 'Address the HTTP API listens on.',
    parse: str,
  },
  httpPort: {
    env: 'EXTJOB_HTTP_PORT',
    default: '8080',
    doc: 'Port of the HTTP API, metrics and probes (0 picks a free port).',
    parse: int(0, 65535),
  },
  logLevel: {
    env: 'EXTJOB_LOG_LEVEL',
    default: 'info',
    doc: 'Log level: fatal, error, warn, info, debug or trace.',
    parse: oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'),
  },
  roles: {
    env: 'EXTJOB_ROLES',
    default: 'api,consume,schedule',
    doc: 'Roles this process runs: api, consume, schedule (comma-separated).',
    parse: roles,
  },
  apiTokens: {
    env: 'EXTJOB_API_TOKENS',
    default: undefined,
    doc: 'API tokens: comma-separated <token>=<scope>[|<scope>], or sha256:<hex>=<scopes>; a token is 8 or more printable ASCII characters without spaces, each given once.',
    parse: str,
  },
  apiTokensFile: {
    env: 'EXTJOB_API_TOKENS_FILE',
    default: undefined,
    doc: 'File with one API token entry per line (same syntax as EXTJOB_API_TOKENS); lines starting with # are comments.',
    parse: str,
  },
  insecure: {
    env: 'EXTJOB_INSECURE',
    default: 'false',
    doc: 'Development only: serve the API without authentication.',
    parse: bool,
  },
  acceptTimeoutSeconds: {
    env: 'EXTJOB_ACCEPT_TIMEOUT_SECONDS',
    default: '3600',
    doc: 'Default time a job may stay pending before it expires.',
    parse: int(1, 31_536_000),
  },
  heartbeatTimeoutSeconds: {
    env: 'EXTJOB_HEARTBEAT_TIMEOUT_SECONDS',
    default: '0',
    doc: 'Default time a running job may go without a heartbeat, log or progress; 0 is off.',
    parse: int(0, 31_536_000),
  },
  runTimeoutSeconds: {
    env: 'EXTJOB_RUN_TIMEOUT_SECONDS',
    default: '21600',
    doc: 'Default time a job may run after it was accepted.',
    parse: int(1, 31_536_000),
  },
  cancelGraceSeconds: {
    env: 'EXTJOB_CANCEL_GRACE_SECONDS',
    default: '60',
    doc: 'Default time an executor has to acknowledge a cancel before it is forced.',
    parse: int(0, 86_400),
  },
  retentionSeconds: {
    env: 'EXTJOB_RETENTION_SECONDS',
    default: '604800',
    doc: 'How long finished jobs, their logs and history are kept.',
    parse: int(1, 315_360_000),
  },
  lateLogGraceSeconds: {
    env: 'EXTJOB_LATE_LOG_GRACE_SECONDS',
    default: '300',
    doc: 'How long after a job finished its log chunks are still stored (flagged late).',
    parse: int(0, 86_400),
  },
  logChunkMaxBytes: {
    env: 'EXTJOB_LOG_CHUNK_MAX_BYTES',
    default: '524288',
    doc: 'Largest log chunk accepted.',
    parse: int(1, 16 * 1024 * 1024),
  },
  logMaxBytes: {
    env: 'EXTJOB_LOG_MAX_BYTES',
    default: '67108864',
    doc: 'Largest log kept per attempt of a job (a retry starts a new log); further chunks are dropped with a truncation marker.',
    parse: int(1, 1024 * 1024 * 1024),
  },
  dedupeWindowSeconds: {
    env: 'EXTJOB_DEDUPE_WINDOW_SECONDS',
    default: '3600',
    doc: "How long an applied event's (source, id) is remembered per live job to refuse replays (at most 256 per job; a finished job keeps its last 3).",
    parse: int(1, 7 * 86_400),
  },
  webhookAttempts: {
    env: 'EXTJOB_WEBHOOK_ATTEMPTS',
    default: '8',
    doc: 'Tries per webhook delivery (exponential backoff between them); failures after the last are kept.',
    parse: int(1, 100),
  },
  webhookBackoffMs: {
    env: 'EXTJOB_WEBHOOK_BACKOFF_MS',
    default: '1000',
    doc: 'Delay before the second webhook try; it doubles with each further try.',
    parse: int(1, 3_600_000),
  },
  webhookTimeoutSeconds: {
    env: 'EXTJOB_WEBHOOK_TIMEOUT_SECONDS',
    default: '10',
    doc: 'Longest one webhook request may take before it counts as failed.',
    parse: int(1, 300),
  },
  webhookAllowPrivate: {
    env: 'EXTJOB_WEBHOOK_ALLOW_PRIVATE',
    default: 'false',
    doc: 'Webhooks to internal addresses (loopback, private, link-local, unique-local, ...): false refuses them, true allows every address (development), a comma-separated list of CIDRs allows those.',
    parse: allowNetworks,
  },
  webhookConcurrency: {
    env: 'EXTJOB_WEBHOOK_CONCURRENCY',
    default: '32',
    doc: 'Webhook requests one process sends at the same time.',
    parse: int(1, 1000),
  },
  shutdownTimeoutSeconds: {
    env: 'EXTJOB_SHUTDOWN_TIMEOUT_SECONDS',
    default: '30',
    doc: 'Longest a graceful shutdown waits for in-flight work before it exits.',
    parse: int(1, 3600),
  },
} satisfies Record<string, Option<unknown>>;

type Options = typeof OPTIONS;
type Parsed = {
  [K in keyof Options]: Options[K]['default'] extends string
    ? ReturnType<Options[K]['parse']>
    : ReturnType<Options[K]['parse']> | undefined;
};

export interface ApiToken {
  /** sha256 hex of the token; plain tokens are hashed at load. */
  sha256: string;
  scopes: Scope[];
}

export type Config = Readonly<
  Omit<Parsed, 'apiTokens' | 'apiTokensFile'> & { apiTokens: readonly ApiToken[] }
>;

export type Env = Record<string, string | undefined>;

/**
 * Parse and check the environment. Throws one ExtjobError(EXTJOB_CONFIG_INVALID)
 * whose message lists every problem, one per line.
 */
export function loadConfig(env: Env = process.env, hash: (s: string) => string = sha256Hex): Config {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  for (const [key, opt] of Object.entries(OPTIONS) as [string, Option<unknown>][]) {
    const raw = env[opt.env] ?? opt.default;
    if (raw === undefined) continue;
    try {
      out[key] = opt.parse(raw, opt.env);
    } catch (err) {
      problems.push(err instanceof ConfigProblem ? err.message : `${opt.env}: ${String(err)}`);
    }
  }
  const tokens: ApiToken[] = [];
  /** Digest -> where its entry was, so a token given twice is caught (its scopes would differ). */
  const given = new Map<string, string>();
  const parseEntries = (text: string, where: string) => {
    const file = where === OPTIONS.apiTokensFile.env;
    text
      .split(file ? /\r?\n/ : ',')
      .map((s) => s.trim())
      .filter((s) => s && !(file && s.startsWith('#'))) // comment lines in the file only
      .forEach((entry, i) => {
        const r = parseTokenEntry(entry, hash);
        const here = `${where}: entry ${i + 1}`;
        if (typeof r === 'string') problems.push(`${here} ${r}`);
        else if (given.has(r.sha256))
          problems.push(`${here} gives the token of ${given.get(r.sha256)} again`);
        else {
          given.set(r.sha256, here);
          tokens.push(r);
        }
      });
  };
  if (typeof out.apiTokens === 'string') parseEntries(out.apiTokens, OPTIONS.apiTokens.env);
  if (typeof out.apiTokensFile === 'string') {
    try {
      parseEntries(readFileSync(out.apiTokensFile, 'utf8'), OPTIONS.apiTokensFile.env);
    } catch (err) {
      problems.push(
        `${OPTIONS.apiTokensFile.env}: cannot read "${out.apiTokensFile}" (${(err as Error).message})`,
      );
    }
  }
  if (out.kafkaSaslMechanism && (!out.kafkaSaslUsername || !out.kafkaSaslPassword))
    problems.push(
      'EXTJOB_KAFKA_SASL_MECHANISM is set: EXTJOB_KAFKA_SASL_USERNAME and EXTJOB_KAFKA_SASL_PASSWORD are required',
    );
  // settings that would be ignored, leaving the connection without the TLS or the
  // authentication they were meant for
  if (!out.kafkaSaslMechanism && (out.kafkaSaslUsername || out.kafkaSaslPassword))
    problems.push(
      'EXTJOB_KAFKA_SASL_USERNAME or EXTJOB_KAFKA_SASL_PASSWORD is set but EXTJOB_KAFKA_SASL_MECHANISM is not',
    );
  if (out.kafkaSslCaFile && out.kafkaSsl !== true)
    problems.push('EXTJOB_KAFKA_SSL_CA_FILE is set but EXTJOB_KAFKA_SSL is not true');
  if (out.redisTlsCaFile && !String(out.redisUrl).startsWith('rediss:'))
    problems.push('EXTJOB_REDIS_TLS_CA_FILE is set but EXTJOB_REDIS_URL is not rediss://');
  for (const key of ['redisTlsCaFile', 'kafkaSslCaFile'] as const) {
    const file = out[key];
    if (typeof file !== 'string') continue;
    try {
      readFileSync(file);
    } catch (err) {
      problems.push(`${OPTIONS[key].env}: cannot read "${file}" (${(err as Error).message})`);
    }
  }
  if (problems.length > 0)
    throw new ExtjobError('EXTJOB_CONFIG_INVALID', `invalid configuration:\n  ${problems.join('\n  ')}`, {
      details: { problems },
    });
  delete out.apiTokensFile;
  out.apiTokens = Object.freeze(tokens);
  return Object.freeze(out) as unknown as Config;
}

function parseTokenEntry(entry: string, hash: (s: string) => string): ApiToken | string {
  const eq = entry.lastIndexOf('=');
  if (eq <= 0) return 'is not <token>=<scope>[|<scope>]';
  const secret = entry.slice(0, eq);
  const scopes = entry.slice(eq + 1).split('|');
  for (const s of scopes)
    if (!SCOPES.includes(s as Scope))
      // quoted only when it could be a misspelt scope: written the wrong way round
      // (admin=<token>), the entry would print its token
      return /^[a-z:]{1,16}$/.test(s)
        ? `has unknown scope "${s}" (${SCOPES.join(', ')})`
        : `has an unknown scope (${SCOPES.join(', ')}; an entry is <token>=<scope>)`;
  if (secret.startsWith('sha256:')) {
    const hex = secret.slice(7).toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(hex)) return 'has a sha256: digest that is not 64 hex characters';
    return { sha256: hex, scopes: scopes as Scope[] };
  }
  if (secret.length < 8) return 'has a token shorter than 8 characters';
  // what an Authorization header can carry as the token (HTTP reads its bytes as latin1)
  if (!/^[\x21-\x7e]+$/.test(secret))
    return 'has a token with a space or a character outside printable ASCII';
  return { sha256: hash(secret), scopes: scopes as Scope[] };
}

import { createHash } from 'node:crypto';
export function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/** Topic names derived from the prefix (SPEC section 2). */
export function topicNames(prefix: string) {
  return {
    events: `${prefix}.events`,
    changes: `${prefix}.changes`,
    commands: `${prefix}.commands`,
    dlq: `${prefix}.events.dlq`,
  } as const;
}

/** A Redis URL to print: its password masked. */
export function withoutPassword(url: string): string {
  try {
    const u = new URL(url);
    if (!u.password) return url;
    u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/\/\/.*@/, '//***@'); // up to the last @: a password may hold a /
  }
}
