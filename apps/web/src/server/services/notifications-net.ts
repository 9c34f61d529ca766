/**
 * Where a notification may go, and the one way it is sent. The SSRF guard runs when a rule is made AND at every
 * delivery: the URL's host is resolved (all its addresses), and a loopback, link-local (169.254.169.254, the
 * cloud metadata service), private, CGNAT, multicast or otherwise non-public address is refused unless the
 * operator's allow-list (PYREACH_NOTIFY_ALLOW: `host`, `host:port` or a CIDR) permits it. The request then
 * connects to exactly the addresses that were checked (a pinned lookup), so a name that resolves to a public
 * address at check time and to 127.0.0.1 a moment later (DNS rebinding) cannot reach the control plane's
 * network. Redirects are never followed: a 3xx is a failed delivery.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';

/** Non-public IPv4: this-network, private, CGNAT, loopback, link-local (metadata), IETF, benchmark, multicast, reserved. */
const V4 = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const)
  V4.addSubnet(net, bits, 'ipv4');
/**
 * Non-public IPv6: unspecified, loopback and IPv4-compatible (::/96), NAT64, Teredo, 6to4 (both can carry a private IPv4), unique-local
 * (fd00:ec2::254 is a metadata address), link-local, multicast. IPv4-mapped addresses are checked as IPv4 (a
 * `::ffff:0:0/96` entry in a BlockList would match every IPv4 address).
 */
const V6 = new BlockList();
for (const [net, bits] of [
  ['::', 96],
  ['64:ff9b::', 96],
  ['64:ff9b:1::', 48],
  ['2001::', 32],
  ['2001:db8::', 32],
  ['2002::', 16],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const)
  V6.addSubnet(net, bits, 'ipv6');

/** The 8 groups of an IPv6 address (embedded dotted quad allowed), or null. */
function groupsOf(address: string): number[] | null {
  let a = address.toLowerCase().replace(/%.*$/, '');
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
  if (quad) {
    const [b0, b1, b2, b3] = quad.slice(1).map(Number) as [number, number, number, number];
    a = `${a.slice(0, quad.index)}${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const [head, tail] = a.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const fill = a.includes('::') ? 8 - h.length - t.length : 0;
  const parts = [...h, ...Array<string>(Math.max(fill, 0)).fill('0'), ...t];
  if (parts.length !== 8) return null;
  return parts.map((p) => parseInt(p || '0', 16));
}

/** An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, in any spelling) as IPv4; otherwise the address itself. */
export function unmapped(address: string): string {
  if (isIP(address) !== 6) return address;
  const g = groupsOf(address);
  if (!g || g.slice(0, 5).some((x) => x !== 0) || g[5] !== 0xffff) return address;
  return [g[6]! >> 8, g[6]! & 255, g[7]! >> 8, g[7]! & 255].join('.');
}

/** True for every address a notification must not reach unless allow-listed (anything not an IP, too). */
export function isNonPublicAddress(address: string): boolean {
  const a = unmapped(address);
  const family = isIP(a);
  if (family === 4) return V4.check(a, 'ipv4');
  if (family === 6) return V6.check(a, 'ipv6');
  return true;
}

export interface NotifyAllowList {
  /** Lowercase `host` or `host:port` entries. */
  hosts: ReadonlySet<string>;
  /** CIDR entries: addresses inside them may be reached although private. */
  nets: BlockList;
  /** The entries as configured (for messages and docs). */
  entries: readonly string[];
}

/** Parses `host`, `host:port`, `[v6]:port`, `a.b.c.d/nn` and `v6/nn` entries; throws on a malformed CIDR. */
export function parseAllowList(entries: readonly string[]): NotifyAllowList {
  const hosts = new Set<string>();
  const nets = new BlockList();
  for (const raw of entries.map((e) => e.trim().toLowerCase()).filter(Boolean)) {
    const cidr = /^([0-9a-f:.]+)\/(\d{1,3})$/.exec(raw);
    if (cidr) {
      const [, net, bits] = cidr as unknown as [string, string, string];
      const family = isIP(net);
      if (!family) throw new Error(`PYREACH_NOTIFY_ALLOW: ${raw} is not a CIDR`);
      nets.addSubnet(net, Number(bits), family === 4 ? 'ipv4' : 'ipv6');
      continue;
    }
    hosts.add(raw.replace(/^\[([^\]]+)\]/, '$1'));
  }
  return { hosts, nets, entries: [...entries] };
}

export const NO_ALLOW_LIST: NotifyAllowList = parseAllowList([]);

export class DestinationRefused extends Error {
  override name = 'DestinationRefused';
}

export type Resolver = (host: string) => Promise<{ address: string; family: number }[]>;

const systemResolver: Resolver = (host) => dnsLookup(host, { all: true, verbatim: true });

function defaultPort(u: URL): string {
  return u.port || (u.protocol === 'https:' ? '443' : '80');
}

/**
 * Checks a destination and returns the addresses to connect to. Throws DestinationRefused naming the reason
 * (not http(s), credentials in it, does not resolve, resolves to a non-public address that is not allowed).
 */
export async function checkDestination(
  url: string,
  allow: NotifyAllowList,
  resolve: Resolver = systemResolver,
): Promise<{ address: string; family: number }[]> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new DestinationRefused('not a URL');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new DestinationRefused('only http and https');
  if (u.username || u.password) throw new DestinationRefused('no credentials in the URL');
  const host = u.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const hostAllowed = allow.hosts.has(host) || allow.hosts.has(`${host}:${defaultPort(u)}`);
  let addresses: { address: string; family: number }[];
  const literal = isIP(host);
  if (literal) addresses = [{ address: host, family: literal }];
  else {
    try {
      addresses = await resolve(host);
    } catch {
      throw new DestinationRefused(`${host} does not resolve`);
    }
    if (addresses.length === 0) throw new DestinationRefused(`${host} does not resolve`);
  }
  for (const a of addresses) {
    if (!isNonPublicAddress(a.address)) continue;
    const plain = unmapped(a.address);
    const inNet = allow.nets.check(plain, isIP(plain) === 6 ? 'ipv6' : 'ipv4');
    if (hostAllowed || inNet) continue;
    throw new DestinationRefused(
      literal
        ? `${host} is a loopback, link-local or private address (not allow-listed in PYREACH_NOTIFY_ALLOW)`
        : `${host} resolves to ${a.address}, a loopback, link-local or private address (not allow-listed in PYREACH_NOTIFY_ALLOW)`,
    );
  }
  return addresses;
}

export interface SendResult {
  status: number;
  /** The first bytes of the answer (for the delivery log). */
  body: string;
}

/**
 * POSTs `body` to `url`, connecting only to `addresses` (checked by checkDestination). Resolves with the status
 * whatever it is (the caller decides), rejects on a connection error or timeout. Never follows a redirect.
 */
export function postTo(
  url: string,
  addresses: { address: string; family: number }[],
  headers: Record<string, string>,
  body: string,
  timeoutMs: number,
): Promise<SendResult> {
  const target = new URL(url);
  const pinned: LookupFunction = (_hostname, options, callback) => {
    const list = addresses.filter((a) => !options.family || a.family === options.family);
    const first = list[0];
    if (!first) {
      callback(new DestinationRefused('no checked address of the wanted family'), '', 0);
      return;
    }
    if (options.all) callback(null, list);
    else callback(null, first.address, first.family);
  };
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<SendResult>((resolve, reject) => {
    const req = send(
      target,
      {
        method: 'POST',
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        lookup: pinned,
        timeout: timeoutMs,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          if (text.length < 512) text += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text.slice(0, 512) }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}
