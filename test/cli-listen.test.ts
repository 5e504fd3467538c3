import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from './helpers/relay.js';
import { BINS, cleanEnv, eventually, runBin, spawnRelay, type SpawnedRelay } from './helpers/spawn-relay.js';

// `callback-relay listen` as a user runs it: the built bin against a real relay child process.
const T = 60_000;

let relay: SpawnedRelay;
let workDir: string;
const env = () => cleanEnv({ RELAY_URL: relay.url, RELAY_TOKEN: relay.token });

async function api(method: string, pathname: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(relay.url + pathname, {
    method,
    headers: { authorization: `Bearer ${relay.token}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

interface Listening {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
  listenerId: string;
  url: string;
}

const running: ChildProcess[] = [];

/** Starts `callback-relay listen ARGS` and resolves once it says where it listens. */
async function startListen(args: string[]): Promise<Listening> {
  // Its own process group, so that only the signals the test sends reach it.
  const child = spawn(process.execPath, [BINS['callback-relay'], 'listen', ...args], { env: env(), cwd: workDir, detached: true });
  running.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const match = await eventually(
    async () => /listening on (http:\/\/127\.0\.0\.1:\d+\/) as listener (\S+) /.exec(stderr) ?? (child.exitCode !== null ? ['exited'] : undefined),
    20_000,
    'listen to start',
  );
  if (match[0] === 'exited') throw new Error(`listen exited ${child.exitCode}: ${stderr}`);
  return { child, stdout: () => stdout, stderr: () => stderr, exited, listenerId: match[2], url: match[1] };
}

const publish = (events: object[]) => api('POST', '/v1/events', { events });

beforeAll(async () => {
  workDir = tempDir('relay-cli-listen-');
  relay = await spawnRelay(path.join(workDir, 'data'));
}, 30_000);

afterEach(() => {
  for (const child of running.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

afterAll(async () => {
  await relay?.stop();
  fs.rmSync(workDir, { recursive: true, force: true });
});

describe('callback-relay listen', () => {
  it('prints each delivery with its signature checked, answers 400 to a forged one, and removes its listener on SIGINT', async () => {
    const l = await startListen(['--workbook', 'billing']);
    const listener = await api('GET', `/v1/listeners/${l.listenerId}`);
    expect(listener.status).toBe(200);
    expect(listener.body).toMatchObject({
      workbook: 'billing',
      event_types: ['EXECUTION', 'TASK', 'NOTIFICATION'],
      callback: { url: l.url },
    });

    expect(
      (
        await publish([
          { type: 'WORKFLOW_LAUNCHED', workbook: 'billing', execution_id: 'ex-listen-1' },
          { type: 'TASK_SUCCEEDED', workbook: 'billing', execution_id: 'ex-listen-1', task_id: 'tk-1', task_name: 'charge' },
          { type: 'TASK_SUCCEEDED', workbook: 'other', execution_id: 'ex-listen-2', task_id: 'tk-2', task_name: 'charge' },
        ])
      ).status,
    ).toBe(202);
    const lines = await eventually(
      async () => {
        const got = l.stdout().split('\n').filter(Boolean);
        return got.length >= 2 && got;
      },
      20_000,
      'two deliveries printed',
    );
    const launched = lines.find((line) => line.includes('WORKFLOW_LAUNCHED'))!;
    const succeeded = lines.find((line) => line.includes('TASK_SUCCEEDED'))!;
    expect(launched).toMatch(/^\d{4}-\d\d-\d\dT\S+Z {2}WORKFLOW_LAUNCHED {2}seq 1 {2}execution ex-listen-1 {2}task - {2}attempt 1 {2}valid$/);
    expect(succeeded).toMatch(/ {2}TASK_SUCCEEDED {2}seq 2 {2}execution ex-listen-1 {2}task charge \(tk-1\) {2}attempt 1 {2}valid$/);

    // A request the relay did not sign is shown as such and refused.
    const forged = await fetch(l.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'webhook-id': 'msg_forged',
        'webhook-timestamp': String(Math.floor(Date.now() / 1000)),
        'webhook-signature': `v1,${Buffer.alloc(32).toString('base64')}`,
      },
      body: JSON.stringify({ type: 'TASK_FAILED', execution_id: 'ex-forged' }),
    });
    expect(forged.status).toBe(400);
    await eventually(async () => l.stdout().includes('ex-forged'), 5_000, 'the forged request printed');
    expect(l.stdout().split('\n').find((line) => line.includes('ex-forged'))).toMatch(/TASK_FAILED .* INVALID signature \(no v1 signature matches/);
    // Only the listened workbook's events arrived.
    expect(l.stdout()).not.toContain('ex-listen-2');

    l.child.kill('SIGINT');
    expect(await l.exited).toBe(0);
    expect(l.stderr()).toContain(`stopped on SIGINT; removed listener ${l.listenerId}`);
    expect((await api('GET', `/v1/listeners/${l.listenerId}`)).status).toBe(404);
  }, T);

  it('prints one JSON object per delivery with -f json, narrows by --event-type and --event, and stops on SIGTERM', async () => {
    const l = await startListen(['-f', 'json', '--event-type', 'TASK', '--event', 'TASK_FAILED']);
    expect((await api('GET', `/v1/listeners/${l.listenerId}`)).body).toMatchObject({ workbook: '*', event_types: ['TASK'], events: ['TASK_FAILED'] });
    await publish([
      { type: 'TASK_SUCCEEDED', workbook: 'wb', execution_id: 'ex-json', task_id: 't1', task_name: 'a' },
      { type: 'TASK_FAILED', workbook: 'wb', execution_id: 'ex-json', task_id: 't2', task_name: 'b' },
    ]);
    const line = await eventually(async () => l.stdout().split('\n').find(Boolean), 20_000, 'a JSON line');
    const delivery = JSON.parse(line);
    expect(delivery).toMatchObject({
      webhook_id: expect.any(String),
      attempt: 1,
      signature: 'valid',
      event: { type: 'TASK_FAILED', execution_id: 'ex-json', task_name: 'b', sequence: 2 },
    });
    expect(delivery.reason).toBeUndefined();
    l.child.kill('SIGTERM');
    expect(await l.exited).toBe(0);
    expect(l.stdout().trim().split('\n')).toHaveLength(1);
    expect((await api('GET', `/v1/listeners/${l.listenerId}`)).status).toBe(404);
  }, T);

  it('says clearly that a port is taken', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const { port } = holder.address() as net.AddressInfo;
    try {
      const r = await runBin(['listen', String(port)], { env: env(), cwd: workDir });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`error: port ${port} is in use on 127.0.0.1`);
      expect(r.stderr).toMatch(/hint: leave PORT out/);
    } finally {
      holder.close();
    }
    const usage = await runBin(['listen', 'eighty'], { env: env(), cwd: workDir });
    expect(usage.code).toBe(2);
  }, T);

  it('explains a relay that refuses loopback callbacks, and leaves no listener behind', async () => {
    const strictDir = path.join(workDir, 'strict');
    const strict = await spawnRelay(strictDir, { RELAY_ALLOW_LOOPBACK: 'false' });
    try {
      const r = await runBin(['listen'], { env: cleanEnv({ RELAY_URL: strict.url, RELAY_TOKEN: strict.token }), cwd: workDir });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^error: the relay refuses to call back http:\/\/127\.0\.0\.1:\d+\/: callback\.url points to 127\.0\.0\.1, a loopback address/m);
      expect(r.stderr).toMatch(/^hint: .*RELAY_ALLOW_LOOPBACK=true/m);
      const list = await fetch(`${strict.url}/v1/listeners`, { headers: { authorization: `Bearer ${strict.token}` } });
      expect(((await list.json()) as { items: unknown[] }).items).toEqual([]);
    } finally {
      await strict.stop();
    }
  }, T);
});
