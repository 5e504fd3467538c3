import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';
import { killAllRelays, runToExit, waitUntil } from './helpers/relay-process.js';
import { startTestRelay, tempDir, type TestRelay } from './helpers/relay.js';

/*
 * Script actions through a real relay: listeners with `transport: exec` receive events posted
 * to /v1/events; failures are retried on the schedule and recorded as attempts; the start
 * refuses exec without RELAY_EXEC_DIR.
 */

let root: string;
let execDir: string;
let recordDir: string;
let relay: TestRelay;

function script(name: string, body: string): void {
  const file = path.join(execDir, name);
  fs.writeFileSync(file, `#!/bin/bash\n${body}\n`, { mode: 0o755 });
  fs.chmodSync(file, 0o755);
}

async function createListener(callback: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<string> {
  const res = await relay.api('POST', '/v1/listeners', { workbook: '*', event_types: ['NOTIFICATION'], callback, ...extra });
  expect(res.status, res.text).toBe(201);
  return res.body.id;
}

async function publish(type: string, data: Record<string, unknown>): Promise<string> {
  const res = await relay.api('POST', '/v1/events', { events: [{ type, data }] });
  expect(res.status, res.text).toBe(202);
  return res.body.items[0].id;
}

async function finishedDelivery(listenerId: string, timeoutMs = 15_000): Promise<any> {
  return waitUntil(
    async () => {
      const list = await relay.api('GET', `/v1/deliveries?listener_id=${listenerId}`);
      const d = list.body.items[0];
      if (!d || d.status === 'pending') return null;
      return (await relay.api('GET', `/v1/deliveries/${d.id}`)).body;
    },
    timeoutMs,
    () => `a finished delivery of listener ${listenerId}`,
  );
}

beforeAll(async () => {
  root = tempDir('exec-relay-');
  execDir = path.join(root, 'scripts');
  recordDir = path.join(root, 'records');
  fs.mkdirSync(execDir);
  fs.mkdirSync(recordDir);
  process.env.EXEC_RECORD_DIR = recordDir;
  script('record.sh', 'printf "%s\\0" "$@" > "$EXEC_RECORD_DIR/$RELAY_DELIVERY_ID.args"\necho "recorded $1"');
  script('fail.sh', 'echo "attempt $RELAY_ATTEMPT failed" >&2\nexit 1');
  script('hang.sh', 'echo "hanging"\nsleep 300');
  relay = await startTestRelay({ RELAY_TRANSPORTS: 'http,amqp,exec', RELAY_EXEC_DIR: execDir, RELAY_EXEC_ENV: 'EXEC_RECORD_DIR' });
});

afterAll(async () => {
  await relay?.close();
  await killAllRelays();
  delete process.env.EXEC_RECORD_DIR;
  fs.rmSync(root, { recursive: true, force: true });
});

describe('exec listeners in a relay', () => {
  it('run their script for each matching event, with the arguments read from the event', async () => {
    const type = `esi_leap.lease.fulfill.end`;
    const id = await createListener(
      { transport: 'exec', command: 'record.sh', args: ['data.node_name', 'data.fulfill_time'] },
      { events: [type], filter: { 'data.node_name': { $regex: '^node-e2e-' } } },
    );
    const listener = await relay.api('GET', `/v1/listeners/${id}`);
    expect(listener.body.callback).toEqual({ transport: 'exec', command: 'record.sh', args: ['data.node_name', 'data.fulfill_time'], format: 'json', timeout_ms: 60000 });

    await publish(type, { node_name: 'node-e2e-1', fulfill_time: '2026-11-23T10:00:00' });
    await publish(type, { node_name: 'node-e2e-2' });
    await publish('esi_leap.lease.delete.end', { node_name: 'node-e2e-3' });

    const delivered = await waitUntil(
      async () => {
        const list = await relay.api('GET', `/v1/deliveries?listener_id=${id}`);
        return list.body.items.length === 2 && list.body.items.every((d: any) => d.status === 'succeeded') ? list.body.items : null;
      },
      15_000,
      () => 'two succeeded deliveries',
    );
    const argsOf = (deliveryId: string) => fs.readFileSync(path.join(recordDir, `${deliveryId}.args`), 'utf8').split('\0').slice(0, -1);
    const byNode = new Map(delivered.map((d: any) => [argsOf(d.id)[0], argsOf(d.id)]));
    expect(byNode.get('node-e2e-1')).toEqual(['node-e2e-1', '2026-11-23T10:00:00']);
    expect(byNode.get('node-e2e-2')).toEqual(['node-e2e-2', '']);
    expect(byNode.size).toBe(2);
    const detail = (await relay.api('GET', `/v1/deliveries/${delivered[0].id}`)).body;
    expect(detail.attempts).toHaveLength(1);
    expect(detail.attempts[0]).toMatchObject({ number: 1, error: null, status_code: null });
    expect(detail.attempts[0].response_excerpt).toMatch(/^recorded node-e2e-/);
  });

  it('retry a script that exits 1 on the schedule, recording each attempt as EXIT_1', async () => {
    const id = await createListener({ transport: 'exec', command: 'fail.sh' }, { events: ['fail.me'], retry: { schedule_ms: [100, 100] } });
    await publish('fail.me', {});
    const delivery = await finishedDelivery(id);
    expect(delivery.status).toBe('failed');
    expect(delivery.last_error).toBe('fail.sh exited with code 1');
    expect(delivery.attempts.map((a: any) => [a.number, a.error, a.response_excerpt])).toEqual([
      [1, 'EXIT_1', 'attempt 1 failed\n'],
      [2, 'EXIT_1', 'attempt 2 failed\n'],
      [3, 'EXIT_1', 'attempt 3 failed\n'],
    ]);
  });

  it('kill a script that hangs at its timeout (TIMEOUT)', async () => {
    const id = await createListener({ transport: 'exec', command: 'hang.sh', timeout_ms: 500 }, { events: ['hang.me'], retry: { schedule_ms: [] } });
    await publish('hang.me', {});
    const delivery = await finishedDelivery(id);
    expect(delivery.status).toBe('failed');
    expect(delivery.attempts).toHaveLength(1);
    expect(delivery.attempts[0]).toMatchObject({ error: 'TIMEOUT', response_excerpt: 'hanging\n' });
    expect(delivery.attempts[0].duration_ms).toBeGreaterThanOrEqual(450);
    expect(delivery.attempts[0].duration_ms).toBeLessThan(5_000);
  });

  it('are refused at create when the script cannot run or an argument cannot be read, naming the field', async () => {
    fs.writeFileSync(path.join(execDir, 'readme.txt'), 'not a script');
    const cases: Array<[Record<string, unknown>, string, RegExp]> = [
      [{ transport: 'exec', command: 'missing.sh' }, 'callback.command', /not in the relay's script folder/],
      [{ transport: 'exec', command: 'readme.txt' }, 'callback.command', /not executable/],
      [{ transport: 'exec', command: '../scripts/record.sh' }, 'callback.command', /file name/],
      [{ transport: 'exec', command: 'record.sh', args: ['node_name'] }, 'callback.args.0', /data\.node_name/],
      [{ transport: 'exec', command: 'record.sh', timeout_ms: 3_600_001 }, 'callback.timeout_ms', /3600000/],
    ];
    for (const [callback, field, message] of cases) {
      const res = await relay.api('POST', '/v1/listeners', { workbook: '*', event_types: ['NOTIFICATION'], callback });
      expect(res.status, `${JSON.stringify(callback)}: ${res.text}`).toBe(400);
      const error = res.body.errors.find((e: { field: string }) => e.field === field);
      expect(error, res.text).toBeDefined();
      expect(error.message).toMatch(message);
      expect(res.text).not.toContain(execDir);
    }
  });
});

describe('configuration', () => {
  const base = { RELAY_DATA_DIR: '/nonexistent-relay-data' };
  const problem = (env: Record<string, string>) => {
    try {
      loadConfig({ ...base, ...env });
    } catch (err) {
      if (err instanceof ConfigError) return err.message;
      throw err;
    }
    return null;
  };

  it('leaves exec off by default and reads RELAY_EXEC_* when set', () => {
    expect(loadConfig(base).transports).toEqual(['http', 'amqp']);
    expect(loadConfig(base).exec).toBeNull();
    const dir = tempDir('exec-config-');
    const config = loadConfig({ ...base, RELAY_TRANSPORTS: 'http,exec', RELAY_EXEC_DIR: path.relative(process.cwd(), dir), RELAY_EXEC_CONCURRENCY: '16', RELAY_EXEC_ENV: 'HOME, OS_CLOUD,HOME' });
    expect(config.transports).toEqual(['http', 'exec']);
    expect(config.exec).toEqual({ dir, concurrency: 16, envNames: ['HOME', 'OS_CLOUD'] });
    expect(loadConfig({ ...base, RELAY_EXEC_DIR: dir }).exec).toMatchObject({ concurrency: 4, envNames: [] });
  });

  it('refuses bad values, naming the variable', () => {
    const file = path.join(tempDir('exec-config-'), 'file');
    fs.writeFileSync(file, '');
    const dir = path.dirname(file);
    expect(problem({ RELAY_TRANSPORTS: 'http,amqp,exec' })).toMatch(/^RELAY_EXEC_DIR: required when RELAY_TRANSPORTS includes exec/);
    expect(problem({ RELAY_EXEC_DIR: path.join(dir, 'missing') })).toMatch(/^RELAY_EXEC_DIR: .*ENOENT/);
    expect(problem({ RELAY_EXEC_DIR: file })).toMatch(/^RELAY_EXEC_DIR: .* is not a folder/);
    expect(problem({ RELAY_EXEC_DIR: dir, RELAY_EXEC_CONCURRENCY: '0' })).toMatch(/^RELAY_EXEC_CONCURRENCY:/);
    expect(problem({ RELAY_EXEC_DIR: dir, RELAY_EXEC_CONCURRENCY: '257' })).toMatch(/^RELAY_EXEC_CONCURRENCY:/);
    expect(problem({ RELAY_EXEC_ENV: 'GOOD,BAD-NAME' })).toMatch(/^RELAY_EXEC_ENV: "BAD-NAME" is not a variable name/);
    expect(problem({ RELAY_EXEC_ENV: 'RELAY_DELIVERY_ID' })).toMatch(/^RELAY_EXEC_ENV: RELAY_DELIVERY_ID is set by the relay/);
    expect(problem({ RELAY_TRANSPORTS: 'http,shell' })).toMatch(/^RELAY_TRANSPORTS: "shell" is not a built-in transport \(http, amqp, exec\)/);
    expect(problem({ RELAY_TRANSPORTS: ' , ' })).toMatch(/^RELAY_TRANSPORTS: " , " enables no transport and RELAY_TRANSPORT_MODULES loads none/);
    // An operator's module alone is a transport.
    expect(problem({ RELAY_TRANSPORTS: ',', RELAY_TRANSPORT_MODULES: file })).toBeNull();
  });

  it('stops a relay started with exec but no RELAY_EXEC_DIR: exit code 2, naming the variable', async () => {
    const dataDir = tempDir('exec-nodir-');
    const child = await runToExit({ RELAY_PORT: '0', RELAY_DATA_DIR: dataDir, RELAY_TRANSPORTS: 'http,amqp,exec', RELAY_LOG_LEVEL: 'silent' });
    expect(child.exit?.code).toBe(2);
    expect(child.stderr).toMatch(/RELAY_EXEC_DIR: required when RELAY_TRANSPORTS includes exec/);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
});
