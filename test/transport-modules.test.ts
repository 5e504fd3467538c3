import fs from 'node:fs';
import path from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { assertTransportModule, TransportLoadError } from '../src/transports/registry.js';
import { killAllRelays, ROOT, runToExit } from './helpers/relay-process.js';
import { startTestRelay, tempDir, type TestRelay } from './helpers/relay.js';

/*
 * An operator's transport module, loaded through RELAY_TRANSPORT_MODULES: the jsonfile example
 * receives every delivery (signed, retried and recorded like any other), and a module that
 * cannot load or breaks the contract stops the start with exit code 2, naming it.
 */

const JSONFILE = path.join(ROOT, 'examples/transports/jsonfile.mjs');
// Polls are bounded generously: the suite runs many files at once on two cores.
const WAIT = { timeout: 15_000, interval: 50 };

/** The listener's one delivery once it has failed, with its attempts. */
async function failedDelivery(relay: TestRelay, listenerId: string) {
  const failed = await vi.waitFor(async () => {
    const items = (await relay.api('GET', `/v1/deliveries?listener_id=${listenerId}&status=failed`)).body.items;
    expect(items).toHaveLength(1);
    return items[0];
  }, WAIT);
  return (await relay.api('GET', `/v1/deliveries/${failed.id}`)).body;
}

describe('examples/transports/jsonfile.mjs', () => {
  let relay: TestRelay;
  let dir: string;
  beforeAll(async () => {
    dir = tempDir('jsonfile-');
    process.env.JSONFILE_DIR = dir;
    relay = await startTestRelay({ RELAY_TRANSPORT_MODULES: JSONFILE });
  });
  afterAll(async () => {
    await relay?.close();
    delete process.env.JSONFILE_DIR;
  });

  it('writes one signed JSON line per delivery', async () => {
    const created = await relay.api('POST', '/v1/listeners', {
      workbook: '*',
      event_types: ['NOTIFICATION'],
      callback: { transport: 'jsonfile', path: 'deliveries.jsonl', headers: { 'X-Env': 'test' } },
    });
    expect(created.status, created.text).toBe(201);
    expect(created.body.callback).toEqual({ transport: 'jsonfile', path: 'deliveries.jsonl', format: 'json', headers: { 'X-Env': '***' }, timeout_ms: 15000 });
    const events = Array.from({ length: 5 }, (_, i) => ({ type: 'file.written', data: { i } }));
    const ids = (await relay.api('POST', '/v1/events', { events })).body.items.map((x: { id: string }) => x.id);
    const file = path.join(dir, 'deliveries.jsonl');
    const lines = await vi.waitFor(() => {
      const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
      const all = text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
      expect(all).toHaveLength(5);
      return all;
    }, WAIT);
    expect(lines.map((l) => JSON.parse(l.body).id).sort()).toEqual([...ids].sort());
    for (const line of lines) {
      expect(line).toMatchObject({ attempt: 1, listener_id: created.body.id, content_type: 'application/json' });
      expect(line.headers['X-Env']).toBe('test');
      new Webhook(created.body.secret).verify(line.body, line.headers);
    }
    await vi.waitFor(async () => {
      const done = (await relay.api('GET', `/v1/deliveries?listener_id=${created.body.id}&status=succeeded`)).body.items;
      expect(done).toHaveLength(5);
    }, WAIT);
  });

  it("refuses what the module's own validate refuses, naming its field", async () => {
    const res = await relay.api('POST', '/v1/listeners', {
      workbook: '*',
      event_types: ['NOTIFICATION'],
      callback: { transport: 'jsonfile', path: '../escape.jsonl', colour: 'red' },
    });
    expect(res.status).toBe(400);
    expect(res.body.errors.map((e: { field: string }) => e.field).sort()).toEqual(['callback.colour', 'callback.path']);
  });

  it('records a failure the module reports, with its code, and retries it', async () => {
    fs.mkdirSync(path.join(dir, 'blocked.jsonl')); // a folder where the file should be: EISDIR
    const created = await relay.api('POST', '/v1/listeners', {
      workbook: '*',
      event_types: ['NOTIFICATION'],
      callback: { transport: 'jsonfile', path: 'blocked.jsonl' },
      retry: { schedule_ms: [50] },
    });
    await relay.api('POST', '/v1/events', { type: 'file.blocked' });
    const detail = await failedDelivery(relay, created.body.id);
    expect(detail.attempts.map((a: { error: string }) => a.error)).toEqual(['EISDIR', 'EISDIR']);
  });
});

describe('a module whose send never settles', () => {
  let relay: TestRelay;
  beforeAll(async () => {
    const file = path.join(tempDir(), 'stuck.mjs');
    fs.writeFileSync(file, 'export default { name: "stuck", validate: () => [], send: () => new Promise(() => {}), close: async () => {} };\n');
    relay = await startTestRelay({ RELAY_TRANSPORT_MODULES: file });
  });
  afterAll(async () => {
    await relay?.close();
  });

  it('has each attempt end as a TIMEOUT past its deadline, retried and then failed', async () => {
    const created = await relay.api('POST', '/v1/listeners', {
      workbook: '*',
      event_types: ['NOTIFICATION'],
      callback: { transport: 'stuck', timeout_ms: 200 },
      retry: { schedule_ms: [50] },
    });
    expect(created.status, created.text).toBe(201);
    await relay.api('POST', '/v1/events', { type: 'module.stuck' });
    const detail = await failedDelivery(relay, created.body.id);
    expect(detail.attempts.map((a: { error: string }) => a.error)).toEqual(['TIMEOUT', 'TIMEOUT']);
    // Each attempt lasted its timeout and the grace after it, not longer.
    for (const a of detail.attempts) expect(a.duration_ms).toBeGreaterThanOrEqual(2_000);
    for (const a of detail.attempts) expect(a.duration_ms).toBeLessThan(5_000);
    expect(detail.last_error).toBe('the stuck transport gave no outcome within 200 ms (and 2000 ms more)');
  });
});

describe('a module that breaks the contract', () => {
  afterAll(killAllRelays);

  it.each([
    ['cannot be loaded', 'throw new Error("no such dependency");', /cannot be loaded: no such dependency/],
    ['has no send', 'export default { name: "half", validate: () => [], close: async () => {} };', /`send` must be a function/],
    ['takes a built-in name', 'export default { name: "http", validate: () => [], send: async () => ({ ok: true }), close: async () => {} };', /taken/],
  ])('stops the start with exit code 2 when it %s', async (_what, source, message) => {
    const file = path.join(tempDir(), 'broken.mjs');
    fs.writeFileSync(file, source);
    const relay = await runToExit({ RELAY_PORT: '0', RELAY_DATA_DIR: tempDir(), RELAY_TRANSPORT_MODULES: file });
    expect(relay.exit?.code).toBe(2);
    expect(relay.stderr).toMatch(/RELAY_TRANSPORT_MODULES/);
    expect(relay.stderr).toContain(file);
    expect(relay.stderr).toMatch(message);
  });

  it('checks the shape of an export', () => {
    const taken = new Set(['http']);
    expect(() => assertTransportModule(null, 'm.mjs', taken)).toThrow(TransportLoadError);
    expect(() => assertTransportModule({ name: 'Bad Name', validate() {}, send() {}, close() {} }, 'm.mjs', taken)).toThrow(/name/);
    expect(() => assertTransportModule({ name: 'ok', validate() {}, send() {}, close() {}, check: 1 }, 'm.mjs', taken)).toThrow(/check/);
    expect(assertTransportModule({ name: 'ok', validate() {}, send() {}, close() {} }, 'm.mjs', taken).name).toBe('ok');
  });
});

describe('RELAY_TRANSPORTS', () => {
  it('refuses a listener of a transport this relay has not enabled', async () => {
    const relay = await startTestRelay({ RELAY_TRANSPORTS: 'http' });
    try {
      const res = await relay.api('POST', '/v1/listeners', {
        workbook: '*',
        event_types: ['NOTIFICATION'],
        callback: { transport: 'amqp', url: 'amqp://guest:guest@127.0.0.1:5672/', topic: 't' },
      });
      expect(res.status).toBe(400);
      expect(res.body.errors).toEqual([{ field: 'callback.transport', message: expect.stringMatching(/amqp is not enabled in this relay \(enabled: http\)/) }]);
      // Said first, whatever else the callback gets wrong for its transport's schema (exec wants
      // a command, not a url), which follows.
      for (const callback of [{ transport: 'exec', url: 'http://example.com/' }, { transport: 'smtp', to: 'a@example.com' }]) {
        const wrong = await relay.api('POST', '/v1/listeners', { workbook: '*', event_types: ['NOTIFICATION'], callback });
        expect(wrong.status).toBe(400);
        expect(wrong.body.errors[0]).toEqual({ field: 'callback.transport', message: expect.stringContaining(`${callback.transport} is not enabled in this relay (enabled: http)`) });
        expect(wrong.body.errors.filter((e: { field: string }) => e.field === 'callback.transport')).toHaveLength(1);
        expect(wrong.body.detail).toMatch(new RegExp(`^callback.transport: ${callback.transport} is not enabled in this relay`));
      }
      const exec = await relay.api('POST', '/v1/listeners', { workbook: '*', event_types: ['NOTIFICATION'], callback: { transport: 'exec', url: 'http://example.com/' } });
      expect(exec.body.errors.map((e: { field: string }) => e.field)).toEqual(['callback.transport', 'callback.command', 'callback.url']);
      const created = await relay.api('POST', '/v1/listeners', { workbook: '*', event_types: ['NOTIFICATION'], callback: { url: 'http://example.com/hook' } });
      expect(created.status, created.text).toBe(201);
      const patched = await relay.api('PATCH', `/v1/listeners/${created.body.id}`, { callback: { transport: 'exec', url: 'http://example.com/' } }, { headers: { 'content-type': 'application/merge-patch+json' } });
      expect(patched.status).toBe(400);
      expect(patched.body.errors[0]).toEqual({ field: 'callback.transport', message: expect.stringContaining('exec is not enabled in this relay') });
    } finally {
      await relay.close();
    }
  });

  it('stops the start on a name that is not a built-in transport', async () => {
    const relay = await runToExit({ RELAY_PORT: '0', RELAY_DATA_DIR: tempDir(), RELAY_TRANSPORTS: 'http,smtp' });
    expect(relay.exit?.code).toBe(2);
    expect(relay.stderr).toMatch(/RELAY_TRANSPORTS: "smtp" is not a built-in transport/);
  });
});
