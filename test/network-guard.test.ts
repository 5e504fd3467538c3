import dns from 'node:dns';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Agent, fetch } from 'undici';
import {
  AddressBlockedError,
  createNetworkGuard,
  isLoopbackHost,
  parseAllowNetworks,
} from '../src/net/network-guard.js';

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
