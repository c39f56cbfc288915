import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, OPTIONS, sha256Hex } from '../../src/shared/config.js';
import { ExtjobError } from '../../src/shared/errors.js';

const problems = (env: Record<string, string>): string[] => {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ExtjobError);
    return ((err as ExtjobError).details?.problems as string[]) ?? [];
  }
  return [];
};

describe('loadConfig', () => {
  it('gives the documented defaults and freezes the result', () => {
    const c = loadConfig({});
    expect(c.redisUrl).toBe('redis://127.0.0.1:6379');
    expect(c.kafkaBrokers).toEqual(['127.0.0.1:9092']);
    expect(c.topicPrefix).toBe('extjob');
    expect(c.httpPort).toBe(8080);
    expect(c.acceptTimeoutSeconds).toBe(3600);
    expect(c.heartbeatTimeoutSeconds).toBe(0);
    expect(c.runTimeoutSeconds).toBe(21600);
    expect(c.cancelGraceSeconds).toBe(60);
    expect(c.retentionSeconds).toBe(7 * 24 * 3600);
    expect(c.roles).toEqual(['api', 'consume', 'schedule']);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('names every problem once, in plain words', () => {
    expect(
      problems({
        EXTJOB_KAFKA_BROKERS: 'x',
        EXTJOB_HTTP_PORT: 'eighty',
        EXTJOB_REDIS_URL: 'http://nope',
        EXTJOB_ROLES: 'api,cook',
      }),
    ).toEqual([
      'EXTJOB_REDIS_URL: "(hidden: it may hold a password)" is not a redis:// or rediss:// URL',
      'EXTJOB_KAFKA_BROKERS: "x" is not host:port',
      'EXTJOB_HTTP_PORT: "eighty" is not an integer from 0 to 65535',
      'EXTJOB_ROLES: "cook" is not a role (api, consume, schedule)',
    ]);
  });

  it('refuses an empty consumer group or client id and IPv6 broker literals, which Kafka clients cannot use', () => {
    expect(
      problems({
        EXTJOB_KAFKA_BROKERS: 'kafka-0:9092,[::1]:9092',
        EXTJOB_KAFKA_CLIENT_ID: 'bad\nid',
        EXTJOB_CONSUMER_GROUP: '',
      }),
    ).toEqual([
      'EXTJOB_KAFKA_BROKERS: "[::1]:9092" is not host:port (the Kafka client takes no IPv6 literal: use a host name)',
      'EXTJOB_KAFKA_CLIENT_ID: "bad\nid" is not a name of 1 to 249 printable characters',
      'EXTJOB_CONSUMER_GROUP: "" is not a name of 1 to 249 printable characters',
    ]);
  });

  it('never prints a token written where its scope goes', () => {
    const out = problems({ EXTJOB_API_TOKENS: 'admin=SWAPPED-SECRET-TOKEN,tok-123456=jobs:reed' });
    expect(out.join('\n')).not.toContain('SWAPPED-SECRET-TOKEN');
    expect(out).toEqual([
      'EXTJOB_API_TOKENS: entry 1 has an unknown scope (jobs:read, jobs:write, admin; an entry is <token>=<scope>)',
      'EXTJOB_API_TOKENS: entry 2 has unknown scope "jobs:reed" (jobs:read, jobs:write, admin)',
    ]);
  });

  it('parses API tokens, hashing plain ones and taking sha256: digests as they are', () => {
    const digest = sha256Hex('other-secret');
    const c = loadConfig({ EXTJOB_API_TOKENS: `s3cret-token=admin,sha256:${digest}=jobs:read|jobs:write` });
    expect(c.apiTokens).toEqual([
      { sha256: sha256Hex('s3cret-token'), scopes: ['admin'] },
      { sha256: digest, scopes: ['jobs:read', 'jobs:write'] },
    ]);
    expect(JSON.stringify(c)).not.toContain('s3cret-token');
  });

  it('refuses bad token entries and cross-field mistakes', () => {
    expect(
      problems({
        EXTJOB_API_TOKENS: 'short=admin,longenough=root,sha256:abc=admin',
        EXTJOB_KAFKA_SASL_MECHANISM: 'plain',
      }),
    ).toEqual([
      'EXTJOB_API_TOKENS: entry 1 has a token shorter than 8 characters',
      'EXTJOB_API_TOKENS: entry 2 has unknown scope "root" (jobs:read, jobs:write, admin)',
      'EXTJOB_API_TOKENS: entry 3 has a sha256: digest that is not 64 hex characters',
      'EXTJOB_KAFKA_SASL_MECHANISM is set: EXTJOB_KAFKA_SASL_USERNAME and EXTJOB_KAFKA_SASL_PASSWORD are required',
    ]);
    // a Redis URL that does not parse is not repeated: it may hold a password
    expect(problems({ EXTJOB_REDIS_URL: 'redis://:s3cr/tPass@h:6379' }).join()).not.toMatch(/s3cr/);
    expect(problems({ EXTJOB_TOPIC_REPLICATION: '0' })).toEqual([
      'EXTJOB_TOPIC_REPLICATION: "0" is not -1 (the broker default) or an integer from 1 to 100',
    ]);
    // settings that would be ignored silently, leaving Kafka without TLS or authentication
    expect(
      problems({
        EXTJOB_KAFKA_SASL_USERNAME: 'alice',
        EXTJOB_KAFKA_SASL_PASSWORD: 'secret',
        EXTJOB_KAFKA_SSL_CA_FILE: 'package.json',
      }),
    ).toEqual([
      'EXTJOB_KAFKA_SASL_USERNAME or EXTJOB_KAFKA_SASL_PASSWORD is set but EXTJOB_KAFKA_SASL_MECHANISM is not',
      'EXTJOB_KAFKA_SSL_CA_FILE is set but EXTJOB_KAFKA_SSL is not true',
    ]);
  });

  it('takes # as part of a token in the variable, refuses a token given twice or one no header can carry', () => {
    const dir = mkdtempSync(join(tmpdir(), 'extjob-tokens-'));
    try {
      const file = join(dir, 'tokens');
      writeFileSync(file, '# the readers\nreader-token=jobs:read\n\n#hash-token=admin\n');
      expect(
        loadConfig({ EXTJOB_API_TOKENS: '#hash-token=admin', EXTJOB_API_TOKENS_FILE: file }).apiTokens,
      ).toEqual([
        { sha256: sha256Hex('#hash-token'), scopes: ['admin'] },
        { sha256: sha256Hex('reader-token'), scopes: ['jobs:read'] },
      ]);
      expect(
        problems({ EXTJOB_API_TOKENS: 'reader-token=jobs:write', EXTJOB_API_TOKENS_FILE: file }),
      ).toEqual(['EXTJOB_API_TOKENS_FILE: entry 1 gives the token of EXTJOB_API_TOKENS: entry 1 again']);
    } finally {
      rmSync(dir, { recursive: true });
    }
    expect(
      problems({ EXTJOB_API_TOKENS: `my token12=admin,tökenabcd=admin,sha256:${sha256Hex('x')}=admin` }),
    ).toEqual([
      'EXTJOB_API_TOKENS: entry 1 has a token with a space or a character outside printable ASCII',
      'EXTJOB_API_TOKENS: entry 2 has a token with a space or a character outside printable ASCII',
    ]);
  });

  it('documents every option with an EXTJOB_ name and a sentence', () => {
    for (const opt of Object.values(OPTIONS)) {
      expect(opt.env).toMatch(/^EXTJOB_[A-Z_]+$/);
      expect(opt.doc.length).toBeGreaterThan(10);
    }
  });
});
