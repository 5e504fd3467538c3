import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyWebhook } from '../src/cli/webhook-signature.js';
import { tempDir } from './helpers/relay.js';
import { cleanEnv, runBin, spawnRelay, type SpawnedRelay } from './helpers/spawn-relay.js';

// `callback-relay verify` on requests a real relay sent, saved byte for byte by a raw TCP server.
const T = 60_000;

let relay: SpawnedRelay;
let workDir: string;
let secret: string;
let capture: Buffer;

const verify = (args: string[], input?: string | Buffer) =>
  runBin(['verify', ...args], { env: cleanEnv({ RELAY_URL: 'http://127.0.0.1:9' }), cwd: workDir, input });

/** A TCP server that saves the first whole HTTP request it gets, as `nc -l` would, and answers 200. */
async function rawCapture(): Promise<{ url: string; request: Promise<Buffer>; close(): void }> {
  let done!: (b: Buffer) => void;
  const request = new Promise<Buffer>((resolve) => (done = resolve));
  const server = net.createServer((socket) => {
    let data = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      data = Buffer.concat([data, chunk]);
      const end = data.indexOf('\r\n\r\n');
      if (end < 0) return;
      const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(data.subarray(0, end).toString('latin1'))?.[1] ?? 0);
      if (data.length < end + 4 + length) return;
      socket.end('HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      done(data);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/hook`, request, close: () => server.close() };
}

async function api(method: string, pathname: string, body?: unknown): Promise<any> {
  const res = await fetch(relay.url + pathname, {
    method,
    headers: { authorization: `Bearer ${relay.token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return res.json();
}

const split = (raw: Buffer) => {
  const end = raw.indexOf('\r\n\r\n');
  return { head: raw.subarray(0, end).toString('latin1'), body: raw.subarray(end + 4) };
};
const headerOf = (raw: Buffer, name: string) => new RegExp(`\\r\\n${name}:\\s*([^\\r]*)`, 'i').exec(split(raw).head)![1];

beforeAll(async () => {
  workDir = tempDir('relay-cli-verify-');
  relay = await spawnRelay(path.join(workDir, 'data'));
  const receiver = await rawCapture();
  try {
    const listener = await api('POST', '/v1/listeners', { workbook: '*', event_types: ['TASK'], callback: { url: receiver.url } });
    secret = listener.secret;
    await api('POST', '/v1/events', { type: 'TASK_FAILED', workbook: 'wb', execution_id: 'ex-v', task_id: 't-v', task_name: 'pay', data: { note: 'ünïcode' } });
    capture = await receiver.request;
  } finally {
    receiver.close();
  }
}, 30_000);

afterAll(async () => {
  await relay?.stop();
  fs.rmSync(workDir, { recursive: true, force: true });
});

describe('callback-relay verify', () => {
  it('finds a captured delivery valid, as the standardwebhooks library does', async () => {
    expect(capture.toString('latin1')).toMatch(/^POST \/hook HTTP\/1\.1\r\n/);
    const { body } = split(capture);
    const headers = Object.fromEntries(['webhook-id', 'webhook-timestamp', 'webhook-signature'].map((h) => [h, headerOf(capture, h)]));
    expect(() => new Webhook(secret).verify(body, headers)).not.toThrow();

    const r = await verify(['--secret', secret], capture);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(new RegExp(`^valid: signed with this secret \\(webhook-id ${headers['webhook-id']}, timestamp ${headers['webhook-timestamp']}, \\d+ s ago\\)\\n$`));

    const json = await verify(['--secret', secret, '-f', 'json'], capture);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ valid: true, webhook_id: headers['webhook-id'], body_bytes: body.length, notes: [] });
  }, T);

  it('reads captures with LF line ends, a trailing newline, or a chunked body', async () => {
    const { head, body } = split(capture);
    const lf = Buffer.concat([Buffer.from(`${head.replace(/\r\n/g, '\n')}\n\n`, 'latin1'), body, Buffer.from('\n')]);
    const r = await verify(['--secret', secret], lf);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("note: ignored 1 byte(s) after the body's content-length of " + body.length + ' (a newline an editor added?)\n');

    const chunkedHead = head.replace(/\r\ncontent-length:[^\r]*/i, '') + '\r\ntransfer-encoding: chunked';
    const half = Math.floor(body.length / 2);
    const chunk = (b: Buffer) => Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')]);
    const chunked = Buffer.concat([Buffer.from(`${chunkedHead}\r\n\r\n`, 'latin1'), chunk(body.subarray(0, half)), chunk(body.subarray(half)), Buffer.from('0\r\n\r\n')]);
    expect((await verify(['--secret', secret], chunked)).code).toBe(0);
  }, T);

  it('finds a tampered body or a wrong secret invalid (exit 1), and says why', async () => {
    const { head, body } = split(capture);
    const tampered = Buffer.concat([Buffer.from(`${head}\r\n\r\n`, 'latin1'), Buffer.from(body.toString('utf8').replace('TASK_FAILED', 'TASK_FAILEX'))]);
    const t = await verify(['--secret', secret], tampered);
    expect(t.code).toBe(1);
    expect(t.stdout).toBe('');
    expect(t.stderr).toMatch(/^error: INVALID signature: no v1 signature matches this secret over the id, timestamp and body/);
    expect(t.stderr).toMatch(/\nhint: is it this listener's secret/);

    const other = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
    const w = await verify(['--secret', other, '-f', 'json'], capture);
    expect(w.code).toBe(1);
    expect(JSON.parse(w.stdout)).toMatchObject({ valid: false, reason: 'no-matching-signature' });

    const unsigned = await verify(['--secret', secret], 'POST /hook HTTP/1.1\r\ncontent-type: application/json\r\n\r\n{}');
    expect(unsigned.code).toBe(1);
    expect(unsigned.stderr).toContain('error: INVALID signature: no webhook-id, webhook-timestamp, webhook-signature header');
  }, T);

  it('refuses an old timestamp unless told to accept it', async () => {
    const body = '{"type":"TASK_FAILED"}';
    const hourAgo = new Date(Date.now() - 3600_000);
    const signature = new Webhook(secret).sign('msg_old', hourAgo, body);
    const saved = [
      'POST /hook HTTP/1.1',
      'content-type: application/json',
      `content-length: ${body.length}`,
      'webhook-id: msg_old',
      `webhook-timestamp: ${Math.floor(hourAgo.getTime() / 1000)}`,
      `webhook-signature: ${signature}`,
      '',
      body,
    ].join('\r\n');
    const old = await verify(['--secret', secret], saved);
    expect(old.code).toBe(1);
    expect(old.stderr).toMatch(/^error: INVALID signature: the timestamp is 36\d\d s old, more than the 300 s tolerance\nhint: for an old capture add --no-timestamp-check/);
    expect((await verify(['--secret', secret, '--no-timestamp-check'], saved)).code).toBe(0);
    expect((await verify(['--secret', secret, '--tolerance', '7200'], saved)).code).toBe(0);
    expect((await verify(['--secret', secret, '--tolerance', '60'], saved)).code).toBe(1);
  }, T);

  it('exits 2 for usage mistakes', async () => {
    const cases: Array<[string[], string | Buffer | undefined, RegExp]> = [
      [[], capture, /required option '--secret <whsec>' not specified/],
      [['--secret', 'not-a-secret'], capture, /--secret is not whsec_ followed by base64/],
      [['--secret', secret], '', /stdin is empty/],
      [['--secret', secret], 'just some text', /no blank line after the headers/],
      [['--secret', secret], 'hello world\n\nbody', /"hello world" is not a header line/],
      [['--secret', secret, '--tolerance', 'soon'], capture, /expected whole seconds/],
      [['--secret', secret, '--tolerance', '60', '--no-timestamp-check'], capture, /contradict each other/],
    ];
    for (const [args, input, message] of cases) {
      const r = await verify(args, input);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toMatch(message);
    }
  }, T);
});

describe('verifyWebhook agrees with the standardwebhooks library', () => {
  const key = `whsec_${Buffer.alloc(24, 1).toString('base64')}`;
  const previous = `whsec_${Buffer.alloc(32, 2).toString('base64')}`;
  const now = new Date();
  const seconds = Math.floor(now.getTime() / 1000);

  const library = (s: string, body: string, headers: Record<string, string>) => {
    try {
      new Webhook(s).verify(body, headers, { jsonParse: false });
      return true;
    } catch {
      return false;
    }
  };

  it.each([
    ['a body signed with the key', key, key, '{"a":1}', '{"a":1}'],
    ['a changed body', key, key, '{"a":1}', '{"a":2}'],
    ['another key', key, previous, '{"a":1}', '{"a":1}'],
    ['an empty body', key, key, '', ''],
  ])('%s', (_what, signKey, verifyKey, signed, sent) => {
    const headers = {
      'webhook-id': 'msg_1',
      'webhook-timestamp': String(seconds),
      'webhook-signature': new Webhook(signKey).sign('msg_1', now, signed),
    };
    const ours = verifyWebhook({ secret: verifyKey, headers, body: sent, nowSeconds: seconds, toleranceSeconds: 300 });
    expect(ours.valid).toBe(library(verifyKey, sent, headers));
  });

  it('takes any of several signatures (a rotation), whichever key signed', () => {
    const both = `${new Webhook(previous).sign('msg_2', now, 'x')} ${new Webhook(key).sign('msg_2', now, 'x')}`;
    const headers = { 'webhook-id': 'msg_2', 'webhook-timestamp': String(seconds), 'webhook-signature': both };
    for (const s of [key, previous]) {
      expect(verifyWebhook({ secret: s, headers, body: 'x', nowSeconds: seconds, toleranceSeconds: 300 })).toEqual({ valid: true });
      expect(library(s, 'x', headers)).toBe(true);
    }
  });

  it('says which check failed', () => {
    const headers = { 'webhook-id': 'msg_3', 'webhook-timestamp': String(seconds + 400), 'webhook-signature': 'v1,AAAA' };
    const at = (toleranceSeconds: number | null, h: Record<string, string | undefined> = headers) =>
      verifyWebhook({ secret: key, headers: h, body: 'x', nowSeconds: seconds, toleranceSeconds });
    expect(at(300)).toMatchObject({ valid: false, reason: 'timestamp-too-new' });
    expect(at(null)).toMatchObject({ valid: false, reason: 'no-matching-signature' });
    expect(at(300, { ...headers, 'webhook-timestamp': '12e3' })).toMatchObject({ valid: false, reason: 'bad-timestamp' });
    expect(at(300, { ...headers, 'webhook-id': undefined })).toMatchObject({ valid: false, reason: 'missing-headers' });
    expect(verifyWebhook({ secret: 'whsec_%%', headers, body: 'x', nowSeconds: seconds, toleranceSeconds: null })).toMatchObject({ reason: 'bad-secret' });
  });
});
