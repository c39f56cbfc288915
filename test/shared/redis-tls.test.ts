/**
 * Redis over TLS with a private CA (EXTJOB_REDIS_TLS_CA_FILE), against a real
 * redis-server listening with TLS; the certificates are made with openssl.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { describe, expect, it, onTestFinished } from 'vitest';
import { freePort } from '../../src/cli/local/process.js';
import { startRedis } from '../../src/cli/local/redis.js';
import { redisOptions } from '../../src/cli/service.js';
import { loadConfig } from '../../src/shared/config.js';

/** A CA and a certificate for 127.0.0.1 signed by it. */
function certificates(dir: string) {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  ssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-days',
    '1',
    '-subj',
    '/CN=extjob test CA',
  );
  ssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'srv.key',
    '-out',
    'srv.csr',
    '-subj',
    '/CN=127.0.0.1',
  );
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  ssl(
    'x509',
    '-req',
    '-in',
    'srv.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'srv.crt',
    '-days',
    '1',
    '-extfile',
    'ext.cnf',
  );
  return { ca: join(dir, 'ca.crt'), cert: join(dir, 'srv.crt'), key: join(dir, 'srv.key') };
}

/** PONG, or why the connection failed. */
async function ping(url: string, options: object): Promise<string> {
  const redis = new Redis(url, {
    ...options,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    lazyConnect: true,
  });
  let why = '';
  redis.on('error', (err: Error) => {
    why = err.message;
  });
  try {
    await redis.connect();
    return await redis.ping();
  } catch (err) {
    return why || (err as Error).message;
  } finally {
    redis.disconnect();
  }
}

describe('Redis over TLS', () => {
  it('trusts the CA named by EXTJOB_REDIS_TLS_CA_FILE, and refuses a CA file it cannot read', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'extjob-tls-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const tls = certificates(dir);
    const port = await freePort();
    const server = await startRedis({
      args: [
        '--tls-port',
        String(port),
        '--tls-cert-file',
        tls.cert,
        '--tls-key-file',
        tls.key,
        '--tls-ca-cert-file',
        tls.ca,
        '--tls-auth-clients',
        'no',
      ],
    });
    onTestFinished(() => server.stop());
    const url = `rediss://127.0.0.1:${port}`;

    const config = loadConfig({ EXTJOB_REDIS_URL: url, EXTJOB_REDIS_TLS_CA_FILE: tls.ca });
    expect(await ping(url, redisOptions(config))).toBe('PONG');
    // without the CA the server's certificate is not trusted
    expect(await ping(url, redisOptions(loadConfig({ EXTJOB_REDIS_URL: url })))).toMatch(/certificate/);
    expect(() =>
      loadConfig({ EXTJOB_REDIS_URL: url, EXTJOB_REDIS_TLS_CA_FILE: join(dir, 'missing.pem') }),
    ).toThrow(/EXTJOB_REDIS_TLS_CA_FILE: cannot read/);
  });
});
