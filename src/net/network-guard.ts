import dns from 'node:dns';
import net from 'node:net';
import os from 'node:os';
import ipaddr from 'ipaddr.js';
import { buildConnector } from 'undici';

type Address = ipaddr.IPv4 | ipaddr.IPv6;

export interface Cidr {
  readonly network: Address;
  readonly prefixLength: number;
  /** Normalised form, e.g. `10.0.0.0/8`. */
  readonly text: string;
}

export type AddressKind =
  | 'public'
  | 'loopback'
  | 'private'
  | 'link-local'
  | 'unspecified'
  | 'carrier-grade NAT'
  | 'metadata'
  | 'multicast'
  | 'broadcast'
  | 'reserved';

export type GuardResult = { ok: true } | { ok: false; reason: string };

export interface NetworkGuardOptions {
  allowNetworks: Cidr[];
  /** Whether loopback callbacks are allowed (see `loopbackAllowed`). */
  allowLoopback: boolean;
  /** The relay's own port when known before it listens (a fixed RELAY_PORT); see `setOwnPort`. */
  ownPort?: number;
  /** The addresses of this machine's interfaces; `os.networkInterfaces()` unless given. */
  interfaceAddresses?: () => string[];
}

export interface NetworkGuard {
  isAddressAllowed(ip: string): boolean;
  checkUrl(url: string, label?: string): Promise<GuardResult>;
  lookup: net.LookupFunction;
  /**
   * An undici connector (`new Agent({connect: guard.connect})`): the lookup's checks, plus the
   * relay's own port, which `lookup` cannot see, refused on every local address.
   */
  connect: buildConnector.connector;
  assertLiteralHostAllowed(url: URL | string): void;
  /** The port the relay's server listens on, once it does (RELAY_PORT=0 picks one then). */
  setOwnPort(port: number): void;
}

export const LOOPBACK_MODES = ['auto', 'true', 'false'] as const;
export type LoopbackMode = (typeof LOOPBACK_MODES)[number];

export class AddressBlockedError extends Error {
  readonly code = 'EADDRBLOCKED';
  constructor(
    message: string,
    readonly address: string,
    readonly kind: AddressKind,
  ) {
    super(message);
    this.name = 'AddressBlockedError';
  }
}

// First match wins: metadata and broadcast sit inside wider ranges listed after them.
const V4_RANGES = ranges([
  ['metadata', '169.254.169.254/32'], // AWS, GCP, Azure, OpenStack
  ['metadata', '169.254.170.2/32'], // AWS ECS task credentials
  ['metadata', '100.100.100.200/32'], // Alibaba Cloud
  ['metadata', '192.0.0.192/32'], // Oracle Cloud
  ['unspecified', '0.0.0.0/8'],
  ['loopback', '127.0.0.0/8'],
  ['private', '10.0.0.0/8'],
  ['private', '172.16.0.0/12'],
  ['private', '192.168.0.0/16'],
  ['link-local', '169.254.0.0/16'],
  ['carrier-grade NAT', '100.64.0.0/10'],
  ['multicast', '224.0.0.0/4'],
  ['broadcast', '255.255.255.255/32'],
  ['reserved', '240.0.0.0/4'],
  ['reserved', '192.0.0.0/24'],
  ['reserved', '192.0.2.0/24'],
  ['reserved', '192.88.99.0/24'],
  ['reserved', '198.18.0.0/15'],
  ['reserved', '198.51.100.0/24'],
  ['reserved', '203.0.113.0/24'],
]);

const V6_RANGES = ranges([
  ['unspecified', '::/128'],
  ['loopback', '::1/128'],
  ['metadata', 'fd00:ec2::254/128'], // AWS IMDS over IPv6
  ['private', '64:ff9b:1::/48'], // local-use NAT64: where the v4 sits depends on the site's prefix length
  ['private', 'fc00::/7'],
  ['private', 'fec0::/10'],
  ['link-local', 'fe80::/10'],
  ['multicast', 'ff00::/8'],
  ['reserved', '2001::/23'], // includes Teredo, whose embedded client address is obfuscated
  ['reserved', '2001:db8::/32'],
  ['reserved', '3fff::/20'],
]);

const GLOBAL_UNICAST_V6 = ipaddr.IPv6.parseCIDR('2000::/3');

function ranges(list: Array<[AddressKind, string]>): Array<[AddressKind, [Address, number]]> {
  return list.map(([kind, cidr]) => [kind, ipaddr.parseCIDR(cidr)]);
}

function firstMatch(addr: Address, list: Array<[AddressKind, [Address, number]]>): AddressKind | undefined {
  return list.find(([, range]) => addr.kind() === range[0].kind() && addr.match(range))?.[0];
}

function classify(addr: Address): AddressKind {
  const listed = firstMatch(addr, addr.kind() === 'ipv4' ? V4_RANGES : V6_RANGES);
  if (listed) return listed;
  if (addr.kind() === 'ipv4') return 'public';
  return addr.match(GLOBAL_UNICAST_V6) ? 'public' : 'reserved';
}

interface EmbeddedIPv4 {
  address: ipaddr.IPv4;
  /** Only an IPv4-mapped address is reached by this host's own stack; the others go through a translator or tunnel. */
  direct: boolean;
  /** IPv4-compatible addresses are deprecated and never globally routable. */
  deprecated: boolean;
}

function v4From(hi: number, lo: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
}

function embeddedIPv4(addr: ipaddr.IPv6): EmbeddedIPv4 | undefined {
  const p = addr.parts;
  const zeroUpTo = (n: number) => p.slice(0, n).every((x) => x === 0);
  if (zeroUpTo(5) && p[5] === 0xffff) return { address: v4From(p[6], p[7]), direct: true, deprecated: false };
  if (zeroUpTo(4) && p[4] === 0xffff && p[5] === 0) {
    return { address: v4From(p[6], p[7]), direct: false, deprecated: false };
  }
  if (p[0] === 0x64 && p[1] === 0xff9b && p.slice(2, 6).every((x) => x === 0)) {
    return { address: v4From(p[6], p[7]), direct: false, deprecated: false };
  }
  if (p[0] === 0x2002) return { address: v4From(p[1], p[2]), direct: false, deprecated: false };
  // ::/96 minus :: and ::1, which classify() names precisely.
  if (zeroUpTo(6) && (p[6] !== 0 || p[7] > 1)) {
    return { address: v4From(p[6], p[7]), direct: false, deprecated: true };
  }
  return undefined;
}

interface Verdict {
  allowed: boolean;
  kind: AddressKind;
  embedded?: string;
}

function covers(allow: Cidr[], addr: Address, exactOnly: boolean): boolean {
  const bits = addr.kind() === 'ipv4' ? 32 : 128;
  return allow.some(
    (c) =>
      c.network.kind() === addr.kind() &&
      addr.match(c.network, c.prefixLength) &&
      (!exactOnly || c.prefixLength === bits),
  );
}

function inspect(addr: Address): { kind: AddressKind; embedded?: EmbeddedIPv4 } {
  const embedded = addr.kind() === 'ipv6' ? embeddedIPv4(addr as ipaddr.IPv6) : undefined;
  const kind = classify(embedded ? embedded.address : addr);
  return { kind: embedded?.deprecated && kind === 'public' ? 'reserved' : kind, embedded };
}

function judge(addr: Address, options: NetworkGuardOptions): Verdict {
  const { kind, embedded } = inspect(addr);
  const verdict = (allowed: boolean): Verdict => ({ allowed, kind, embedded: embedded?.address.toString() });

  if (kind === 'public') return verdict(true);
  if (kind === 'loopback' && options.allowLoopback && (!embedded || embedded.direct)) return verdict(true);
  // A metadata endpoint hands out credentials: a broad range such as fc00::/7 must not open it by accident.
  const exactOnly = kind === 'metadata';
  const candidates = embedded ? [addr, embedded.address] : [addr];
  return verdict(candidates.some((a) => covers(options.allowNetworks, a, exactOnly)));
}

// ipaddr.js reads any dotted tail as IPv4-mapped (::127.0.0.1 becomes ::ffff:7f00:1); the URL parser does not.
function parseIPv6(text: string): ipaddr.IPv6 {
  return ipaddr.IPv6.parse(new URL(`http://[${text}]/`).hostname.slice(1, -1));
}

function parseAddress(ip: string): Address | undefined {
  let bare = ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip;
  if (bare.includes(':')) bare = bare.replace(/%.*$/, '');
  if (net.isIPv6(bare)) return parseIPv6(bare);
  return ipaddr.IPv4.isValid(bare) ? ipaddr.IPv4.parse(bare) : undefined;
}

const ARTICLE: Record<AddressKind, string> = {
  public: 'a public',
  loopback: 'a loopback',
  private: 'a private',
  'link-local': 'a link-local',
  unspecified: 'an unspecified',
  'carrier-grade NAT': 'a carrier-grade NAT',
  metadata: 'a cloud metadata',
  multicast: 'a multicast',
  broadcast: 'a broadcast',
  reserved: 'a reserved',
};

function describeRefusal(ip: string, verdict: Verdict): string {
  const shown = verdict.embedded && verdict.embedded !== ip ? `${ip} (${verdict.embedded})` : ip;
  const exact = verdict.embedded ? `${verdict.embedded}/32` : `${ip}/${net.isIPv4(ip) ? 32 : 128}`;
  const hint =
    verdict.kind === 'metadata'
      ? `add ${exact} to RELAY_ALLOW_NETWORKS to allow it`
      : 'set RELAY_ALLOW_NETWORKS to allow it';
  return `${shown}, ${ARTICLE[verdict.kind]} address; ${hint}`;
}

export function isLocalhostName(host: string): boolean {
  const name = host.toLowerCase().replace(/\.$/, '');
  return name === 'localhost' || name.endsWith('.localhost');
}

/** Whether a bind address (RELAY_HOST) is loopback, which lets callbacks reach loopback too. */
export function isLoopbackHost(host: string): boolean {
  if (isLocalhostName(host)) return true;
  const addr = parseAddress(host);
  if (!addr) return false;
  const { kind, embedded } = inspect(addr);
  return kind === 'loopback' && (!embedded || embedded.direct);
}

/** RELAY_ALLOW_LOOPBACK: `auto` allows loopback callbacks while the relay binds a loopback address. */
export function loopbackAllowed(mode: LoopbackMode, bindHost: string): boolean {
  return mode === 'auto' ? isLoopbackHost(bindHost) : mode === 'true';
}

/** The start-up line saying which loopback rule is in force and what it comes to. */
export function describeLoopbackPolicy(mode: LoopbackMode, bindHost: string, guard: NetworkGuard): string {
  const why = mode === 'auto' ? `RELAY_ALLOW_LOOPBACK=auto and the relay binds ${bindHost}` : `RELAY_ALLOW_LOOPBACK=${mode}`;
  const listed = ['127.0.0.1', '::1'].filter((ip) => guard.isAddressAllowed(ip));
  const result = loopbackAllowed(mode, bindHost)
    ? 'loopback callbacks allowed'
    : listed.length
      ? `loopback callbacks refused except what RELAY_ALLOW_NETWORKS lists (it covers ${listed.join(', ')})`
      : 'loopback callbacks refused';
  return `${result} (${why}); the relay's own port never`;
}

function osInterfaceAddresses(): string[] {
  return Object.values(os.networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
}

// IPv4-mapped addresses reach this host's IPv4 stack, so they compare as the IPv4 address.
function sameHostForm(addr: Address): string {
  const v6 = addr.kind() === 'ipv6' ? (addr as ipaddr.IPv6) : undefined;
  return v6?.isIPv4MappedAddress() ? v6.toIPv4Address().toString() : addr.toNormalizedString();
}

/** Whether a connection to `addr` stays on this machine: loopback, unspecified, or an interface's own address. */
function isLocalAddress(addr: Address, interfaceAddresses: () => string[]): boolean {
  const { kind, embedded } = inspect(addr);
  // Through a translator or tunnel the address belongs to another machine.
  if (embedded && !embedded.direct) return false;
  if (kind === 'loopback' || kind === 'unspecified') return true;
  const wanted = sameHostForm(addr);
  return interfaceAddresses().some((a) => {
    const own = parseAddress(a);
    return own !== undefined && sameHostForm(own) === wanted;
  });
}

const portOf = (protocol: string, port: string): number => Number(port) || (protocol === 'https:' ? 443 : 80);

function hostOf(url: URL): string {
  const host = url.hostname;
  return host.startsWith('[') ? host.slice(1, -1) : host;
}

function parseCidr(entry: string): Cidr {
  const bad = () => new Error(`"${entry}" is not a CIDR such as 10.0.0.0/8 or fd00::/8`);
  const slash = entry.indexOf('/');
  const addressText = slash === -1 ? entry : entry.slice(0, slash);
  const prefixText = slash === -1 ? undefined : entry.slice(slash + 1);
  let network: Address;
  // Strict spellings only: config should not depend on inet_aton's octal and hex quirks.
  if (ipaddr.IPv4.isValidFourPartDecimal(addressText)) network = ipaddr.IPv4.parse(addressText);
  else if (net.isIPv6(addressText) && !addressText.includes('%')) network = parseIPv6(addressText);
  else throw bad();
  const bits = network.kind() === 'ipv4' ? 32 : 128;
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) throw bad();
  let prefixLength = prefixText === undefined ? bits : Number(prefixText);
  if (prefixLength > bits) throw bad();

  // ::ffff:a.b.c.d/104 means an IPv4 network; store it as one so plain IPv4 addresses match too.
  if (network.kind() === 'ipv6' && (network as ipaddr.IPv6).isIPv4MappedAddress() && prefixLength >= 96) {
    network = (network as ipaddr.IPv6).toIPv4Address();
    prefixLength -= 96;
  }
  const base = network.kind() === 'ipv4'
    ? ipaddr.IPv4.networkAddressFromCIDR(`${network.toString()}/${prefixLength}`)
    : ipaddr.IPv6.networkAddressFromCIDR(`${network.toString()}/${prefixLength}`);
  return { network: base, prefixLength, text: `${base.toString()}/${prefixLength}` };
}

/** Parses RELAY_ALLOW_NETWORKS: comma-separated CIDRs; a bare address is a /32 or /128. */
export function parseAllowNetworks(spec: string): Cidr[] {
  return spec
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map(parseCidr);
}

export function createNetworkGuard(options: NetworkGuardOptions): NetworkGuard {
  let ownPort = options.ownPort;
  const interfaceAddresses = options.interfaceAddresses ?? osInterfaceAddresses;

  const verdictFor = (ip: string): Verdict => {
    const addr = parseAddress(ip);
    return addr ? judge(addr, options) : { allowed: false, kind: 'reserved' };
  };

  const isAddressAllowed = (ip: string): boolean => verdictFor(ip).allowed;

  // The relay calling itself would loop (a callback that ingests, a std.http that starts an
  // execution): no mode or allow-list opens it. Interfaces are read only when the port matches.
  const isOwnEndpoint = (ip: string, port: number | undefined): boolean => {
    if (ownPort === undefined || port !== ownPort) return false;
    const addr = parseAddress(ip);
    return addr !== undefined && isLocalAddress(addr, interfaceAddresses);
  };
  const ownEndpointText = (ip: string, port: number, verb: 'points to' | 'resolves to') =>
    `${verb} ${ip}, an address of this machine, and port ${port} is the relay's own: the relay never calls itself`;

  async function checkUrl(url: string, label = 'callback.url'): Promise<GuardResult> {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return { ok: false, reason: `${label} is not a valid URL` };
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      return { ok: false, reason: `${label} must be an http or https URL, not ${parsed.protocol}` };
    }
    const host = hostOf(parsed);
    const port = portOf(parsed.protocol, parsed.port);
    if (net.isIP(host)) {
      if (isOwnEndpoint(host, port)) return { ok: false, reason: `${label} ${ownEndpointText(host, port, 'points to')}` };
      const verdict = verdictFor(host);
      return verdict.allowed ? { ok: true } : { ok: false, reason: `${label} points to ${describeRefusal(host, verdict)}` };
    }
    // Not resolved: localhost names are loopback by definition (RFC 6761), whatever a resolver says.
    if (isLocalhostName(host)) {
      if (isOwnEndpoint('127.0.0.1', port)) {
        return { ok: false, reason: `${label} points to ${host}, a loopback name, and port ${port} is the relay's own: the relay never calls itself` };
      }
      return verdictFor('127.0.0.1').allowed
        ? { ok: true }
        : { ok: false, reason: `${label} points to ${host}, a loopback name; set RELAY_ALLOW_NETWORKS to allow it` };
    }
    let addresses: dns.LookupAddress[];
    try {
      addresses = await dns.promises.lookup(host, { all: true });
    } catch {
      // Names may be registered after the listener; the connect-time lookup checks them on every attempt.
      return { ok: true };
    }
    for (const { address } of addresses) {
      if (isOwnEndpoint(address, port)) return { ok: false, reason: `${label} ${ownEndpointText(address, port, 'resolves to')}` };
      const verdict = verdictFor(address);
      if (!verdict.allowed) return { ok: false, reason: `${label} resolves to ${describeRefusal(address, verdict)}` };
    }
    return { ok: true };
  }

  // Checking at connect time, on the very addresses the socket will use, is what defeats DNS rebinding.
  const lookupFor = (toOwnPort: boolean): net.LookupFunction => (hostname, lookupOptions, callback) => {
    const opts: dns.LookupOptions = typeof lookupOptions === 'number' ? { family: lookupOptions } : { ...lookupOptions };
    dns.lookup(hostname, { ...opts, all: true }, (err, addresses) => {
      if (err) return callback(err, '');
      for (const { address } of addresses) {
        if (toOwnPort && isOwnEndpoint(address, ownPort)) {
          const text = `${hostname} ${ownEndpointText(address, ownPort!, 'resolves to')}`;
          return callback(new AddressBlockedError(text, address, verdictFor(address).kind), '');
        }
        const verdict = verdictFor(address);
        if (!verdict.allowed) {
          const error = new AddressBlockedError(`${hostname} resolves to ${describeRefusal(address, verdict)}`, address, verdict.kind);
          return callback(error, '');
        }
      }
      if (opts.all) return callback(null, addresses);
      callback(null, addresses[0].address, addresses[0].family);
    });
  };
  const lookup = lookupFor(false);

  function literalRefusal(host: string, port: number): AddressBlockedError | undefined {
    if (isOwnEndpoint(host, port)) {
      return new AddressBlockedError(ownEndpointText(host, port, 'points to'), host, verdictFor(host).kind);
    }
    const verdict = verdictFor(host);
    return verdict.allowed ? undefined : new AddressBlockedError(describeRefusal(host, verdict), host, verdict.kind);
  }

  // net.connect skips `lookup` for IP literals, so the dispatcher calls this before each attempt.
  function assertLiteralHostAllowed(url: URL | string): void {
    const parsed = typeof url === 'string' ? new URL(url) : url;
    const host = hostOf(parsed);
    if (!net.isIP(host)) return;
    const refusal = literalRefusal(host, portOf(parsed.protocol, parsed.port));
    if (refusal) throw refusal;
  }

  // `lookup` gets a host name but never the port, so the connector picks the lookup by port.
  const connectAnywhere = buildConnector({ lookup });
  const connectToOwnPort = buildConnector({ lookup: lookupFor(true) });
  const connect: buildConnector.connector = (connectOptions, callback) => {
    const host = connectOptions.hostname.replace(/^\[(.*)\]$/, '$1');
    const port = portOf(connectOptions.protocol, connectOptions.port);
    if (net.isIP(host)) {
      const refusal = literalRefusal(host, port);
      if (refusal) return void process.nextTick(callback, refusal, null);
    }
    (port === ownPort ? connectToOwnPort : connectAnywhere)(connectOptions, callback);
  };

  const setOwnPort = (port: number) => {
    ownPort = port;
  };

  return { isAddressAllowed, checkUrl, lookup, connect, assertLiteralHostAllowed, setOwnPort };
}
