/**
 * Which addresses webhooks may be sent to. A caller who can create jobs chooses the
 * URLs, so without a check the service would POST wherever it is told: to itself
 * (loopback), to the cloud metadata service (169.254.169.254), to anything on the
 * private network. `refusal` classifies one address (pure); `guardedLookup` is the
 * `lookup` of the outgoing request, so the address that is checked is the address
 * that is connected to, with no second resolution in between (no DNS rebinding).
 * IP literals in URLs never reach a lookup: the caller checks them with `refusal`.
 */
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { BlockList, isIP } from 'node:net';

/** Address ranges a webhook is refused, by the reason given. */
const REFUSED: [reason: string, cidrs: string[]][] = [
  ['unspecified', ['0.0.0.0/8', '::/128']],
  ['loopback', ['127.0.0.0/8', '::1/128']],
  ['private', ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16']],
  ['shared address space', ['100.64.0.0/10']],
  ['link-local', ['169.254.0.0/16', 'fe80::/10']],
  ['unique-local', ['fc00::/7', 'fec0::/10']],
  ['multicast', ['224.0.0.0/4', 'ff00::/8']],
  [
    'reserved',
    [
      '192.0.0.0/24',
      '192.0.2.0/24',
      '198.18.0.0/15',
      '198.51.100.0/24',
      '203.0.113.0/24',
      '240.0.0.0/4',
      '::/96', // IPv4-compatible (deprecated)
      '64:ff9b:1::/48', // local-use IPv4/IPv6 translation
      '100::/64', // discard-only
      '2001::/23', // IETF protocol assignments (Teredo among them)
      '2001:db8::/32', // documentation
    ],
  ],
];

function blockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [net = '', bits] = cidr.split('/');
    const family = isIP(net) === 6 ? 'ipv6' : 'ipv4';
    list.addSubnet(net, bits === undefined ? (family === 'ipv6' ? 128 : 32) : Number(bits), family);
  }
  return list;
}

const RANGES = REFUSED.map(([reason, cidrs]) => ({ reason, list: blockList(cidrs) }));

/**
 * What an operator allows besides public addresses: `true` every address (the check is
 * off, for development), `false` nothing, or a list of CIDRs (a bare address is a /32
 * or /128).
 */
export type AllowPrivate = boolean | readonly string[];

export interface AddressPolicy {
  allowAll: boolean;
  allowed: BlockList | undefined;
}

export function addressPolicy(allow: AllowPrivate = false): AddressPolicy {
  if (typeof allow === 'boolean') return { allowAll: allow, allowed: undefined };
  return { allowAll: false, allowed: allow.length ? blockList(allow) : undefined };
}

/** Split an IPv6 address into its eight 16-bit groups (undefined when it is not one). */
function ipv6Groups(address: string): number[] | undefined {
  if (isIP(address) !== 6) return undefined;
  let text = address;
  const tail: number[] = [];
  const dotted = /:(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    tail.push((a << 8) | b, (c << 8) | d);
    text = text.slice(0, dotted.index);
    if (text.endsWith(':')) text = `${text}:`; // "::1.2.3.4": keep the "::"
  }
  const [head = '', rest] = text.split('::');
  const parse = (s: string) => (s ? s.split(':').map((g) => Number.parseInt(g, 16)) : []);
  const left = parse(head);
  const right = [...parse(rest ?? ''), ...tail];
  const fill = rest === undefined ? [] : Array(8 - left.length - right.length).fill(0);
  const groups = [...left, ...fill, ...right];
  return groups.length === 8 ? groups : undefined;
}

/**
 * The IPv4 address an IPv6 address stands for, when it is one of the forms that carry
 * one: IPv4-mapped (::ffff:a.b.c.d), the well-known IPv4/IPv6 translation prefix
 * (64:ff9b::a.b.c.d) and 6to4 (2002:aabb:ccdd::).
 */
export function embeddedIPv4(address: string): string | undefined {
  const g = ipv6Groups(address);
  if (!g) return undefined;
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  const zeros = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  if (zeros(0, 5) && g[5] === 0xffff) return v4(g[6] ?? 0, g[7] ?? 0);
  if (g[0] === 0x64 && g[1] === 0xff9b && zeros(2, 6)) return v4(g[6] ?? 0, g[7] ?? 0);
  if (g[0] === 0x2002) return v4(g[1] ?? 0, g[2] ?? 0);
  return undefined;
}

/**
 * Why a webhook may not be sent to `address` under `policy`, as a sentence ("address
 * 10.0.0.1 is not allowed (private)"), or undefined when it may.
 */
export function refusal(address: string, policy: AddressPolicy = addressPolicy()): string | undefined {
  if (policy.allowAll) return undefined;
  const ip = address.replace(/%.*$/, ''); // an IPv6 zone ("fe80::1%eth0")
  const family = isIP(ip);
  if (family === 0) return `"${address}" is not an IP address`;
  const inner = family === 6 ? embeddedIPv4(ip) : undefined;
  const v4 = inner ?? (family === 4 ? ip : undefined);
  const allowed = (a: string, f: 'ipv4' | 'ipv6') => policy.allowed?.check(a, f) ?? false;
  if (allowed(ip, family === 6 ? 'ipv6' : 'ipv4') || (inner !== undefined && allowed(inner, 'ipv4')))
    return undefined;
  for (const { reason, list } of RANGES) {
    const hit = v4 !== undefined ? list.check(v4, 'ipv4') : list.check(ip, 'ipv6');
    if (hit) return `address ${address} is not allowed (${reason}${inner ? `, as ${inner}` : ''})`;
  }
  return undefined;
}

/**
 * Why a webhook URL whose host is a literal IP address would be refused at every
 * delivery (so a job can be refused at creation); undefined when the host is a name
 * (judged at delivery, by what it resolves to then) or an allowed address.
 */
export function literalRefusal(url: string, policy: AddressPolicy): string | undefined {
  let host: string;
  try {
    host = new URL(url).hostname;
  } catch {
    return undefined; // the request schema refuses what is not a URL
  }
  const ip = host.startsWith('[') ? host.slice(1, -1) : host;
  return isIP(ip) ? refusal(ip, policy) : undefined;
}

/** A delivery refused for its target (address, scheme, credentials): a retry cannot help. */
export class RefusedTargetError extends Error {
  override name = 'RefusedTargetError';
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/**
 * A `lookup` for http(s).request: resolves like dns.lookup, drops the addresses the
 * policy refuses and fails with RefusedTargetError when none is left.
 */
export function guardedLookup(
  policy: AddressPolicy,
): (hostname: string, options: LookupOptions, callback: LookupCallback) => void {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, []);
      const ok = addresses.filter((a) => refusal(a.address, policy) === undefined);
      const first = ok[0];
      if (!first) {
        const why = addresses[0] ? refusal(addresses[0].address, policy) : 'it has no address';
        return callback(new RefusedTargetError(`${hostname}: ${why}`), []);
      }
      if (options.all) callback(null, ok);
      else callback(null, first.address, first.family);
    });
  };
}
