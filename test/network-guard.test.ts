import dns from 'node:dns';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Agent, fetch } from 'undici';
import { loadConfig } from '../src/config.js';
import { createActionAgent, runAction } from '../src/engine/actions.js';
import {
  AddressBlockedError,
  createNetworkGuard,
  describeLoopbackPolicy,
  isLoopbackHost,
  loopbackAllowed,
  parseAllowNetworks,
} from '../src/net/network-guard.js';
import { createHttpTransport } from '../src/transports/http.js';

const strict = createNetworkGuard({ allowNetworks: [], allowLoopback: false });
const local = createNetworkGuard({ allowNetworks: [], allowLoopback: true });

afterEach(() => {
  vi.restoreAllMocks();
});

describe('isAddressAllowed by default', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['::1', 'loopback'],
    ['10.0.0.5', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['fc00::1', 'unique local'],
    ['fd12:3456::1', 'unique local'],
    ['fec0::1', 'site-local'],
    ['169.254.1.1', 'link-local'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local with zone'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'this network'],
    ['::', 'unspecified'],
    ['100.64.0.1', 'carrier-grade NAT'],
    ['100.127.255.255', 'carrier-grade NAT'],
    ['169.254.169.254', 'metadata'],
    ['169.254.170.2', 'metadata'],
    ['fd00:ec2::254', 'metadata'],
    ['100.100.100.200', 'metadata'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['ff02::1', 'multicast'],
    ['255.255.255.255', 'broadcast'],
    ['240.0.0.1', 'reserved'],
    ['192.0.2.1', 'documentation'],
    ['198.51.100.7', 'documentation'],
    ['203.0.113.9', 'documentation'],
    ['198.18.0.1', 'benchmarking'],
    ['2001:db8::1', 'documentation'],
    ['2001::1', 'Teredo'],
    ['100::1', 'discard'],
    ['::ffff:127.0.0.1', 'IPv4-mapped loopback'],
    ['::ffff:7f00:1', 'IPv4-mapped loopback, hex'],
    ['0:0:0:0:0:ffff:7f00:1', 'IPv4-mapped loopback, long'],
    ['::ffff:10.1.2.3', 'IPv4-mapped private'],
    ['::ffff:169.254.169.254', 'IPv4-mapped metadata'],
    ['::ffff:0:127.0.0.1', 'IPv4-translated loopback'],
    ['::127.0.0.1', 'IPv4-compatible loopback'],
    ['::5db8:d822', 'IPv4-compatible public (deprecated form)'],
    ['64:ff9b::10.0.0.1', 'NAT64 private'],
    ['64:ff9b::a00:1', 'NAT64 private, hex'],
    ['64:ff9b::7f00:1', 'NAT64 loopback'],
    ['64:ff9b:1::a00:1', 'local-use NAT64'],
    ['2002:7f00:1::', '6to4 loopback'],
    ['2002:a00:1::1', '6to4 private'],
    ['2002:a9fe:a9fe::1', '6to4 metadata'],
    ['[::1]', 'bracketed loopback'],
    ['not-an-ip', 'not an address'],
    ['', 'empty'],
  ])('refuses %s (%s)', (ip) => {
    expect(strict.isAddressAllowed(ip)).toBe(false);
  });

  it.each([
    '93.184.216.34',
    '8.8.8.8',
    '1.1.1.1',
    '172.32.0.1',
    '100.128.0.1',
    '192.169.0.1',
    '2606:2800:220:1:248:1893:25c8:1946',
    '2001:4860:4860::8888',
    '::ffff:93.184.216.34',
    '::ffff:5db8:d822',
    '64:ff9b::5db8:d822',
    '2002:5db8:d822::1',
  ])('allows %s', (ip) => {
    expect(strict.isAddressAllowed(ip)).toBe(true);
  });
});

describe('isAddressAllowed with RELAY_ALLOW_NETWORKS', () => {
  const guard = createNetworkGuard({
    allowNetworks: parseAllowNetworks('10.0.0.0/8, fd00::/8, ::ffff:192.168.0.0/112, 169.254.0.0/16'),
    allowLoopback: false,
  });

  it.each([
    ['10.1.2.3', true],
    ['::ffff:10.1.2.3', true],
    ['::ffff:a01:203', true],
    ['64:ff9b::10.1.2.3', true],
    ['2002:a01:203::1', true],
    ['fd00::1', true],
    ['192.168.1.1', true],
    ['169.254.1.1', true],
    ['93.184.216.34', true],
    ['fc00::1', false],
    ['172.16.0.1', false],
    ['127.0.0.1', false],
    // A broad range does not open a metadata endpoint; only the exact address does.
    ['169.254.169.254', false],
    ['fd00:ec2::254', false],
  ])('%s → %s', (ip, allowed) => {
    expect(guard.isAddressAllowed(ip)).toBe(allowed);
  });

  it('opens a metadata address listed exactly', () => {
    const guard = createNetworkGuard({
      allowNetworks: parseAllowNetworks('169.254.169.254,fd00:ec2::254/128'),
      allowLoopback: false,
    });
    expect(guard.isAddressAllowed('169.254.169.254')).toBe(true);
    expect(guard.isAddressAllowed('::ffff:169.254.169.254')).toBe(true);
    expect(guard.isAddressAllowed('fd00:ec2::254')).toBe(true);
    expect(guard.isAddressAllowed('169.254.169.253')).toBe(false);
  });
});

describe('isAddressAllowed with allowLoopback', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['::1', true],
    ['::ffff:127.0.0.1', true],
    ['10.0.0.1', false],
    ['169.254.169.254', false],
    ['0.0.0.0', false],
    // Through a translator or tunnel, "loopback" is someone else's loopback.
    ['64:ff9b::7f00:1', false],
    ['2002:7f00:1::', false],
    ['::127.0.0.1', false],
  ])('%s → %s', (ip, allowed) => {
    expect(local.isAddressAllowed(ip)).toBe(allowed);
  });
});

describe('parseAllowNetworks', () => {
  it.each([
    ['', []],
    ['  ', []],
    ['10.0.0.0/8', ['10.0.0.0/8']],
    ['10.1.2.3', ['10.1.2.3/32']],
    ['10.1.2.3/8', ['10.0.0.0/8']],
    ['0.0.0.0/0', ['0.0.0.0/0']],
    ['::1', ['::1/128']],
    ['fd00::/8', ['fd00::/8']],
    ['FD00::/8', ['fd00::/8']],
    ['::ffff:10.0.0.0/104', ['10.0.0.0/8']],
    ['::10.0.0.0/104', ['::a00:0/104']],
    [' 10.0.0.0/8 , 192.168.0.0/16 ,', ['10.0.0.0/8', '192.168.0.0/16']],
  ])('parses %j', (spec, texts) => {
    expect(parseAllowNetworks(spec).map((c) => c.text)).toEqual(texts);
  });

  it.each([
    '10.0.0.0/33',
    '10.0.0/8',
    '0x0a.0.0.0/8',
    '010.0.0.0/8',
    '167772160/8',
    'fd00::/129',
    'example.com',
    '10.0.0.0/',
    '/8',
    '10.0.0.0/8/1',
    '10.0.0.0/-1',
    '10.0.0.0/8 x',
    'fe80::1%eth0/64',
  ])('refuses %j, naming it', (entry) => {
    expect(() => parseAllowNetworks(`192.168.0.0/16,${entry}`)).toThrowError(entry);
  });
});

describe('isLoopbackHost', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.0.0.2', true],
    ['::1', true],
    ['[::1]', true],
    ['::ffff:127.0.0.1', true],
    ['localhost', true],
    ['relay.localhost', true],
    ['0.0.0.0', false],
    ['::', false],
    ['10.0.0.1', false],
    ['example.com', false],
  ])('%s → %s', (host, loopback) => {
    expect(isLoopbackHost(host)).toBe(loopback);
  });
});

describe('checkUrl', () => {
  it.each([
    'http://127.0.0.1/',
    'http://127.0.0.1./',
    'http://2130706433/',
    'http://0x7f.1/',
    'http://0x7f000001/',
    'http://0177.0.0.1/',
    'http://017700000001/',
    'http://127.1/',
    'http://127.0.1/',
    'http://%31%32%37.0.0.1/',
    'http://user:pass@127.0.0.1:8080/hook',
    'http://[::1]/',
    'http://[::ffff:127.0.0.1]/',
    'http://[::ffff:7f00:1]/',
    'http://[0:0:0:0:0:ffff:127.0.0.1]/',
    'http://0/',
    'http://[::]/',
    'http://10.0.0.5:8080/',
    'http://169.254.169.254/latest/meta-data/',
    'http://0xa9.0xfe.0xa9.0xfe/',
    'http://2852039166/',
    'http://[fd00:ec2::254]/',
    'http://100.100.100.200/',
    'http://[64:ff9b::10.0.0.1]/',
    'http://[2002:7f00:1::]/',
    'http://localhost/',
    'http://localhost:8990/',
    'http://LOCALHOST./',
    'http://api.localhost/',
  ])('refuses %s', async (url) => {
    const lookup = vi.spyOn(dns.promises, 'lookup');
    const result = await strict.checkUrl(url);
    expect(result.ok).toBe(false);
    expect(lookup).not.toHaveBeenCalled();
  });

  it.each([
    'http://127.0.0.1:8080/hook',
    'http://2130706433/',
    'http://[::1]/',
    'http://[::ffff:7f00:1]/',
    'http://localhost:8080/',
    'http://api.localhost/',
  ])('allows loopback %s when allowLoopback is set', async (url) => {
    expect(await local.checkUrl(url)).toEqual({ ok: true });
  });

  it.each(['http://10.0.0.5/', 'http://169.254.169.254/'])('still refuses %s when allowLoopback is set', async (url) => {
    expect((await local.checkUrl(url)).ok).toBe(false);
  });

  it.each([
    'http://93.184.216.34/hook',
    'https://93.184.216.34:8443/hook?x=1',
    'https://[2606:2800:220:1:248:1893:25c8:1946]/',
    'http://[::ffff:93.184.216.34]/',
  ])('allows public literal %s without DNS', async (url) => {
    const lookup = vi.spyOn(dns.promises, 'lookup');
    expect(await strict.checkUrl(url)).toEqual({ ok: true });
    expect(lookup).not.toHaveBeenCalled();
  });

  it.each([
    ['ftp://93.184.216.34/', 'must be an http or https URL, not ftp:'],
    ['file:///etc/passwd', 'not file:'],
    ['gopher://93.184.216.34/', 'not gopher:'],
    ['ws://93.184.216.34/', 'not ws:'],
    ['javascript:alert(1)', 'not javascript:'],
    ['data:,hello', 'not data:'],
    ['not a url', 'is not a valid URL'],
    ['http://1.2.3.4.5/', 'is not a valid URL'],
  ])('refuses %s', async (url, reason) => {
    const result = await strict.checkUrl(url);
    expect(result).toEqual({ ok: false, reason: expect.stringContaining(reason) });
  });

  it('says what was refused and how to allow it', async () => {
    expect(await strict.checkUrl('http://10.0.0.5/')).toEqual({
      ok: false,
      reason: 'callback.url points to 10.0.0.5, a private address; set RELAY_ALLOW_NETWORKS to allow it',
    });
    expect(await strict.checkUrl('http://[::ffff:7f00:1]/', 'input.url')).toEqual({
      ok: false,
      reason: 'input.url points to ::ffff:7f00:1 (127.0.0.1), a loopback address; set RELAY_ALLOW_NETWORKS to allow it',
    });
    expect(await strict.checkUrl('http://169.254.169.254/')).toEqual({
      ok: false,
      reason:
        'callback.url points to 169.254.169.254, a cloud metadata address; add 169.254.169.254/32 to RELAY_ALLOW_NETWORKS to allow it',
    });
  });

  it('honours RELAY_ALLOW_NETWORKS for literals and localhost', async () => {
    const guard = createNetworkGuard({ allowNetworks: parseAllowNetworks('10.0.0.0/8,127.0.0.0/8'), allowLoopback: false });
    expect(await guard.checkUrl('http://localhost:8080/')).toEqual({ ok: true });
    expect(await guard.checkUrl('http://10.1.2.3/')).toEqual({ ok: true });
    expect(await guard.checkUrl('http://[::ffff:10.1.2.3]/')).toEqual({ ok: true });
    expect(await guard.checkUrl('http://0x0a.1.2.3/')).toEqual({ ok: true });
    expect((await guard.checkUrl('http://192.168.0.1/')).ok).toBe(false);
  });

  describe('names', () => {
    const resolvesTo = (...addresses: string[]) =>
      vi.spyOn(dns.promises, 'lookup').mockResolvedValue(
        addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })) as never,
      );

    it('resolves a name and refuses a private answer', async () => {
      const lookup = resolvesTo('10.0.0.5');
      expect(await strict.checkUrl('https://hooks.example.com/wf')).toEqual({
        ok: false,
        reason: 'callback.url resolves to 10.0.0.5, a private address; set RELAY_ALLOW_NETWORKS to allow it',
      });
      expect(lookup).toHaveBeenCalledWith('hooks.example.com', { all: true });
    });

    it('refuses a name when any of its addresses is refused', async () => {
      resolvesTo('93.184.216.34', '::1');
      expect((await strict.checkUrl('https://hooks.example.com/')).ok).toBe(false);
    });

    it('accepts a name whose addresses are all public', async () => {
      resolvesTo('93.184.216.34', '2606:2800:220:1:248:1893:25c8:1946');
      expect(await strict.checkUrl('https://hooks.example.com/')).toEqual({ ok: true });
    });

    it('accepts a name that does not resolve (checked again at connect time)', async () => {
      vi.spyOn(dns.promises, 'lookup').mockRejectedValue(Object.assign(new Error('nope'), { code: 'ENOTFOUND' }));
      expect(await strict.checkUrl('https://not-yet.example.com/')).toEqual({ ok: true });
    });

    it('accepts a private answer covered by RELAY_ALLOW_NETWORKS', async () => {
      resolvesTo('10.0.0.5');
      const guard = createNetworkGuard({ allowNetworks: parseAllowNetworks('10.0.0.0/8'), allowLoopback: false });
      expect(await guard.checkUrl('https://internal.example.com/')).toEqual({ ok: true });
    });
  });
});

describe('assertLiteralHostAllowed', () => {
  it.each(['http://127.0.0.1:9/', 'http://[::ffff:7f00:1]/', 'http://10.0.0.5/', new URL('http://0x7f.1/')])(
    'throws EADDRBLOCKED for %s',
    (url) => {
      expect(() => strict.assertLiteralHostAllowed(url)).toThrowError(
        expect.objectContaining({ code: 'EADDRBLOCKED', name: 'AddressBlockedError' }),
      );
    },
  );

  it.each(['http://93.184.216.34/', 'http://hooks.example.com/', 'http://localhost/'])(
    'lets %s through (names are checked by lookup)',
    (url) => {
      expect(() => strict.assertLiteralHostAllowed(new URL(url))).not.toThrow();
    },
  );

  it('allows loopback literals when allowLoopback is set', () => {
    expect(() => local.assertLiteralHostAllowed('http://127.0.0.1:9/')).not.toThrow();
  });
});

describe('lookup', () => {
  const call = (guard: typeof strict, host: string, options: dns.LookupOptions) =>
    new Promise<{ err: NodeJS.ErrnoException | null; address: unknown; family?: number }>((resolve) => {
      guard.lookup(host, options, (err, address, family) => resolve({ err, address, family }));
    });

  const answers = (...addresses: string[]) =>
    vi.spyOn(dns, 'lookup').mockImplementation(((_host: string, _options: unknown, cb: Function) => {
      cb(null, addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })));
    }) as never);

  it('fails with EADDRBLOCKED when a resolved address is refused', async () => {
    answers('93.184.216.34', '10.0.0.5');
    const { err } = await call(strict, 'rebind.example.com', { all: true });
    expect(err).toBeInstanceOf(AddressBlockedError);
    expect(err).toMatchObject({ code: 'EADDRBLOCKED', address: '10.0.0.5', kind: 'private' });
    expect(err?.message).toContain('rebind.example.com resolves to 10.0.0.5');
  });

  it('answers in the shape the caller asked for', async () => {
    answers('93.184.216.34', '2606:2800:220:1:248:1893:25c8:1946');
    expect(await call(strict, 'hooks.example.com', { all: true })).toEqual({
      err: null,
      address: [
        { address: '93.184.216.34', family: 4 },
        { address: '2606:2800:220:1:248:1893:25c8:1946', family: 6 },
      ],
      family: undefined,
    });
    expect(await call(strict, 'hooks.example.com', {})).toEqual({ err: null, address: '93.184.216.34', family: 4 });
  });

  it('passes resolution errors through', async () => {
    vi.spyOn(dns, 'lookup').mockImplementation(((_host: string, _options: unknown, cb: Function) => {
      cb(Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' }));
    }) as never);
    const { err } = await call(strict, 'nowhere.example.com', {});
    expect(err?.code).toBe('ENOTFOUND');
  });

  it('resolves localhost for real and refuses it unless loopback is allowed', async () => {
    expect((await call(strict, 'localhost', {})).err?.code).toBe('EADDRBLOCKED');
    const { err, address } = await call(local, 'localhost', { all: true });
    expect(err).toBeNull();
    expect(address).toEqual(expect.arrayContaining([expect.objectContaining({ family: expect.any(Number) })]));
  });
});

describe('connect-time check through undici', () => {
  let server: http.Server;
  let port: number;

  beforeAll(async () => {
    server = http.createServer((_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  const get = async (guard: typeof strict, url: string) => {
    const agent = new Agent({ connect: { lookup: guard.lookup } });
    try {
      return await fetch(url, { dispatcher: agent });
    } finally {
      await agent.close();
    }
  };

  it('refuses a name that resolves to loopback', async () => {
    const error = await get(strict, `http://localhost:${port}/`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as { cause?: { code?: string } }).cause?.code).toBe('EADDRBLOCKED');
  });

  it('connects when loopback is allowed', async () => {
    const res = await get(local, `http://localhost:${port}/`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('ok');
  });

  it('is skipped by Node for IP literals, which is why assertLiteralHostAllowed exists', async () => {
    const url = `http://127.0.0.1:${port}/`;
    const res = await get(strict, url);
    expect(res.status).toBe(200);
    await res.text();
    expect(() => strict.assertLiteralHostAllowed(url)).toThrowError(expect.objectContaining({ code: 'EADDRBLOCKED' }));
  });
});

describe('RELAY_ALLOW_LOOPBACK', () => {
  it.each([
    ['auto', '127.0.0.1', true],
    ['auto', '::1', true],
    ['auto', 'localhost', true],
    ['auto', '0.0.0.0', false],
    ['auto', '10.0.0.1', false],
    ['true', '0.0.0.0', true],
    ['true', '127.0.0.1', true],
    ['false', '127.0.0.1', false],
    ['false', '0.0.0.0', false],
  ] as const)('%s while binding %s → %s', (mode, host, allowed) => {
    expect(loopbackAllowed(mode, host)).toBe(allowed);
  });

  it.each([
    ['auto', '127.0.0.1', '', 'loopback callbacks allowed (RELAY_ALLOW_LOOPBACK=auto and the relay binds 127.0.0.1)'],
    ['auto', '0.0.0.0', '', 'loopback callbacks refused (RELAY_ALLOW_LOOPBACK=auto and the relay binds 0.0.0.0)'],
    ['true', '0.0.0.0', '', 'loopback callbacks allowed (RELAY_ALLOW_LOOPBACK=true)'],
    ['false', '127.0.0.1', '', 'loopback callbacks refused (RELAY_ALLOW_LOOPBACK=false)'],
    [
      'false',
      '127.0.0.1',
      '127.0.0.0/8',
      'loopback callbacks refused except what RELAY_ALLOW_NETWORKS lists (it covers 127.0.0.1) (RELAY_ALLOW_LOOPBACK=false)',
    ],
  ] as const)('says at start what %s while binding %s (allow-list %j) comes to', (mode, host, networks, said) => {
    const guard = createNetworkGuard({ allowNetworks: parseAllowNetworks(networks), allowLoopback: loopbackAllowed(mode, host) });
    expect(describeLoopbackPolicy(mode, host, guard)).toBe(`${said}; the relay's own port never`);
  });

  it('is read from the environment, auto by default, and a bad value names the variable', () => {
    expect(loadConfig({}).allowLoopback).toBe('auto');
    expect(loadConfig({ RELAY_ALLOW_LOOPBACK: 'false' }).allowLoopback).toBe('false');
    expect(loadConfig({ RELAY_ALLOW_LOOPBACK: 'true' }).allowLoopback).toBe('true');
    expect(() => loadConfig({ RELAY_ALLOW_LOOPBACK: 'yes' })).toThrowError(
      expect.objectContaining({ name: 'ConfigError', variable: 'RELAY_ALLOW_LOOPBACK', message: expect.stringContaining('"yes"') }),
    );
  });

  it('keeps explicit RELAY_ALLOW_NETWORKS entries when loopback is refused', async () => {
    const guard = createNetworkGuard({ allowNetworks: parseAllowNetworks('127.0.0.2/32'), allowLoopback: loopbackAllowed('false', '127.0.0.1') });
    expect(await guard.checkUrl('http://127.0.0.2:9000/')).toEqual({ ok: true });
    expect((await guard.checkUrl('http://127.0.0.1:9000/')).ok).toBe(false);
  });
});

describe("the relay's own port", () => {
  const OWN = 8990;
  // Everything opened that can be: the own port must stay shut whatever the operator allows.
  const wideOpen = () =>
    createNetworkGuard({ allowNetworks: parseAllowNetworks('0.0.0.0/0,::/0'), allowLoopback: true, ownPort: OWN });

  const spellings = [
    'http://127.0.0.1:8990/v1/events',
    'https://127.0.0.1:8990/',
    'http://127.0.0.1.:8990/',
    'http://127.1.2.3:8990/',
    'http://2130706433:8990/',
    'http://0x7f000001:8990/',
    'http://0x7f.1:8990/',
    'http://0177.0.0.1:8990/',
    'http://[::1]:8990/',
    'http://[0:0:0:0:0:0:0:1]:8990/',
    'http://[::ffff:127.0.0.1]:8990/',
    'http://[::ffff:7f00:1]:8990/',
    'http://0.0.0.0:8990/',
    'http://0:8990/',
    'http://[::]:8990/',
    'http://[::ffff:0.0.0.0]:8990/',
    'http://localhost:8990/',
    'http://LOCALHOST.:8990/',
    'http://relay.localhost:8990/',
  ];

  it.each(spellings)('refuses %s at create in every mode, even with everything allow-listed', async (url) => {
    for (const guard of [wideOpen(), createNetworkGuard({ allowNetworks: [], allowLoopback: false, ownPort: OWN })]) {
      const lookup = vi.spyOn(dns.promises, 'lookup');
      const result = await guard.checkUrl(url);
      expect(result).toEqual({ ok: false, reason: expect.stringContaining('callback.url') });
      expect(lookup).not.toHaveBeenCalled();
      vi.restoreAllMocks();
    }
    expect(await wideOpen().checkUrl(url)).toEqual({ ok: false, reason: expect.stringContaining("is the relay's own: the relay never calls itself") });
  });

  it.each(spellings.map((u) => u.replace(':8990', ':8991')))('allows %s on another port when the rules allow it', async (url) => {
    expect(await wideOpen().checkUrl(url)).toEqual({ ok: true });
  });

  it('refuses the default port when the relay listens on it', async () => {
    const guard = createNetworkGuard({ allowNetworks: [], allowLoopback: true, ownPort: 80 });
    expect((await guard.checkUrl('http://127.0.0.1/')).ok).toBe(false);
    expect((await guard.checkUrl('http://localhost:80/')).ok).toBe(false);
    expect(await guard.checkUrl('https://127.0.0.1/')).toEqual({ ok: true });
  });

  it("refuses every address of this machine's interfaces, as os.networkInterfaces() reports them", async () => {
    const addresses = Object.values(os.networkInterfaces()).flatMap((l) => (l ?? []).map((i) => i.address));
    expect(addresses.length).toBeGreaterThan(0);
    const guard = wideOpen();
    for (const address of addresses) {
      const host = address.includes(':') ? `[${address.replace(/%.*$/, '')}]` : address;
      const result = await guard.checkUrl(`http://${host}:${OWN}/`);
      expect(result, address).toEqual({ ok: false, reason: expect.stringContaining("relay's own") });
      expect(() => guard.assertLiteralHostAllowed(`http://${host}:${OWN}/`), address).toThrowError(
        expect.objectContaining({ code: 'EADDRBLOCKED' }),
      );
      expect(await guard.checkUrl(`http://${host}:${OWN + 1}/`), address).toEqual({ ok: true });
    }
  });

  it('refuses an interface address in its IPv4-mapped spelling, and leaves other machines alone', async () => {
    const guard = createNetworkGuard({
      allowNetworks: parseAllowNetworks('0.0.0.0/0,::/0'),
      allowLoopback: true,
      ownPort: OWN,
      interfaceAddresses: () => ['127.0.0.1', '::1', '192.0.2.10', '2001:db8::10', 'fe80::10'],
    });
    for (const url of ['http://192.0.2.10:8990/', 'http://[::ffff:192.0.2.10]:8990/', 'http://[::ffff:c000:20a]:8990/', 'http://3221225994:8990/', 'http://[2001:db8:0:0::10]:8990/', 'http://[fe80::10]:8990/']) {
      expect((await guard.checkUrl(url)).ok, url).toBe(false);
    }
    // A NAT64 or 6to4 form reaches the address through a translator: someone else's machine.
    for (const url of ['http://192.0.2.11:8990/', 'http://[64:ff9b::c000:20a]:8990/', 'http://[2002:c000:20a::1]:8990/']) {
      expect(await guard.checkUrl(url), url).toEqual({ ok: true });
    }
  });

  it('refuses a name that resolves to a local address on the own port', async () => {
    vi.spyOn(dns.promises, 'lookup').mockResolvedValue([{ address: '127.0.0.1', family: 4 }] as never);
    const result = await wideOpen().checkUrl('http://relay.example.com:8990/');
    expect(result).toEqual({
      ok: false,
      reason: "callback.url resolves to 127.0.0.1, an address of this machine, and port 8990 is the relay's own: the relay never calls itself",
    });
    expect(await wideOpen().checkUrl('http://relay.example.com:8991/')).toEqual({ ok: true });
  });

  it('checks nothing about ports until the guard knows its own', async () => {
    const guard = createNetworkGuard({ allowNetworks: [], allowLoopback: true });
    expect(await guard.checkUrl('http://127.0.0.1:8990/')).toEqual({ ok: true });
    guard.setOwnPort(8990);
    expect((await guard.checkUrl('http://127.0.0.1:8990/')).ok).toBe(false);
  });

  it('throws EADDRBLOCKED from assertLiteralHostAllowed for a literal on the own port', () => {
    const guard = wideOpen();
    for (const url of ['http://127.0.0.1:8990/', 'http://[::ffff:7f00:1]:8990/', new URL('http://0:8990/')]) {
      expect(() => guard.assertLiteralHostAllowed(url)).toThrowError(expect.objectContaining({ code: 'EADDRBLOCKED', name: 'AddressBlockedError' }));
    }
    expect(() => guard.assertLiteralHostAllowed('http://127.0.0.1:8991/')).not.toThrow();
  });
});

describe("the relay's own port at connect time, through undici", () => {
  let server: http.Server;
  let port: number;
  let hits = 0;

  beforeAll(async () => {
    server = http.createServer((_req, res) => {
      hits++;
      res.end('ok');
    });
    // Every local address: a refused connection must be refused by the guard, not by the socket.
    await new Promise<void>((resolve) => server.listen(0, resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  const getThrough = async (guard: typeof strict, url: string) => {
    const agent = new Agent({ connect: guard.connect });
    try {
      const res = await fetch(url, { dispatcher: agent });
      return { status: res.status, body: await res.text() };
    } catch (err) {
      return { code: (err as { cause?: { code?: string } }).cause?.code };
    } finally {
      await agent.close();
    }
  };

  const openGuard = (ownPort?: number) =>
    createNetworkGuard({ allowNetworks: parseAllowNetworks('0.0.0.0/0,::/0'), allowLoopback: true, ownPort });

  it('refuses a name that resolves to loopback on the own port (lookup knows no port; the connector does)', async () => {
    const before = hits;
    expect(await getThrough(openGuard(port), `http://localhost:${port}/`)).toEqual({ code: 'EADDRBLOCKED' });
    expect(hits).toBe(before);
    expect(await getThrough(openGuard(port + 1 === 65536 ? 1 : port + 1), `http://localhost:${port}/`)).toEqual({ status: 200, body: 'ok' });
  });

  it('refuses literals on the own port in the connector itself, without the dispatcher check', async () => {
    const addresses = ['127.0.0.1', '[::ffff:127.0.0.1]', '0.0.0.0', ...Object.values(os.networkInterfaces())
      .flatMap((l) => (l ?? []).filter((i) => i.family === 'IPv4').map((i) => i.address))];
    const before = hits;
    for (const host of addresses) {
      expect(await getThrough(openGuard(port), `http://${host}:${port}/`), host).toEqual({ code: 'EADDRBLOCKED' });
    }
    expect(hits).toBe(before);
    expect(await getThrough(openGuard(), `http://127.0.0.1:${port}/`)).toEqual({ status: 200, body: 'ok' });
  });

  it('learns the own port after the agent was made (a relay on port 0 knows it only once it listens)', async () => {
    const guard = openGuard();
    const agent = new Agent({ connect: guard.connect });
    try {
      expect((await fetch(`http://localhost:${port}/`, { dispatcher: agent })).status).toBe(200);
      await agent.close();
      guard.setOwnPort(port);
      const again = new Agent({ connect: guard.connect });
      const error = await fetch(`http://localhost:${port}/`, { dispatcher: again }).catch((e: unknown) => e);
      await again.close();
      expect((error as { cause?: { code?: string } }).cause?.code).toBe('EADDRBLOCKED');
    } finally {
      await agent.close().catch(() => {});
    }
  });

  it('keeps the other rules in the connector: a refused address is refused on any port', async () => {
    expect(await getThrough(strict, `http://127.0.0.1:${port}/`)).toEqual({ code: 'EADDRBLOCKED' });
    expect(await getThrough(strict, `http://localhost:${port}/`)).toEqual({ code: 'EADDRBLOCKED' });
  });

  it('refuses a delivery through the HTTP transport and a std.http call to the own port', async () => {
    const guard = openGuard(port);
    const transport = createHttpTransport({ guard });
    const before = hits;
    try {
      const outcome = await transport.send({ url: `http://localhost:${port}/hook`, method: 'POST', headers: {}, body: '{}', timeoutMs: 5000 });
      expect(outcome).toMatchObject({ ok: false, error: 'EADDRBLOCKED', statusCode: null });
    } finally {
      await transport.close();
    }
    const agent = createActionAgent(guard);
    try {
      for (const url of [`http://localhost:${port}/`, `http://127.0.0.1:${port}/`]) {
        const outcome = await runAction('std.http', { url }, { guard, agent } as never);
        expect(outcome, url).toMatchObject({ ok: false, error: expect.stringMatching(/^EADDRBLOCKED: /), retryable: false });
      }
    } finally {
      await agent.close();
    }
    expect(hits).toBe(before);
  });
});
