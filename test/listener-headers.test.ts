import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { HttpCallbackSchema as CallbackSchema } from '../src/records/callback.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { startTestRelay, type TestRelay } from './helpers/relay.js';

/*
 * A listener's callback headers are refused at create when no attempt could ever send them.
 * What "could" means is what undici does, so each rule is checked against a real undici request
 * to a real receiver, and each accepted header is delivered by the relay to a real receiver.
 */

let relay: TestRelay;
let receiver: Receiver;
let countDb: Database.Database;
let agent: Agent;

beforeAll(async () => {
  relay = await startTestRelay();
  receiver = await startReceiver();
  countDb = new Database(relay.databasePath, { readonly: true });
  agent = new Agent();
});

afterAll(async () => {
  countDb.close();
  await agent.close();
  await receiver.close();
  await relay.close();
});

const listenerCount = () => (countDb.prepare('SELECT count(*) AS n FROM listeners').get() as { n: number }).n;

/** undici's own verdict: the request is refused before sending, or it arrives. */
async function undiciSends(headers: Record<string, string>): Promise<{ sent: true } | { sent: false; code: string }> {
  try {
    const res = await request(receiver.url('/undici'), { method: 'POST', headers, body: '{}', dispatcher: agent });
    await res.body.text();
    return { sent: true };
  } catch (err) {
    return { sent: false, code: (err as { code: string }).code };
  }
}

const schemaAccepts = (headers: Record<string, string>) =>
  CallbackSchema.safeParse({ url: 'http://127.0.0.1:9/', headers }).success;

const codePoint = (c: string) => `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;

describe('header values', () => {
  it('are accepted exactly when undici can send them', async () => {
    const chars: string[] = [];
    for (let cp = 0; cp <= 0x2ff; cp++) chars.push(String.fromCodePoint(cp));
    chars.push('\u2028', '\u20ac', '\ufeff', '\ud83d\ude00', '\ud800');
    const disagreements: string[] = [];
    for (const c of chars) {
      // Inside the value: leading and trailing whitespace is trimmed by HTTP, not refused.
      const headers = { 'X-Probe': `a${c}b` };
      const undici = await undiciSends(headers);
      if (undici.sent !== schemaAccepts(headers)) disagreements.push(`${codePoint(c)}: undici ${undici.sent ? 'sends' : 'refuses'} it`);
    }
    expect(disagreements).toEqual([]);
  });

  it.each([
    ['CR', 'a\rb', 'U+000D at position 1'],
    ['LF', 'a\nX-Injected: 1', 'U+000A at position 1'],
    ['NUL', '\0', 'U+0000 at position 0'],
    ['a control character', 'ok\u001b[31m', 'U+001B at position 2'],
    ['DEL', 'a\u007f', 'U+007F at position 1'],
    ['the euro sign', 'price €', 'U+20AC at position 6'],
    ['an emoji', 'ok 😀', 'U+1F600 at position 3'],
  ])('refuses %s at create with 400 naming the header', async (_what, value, said) => {
    const before = listenerCount();
    const res = await relay.api('POST', '/v1/listeners', {
      workbook: '*',
      event_types: ['TASK'],
      callback: { url: receiver.url('/refused'), headers: { 'X-Good': 'fine', 'X-Bad': value } },
    });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(res.body.errors).toEqual([{ field: 'callback.headers.X-Bad', message: expect.stringContaining(said) }]);
    expect(listenerCount()).toBe(before);
  });
});

describe('header names', () => {
  // [name, what undici does with it]: refused outright, or sent although it must not be.
  const unsendable: Array<[string, 'undici refuses it' | 'undici would send it']> = [
    ['Keep-Alive', 'undici refuses it'],
    ['keep-alive', 'undici refuses it'],
    ['Upgrade', 'undici refuses it'],
    ['Expect', 'undici refuses it'],
    ['Transfer-Encoding', 'undici refuses it'],
    ['TE', 'undici would send it'],
    ['te', 'undici would send it'],
    ['Proxy-Authorization', 'undici would send it'],
    ['Proxy-Connection', 'undici would send it'],
    ['proxy-anything', 'undici would send it'],
  ];

  it.each(unsendable)('refuses %s (%s)', async (name, undici) => {
    expect((await undiciSends({ [name]: 'x' })).sent).toBe(undici === 'undici would send it');
    const before = listenerCount();
    const res = await relay.api('POST', '/v1/listeners', {
      workbook: '*',
      event_types: ['TASK'],
      callback: { url: receiver.url('/refused'), headers: { 'X-Good': 'fine', [name]: 'x' } },
    });
    expect(res.status).toBe(400);
    expect(res.body.errors).toEqual([{ field: `callback.headers.${name}`, message: expect.stringContaining(name) }]);
    expect(listenerCount()).toBe(before);
  });

  it.each(['webhook-id', 'webhook-gap', 'Webhook-Anything', 'ce-id', 'Content-Type', 'content-length', 'Content-Encoding', 'Host', 'Connection', 'User-Agent'])(
    'refuses %s, which the relay sets itself',
    async (name) => {
      const res = await relay.api('POST', '/v1/listeners', {
        workbook: '*',
        event_types: ['TASK'],
        callback: { url: receiver.url('/refused'), headers: { [name]: 'x' } },
      });
      expect(res.status).toBe(400);
      expect(res.body.errors).toEqual([{ field: `callback.headers.${name}`, message: `${name} is set by the relay` }]);
    },
  );
});

describe('accepted headers', () => {
  const visibleAscii = Array.from({ length: 0x7e - 0x20 + 1 }, (_, i) => String.fromCharCode(0x20 + i)).join('').trim();
  const accepted: Record<string, string> = {
    Authorization: 'Bearer abc.def-ghi',
    'X-Api-Key': 'k-123',
    Cookie: 'session=1; theme=dark',
    'X-Visible-Ascii': visibleAscii,
    'X-Tab-Inside': 'a\tb',
    'X-Latin-1': 'café, naïve, ÿ, ©, \u00a0nbsp',
    'X-High-Bytes': 'a\u0080\u009f\u00ffb',
    'X-Empty': '',
    'X-Long': 'v'.repeat(8192),
    Accept: 'application/json',
    'Cache-Control': 'no-cache',
    Trailer: 'X-Checksum',
    Via: '1.1 gateway',
    Forwarded: 'for=192.0.2.60;proto=http',
    "x-!#$%&'*+.^_`|~": 'token characters',
  };

  it('are stored and delivered to a real receiver exactly as given', async () => {
    const created = await relay.api('POST', '/v1/listeners', {
      workbook: '*',
      event_types: ['NOTIFICATION'],
      callback: { url: receiver.url('/accepted'), headers: accepted },
    });
    expect(created.status).toBe(201);
    expect((await undiciSends(accepted)).sent).toBe(true);

    expect((await relay.api('POST', `/v1/listeners/${created.body.id}/ping`)).status).toBe(202);
    const [delivered] = await receiver.waitForCount('/accepted', 1, 10_000);
    for (const [name, value] of Object.entries(accepted)) {
      expect(delivered.headers[name.toLowerCase()], name).toBe(value);
    }
    await expect
      .poll(async () => (await relay.api('GET', `/v1/deliveries?listener_id=${created.body.id}`)).body.items, { timeout: 10_000 })
      .toEqual([expect.objectContaining({ status: 'succeeded', attempt_count: 1 })]);
  });
});
