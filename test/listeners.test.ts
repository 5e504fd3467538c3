import Database from 'better-sqlite3';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { startRelay } from '../src/relay.js';
import { startTestRelay, tempDir, TOKEN_A, TOKEN_B, type TestRelay } from './helpers/relay.js';

let relay: TestRelay;
let countDb: Database.Database;

const listenerCount = () => (countDb.prepare('SELECT count(*) AS n FROM listeners').get() as { n: number }).n;

const valid = () => ({
  workbook: 'billing',
  event_types: ['EXECUTION', 'TASK'],
  events: ['on-task-complete', 'WORKFLOW_FAILED'],
  target: { kind: 'execution', id: '5f0c' },
  filter: { 'data.purpose': 'test', 'data.properties.vendor': { $in: ['dell', 'hp'] } },
  callback: {
    url: 'http://127.0.0.1:9000/wf',
    method: 'POST',
    headers: { 'X-Api-Key': 'k-123' },
    format: 'json',
  },
  description: 'billing hooks',
});

beforeAll(async () => {
  relay = await startTestRelay({ RELAY_ALLOW_NETWORKS: '192.168.50.0/24' });
  countDb = new Database(relay.databasePath, { readonly: true });
});

afterAll(async () => {
  countDb.close();
  await relay.close();
});

describe('listener lifecycle', () => {
  it('creates, reads, updates, rotates and deletes a listener', async () => {
    const created = await relay.api('POST', '/v1/listeners', valid());
    expect(created.status).toBe(201);
    expect(created.headers.get('location')).toBe(`/v1/listeners/${created.body.id}`);
    expect(created.body.secret).toMatch(/^whsec_/);
    expect(created.body.callback.headers).toEqual({ 'X-Api-Key': '***' });
    expect(created.body).toMatchObject({
      workbook: 'billing',
      enabled: true,
      disabled_reason: null,
      retry: { schedule_ms: [5000, 300000, 1800000, 7200000, 18000000, 36000000, 36000000] },
      callback: { transport: 'http', format: 'json', timeout_ms: 15000, method: 'POST' },
    });
    const id = created.body.id;

    const read = await relay.api('GET', `/v1/listeners/${id}`);
    expect(read.status).toBe(200);
    expect(read.body.secret).toBeUndefined();
    expect(read.body.callback.headers['X-Api-Key']).toBe('***');

    const patched = await relay.api(
      'PATCH',
      `/v1/listeners/${id}`,
      { events: null, callback: { headers: { 'X-Api-Key': '***', 'X-Extra': 'two' } }, description: null },
      { headers: { 'content-type': 'application/merge-patch+json' } },
    );
    expect(patched.status).toBe(200);
    expect(patched.body.events).toBeNull();
    expect(patched.body.description).toBeNull();
    expect(patched.body.callback.headers).toEqual({ 'X-Api-Key': '***', 'X-Extra': '***' });
    expect(patched.body.callback.url).toBe('http://127.0.0.1:9000/wf');
    const stored = countDb.prepare('SELECT spec FROM listeners WHERE id = ?').get(id) as { spec: string };
    expect(JSON.parse(stored.spec).callback.headers).toEqual({ 'X-Api-Key': 'k-123', 'X-Extra': 'two' });

    const rotated = await relay.api('POST', `/v1/listeners/${id}/rotate-secret`);
    expect(rotated.status).toBe(200);
    expect(rotated.body.secret).toMatch(/^whsec_/);
    expect(rotated.body.secret).not.toBe(created.body.secret);
    expect(Date.parse(rotated.body.previous_secret_expires_at) - Date.now()).toBeGreaterThan(23 * 3600 * 1000);

    const ownSecret = 'whsec_' + Buffer.alloc(32, 7).toString('base64');
    const rotatedOwn = await relay.api('POST', `/v1/listeners/${id}/rotate-secret`, { secret: ownSecret });
    expect(rotatedOwn.status).toBe(200);
    expect(rotatedOwn.body.secret).toBe(ownSecret);
    // A body that is there must be an object: `null` or a list is refused and rotates nothing.
    for (const raw of ['null', '[]']) {
      const refused = await relay.api('POST', `/v1/listeners/${id}/rotate-secret`, undefined, { raw, headers: { 'content-type': 'application/json' } });
      expect(refused.status, refused.text).toBe(400);
      expect(refused.body.errors).toEqual([{ field: '(body)', message: 'expected an object' }]);
    }
    expect((await relay.api('GET', `/v1/listeners/${id}`)).body.updated_at).toBe(rotatedOwn.body.updated_at);
    // So must a replay's.
    const replayNull = await relay.api('POST', `/v1/listeners/${id}/replay`, undefined, { raw: 'null', headers: { 'content-type': 'application/json' } });
    expect(replayNull.status, replayNull.text).toBe(400);
    expect(replayNull.body.errors).toEqual([{ field: '(body)', message: 'Invalid input: expected object, received null' }]);

    const deleted = await relay.api('DELETE', `/v1/listeners/${id}`);
    expect(deleted.status).toBe(204);
    expect((await relay.api('GET', `/v1/listeners/${id}`)).status).toBe(404);
    expect((await relay.api('DELETE', `/v1/listeners/${id}`)).status).toBe(404);
  });

  it('takes the client own secret and defaults the rest', async () => {
    const secret = 'whsec_' + Buffer.alloc(24, 1).toString('base64');
    const res = await relay.api('POST', '/v1/listeners', {
      workbook: '*',
      event_types: ['TASK'],
      callback: { url: 'http://127.0.0.1:9000/x' },
      secret,
    });
    expect(res.status).toBe(201);
    expect(res.body.secret).toBe(secret);
    expect(res.body).toMatchObject({ events: null, target: null, filter: null, description: null });
    expect(res.body.callback).toEqual({
      transport: 'http', url: 'http://127.0.0.1:9000/x', method: 'POST', headers: {}, format: 'json', timeout_ms: 15000,
    });
  });

  it('allows private addresses the operator listed in RELAY_ALLOW_NETWORKS', async () => {
    const res = await relay.api('POST', '/v1/listeners', { ...valid(), callback: { url: 'http://192.168.50.7/hook' } });
    expect(res.status).toBe(201);
  });
});

describe('paging', () => {
  it('walks every listener of a workbook exactly once', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      const r = await relay.api('POST', '/v1/listeners', { ...valid(), workbook: 'paged' });
      ids.push(r.body.id);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = `/v1/listeners?workbook=paged&limit=3${cursor ? `&cursor=${cursor}` : ''}`;
      const r = await relay.api('GET', q);
      expect(r.status).toBe(200);
      expect(r.body.items.length).toBeLessThanOrEqual(3);
      seen.push(...r.body.items.map((l: { id: string }) => l.id));
      cursor = r.body.next_cursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual(ids);
  });

  it.each([
    ['limit=0', 'limit'],
    ['limit=1001', 'limit'],
    ['limit=abc', 'limit'],
    ['cursor=%%%', 'cursor'],
    ['cursor=bm90LWEtY3Vyc29y', 'cursor'],
    // Numbers spelled other than in digits.
    ['limit=0x10', 'limit'],
    ['limit=1e3', 'limit'],
    ['limit=%2B5', 'limit'],
    ['limit=%0A5', 'limit'],
    ['limit=5.0', 'limit'],
    // Cursors of the right shape around an id this API never hands out.
    ['cursor=djM6bGlzdGVuZXJzOmFzYzol', 'cursor'],
    ['cursor=djM6bGlzdGVuZXJzOmFzYzp-', 'cursor'],
    ['cursor=djE6YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh', 'cursor'],
  ])('refuses %s naming %s', async (query, field) => {
    const r = await relay.api('GET', `/v1/listeners?${query}`);
    expect(r.status).toBe(400);
    expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(r.body.errors.map((e: { field: string }) => e.field)).toContain(field);
  });
});

describe('auth and projects', () => {
  it('answers 401 without a token or with a wrong one', async () => {
    for (const token of [null, 'not-a-token']) {
      const r = await relay.api('GET', '/v1/listeners', undefined, { token });
      expect(r.status).toBe(401);
      expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect(r.body.status).toBe(401);
    }
    const before = listenerCount();
    const r = await relay.api('POST', '/v1/listeners', valid(), { token: null });
    expect(r.status).toBe(401);
    expect(listenerCount()).toBe(before);
  });

  it('hides one project listeners from another', async () => {
    const mine = await relay.api('POST', '/v1/listeners', valid());
    const id = mine.body.id;
    const other = { token: TOKEN_B };
    expect((await relay.api('GET', `/v1/listeners/${id}`, undefined, other)).status).toBe(404);
    expect((await relay.api('PATCH', `/v1/listeners/${id}`, { enabled: false }, other)).status).toBe(404);
    expect((await relay.api('POST', `/v1/listeners/${id}/rotate-secret`, undefined, other)).status).toBe(404);
    expect((await relay.api('DELETE', `/v1/listeners/${id}`, undefined, other)).status).toBe(404);
    const list = await relay.api('GET', '/v1/listeners?limit=1000', undefined, other);
    expect(list.body.items.map((l: { id: string }) => l.id)).not.toContain(id);
    expect((await relay.api('GET', `/v1/listeners/${id}`)).status).toBe(200);
  });
});

describe('bad input changes nothing', () => {
  const cases: Array<[string, (b: any) => unknown, string]> = [
    ['an unknown field', (b) => ({ ...b, colour: 'red' }), 'colour'],
    ['an unknown callback field', (b) => ({ ...b, callback: { ...b.callback, retries: 3 } }), 'callback.retries'],
    ['empty event_types', (b) => ({ ...b, event_types: [] }), 'event_types'],
    ['an unknown event type', (b) => ({ ...b, event_types: ['JOB'] }), 'event_types.0'],
    ['a missing workbook', ({ workbook: _w, ...b }) => b, 'workbook'],
    ['a missing callback', ({ callback: _c, ...b }) => b, 'callback'],
    ['a non-http URL', (b) => ({ ...b, callback: { url: 'ftp://127.0.0.1/x' } }), 'callback.url'],
    ['a relative URL', (b) => ({ ...b, callback: { url: '/hook' } }), 'callback.url'],
    ['a private address', (b) => ({ ...b, callback: { url: 'http://10.1.2.3/x' } }), 'callback.url'],
    ['a link-local metadata address', (b) => ({ ...b, callback: { url: 'http://169.254.169.254/latest' } }), 'callback.url'],
    ['an IPv4-mapped private address', (b) => ({ ...b, callback: { url: 'http://[::ffff:10.0.0.1]/x' } }), 'callback.url'],
    ['a decimal private address', (b) => ({ ...b, callback: { url: 'http://167772161/x' } }), 'callback.url'],
    ['a hex private address', (b) => ({ ...b, callback: { url: 'http://0xa000001/x' } }), 'callback.url'],
    ['an unspecified address', (b) => ({ ...b, callback: { url: 'http://0.0.0.0:9000/x' } }), 'callback.url'],
    ['CR/LF in a header value', (b) => ({ ...b, callback: { ...b.callback, headers: { 'X-A': 'a\r\nX-B: b' } } }), 'callback.headers.X-A'],
    ['CR/LF in a header name', (b) => ({ ...b, callback: { ...b.callback, headers: { 'X-A\r\nX-B': 'b' } } }), 'callback.headers.X-A\r\nX-B'],
    ['a signature header', (b) => ({ ...b, callback: { ...b.callback, headers: { 'webhook-signature': 'v1,x' } } }), 'callback.headers'],
    ['method TRACE', (b) => ({ ...b, callback: { ...b.callback, method: 'TRACE' } }), 'callback.method'],
    ['an unknown format', (b) => ({ ...b, callback: { ...b.callback, format: 'xml' } }), 'callback.format'],
    ['a regex only a backtracking engine can run', (b) => ({ ...b, filter: { 'data.name': { $regex: '(a)\\1' } } }), 'filter.data.name.$regex'],
    ['an unknown filter operator', (b) => ({ ...b, filter: { state: { $where: 'x' } } }), 'filter.state'],
    ['a bad secret', (b) => ({ ...b, secret: 'plain' }), 'secret'],
    ['a bad target kind', (b) => ({ ...b, target: { kind: 'job', id: '1' } }), 'target.kind'],
    ['a negative retry delay', (b) => ({ ...b, retry: { schedule_ms: [-1] } }), 'retry.schedule_ms.0'],
  ];

  it.each(cases)('refuses %s', async (_name, mutate, field) => {
    const before = listenerCount();
    const r = await relay.api('POST', '/v1/listeners', mutate(valid()));
    expect(r.status).toBe(400);
    expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(r.body).toMatchObject({ status: 400, title: expect.any(String), detail: expect.any(String) });
    const fields = r.body.errors.map((e: { field: string }) => e.field);
    expect(fields.some((f: string) => f === field || f.startsWith(field + '.'))).toBe(true);
    expect(listenerCount()).toBe(before);
  });

  it('refuses malformed JSON, a wrong media type and a body over 1 MiB', async () => {
    const before = listenerCount();
    const malformed = await relay.api('POST', '/v1/listeners', undefined, { raw: '{"workbook":', headers: { 'content-type': 'application/json' } });
    expect(malformed.status).toBe(400);
    const wrongType = await relay.api('POST', '/v1/listeners', undefined, { raw: JSON.stringify(valid()), headers: { 'content-type': 'text/plain' } });
    expect(wrongType.status).toBe(415);
    expect(wrongType.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const noType = await relay.api('POST', '/v1/listeners', undefined, { raw: JSON.stringify(valid()) });
    expect(noType.status).toBe(415);
    const big = { ...valid(), description: 'x'.repeat(1024 * 1024 + 10) };
    const tooLarge = await relay.api('POST', '/v1/listeners', big);
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(listenerCount()).toBe(before);
  });

  it('refuses a bad merge patch and keeps the record as it was', async () => {
    const created = await relay.api('POST', '/v1/listeners', valid());
    const id = created.body.id;
    const before = countDb.prepare('SELECT * FROM listeners WHERE id = ?').get(id);
    for (const [patch, field] of [
      [{ event_types: [] }, 'event_types'],
      [{ callback: { url: 'http://10.0.0.1/' } }, 'callback.url'],
      [{ callback: { headers: { 'X-New': '***' } } }, 'callback.headers.X-New'],
      [{ secret: 'whsec_x' }, 'secret'],
      [{ id: 'other' }, 'id'],
    ] as const) {
      const r = await relay.api('PATCH', `/v1/listeners/${id}`, patch);
      expect(r.status, JSON.stringify(patch)).toBe(400);
      expect(r.body.errors.map((e: { field: string }) => e.field)).toContain(field);
    }
    expect(countDb.prepare('SELECT * FROM listeners WHERE id = ?').get(id)).toEqual(before);
  });

  it('answers problem JSON for an unknown route', async () => {
    const r = await relay.api('GET', '/v1/nothing-here');
    expect(r.status).toBe(404);
    expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  });
});

describe("the relay's own port", () => {
  const create = (target: TestRelay, url: string) =>
    target.api('POST', '/v1/listeners', { workbook: '*', event_types: ['TASK'], callback: { url } });

  const ownSpellings = (port: number) => [
    `http://127.0.0.1:${port}/v1/events`,
    `http://localhost:${port}/v1/ingest/mistral`,
    `http://[::1]:${port}/`,
    `http://[::ffff:127.0.0.1]:${port}/`,
    `http://2130706433:${port}/`,
    `http://0x7f.1:${port}/`,
    `http://0.0.0.0:${port}/`,
    `https://127.0.0.1:${port}/`,
  ];

  it('refuses a callback to it at create and in a PATCH, naming callback.url', async () => {
    const before = listenerCount();
    for (const url of ownSpellings(relay.port)) {
      const r = await create(relay, url);
      expect(r.status, url).toBe(400);
      expect(r.body.errors, url).toEqual([{ field: 'callback.url', message: expect.stringContaining("the relay never calls itself") }]);
    }
    expect(listenerCount()).toBe(before);
    const other = await create(relay, `http://127.0.0.1:${relay.port === 65535 ? 1 : relay.port + 1}/hook`);
    expect(other.status).toBe(201);
    const patched = await relay.api('PATCH', `/v1/listeners/${other.body.id}`, { callback: { url: `http://localhost:${relay.port}/v1/events` } });
    expect(patched.status).toBe(400);
    expect(patched.body.errors.map((e: { field: string }) => e.field)).toEqual(['callback.url']);
  });

  it('stays refused when RELAY_ALLOW_NETWORKS lists every loopback and local address', async () => {
    const open = await startTestRelay({ RELAY_ALLOW_NETWORKS: '127.0.0.0/8,::1/128,0.0.0.0/8,::/128', RELAY_ALLOW_LOOPBACK: 'true' });
    try {
      for (const url of ownSpellings(open.port)) {
        const r = await create(open, url);
        expect(r.status, url).toBe(400);
        expect(r.body.errors.map((e: { field: string }) => e.field), url).toEqual(['callback.url']);
      }
      expect((await create(open, `http://127.0.0.1:${open.port === 65535 ? 1 : open.port + 1}/`)).status).toBe(201);
    } finally {
      await open.close();
    }
  });
});

describe('RELAY_ALLOW_LOOPBACK', () => {
  const create = (target: TestRelay, url: string) =>
    target.api('POST', '/v1/listeners', { workbook: '*', event_types: ['TASK'], callback: { url } });

  it('false refuses loopback callbacks although the relay binds loopback; RELAY_ALLOW_NETWORKS still opens what it lists', async () => {
    const refusing = await startTestRelay({ RELAY_ALLOW_LOOPBACK: 'false', RELAY_ALLOW_NETWORKS: '127.0.0.2/32' });
    try {
      for (const url of ['http://127.0.0.1:9000/', 'http://localhost:9000/', 'http://[::1]:9000/']) {
        const r = await create(refusing, url);
        expect(r.status, url).toBe(400);
        expect(r.body.errors[0].message, url).toContain('set RELAY_ALLOW_NETWORKS to allow it');
      }
      expect((await create(refusing, 'http://127.0.0.2:9000/')).status).toBe(201);
    } finally {
      await refusing.close();
    }
  });

  it('auto (the default) allows loopback while the relay binds loopback', async () => {
    expect((await create(relay, 'http://127.0.0.1:9000/')).status).toBe(201);
    expect((await create(relay, 'http://localhost:9000/')).status).toBe(201);
  });

  it('logs at start which mode is in force and what it comes to', async () => {
    const lines: Array<{ msg: string; allow_loopback?: string; loopback_allowed?: boolean }> = [];
    const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    for (const [mode, allowed] of [['auto', true], ['false', false], ['true', true]] as const) {
      lines.length = 0;
      const config = loadConfig({ RELAY_PORT: '0', RELAY_DATA_DIR: tempDir(), RELAY_TOKENS: `${TOKEN_A}=project-a`, RELAY_ALLOW_LOOPBACK: mode });
      const started = await startRelay(config, log);
      await started.close();
      const said = lines.filter((l) => l.allow_loopback !== undefined);
      expect(said, mode).toEqual([
        expect.objectContaining({ allow_loopback: mode, loopback_allowed: allowed, msg: expect.stringContaining(`RELAY_ALLOW_LOOPBACK=${mode}`) }),
      ]);
    }
  });
});

describe('header values and the callback origin', () => {
  const withHeaders = () => ({
    ...valid(),
    callback: { url: 'http://127.0.0.1:9000/wf', headers: { 'X-Api-Key': 'k-123', 'X-Team': 'billing' } },
  });
  const storedHeaders = (id: string) =>
    JSON.parse((countDb.prepare('SELECT spec FROM listeners WHERE id = ?').get(id) as { spec: string }).spec).callback.headers;
  const row = (id: string) => countDb.prepare('SELECT * FROM listeners WHERE id = ?').get(id);

  it.each([
    ['another host', 'http://127.0.0.2:9000/wf'],
    ['another port', 'http://127.0.0.1:9001/wf'],
    ['another scheme', 'https://127.0.0.1:9000/wf'],
  ])('a masked value does not follow the URL to %s', async (_what, url) => {
    const id = (await relay.api('POST', '/v1/listeners', withHeaders())).body.id;
    const before = row(id);
    const masked = await relay.api('PATCH', `/v1/listeners/${id}`, {
      callback: { url, headers: { 'X-Api-Key': '***', 'X-Team': 'platform' } },
    });
    expect(masked.status).toBe(400);
    expect(masked.body.errors).toEqual([
      { field: 'callback.headers.X-Api-Key', message: expect.stringContaining('send the value again') },
    ]);
    expect(masked.body.detail).toContain(`callback.url moves from http://127.0.0.1:9000 to ${new URL(url).origin}`);
    expect(row(id)).toEqual(before);
  });

  it('a patch that moves the URL without sending the headers is refused on callback.headers', async () => {
    const id = (await relay.api('POST', '/v1/listeners', withHeaders())).body.id;
    const before = row(id);
    const r = await relay.api('PATCH', `/v1/listeners/${id}`, { callback: { url: 'http://127.0.0.2:9000/wf' } });
    expect(r.status).toBe(400);
    expect(r.body.errors).toEqual([{ field: 'callback.headers', message: expect.stringContaining('X-Api-Key, X-Team') }]);
    const empty = await relay.api('PATCH', `/v1/listeners/${id}`, { callback: { url: 'http://127.0.0.2:9000/wf', headers: {} } });
    expect(empty.status).toBe(400);
    expect(empty.body.errors.map((e: { field: string }) => e.field)).toEqual(['callback.headers.X-Api-Key', 'callback.headers.X-Team']);
    expect(row(id)).toEqual(before);
  });

  it('moves with values sent again, and drops the headers set to null', async () => {
    const id = (await relay.api('POST', '/v1/listeners', withHeaders())).body.id;
    const resent = await relay.api('PATCH', `/v1/listeners/${id}`, {
      callback: { url: 'http://127.0.0.2:9000/wf', headers: { 'X-Api-Key': 'k-new', 'X-Team': null } },
    });
    expect(resent.status).toBe(200);
    expect(resent.body.callback).toMatchObject({ url: 'http://127.0.0.2:9000/wf', headers: { 'X-Api-Key': '***' } });
    expect(storedHeaders(id)).toEqual({ 'X-Api-Key': 'k-new' });

    const dropped = await relay.api('PATCH', `/v1/listeners/${id}`, { callback: { url: 'http://127.0.0.3:9000/wf', headers: null } });
    expect(dropped.status).toBe(200);
    expect(storedHeaders(id)).toEqual({});
  });

  it('keeps masked and unsent values while the origin stays the same', async () => {
    const id = (await relay.api('POST', '/v1/listeners', withHeaders())).body.id;
    const path = await relay.api('PATCH', `/v1/listeners/${id}`, { callback: { url: 'http://127.0.0.1:9000/other?x=1' } });
    expect(path.status).toBe(200);
    const spelled = await relay.api('PATCH', `/v1/listeners/${id}`, {
      callback: { url: 'HTTP://127.0.0.1:9000/wf', headers: { 'X-Api-Key': '***' } },
    });
    expect(spelled.status).toBe(200);
    expect(storedHeaders(id)).toEqual({ 'X-Api-Key': 'k-123', 'X-Team': 'billing' });
  });

  it('lets a listener without headers move anywhere allowed', async () => {
    const id = (await relay.api('POST', '/v1/listeners', { ...valid(), callback: { url: 'http://127.0.0.1:9000/wf' } })).body.id;
    const r = await relay.api('PATCH', `/v1/listeners/${id}`, { callback: { url: 'http://192.168.50.7/hook' } });
    expect(r.status).toBe(200);
  });
});
