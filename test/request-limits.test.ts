import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonShape } from '../src/json-depth.js';
import { MAX_JSON_DEPTH } from '../src/api/json-body.js';
import { killAllRelays, runToExit, startRelayProcess } from './helpers/relay-process.js';
import { startTestRelay, tempDir, TOKEN_B, type TestRelay } from './helpers/relay.js';

const nested = (depth: number, open = '[', close = ']') => open.repeat(depth) + close.repeat(depth);

describe('jsonShape', () => {
  it('counts nesting outside strings only', () => {
    expect(jsonShape('1').depth).toBe(0);
    expect(jsonShape('{"a":[1,{"b":[]}]}').depth).toBe(4);
    expect(jsonShape('{"a":"[[[[\\"[[[["}').depth).toBe(1);
    expect(jsonShape('["\\\\",[["x"]]]').depth).toBe(3);
    expect(jsonShape(nested(20_000), 64).depth).toBe(65); // stops counting past the limit
  });

  it('finds, in the same walk, numbers that may be beyond a double, outside strings only', () => {
    const large = (text: string) => jsonShape(text).largeNumber;
    for (const text of ['[1e309]', '{"a":-2.5E+400}', '[1e-400]', `[${'9'.repeat(309)}]`, `{"a":true,"b":${'1'.repeat(320)}.5}`]) expect(large(text), text).toBe(true);
    for (const text of ['[1e99]', '{"a":1.5E-12,"b":true,"c":false}', `[${'9'.repeat(308)}]`, `["1e999","${'9'.repeat(400)}"]`, `[0.${'1'.repeat(400)}]`]) {
      expect(large(text), text).toBe(false);
    }
  });
});

describe('deeply nested bodies', () => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startTestRelay();
  });
  afterAll(async () => {
    await relay?.close();
  });

  it('answers 400 naming the body for 20,000-deep JSON on every JSON route', async () => {
    const deep = `{"type":"x.y","data":{"v":${nested(20_000)}}}`;
    for (const [method, path] of [
      ['POST', '/v1/events'],
      ['POST', '/v1/listeners'],
      ['POST', '/v1/executions'],
    ] as const) {
      const res = await relay.api(method, path, undefined, { raw: deep, headers: { 'content-type': 'application/json' } });
      expect(res.status, `${method} ${path}: ${res.text}`).toBe(400);
      expect(res.body.errors).toEqual([{ field: '(body)', message: `objects and arrays nest deeper than ${MAX_JSON_DEPTH} levels` }]);
    }
    const mistral = await relay.api('POST', '/v1/ingest/mistral', undefined, { raw: `{"event":"TASK_SUCCEEDED","x":${nested(20_000)}}` });
    expect(mistral.status).toBe(400);
    expect(mistral.body.errors[0].field).toBe('(body)');
    const workbook = await relay.api('POST', '/v1/workbooks', undefined, {
      raw: `{"definition":${nested(20_000)}}`,
      headers: { 'content-type': 'application/json' },
    });
    expect(workbook.status).toBe(400);
    // YAML's flow collections are held to the same depth: refused before the parser sees them.
    const started = Date.now();
    const yaml = await relay.api('POST', '/v1/workbooks', undefined, { raw: `version: "2.0"\nname: deep\nx: ${nested(100_000)}\n`, headers: { 'content-type': 'application/yaml' } });
    expect(yaml.status, yaml.text).toBe(400);
    expect(yaml.body.errors).toEqual([{ field: '(body)', message: `objects and arrays nest deeper than ${MAX_JSON_DEPTH} levels` }]);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('refuses YAML nested a thousand blocks deep in 2 KB, however often it comes, and stays up', async () => {
    // Sent twice, the second such definition made V8 run out of memory compiling a regular
    // expression, and the process died.
    for (const source of [`${'- '.repeat(1000)}x`, `version: "2.0"\nname: deep\nx:\n${'- '.repeat(300)}x\n`]) {
      for (let i = 0; i < 3; i++) {
        const res = await relay.api('POST', '/v1/workbooks', undefined, { raw: source, headers: { 'content-type': 'application/yaml' } });
        expect(res.status, res.text).toBe(400);
        expect(res.body.errors).toEqual([{ field: '(body)', message: expect.stringMatching(/^line \d starts \d+ columns deep .* at most 256 are taken$/), line: expect.any(Number) }]);
      }
    }
    expect((await relay.api('GET', '/healthz')).status).toBe(200);
  });

  it('takes a workbook definition of up to 1 MiB, as every body, and a larger one is a 413', async () => {
    const big = `version: "2.0"\nname: big\n# ${'x'.repeat(1024 * 1024)}\n`;
    const res = await relay.api('POST', '/v1/workbooks', undefined, { raw: big, headers: { 'content-type': 'application/yaml' } });
    expect(res.status, res.text).toBe(413);
    expect(res.body.detail).toMatch(/larger than 1048576 bytes/);
  });

  it('still takes nesting up to the limit', async () => {
    const ok = `{"type":"x.y","data":{"v":${nested(MAX_JSON_DEPTH - 2)}}}`;
    const res = await relay.api('POST', '/v1/events', undefined, { raw: ok, headers: { 'content-type': 'application/json' } });
    expect(res.status, res.text).toBe(202);
  });
});

describe('compressed bodies', () => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startTestRelay();
  });
  afterAll(async () => {
    await relay?.close();
  });
  const event = JSON.stringify({ id: 'zipped-1', type: 'TASK_SUCCEEDED', workbook: 'wb', execution_id: 'e1' });

  it('takes gzip, deflate and br bodies', async () => {
    for (const [encoding, compress] of [['gzip', zlib.gzipSync], ['deflate', zlib.deflateSync], ['br', zlib.brotliCompressSync]] as const) {
      const res = await relay.api('POST', '/v1/events', undefined, {
        raw: compress(JSON.stringify({ ...JSON.parse(event), id: `zipped-${encoding}` })),
        headers: { 'content-type': 'application/json', 'content-encoding': encoding },
      });
      expect(res.status, `${encoding}: ${res.text}`).toBe(202);
      expect(res.body.items).toEqual([{ id: `zipped-${encoding}`, duplicate: false }]);
    }
  });

  it('answers 400 naming the body, and stores nothing, when the bytes are not what Content-Encoding says', async () => {
    const before = (await relay.api('GET', '/v1/events')).body.items.length;
    for (const encoding of ['gzip', 'deflate', 'br']) {
      for (const [method, path, contentType] of [
        ['POST', '/v1/events', 'application/json'],
        ['POST', '/v1/listeners', 'application/json'],
        ['POST', '/v1/workbooks', 'application/yaml'],
        ['POST', '/v1/ingest/mistral', 'application/json'],
      ] as const) {
        const res = await relay.api(method, path, undefined, { raw: event, headers: { 'content-type': contentType, 'content-encoding': encoding } });
        expect(res.status, `${encoding} ${path}: ${res.text}`).toBe(400);
        expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
        expect(res.body.errors).toEqual([{ field: '(body)', message: expect.stringContaining(`not ${encoding} data as Content-Encoding says`) }]);
      }
    }
    expect((await relay.api('GET', '/v1/events')).body.items.length).toBe(before);
  });

  it('holds the size limit to the decoded body: 64 MiB of zeros in 64 KB of gzip is a 413, at once', async () => {
    const bomb = zlib.gzipSync(Buffer.alloc(64 * 1024 * 1024, 0x20));
    expect(bomb.length).toBeLessThan(100 * 1024);
    const started = Date.now();
    const res = await relay.api('POST', '/v1/events', undefined, { raw: bomb, headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } });
    expect(res.status, res.text).toBe(413);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect((await relay.api('GET', '/healthz')).status).toBe(200);
  });
});

/** A module preloaded into the relay with --import: a defect injected from outside. */
function preload(code: string): string {
  const file = path.join(tempDir(), 'defect.mjs');
  fs.writeFileSync(file, code);
  return `--import=${file}`;
}

describe('listeners per project (RELAY_MAX_LISTENERS_PER_PROJECT)', () => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startTestRelay({ RELAY_MAX_LISTENERS_PER_PROJECT: '3' });
  });
  afterAll(async () => {
    await relay?.close();
  });
  const create = (token?: string) =>
    relay.api('POST', '/v1/listeners', { workbook: '*', event_types: ['TASK'], callback: { url: 'https://hooks.example.com/x' } }, token ? { token } : {});
  const countOf = async (token?: string) => (await relay.api('GET', '/v1/listeners?limit=1000', undefined, token ? { token } : {})).body.items.length;

  it('takes creations up to the limit, however many ask at once, and refuses the rest with a 409 that says what to do', async () => {
    // Asked all at once: no two may both take the last place (on PostgreSQL, on separate connections).
    const answers = await Promise.all(Array.from({ length: 8 }, () => create()));
    expect(answers.map((a) => a.status).sort()).toEqual([201, 201, 201, 409, 409, 409, 409, 409]);
    const refused = answers.find((a) => a.status === 409)!;
    expect(refused.headers.get('content-type')).toContain('application/problem+json');
    expect(refused.body.detail).toBe(
      'the project has 3 listeners, the most this relay allows one project (RELAY_MAX_LISTENERS_PER_PROJECT); delete one it no longer needs first',
    );
    expect(await countOf()).toBe(3);
    // Another project has places of its own.
    expect((await create(TOKEN_B)).status).toBe(201);
    // A deleted listener frees its place.
    const [first] = (await relay.api('GET', '/v1/listeners?limit=1')).body.items;
    expect((await relay.api('DELETE', `/v1/listeners/${first.id}`)).status).toBe(204);
    expect((await create()).status).toBe(201);
    expect((await create()).status).toBe(409);
    expect(await countOf()).toBe(3);
  });
});

describe('an error nothing caught', () => {
  afterAll(killAllRelays);

  it('is logged as fatal and stops the process with a non-zero code', async () => {
    // Injected from outside: an exception thrown from a timer, as a defect would.
    const relay = await runToExit({
      RELAY_PORT: '0',
      RELAY_DATA_DIR: tempDir(),
      NODE_OPTIONS: preload("setTimeout(() => { throw new Error('injected defect'); }, 1500);"),
    });
    expect(relay.exit?.code).toBe(70);
    const fatal = relay.logs.find((l) => l.level === 60);
    expect(fatal?.msg).toMatch(/^uncaughtException: the relay stops/);
    expect(JSON.stringify(fatal)).toContain('injected defect');
  });

  it('treats an unhandled rejection the same way', async () => {
    const relay = await runToExit({
      RELAY_PORT: '0',
      RELAY_DATA_DIR: tempDir(),
      NODE_OPTIONS: preload("setTimeout(() => { Promise.reject(new Error('lost promise')); }, 1500);"),
    });
    expect(relay.exit?.code).toBe(70);
    expect(relay.logs.find((l) => l.level === 60)?.msg).toMatch(/^unhandledRejection/);
  });

  it('parses a large workbook off the serving thread: /healthz answers meanwhile', async () => {
    const relay = await startRelayProcess({ RELAY_PORT: '0', RELAY_DATA_DIR: tempDir(), RELAY_TOKENS: 'token-of-the-parse-test=p1' });
    // Flow style is the YAML parser's slow case: about 3 µs a byte, seconds for 1 MiB.
    const junk = Array.from({ length: 150_000 }, (_, i) => i).join(',');
    const definition = `{"version": "2.0", "name": "large", "junk": [${junk}], "workflows": {"main": {"tasks": {"only": {"action": "std.noop"}}}}}`;
    expect(definition.length).toBeLessThan(1024 * 1024);
    const started = Date.now();
    let done = false;
    const posted = fetch(`${relay.url}/v1/workbooks`, {
      method: 'POST',
      headers: { authorization: 'Bearer token-of-the-parse-test', 'content-type': 'application/json' },
      body: definition,
    }).finally(() => (done = true));
    const waits: number[] = [];
    while (!done) {
      const asked = Date.now();
      expect((await fetch(`${relay.url}/healthz`)).status).toBe(200);
      waits.push(Date.now() - asked);
      await new Promise((r) => setTimeout(r, 50));
    }
    const res = await posted;
    // Refused for its unknown key `junk`, after the whole parse.
    expect(res.status).toBe(400);
    expect(await res.text()).toMatch(/junk/);
    const took = Date.now() - started;
    expect(took, 'the parse took long enough to show whether it blocks').toBeGreaterThan(500);
    expect(Math.max(...waits), `/healthz waits ${JSON.stringify(waits)} while the parse took ${took} ms`).toBeLessThan(Math.max(400, took / 3));
    expect((await relay.stop()).code).toBe(0);
  }, 60_000);

  it('holds at most RELAY_MAX_CONNECTIONS client connections: idle ones cannot take every file descriptor', async () => {
    const relay = await startRelayProcess({ RELAY_PORT: '0', RELAY_DATA_DIR: tempDir(), RELAY_MAX_CONNECTIONS: '3' });
    const { port } = new URL(relay.url);
    // Three connections that send nothing, as a slow or hostile client keeps them.
    const idle = await Promise.all(
      Array.from({ length: 3 }, () => new Promise<net.Socket>((resolve, reject) => {
        const socket = net.connect(Number(port), '127.0.0.1', () => resolve(socket));
        socket.on('error', reject);
      })),
    );
    await new Promise((r) => setTimeout(r, 200));
    await expect(fetch(`${relay.url}/healthz`)).rejects.toThrow();
    const warned = await relay.waitForLog((l) => l.msg === 'connections refused: RELAY_MAX_CONNECTIONS are open');
    expect(warned).toMatchObject({ level: 40, open: 3 });
    // One goes: a request gets in again.
    idle[0].destroy();
    await new Promise((r) => setTimeout(r, 200));
    expect((await fetch(`${relay.url}/healthz`, { headers: { connection: 'close' } })).status).toBe(200);
    for (const socket of idle) socket.destroy();
    expect((await relay.stop()).code).toBe(0);
  });

  it('leaves a healthy relay running', async () => {
    const relay = await startRelayProcess({ RELAY_PORT: '0', RELAY_DATA_DIR: tempDir() });
    expect((await fetch(`${relay.url}/healthz`)).status).toBe(200);
    expect((await relay.stop()).code).toBe(0);
  });
});
