import { domainToASCII } from 'node:url';
import ipaddr from 'ipaddr.js';

type Address = ipaddr.IPv4 | ipaddr.IPv6;

/**
 * The parsed `HTTP_CONNECTOR_ALLOW_HOSTS`: host names (lower-case ASCII, no trailing dot) and
 * address ranges (an exact IP is a /32 or /128 range).
 */
export interface AllowList {
  readonly hosts: ReadonlySet<string>;
  readonly ranges: readonly (readonly [Address, number])[];
}

export const EMPTY_ALLOW_LIST: AllowList = { hosts: new Set(), ranges: [] };

const ALLOW_VARIABLE = 'HTTP_CONNECTOR_ALLOW_HOSTS';

/**
 * Parses `HTTP_CONNECTOR_ALLOW_HOSTS`: comma-separated host names, IPs or CIDRs. Empty entries
 * are ignored; an entry that is none of the three throws an Error naming it.
 */
export function parseAllowList(text: string | undefined): AllowList {
  const hosts = new Set<string>();
  const ranges: [Address, number][] = [];
  for (const raw of (text ?? '').split(',')) {
    const entry = raw.trim();
    if (entry === '') continue;
    const range = parseRangeEntry(entry);
    if (range) {
      ranges.push(range);
      continue;
    }
    const host = parseHostEntry(entry);
    if (host) {
      hosts.add(host);
      continue;
    }
    throw new Error(`${ALLOW_VARIABLE}: "${entry}" is neither a host name, an IP address nor a CIDR range`);
  }
  return { hosts, ranges };
}

/** An IP or CIDR entry as a range; null when the entry is not one. */
function parseRangeEntry(entry: string): [Address, number] | null {
  const text = entry.startsWith('[') && entry.endsWith(']') ? entry.slice(1, -1) : entry;
  if (text.includes('/')) {
    const [ip = '', bits = ''] = text.split('/');
    // Only the usual notations: `10/8` or `0x0a.0.0.0/8` are refused rather than guessed at.
    if (!/^\d{1,3}$/.test(bits)) return null;
    if (!(ipaddr.IPv4.isValidFourPartDecimal(ip) || isIPv6Text(ip))) return null;
    if (!ipaddr.isValidCIDR(text)) return null;
    const [address, prefix] = ipaddr.parseCIDR(text);
    return normaliseRange(address, prefix);
  }
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return [ipaddr.IPv4.parse(text), 32];
  if (isIPv6Text(text)) return normaliseRange(ipaddr.IPv6.parse(text), 128);
  return null;
}

const isIPv6Text = (text: string) => text.includes(':') && ipaddr.IPv6.isValid(text);

/** An IPv4-mapped IPv6 range (`::ffff:10.0.0.0/104`) becomes its IPv4 range. */
function normaliseRange(address: Address, prefix: number): [Address, number] {
  if (address.kind() === 'ipv6') {
    const v6 = address as ipaddr.IPv6;
    if (v6.isIPv4MappedAddress() && prefix >= 96) return [v6.toIPv4Address(), prefix - 96];
  }
  return [address, prefix];
}

/** A host name entry, lower-case ASCII (IDNs as punycode) without a trailing dot; null if invalid. */
function parseHostEntry(entry: string): string | null {
  const ascii = domainToASCII(entry.replace(/\.$/, ''));
  if (ascii === '' || ascii.length > 253) return null;
  const labels = ascii.split('.');
  const label = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;
  if (!labels.every((l) => label.test(l))) return null;
  // A name whose last label is numeric would be read as an IPv4 address by URL parsers.
  if (/^(\d+|0x[0-9a-f]*)$/.test(labels[labels.length - 1] ?? '')) return null;
  return ascii;
}

/** A URL host as the allow-list compares it: lower-case, no brackets, no trailing dot. */
export function normaliseHost(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  return h.replace(/\.$/, '');
}

/** Cloud metadata endpoints: never reachable, whatever the allow-list says. */
const METADATA: readonly Address[] = [
  '169.254.169.254', // AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle…
  'fd00:ec2::254', // AWS over IPv6
  '100.100.100.200', // Alibaba Cloud
  '192.0.0.192', // Oracle Cloud (legacy)
].map((a) => ipaddr.parse(a));

/** RFC 6052's well-known NAT64 prefix: 64:ff9b::a.b.c.d reaches a.b.c.d through a NAT64 gateway. */
const NAT64 = ipaddr.parseCIDR('64:ff9b::/96');
/** IPv4-compatible (deprecated) and unassigned addresses at the bottom of IPv6. */
const IPV4_COMPATIBLE = ipaddr.parseCIDR('::/96');

/** The IPv4 address an IPv6 address stands for (mapped, translated or NAT64), if any. */
function embeddedIPv4(address: ipaddr.IPv6): ipaddr.IPv4 | null {
  if (address.isIPv4MappedAddress() || address.range() === 'rfc6145' || address.match(NAT64)) {
    const bytes = address.toByteArray().slice(12);
    return new ipaddr.IPv4(bytes);
  }
  return null;
}

const REASONS: Record<string, string> = {
  loopback: 'loopback address',
  private: 'private address',
  carrierGradeNat: 'private address (carrier-grade NAT)',
  uniqueLocal: 'private address (unique local)',
  unspecified: 'unspecified address',
  multicast: 'multicast address',
  broadcast: 'broadcast address',
};

/**
 * Whether a connection to `address` (a resolved address of `host`, or `host` itself when it is
 * an IP literal) is allowed: null when it is, else the reason.
 *
 * - Link-local and cloud-metadata addresses are always refused.
 * - Private, loopback, unspecified and other non-unicast (multicast, broadcast, reserved)
 *   addresses are refused unless `host` or `address` is on the allow-list.
 * - Public unicast addresses are allowed.
 *
 * IPv4-mapped (`::ffff:127.0.0.1`), IPv4-translated and NAT64 (`64:ff9b::/96`) IPv6 addresses are
 * judged as the IPv4 address they carry.
 */
export function checkAddress(host: string, address: string, allow: AllowList): string | null {
  let parsed: Address;
  try {
    parsed = ipaddr.parse(normaliseHost(address));
  } catch {
    return `not an IP address: ${JSON.stringify(address.slice(0, 100))}`;
  }
  if (parsed.kind() === 'ipv6') parsed = embeddedIPv4(parsed as ipaddr.IPv6) ?? parsed;

  if (METADATA.some((m) => m.kind() === parsed.kind() && m.match(parsed, m.kind() === 'ipv4' ? 32 : 128))) {
    return parsed.range() === 'linkLocal' ? 'link-local address (cloud metadata)' : 'cloud metadata address';
  }
  const range = parsed.range();
  if (range === 'linkLocal') return 'link-local address';

  let kind: string | null;
  if (range === 'unicast') {
    // ipaddr.js files the rest of ::/96 (IPv4-compatible, deprecated) under unicast.
    kind = parsed.kind() === 'ipv6' && parsed.match(IPV4_COMPATIBLE) ? 'reserved' : null;
  } else {
    kind = range;
  }
  if (kind === null) return null;
  if (isAllowed(host, parsed, allow)) return null;
  return `${REASONS[kind] ?? `reserved address (${kind})`}, not on ${ALLOW_VARIABLE}`;
}

function isAllowed(host: string, address: Address, allow: AllowList): boolean {
  if (allow.hosts.has(normaliseHost(host))) return true;
  return allow.ranges.some(([net, bits]) => net.kind() === address.kind() && address.match(net, bits));
}
