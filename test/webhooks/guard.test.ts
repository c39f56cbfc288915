/**
 * The webhook address guard as pure logic (which addresses are refused, IPv6 and the
 * forms that carry an IPv4 address included), its lookup on the machine's resolver,
 * the EXTJOB_WEBHOOK_ALLOW_PRIVATE option, and the URLs job creation refuses.
 */
import type { LookupAddress } from 'node:dns';
import { describe, expect, it } from 'vitest';
import {
  addressPolicy,
  embeddedIPv4,
  guardedLookup,
  literalRefusal,
  RefusedTargetError,
  refusal,
} from '../../src/consumers/webhooks-guard.js';
import { loadConfig } from '../../src/shared/config.js';
import { ExtjobError } from '../../src/shared/errors.js';
import { startTestApi } from '../api/support.js';

describe('refusal', () => {
  it.each([
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['::', 'unspecified'],
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['::1', 'loopback'],
    ['10.0.0.1', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['100.64.0.1', 'shared address space'],
    ['100.127.255.255', 'shared address space'],
    ['169.254.169.254', 'link-local'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['fc00::1', 'unique-local'],
    ['fd12:3456::1', 'unique-local'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['ff02::1', 'multicast'],
    ['255.255.255.255', 'reserved'],
    ['198.18.0.1', 'reserved'],
    ['2001:db8::1', 'reserved'],
    ['::127.0.0.1', 'reserved'],
    ['::ffff:127.0.0.1', 'loopback, as 127.0.0.1'],
    ['::ffff:7f00:1', 'loopback, as 127.0.0.1'],
    ['0:0:0:0:0:ffff:a00:1', 'private, as 10.0.0.1'],
    ['::ffff:169.254.169.254', 'link-local, as 169.254.169.254'],
    ['64:ff9b::10.0.0.1', 'private, as 10.0.0.1'],
    ['2002:c0a8:101::1', 'private, as 192.168.1.1'],
  ])('refuses %s (%s)', (address, reason) => {
    expect(refusal(address)).toBe(`address ${address} is not allowed (${reason})`);
  });

  it.each([
    '8.8.8.8',
    '1.1.1.1',
    '93.184.215.14',
    '172.32.0.1',
    '100.128.0.1',
    '169.255.0.1',
    '2606:4700:4700::1111',
    '2a00:1450:4001:82b::200e',
    '::ffff:8.8.8.8',
    '64:ff9b::8.8.8.8',
    '2002:808:808::1',
  ])('lets %s through', (address) => {
    expect(refusal(address)).toBeUndefined();
  });

  it('answers for what is not an address instead of throwing', () => {
    expect(refusal('example.com')).toBe('"example.com" is not an IP address');
    expect(refusal('')).toBe('"" is not an IP address');
  });

  it('allows every address when the check is off, and only the listed networks otherwise', () => {
    const off = addressPolicy(true);
    for (const a of ['127.0.0.1', '::1', '169.254.169.254', 'fd00::1'])
      expect(refusal(a, off)).toBeUndefined();
    expect(refusal('127.0.0.1', addressPolicy(false))).toMatch(/loopback/);
    const some = addressPolicy(['10.20.0.0/16', 'fd00:1::/64', '192.168.7.7']);
    expect(refusal('10.20.3.4', some)).toBeUndefined();
    expect(refusal('::ffff:10.20.3.4', some)).toBeUndefined();
    expect(refusal('fd00:1::5', some)).toBeUndefined();
    expect(refusal('192.168.7.7', some)).toBeUndefined();
    expect(refusal('192.168.7.8', some)).toBe('address 192.168.7.8 is not allowed (private)');
    expect(refusal('10.21.0.1', some)).toBe('address 10.21.0.1 is not allowed (private)');
    expect(refusal('fd00:2::5', some)).toBe('address fd00:2::5 is not allowed (unique-local)');
    expect(refusal('127.0.0.1', some)).toBe('address 127.0.0.1 is not allowed (loopback)');
    expect(refusal('8.8.8.8', some)).toBeUndefined();
  });
});

describe('embeddedIPv4', () => {
  it.each([
    ['::ffff:1.2.3.4', '1.2.3.4'],
    ['::ffff:102:304', '1.2.3.4'],
    ['64:ff9b::1.2.3.4', '1.2.3.4'],
    ['64:ff9b::7f00:1', '127.0.0.1'],
    ['2002:7f00:1::', '127.0.0.1'],
    ['2002:a00:1:1::9', '10.0.0.1'],
    ['2606:4700::1', undefined],
    ['::1', undefined],
    ['1.2.3.4', undefined],
    ['not an address', undefined],
  ])('%s -> %s', (address, v4) => {
    expect(embeddedIPv4(address)).toBe(v4);
  });
});

describe('guardedLookup', () => {
  const lookup = (
    policy: ReturnType<typeof addressPolicy>,
    host: string,
    all: boolean,
  ): Promise<string | LookupAddress[]> =>
    new Promise((resolve, reject) =>
      guardedLookup(policy)(host, { all }, (err, address) => (err ? reject(err) : resolve(address))),
    );

  it('refuses a name that resolves only to loopback', async () => {
    for (const all of [false, true]) {
      const err = await lookup(addressPolicy(false), 'localhost', all).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RefusedTargetError);
      expect((err as Error).message).toMatch(
        /^localhost: address (127\.0\.0\.1|::1) is not allowed \(loopback\)$/,
      );
    }
  });

  it('answers only the allowed addresses, in the form asked for', async () => {
    const policy = addressPolicy(['127.0.0.0/8']);
    expect(await lookup(policy, 'localhost', false)).toBe('127.0.0.1');
    const all = (await lookup(policy, 'localhost', true)) as LookupAddress[];
    expect(all.length).toBeGreaterThan(0);
    expect(all.every((a) => a.family === 4 && a.address.startsWith('127.'))).toBe(true);
  });

  it('passes resolver errors through unchanged (they may be retried)', async () => {
    const err = await lookup(addressPolicy(false), 'no-such-host.invalid', false).catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(RefusedTargetError);
    expect((err as NodeJS.ErrnoException).code).toMatch(/^(ENOTFOUND|EAI_AGAIN)$/);
  });
});

describe('EXTJOB_WEBHOOK_ALLOW_PRIVATE', () => {
  it('is off by default, a boolean, or a list of networks', () => {
    expect(loadConfig({}).webhookAllowPrivate).toBe(false);
    expect(loadConfig({ EXTJOB_WEBHOOK_ALLOW_PRIVATE: 'true' }).webhookAllowPrivate).toBe(true);
    expect(loadConfig({ EXTJOB_WEBHOOK_ALLOW_PRIVATE: 'false' }).webhookAllowPrivate).toBe(false);
    expect(
      loadConfig({ EXTJOB_WEBHOOK_ALLOW_PRIVATE: '10.20.0.0/16, fd00:1::/64,192.168.7.7' })
        .webhookAllowPrivate,
    ).toEqual(['10.20.0.0/16', 'fd00:1::/64', '192.168.7.7']);
  });

  it.each(['maybe', '10.0.0.0/33', 'fd00::/129', '10.0.0.0/8/1', '10.0.0/8', 'true,10.0.0.0/8'])(
    'names the bad value %s',
    (raw) => {
      let err: unknown;
      try {
        loadConfig({ EXTJOB_WEBHOOK_ALLOW_PRIVATE: raw });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ExtjobError);
      expect((err as ExtjobError).details?.problems).toEqual([
        expect.stringMatching(
          /^EXTJOB_WEBHOOK_ALLOW_PRIVATE: ".+" is not true, false or a comma-separated list of CIDRs/,
        ),
      ]);
    },
  );
});

describe('job creation', () => {
  it('refuses webhook URLs that are not http(s) or that carry credentials, with a 400 problem', async () => {
    const api = await startTestApi();
    const cases: [string, RegExp][] = [
      ['ftp://hooks.example/x', /must be an http:\/\/ or https:\/\/ URL/],
      ['file:///etc/passwd', /must be an http:\/\/ or https:\/\/ URL/],
      ['not a url', /must be an http:\/\/ or https:\/\/ URL/],
      ['http://u:p@hooks.example/x', /must not carry credentials/],
      ['https://token@hooks.example/x', /must not carry credentials/],
    ];
    for (const [url, detail] of cases) {
      const r = await api.req('/v1/jobs', { json: { name: 'x', notify: [{ url }] } });
      expect(r.status, url).toBe(400);
      const p = (await r.json()) as { code: string; detail: string };
      expect(p.code, url).toBe('EXTJOB_VALIDATION_FAILED');
      expect(p.detail, url).toMatch(detail);
    }
    const ok = await api.req('/v1/jobs', {
      json: { name: 'x', notify: [{ url: 'https://hooks.example/x?a=1' }] },
    });
    expect(ok.status).toBe(201);
  });

  it('refuses a URL whose literal address the policy forbids, and only that, at creation', async () => {
    const policy = addressPolicy(['10.9.0.0/16']);
    const api = await startTestApi({ refuseNotifyUrl: (url) => literalRefusal(url, policy) });
    for (const [url, detail] of [
      ['http://10.0.0.1/hook', /body\.notify\.0\.url: address 10\.0\.0\.1 is not allowed \(private\)/],
      ['http://[::1]:8080/hook', /address ::1 is not allowed \(loopback\)/],
      ['http://[::ffff:169.254.169.254]/', /not allowed \(link-local, as 169\.254\.169\.254\)/],
    ] as const) {
      const r = await api.req('/v1/jobs', { json: { name: 'x', notify: [{ url }] } });
      expect(r.status, url).toBe(400);
      expect(((await r.json()) as { detail: string }).detail, url).toMatch(detail);
    }
    // names are judged at delivery (by what they resolve to then); allowed and public addresses pass
    for (const url of ['http://localhost/hook', 'http://10.9.1.2/hook', 'https://93.184.216.34/hook'])
      expect((await api.req('/v1/jobs', { json: { name: 'x', notify: [{ url }] } })).status, url).toBe(201);
    expect(literalRefusal('http://10.0.0.1/', addressPolicy(true))).toBeUndefined();
    expect(literalRefusal('not a url', policy)).toBeUndefined();
  });
});
