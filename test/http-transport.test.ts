import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createNetworkGuard } from '../src/net/network-guard.js';
import { classifyError, createHttpTransport, utf8Excerpt } from '../src/transports/http.js';
import type { OutboundRequest, Transport } from '../src/transports/transport.js';

interface Seen {
  method: string;
  path: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

const local = createNetworkGuard({ allowNetworks: [], allowLoopback: true });
const strict = createNetworkGuard({ allowNetworks: [], allowLoopback: false });

// Multibyte on purpose: 2-, 3- and 4-byte characters, so 4096 falls inside one.
const LONG_BODY = 'é€😀x'.repeat(1200);
const HUGE_BODY = 'y'.repeat(1024 * 1024);
// Past the excerpt but within what is read to keep the socket (4 KiB + 64 KiB).
const MEDIUM_BODY = 'm'.repeat(48 * 1024);

let server: http.Server;
let base: string;
let port: number;
let seen: Seen[] = [];
let connections = 0;
let closedConnections = 0;
const requestsOnSocket = new WeakMap<Socket, number>();

function route(req: http.IncomingMessage, res: http.ServerResponse, body: string): void {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  switch (path) {
    case '/ok':
      res.writeHead(200, { 'content-type': 'text/plain' }).end('thanks');
      return;
    case '/no-content':
      res.writeHead(204).end();
      return;
    case '/echo':
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ length: body.length }));
      return;
    case '/error':
      res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', 'retry-after': '30' }).end(LONG_BODY);
      return;
    case '/huge':
      res.writeHead(200, { 'content-type': 'text/plain' }).end(HUGE_BODY);
      return;
    case '/medium':
      res.writeHead(200, { 'content-type': 'text/plain' }).end(MEDIUM_BODY);
      return;
    case '/early-hints':
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
      res.writeHead(200).end('after the hints');
      return;
    case '/gone':
      res.writeHead(410).end('listener removed');
      return;
    case '/slow-down':
      res.writeHead(429, { 'retry-after': '7' }).end();
      return;
    case '/unavailable':
      res.writeHead(503, { 'retry-after': new Date(Date.now() + 120_000).toUTCString() }).end('maintenance');
      return;
    case '/close':
      res.writeHead(200, { connection: 'close' }).end('bye');
      return;
    case '/moved':
      res.writeHead(301, { location: '/target' }).end();
      return;
    case '/found':
      res.writeHead(302, { location: `${base}/target` }).end();
      return;
    case '/target':
      res.writeHead(200).end('should never be reached');
      return;
    case '/hang':
      return; // never answers; closeAllConnections ends it
    case '/stall-body':
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial answer…');
      return;
    case '/reset':
      req.socket.destroy();
      return;
    case '/partial-then-reset':
      req.socket.end('HTTP/1.1 200 OK\r\ncontent-le');
      return;
    case '/drop-if-reused':
      // What a receiver that closed an idle keep-alive socket looks like to the client.
      if ((requestsOnSocket.get(req.socket) ?? 0) > 1) req.socket.destroy();
      else res.writeHead(200).end('fresh socket');
      return;
    default:
      res.writeHead(404).end();
  }
}

beforeAll(async () => {
  server = http.createServer((req, res) => {
    requestsOnSocket.set(req.socket, (requestsOnSocket.get(req.socket) ?? 0) + 1);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      seen.push({ method: req.method ?? '', path: new URL(req.url ?? '/', 'http://x').pathname, url: req.url ?? '', headers: req.headers, body });
      route(req, res, body);
    });
  });
  server.on('connection', (socket) => {
    connections++;
    socket.on('close', () => closedConnections++);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

let transport: Transport;

beforeEach(() => {
  seen = [];
  transport = createHttpTransport({ guard: local, userAgent: 'callback-relay/test' });
});

afterEach(async () => {
  // A hung request keeps its socket busy; end those so close() need not wait for them.
  server.closeIdleConnections();
  await transport.close();
});

function request(path: string, overrides: Partial<OutboundRequest> = {}): OutboundRequest {
  return { url: `${base}${path}`, method: 'POST', headers: {}, body: '{"n":1}', timeoutMs: 2000, ...overrides };
}

// undici hands a socket back to its pool just after the body ends; without this pause the next
// request may open a second socket instead of reusing the first.
const poolSettled = () => new Promise((resolve) => setImmediate(resolve));

const seenPaths = (path: string) => seen.filter((s) => s.path === path);

describe('HTTP transport: answers', () => {
  it('reports a 200 with its body as the excerpt', async () => {
    const outcome = await transport.send(request('/ok'));
    expect(outcome).toMatchObject({
      ok: true,
      statusCode: 200,
      error: null,
      message: null,
      responseExcerpt: 'thanks',
      retryAfterMs: null,
      gone: false,
    });
    expect(outcome.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('takes a 204 with no body as success', async () => {
    const outcome = await transport.send(request('/no-content'));
    expect(outcome).toMatchObject({ ok: true, statusCode: 204, error: null, responseExcerpt: '' });
  });

  it.each(['POST', 'PUT', 'PATCH'])('sends %s with its headers and body', async (method) => {
    const body = JSON.stringify({ id: 'evt_1', text: 'grüße' });
    const outcome = await transport.send(
      request('/echo?x=1', {
        method,
        body,
        headers: { 'content-type': 'application/json', 'webhook-id': 'dlv_1', 'X-Api-Key': 'k' },
      }),
    );
    expect(outcome.ok).toBe(true);
    const [got] = seenPaths('/echo');
    expect(got.method).toBe(method);
    expect(got.body).toBe(body);
    expect(got.headers['content-type']).toBe('application/json');
    expect(got.headers['content-length']).toBe(String(Buffer.byteLength(body)));
    expect(got.headers['webhook-id']).toBe('dlv_1');
    expect(got.headers['x-api-key']).toBe('k');
    expect(got.headers['user-agent']).toBe('callback-relay/test');
  });

  it.each(['GET', 'DELETE'])('sends %s with no body', async (method) => {
    const outcome = await transport.send(request('/echo?id=evt_1&sequence=7', { method, body: '' }));
    expect(outcome.ok).toBe(true);
    const [got] = seenPaths('/echo');
    expect(got.method).toBe(method);
    expect(got.body).toBe('');
    expect(got.headers['content-length']).toBeUndefined();
    expect(got.headers['transfer-encoding']).toBeUndefined();
  });

  it("keeps the request's own user-agent", async () => {
    await transport.send(request('/ok', { headers: { 'User-Agent': 'custom/1' } }));
    expect(seenPaths('/ok')[0].headers['user-agent']).toBe('custom/1');
  });

  it('records a 500 with a 4 KiB excerpt cut at a character boundary', async () => {
    const outcome = await transport.send(request('/error'));
    expect(outcome).toMatchObject({
      ok: false,
      statusCode: 500,
      error: 'HTTP_ERROR',
      message: 'HTTP 500 Internal Server Error',
      retryAfterMs: null, // Retry-After only counts on 429, 502, 503, 504
      gone: false,
    });
    const excerpt = outcome.responseExcerpt!;
    expect(Buffer.byteLength(excerpt)).toBeLessThanOrEqual(4096);
    expect(Buffer.byteLength(excerpt)).toBeGreaterThan(4092);
    expect(LONG_BODY.startsWith(excerpt)).toBe(true);
    expect(excerpt).not.toContain('\uFFFD');
  });

  it('reads only the head of a large body and can still send afterwards', async () => {
    const outcome = await transport.send(request('/huge'));
    expect(outcome).toMatchObject({ ok: true, statusCode: 200 });
    expect(outcome.responseExcerpt).toBe('y'.repeat(4096));
    expect((await transport.send(request('/ok'))).ok).toBe(true);
  });

  it('keeps the socket after a body within the read limit and closes it after a longer one', async () => {
    expect((await transport.send(request('/ok'))).ok).toBe(true);
    await poolSettled();
    const before = connections;
    const medium = await transport.send(request('/medium'));
    expect(medium).toMatchObject({ ok: true, statusCode: 200, responseExcerpt: 'm'.repeat(4096) });
    await poolSettled();
    expect((await transport.send(request('/ok'))).ok).toBe(true);
    expect(connections - before).toBe(0);
    await poolSettled();
    const closedBefore = closedConnections;
    expect((await transport.send(request('/huge'))).ok).toBe(true);
    while (closedConnections === closedBefore) await new Promise((resolve) => setTimeout(resolve, 5));
    expect((await transport.send(request('/ok'))).ok).toBe(true);
    expect(connections - before).toBe(1);
  });

  it('waits past informational 1xx answers for the real one', async () => {
    const outcome = await transport.send(request('/early-hints'));
    expect(outcome).toMatchObject({ ok: true, statusCode: 200, responseExcerpt: 'after the hints' });
  });

  it('sends each URL with its own query string, one origin for all', async () => {
    for (const query of ['?id=1', '?id=2', '?id=1', '']) {
      expect((await transport.send(request(`/echo${query}`))).ok).toBe(true);
    }
    expect(seenPaths('/echo').map((s) => s.url)).toEqual(['/echo?id=1', '/echo?id=2', '/echo?id=1', '/echo']);
  });

  it('marks 410 as gone', async () => {
    const outcome = await transport.send(request('/gone'));
    expect(outcome).toMatchObject({ ok: false, statusCode: 410, error: 'HTTP_ERROR', gone: true, responseExcerpt: 'listener removed' });
  });

  it('parses Retry-After in seconds on a 429', async () => {
    const outcome = await transport.send(request('/slow-down'));
    expect(outcome).toMatchObject({ ok: false, statusCode: 429, error: 'HTTP_ERROR', retryAfterMs: 7000 });
  });

  it('parses Retry-After as an HTTP-date on a 503', async () => {
    const outcome = await transport.send(request('/unavailable'));
    expect(outcome).toMatchObject({ ok: false, statusCode: 503, error: 'HTTP_ERROR', responseExcerpt: 'maintenance' });
    // HTTP-dates have whole seconds.
    expect(outcome.retryAfterMs).toBeGreaterThan(117_000);
    expect(outcome.retryAfterMs).toBeLessThanOrEqual(120_000);
  });

  it.each([
    ['/moved', 301, 'HTTP 301 Moved Permanently to /target (redirects are not followed)'],
    ['/found', 302, 'to http://127.0.0.1:'],
  ])('fails a redirect (%s) without following it', async (path, status, message) => {
    const outcome = await transport.send(request(path));
    expect(outcome).toMatchObject({ ok: false, statusCode: status, error: 'REDIRECT', gone: false });
    expect(outcome.message).toContain(message);
    expect(seenPaths('/target')).toHaveLength(0);
  });
});

describe('HTTP transport: timeouts', () => {
  it('times out when no answer comes', async () => {
    const outcome = await transport.send(request('/hang', { timeoutMs: 300 }));
    expect(outcome).toMatchObject({
      ok: false,
      statusCode: null,
      error: 'TIMEOUT',
      message: 'no answer within 300 ms',
      responseExcerpt: null,
    });
    expect(outcome.durationMs).toBeGreaterThanOrEqual(290);
    expect(outcome.durationMs).toBeLessThan(1000);
  });

  it('times out when the body stalls after the headers', async () => {
    const outcome = await transport.send(request('/stall-body', { timeoutMs: 300 }));
    expect(outcome).toMatchObject({ ok: false, statusCode: 200, error: 'TIMEOUT', responseExcerpt: 'partial answer…' });
    expect(outcome.message).toBe('HTTP 200 OK, but the body was not complete within 300 ms');
    expect(outcome.durationMs).toBeGreaterThanOrEqual(290);
    expect(outcome.durationMs).toBeLessThan(1000);
  });

  it('keeps each deadline among many attempts in flight', async () => {
    const timeouts = [400, 150, 250];
    const outcomes = await Promise.all(timeouts.map((timeoutMs) => transport.send(request('/hang', { timeoutMs }))));
    outcomes.forEach((outcome, i) => {
      expect(outcome).toMatchObject({ error: 'TIMEOUT', message: `no answer within ${timeouts[i]} ms` });
      expect(outcome.durationMs).toBeGreaterThanOrEqual(timeouts[i] - 10);
      expect(outcome.durationMs).toBeLessThan(timeouts[i] + 700);
    });
  });

  it('counts the wait for a connection against the deadline, and never sends a request that ran out waiting', async () => {
    const single = createHttpTransport({ guard: local, connectionsPerOrigin: 1 });
    try {
      const hanging = single.send(request('/hang', { timeoutMs: 1500 }));
      const queued = await single.send(request('/echo?queued', { timeoutMs: 200 }));
      expect(queued).toMatchObject({ ok: false, statusCode: null, error: 'TIMEOUT', message: 'no answer within 200 ms' });
      expect(queued.durationMs).toBeLessThan(1000);
      expect((await hanging).error).toBe('TIMEOUT');
      // The connection is free again: whatever was still queued would go out now.
      expect((await single.send(request('/ok'))).ok).toBe(true);
      expect(seenPaths('/echo')).toHaveLength(0);
    } finally {
      server.closeIdleConnections();
      await single.close();
    }
  });
});

describe('HTTP transport: connection failures', () => {
  it('reports a reset connection without retrying it on a fresh socket', async () => {
    const outcome = await transport.send(request('/reset'));
    expect(outcome.ok).toBe(false);
    expect(outcome.statusCode).toBeNull();
    expect(['ECONNRESET', 'SOCKET_ERROR']).toContain(outcome.error);
    expect(outcome.responseExcerpt).toBeNull();
    expect(seenPaths('/reset')).toHaveLength(1);
  });

  it('retries once, at once, when a reused keep-alive socket turns out closed', async () => {
    const before = connections;
    expect((await transport.send(request('/ok'))).ok).toBe(true);
    await poolSettled();
    const outcome = await transport.send(request('/drop-if-reused'));
    expect(outcome).toMatchObject({ ok: true, statusCode: 200, responseExcerpt: 'fresh socket' });
    expect(seenPaths('/drop-if-reused')).toHaveLength(2);
    expect(connections - before).toBe(2);
  });

  it('retries a reused socket only once', async () => {
    expect((await transport.send(request('/ok'))).ok).toBe(true);
    await poolSettled();
    const outcome = await transport.send(request('/reset'));
    expect(['ECONNRESET', 'SOCKET_ERROR']).toContain(outcome.error);
    expect(seenPaths('/reset')).toHaveLength(2);
  });

  it('never retries once the answer has started', async () => {
    expect((await transport.send(request('/ok'))).ok).toBe(true);
    await poolSettled();
    const outcome = await transport.send(request('/partial-then-reset'));
    expect(outcome.ok).toBe(false);
    expect(outcome.statusCode).toBeNull();
    expect(['SOCKET_ERROR', 'BAD_RESPONSE', 'ECONNRESET']).toContain(outcome.error);
    expect(seenPaths('/partial-then-reset')).toHaveLength(1);
  });

  it('reports a closed port as ECONNREFUSED', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));

    const outcome = await transport.send(request('/ok', { url: `http://127.0.0.1:${closedPort}/ok` }));
    expect(outcome).toMatchObject({
      ok: false,
      statusCode: null,
      error: 'ECONNREFUSED',
      message: `connect ECONNREFUSED 127.0.0.1:${closedPort}`,
    });
  });

  it('reports TLS spoken to a plain HTTP port as TLS_ERROR', async () => {
    const outcome = await transport.send(request('/ok', { url: `https://127.0.0.1:${port}/ok` }));
    expect(outcome).toMatchObject({ ok: false, statusCode: null, error: 'TLS_ERROR' });
    expect(seenPaths('/ok')).toHaveLength(0);
  });

  it.each([
    ['not a url', 'BAD_URL'],
    ['ftp://127.0.0.1/x', 'BAD_URL'],
  ])('refuses %s as %s', async (url, code) => {
    const outcome = await transport.send(request('/ok', { url }));
    expect(outcome).toMatchObject({ ok: false, statusCode: null, error: code });
  });

  it('reports a header value undici refuses as INVALID_REQUEST', async () => {
    const outcome = await transport.send(request('/ok', { headers: { 'x-bad': 'a\r\nb' } }));
    expect(outcome).toMatchObject({ ok: false, statusCode: null, error: 'INVALID_REQUEST' });
    expect(seenPaths('/ok')).toHaveLength(0);
  });

  it('reports sends after close as TRANSPORT_CLOSED', async () => {
    await transport.close();
    const outcome = await transport.send(request('/ok'));
    expect(outcome).toMatchObject({ ok: false, statusCode: null, error: 'TRANSPORT_CLOSED' });
  });

  it('ends an attempt in flight at close as TRANSPORT_CLOSED', async () => {
    const pending = transport.send(request('/hang', { timeoutMs: 5000 }));
    while (seenPaths('/hang').length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    await transport.close();
    const outcome = await pending;
    expect(outcome).toMatchObject({ ok: false, statusCode: null, error: 'TRANSPORT_CLOSED' });
    expect(outcome.durationMs).toBeLessThan(4000);
  });

  it('goes on reusing sockets after the receiver closed one', async () => {
    expect((await transport.send(request('/ok'))).ok).toBe(true);
    await poolSettled();
    expect((await transport.send(request('/close'))).ok).toBe(true);
    for (let i = 0; i < 3; i++) {
      await poolSettled();
      expect((await transport.send(request('/ok'))).ok).toBe(true);
    }
    // undici 7's Agent opened a new connection for every send from here on (nodejs/undici#5022).
    const before = connections;
    for (let i = 0; i < 10; i++) {
      await poolSettled();
      expect((await transport.send(request('/ok'))).ok).toBe(true);
    }
    expect(connections - before).toBe(0);
  });

  it('reuses a few sockets for many sequential sends to one origin', async () => {
    const before = connections;
    for (let i = 0; i < 25; i++) {
      expect((await transport.send(request('/ok'))).ok).toBe(true);
    }
    expect(connections - before).toBeLessThanOrEqual(2);
    expect(seenPaths('/ok')).toHaveLength(25);
  });
});

describe('HTTP transport: network guard', () => {
  let guarded: Transport;
  beforeEach(() => {
    guarded = createHttpTransport({ guard: strict });
  });
  afterEach(async () => {
    await guarded.close();
  });

  it('blocks a literal loopback address before sending anything', async () => {
    const before = connections;
    const outcome = await guarded.send(request('/ok'));
    expect(outcome).toMatchObject({ ok: false, statusCode: null, error: 'EADDRBLOCKED', responseExcerpt: null });
    expect(outcome.message).toContain('127.0.0.1, a loopback address');
    expect(connections).toBe(before);
    expect(seen).toHaveLength(0);
  });

  it('keeps refusing a literal address on every send', async () => {
    for (let i = 0; i < 3; i++) {
      const outcome = await guarded.send(request('/ok'));
      expect(outcome).toMatchObject({ error: 'EADDRBLOCKED' });
      expect(outcome.message).toContain('127.0.0.1, a loopback address');
    }
    expect(seen).toHaveLength(0);
  });

  it("refuses a literal address on a pooled socket soon after the relay learns it is its own port", async () => {
    const guard = createNetworkGuard({ allowNetworks: [], allowLoopback: true });
    const own = createHttpTransport({ guard });
    try {
      expect((await own.send(request('/ok'))).ok).toBe(true);
      guard.setOwnPort(port);
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const outcome = await own.send(request('/ok'));
      expect(outcome).toMatchObject({ ok: false, statusCode: null, error: 'EADDRBLOCKED' });
      expect(outcome.message).toContain("the relay's own");
      expect(seenPaths('/ok')).toHaveLength(1);
    } finally {
      await own.close();
    }
  });

  it('blocks localhost at connect time through the lookup', async () => {
    const before = connections;
    const outcome = await guarded.send(request('/ok', { url: `http://localhost:${port}/ok` }));
    expect(outcome).toMatchObject({ ok: false, statusCode: null, error: 'EADDRBLOCKED' });
    expect(outcome.message).toContain('localhost resolves to');
    expect(connections).toBe(before);
    expect(seen).toHaveLength(0);
  });
});

describe('classifyError', () => {
  const withCode = (code: string, message = code) => Object.assign(new Error(message), { code });

  it.each([
    ['ENOTFOUND', 'ENOTFOUND'],
    ['EAI_AGAIN', 'EAI_AGAIN'],
    ['ECONNRESET', 'ECONNRESET'],
    ['EHOSTUNREACH', 'EHOSTUNREACH'],
    ['UND_ERR_SOCKET', 'SOCKET_ERROR'],
    ['ERR_TLS_CERT_ALTNAME_INVALID', 'TLS_ERROR'],
    ['DEPTH_ZERO_SELF_SIGNED_CERT', 'TLS_ERROR'],
    ['CERT_HAS_EXPIRED', 'TLS_ERROR'],
    ['HPE_INVALID_CONSTANT', 'BAD_RESPONSE'],
    ['UND_ERR_CLOSED', 'TRANSPORT_CLOSED'],
    ['SOMETHING_ELSE', 'REQUEST_ERROR'],
  ])('maps %s to %s', (code, expected) => {
    expect(classifyError(withCode(code)).error).toBe(expected);
  });

  it('maps an error without a code to REQUEST_ERROR', () => {
    expect(classifyError(new Error('boom'))).toEqual({ error: 'REQUEST_ERROR', message: 'boom' });
  });
});

describe('utf8Excerpt', () => {
  it('never ends inside a character', () => {
    const bytes = Buffer.from('ab€', 'utf8'); // € is 3 bytes
    expect(utf8Excerpt(bytes, 4)).toBe('ab');
    expect(utf8Excerpt(bytes, 5)).toBe('ab€');
  });

  it('keeps invalid input within the limit after replacement characters', () => {
    const text = utf8Excerpt(Buffer.alloc(10, 0xff), 8);
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(8);
  });
});
