import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from './helpers/relay.js';
import { boundCli, cleanEnv, fieldsOf, okJson, ROOT as root, spawnRelay, type SpawnedRelay } from './helpers/spawn-relay.js';

// Runs the built CLI (bin/ → dist/) against a real relay child process, as a user would.
const T = 60_000;

let relay: SpawnedRelay;
let workDir: string;
let dataDir: string;
let relayUrl: string;
let token: string;
const cli = boundCli(() => ({ relay: { url: relayUrl, token }, workDir }));
const json = okJson;

async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

function storedHeaders(id: string): Record<string, string> {
  const db = new Database(path.join(dataDir, 'relay.db'), { readonly: true });
  try {
    const row = db.prepare('SELECT spec FROM listeners WHERE id = ?').get(id) as { spec: string };
    return JSON.parse(row.spec).callback.headers;
  } finally {
    db.close();
  }
}

beforeAll(async () => {
  workDir = tempDir('relay-cli-');
  dataDir = path.join(workDir, 'data');
  relay = await spawnRelay(dataDir);
  relayUrl = relay.url;
  token = relay.token;
}, 30_000);

afterAll(async () => {
  await relay?.stop();
  fs.rmSync(workDir, { recursive: true, force: true });
});

describe('listener-add', () => {
  it('creates execution, task and workbook listeners with the documented defaults', async () => {
    const [execTable, taskJson, workbookJson, execJson] = await Promise.all([
      cli(['listener-add', 'execution', 'ex-1', 'http://127.0.0.1:9/hook']),
      cli(['task', 'task-1', 'http://127.0.0.1:9/hook', '-f', 'json'], { bin: 'listener-add' }),
      cli(['listener-add', 'workbook', 'billing', 'http://127.0.0.1:9/hook', '--output', 'json']),
      cli(['execution', 'ex-2', 'http://127.0.0.1:9/hook', '--output', 'json'], { bin: 'listener-add' }),
    ]);

    expect(execTable.code).toBe(0);
    const fields = fieldsOf(execTable.stdout);
    expect(fields).toMatchObject({
      workbook: '*',
      event_types: 'EXECUTION, TASK',
      target: 'execution ex-1',
      'callback.url': 'http://127.0.0.1:9/hook',
      'callback.method': 'POST',
      'callback.format': 'json',
      enabled: 'yes',
    });
    expect(fields.secret).toMatch(/^whsec_/);
    expect(execTable.stdout).toMatch(/Store the secret now/);

    expect(json(taskJson)).toMatchObject({ workbook: '*', event_types: ['TASK'], target: { kind: 'task', id: 'task-1' } });
    expect(json(taskJson).secret).toMatch(/^whsec_/);
    expect(json(workbookJson)).toMatchObject({ workbook: 'billing', event_types: ['EXECUTION', 'TASK'], target: null });
    expect(json(execJson)).toMatchObject({ workbook: '*', event_types: ['EXECUTION', 'TASK'], target: { kind: 'execution', id: 'ex-2' } });
  }, T);

  it('passes every option, repeatable and comma-separated ones included', async () => {
    const r = await cli([
      'listener-add', 'task', 't-9', 'http://127.0.0.1:9/t',
      '--workbook', 'billing', '--event-type', 'task,notification', '--event', 'TASK_FAILED', '--event', 'on-task-complete,X',
      '--method', 'put', '--header', 'X-Api-Key: k-1', '--header', 'X-Two:two', '--format', 'cloudevents',
      '--description', 'all options', '--filter', '{"data.vendor":"dell"}', '-f', 'json',
    ]);
    expect(json(r)).toMatchObject({
      workbook: 'billing',
      event_types: ['TASK', 'NOTIFICATION'],
      events: ['TASK_FAILED', 'on-task-complete', 'X'],
      target: { kind: 'task', id: 't-9' },
      filter: { 'data.vendor': 'dell' },
      callback: { method: 'PUT', format: 'cloudevents', headers: { 'X-Api-Key': '***', 'X-Two': '***' } },
      description: 'all options',
    });
    expect(storedHeaders(json(r).id)).toEqual({ 'X-Api-Key': 'k-1', 'X-Two': 'two' });
  }, T);

  it('exits 1 with the problem detail when the relay refuses the callback URL', async () => {
    const r = await cli(['listener-add', 'execution', 'ex-1', 'http://10.0.0.1/x']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^error: 400 Invalid request: callback\.url points to 10\.0\.0\.1, a private address/);
  }, T);
});

describe('listener-add --transport amqp', () => {
  it('creates an amqp listener and shows its broker URL with the password masked', async () => {
    const added = await cli(['listener-add', 'workbook', 'bus', 'amqp://relay:s3cret@127.0.0.1:5672/prod', '--transport', 'amqp', '--topic', 'notifications', '--exchange', 'nova', '--event-type', 'NOTIFICATION']);
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).not.toContain('s3cret');
    const fields = fieldsOf(added.stdout);
    expect(fields).toMatchObject({
      'callback.transport': 'amqp',
      'callback.url': 'amqp://relay:***@127.0.0.1:5672/prod',
      'callback.exchange': 'nova',
      'callback.topic': 'notifications',
      'callback.routing_key': '-',
      'callback.format': 'oslo',
    });
    const shown = await cli(['listener-show', fields.id]);
    expect(shown.stdout).toContain('callback.url:');
    expect(shown.stdout).not.toContain('s3cret');
    const list = await cli(['listener-list']);
    expect(list.stdout).toContain(`amqp amqp://relay:***@127.0.0.1:5672/prod`);
    // Its format changes both ways from the CLI, oslo included.
    for (const format of ['json', 'oslo']) {
      const updated = await cli(['listener-update', fields.id, '--format', format, '-f', 'value', '-c', 'callback.format']);
      expect(updated, format).toEqual({ code: 0, stdout: `${format}\n`, stderr: '' });
    }
  }, T);

  it('exits 2 for options of the other transport, before any request', async () => {
    const noTopic = await cli(['listener-add', 'workbook', 'bus', 'amqp://127.0.0.1/', '--transport', 'amqp']);
    expect(noTopic).toMatchObject({ code: 2 });
    expect(noTopic.stderr).toMatch(/--transport amqp needs --topic/);
    const stray = await cli(['listener-add', 'workbook', 'bus', 'http://127.0.0.1:9/hook', '--exchange', 'nova']);
    expect(stray).toMatchObject({ code: 2 });
    expect(stray.stderr).toMatch(/--exchange is for --transport amqp/);
    const method = await cli(['listener-add', 'workbook', 'bus', 'amqp://127.0.0.1/', '--transport', 'amqp', '--topic', 't', '--method', 'PUT']);
    expect(method).toMatchObject({ code: 2 });
  }, T);
});

describe('listener-list, -show, -update, -rotate-secret, -delete', () => {
  it('lists in both formats and pages with --limit, --cursor and --all', async () => {
    const ids = await Promise.all(
      ['a', 'b', 'c'].map(async (n) => json(await cli(['listener-add', 'workbook', `paging-${n}`, 'http://127.0.0.1:9/p', '-f', 'json'])).id),
    );
    const [table, full, first, all] = await Promise.all([
      cli(['listener-list', '--workbook', 'paging-a']),
      cli(['listener-list', '-f', 'json']),
      cli(['listener-list', '--limit', '1']),
      cli(['listener-list', '--all', '--limit', '1', '-f', 'json']),
    ]);
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ID\s+WORKBOOK\s+EVENT TYPES\s+TARGET\s+URL\s+FORMAT\s+ENABLED$/);
    expect(lines.slice(1)).toEqual([expect.stringMatching(new RegExp(`^${ids[0]}\\s+paging-a\\s+EXECUTION,TASK\\s+-\\s+http://127.0.0.1:9/p\\s+json\\s+yes$`))]);

    const everything = json(full);
    expect(everything.next_cursor).toBeNull();
    expect(everything.items.map((l: { id: string }) => l.id)).toEqual(expect.arrayContaining(ids));

    expect(first.code).toBe(0);
    const cursor = /more: callback-relay listener-list --limit 1 --cursor (\S+)/.exec(first.stdout)?.[1];
    expect(cursor).toBeTruthy();
    expect(first.stdout).toContain(everything.items[0].id);
    const second = json(await cli(['listener-list', '--limit', '1', '--cursor', cursor!, '-f', 'json']));
    expect(second.items.map((l: { id: string }) => l.id)).toEqual([everything.items[1].id]);
    expect(second.next_cursor).toEqual(expect.any(String));

    expect(json(all)).toEqual({ items: everything.items, next_cursor: null });
  }, T);

  it('shows, updates, rotates the secret of and deletes a listener', async () => {
    const created = json(
      await cli(['listener-add', 'execution', 'ex-life', 'http://127.0.0.1:9/l', '--header', 'X-Api-Key: k-123', '-f', 'json']),
    );
    const id: string = created.id;

    const [showTable, showJson] = await Promise.all([cli(['listener-show', id]), cli(['listener-show', id, '-f', 'json'])]);
    expect(fieldsOf(showTable.stdout)).toMatchObject({ id, target: 'execution ex-life', 'callback.headers': 'X-Api-Key: ***' });
    expect(fieldsOf(showTable.stdout).secret).toBeUndefined();
    expect(json(showJson)).toMatchObject({ id, callback: { headers: { 'X-Api-Key': '***' } } });
    expect(json(showJson).secret).toBeUndefined();

    const disabled = json(await cli(['listener-update', id, '--disable', '--header', 'X-Extra: two', '--event-type', 'TASK', '-f', 'json']));
    expect(disabled).toMatchObject({ enabled: false, event_types: ['TASK'], callback: { headers: { 'X-Api-Key': '***', 'X-Extra': '***' } } });
    expect(storedHeaders(id)).toEqual({ 'X-Api-Key': 'k-123', 'X-Extra': 'two' });

    const enabled = await cli([
      'listener-update', id, '--enable', '--header', 'X-Api-Key: ***', '--remove-header', 'X-Extra',
      '--callback-url', 'http://127.0.0.1:9/moved', '--description', 'moved',
    ]);
    expect(enabled.code).toBe(0);
    expect(fieldsOf(enabled.stdout)).toMatchObject({ enabled: 'yes', 'callback.url': 'http://127.0.0.1:9/moved', description: 'moved' });
    expect(storedHeaders(id)).toEqual({ 'X-Api-Key': 'k-123' });

    const rotated = await cli(['listener-rotate-secret', id]);
    expect(rotated.code).toBe(0);
    const secret = fieldsOf(rotated.stdout).secret;
    expect(secret).toMatch(/^whsec_/);
    expect(secret).not.toBe(created.secret);
    expect(fieldsOf(rotated.stdout).previous_secret_expires_at).toMatch(/^\d{4}-/);
    expect(rotated.stdout).toMatch(/Store the secret now/);
    const own = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
    expect(json(await cli(['listener-rotate-secret', id, '--secret', own, '-f', 'json'])).secret).toBe(own);

    const deleted = await cli(['listener-delete', id]);
    expect(deleted).toEqual({ code: 0, stdout: `deleted listener ${id}\n`, stderr: '' });

    const [again, gone] = await Promise.all([cli(['listener-delete', id, '-f', 'json']), cli(['listener-show', id])]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`error: 404 Not found: listener ${id} does not exist\n`);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/^error: 404 Not found/);

    const other = json(await cli(['listener-add', 'task', 'x', 'http://127.0.0.1:9/x', '-f', 'json']));
    expect(json(await cli(['listener-delete', other.id, '-f', 'json']))).toEqual({ id: other.id, deleted: true });
  }, T);
});

describe('connection and token', () => {
  it('reads admin.token from RELAY_DATA_DIR, or from ./data', async () => {
    const [fromDataDir, fromCwd] = await Promise.all([
      cli(['listener-list', '--url', relayUrl], { env: cleanEnv({ RELAY_DATA_DIR: dataDir }), cwd: root }),
      cli(['listener-list', '--url', relayUrl, '-f', 'json'], { env: cleanEnv(), cwd: workDir }),
    ]);
    expect(fromDataDir.code).toBe(0);
    expect(fromDataDir.stdout).toMatch(/^ID\s+WORKBOOK/);
    expect(json(fromCwd).items.length).toBeGreaterThan(0);
  }, T);

  it('exits 2 when there is no token file, saying where it looked', async () => {
    const empty = tempDir('relay-cli-empty-');
    const r = await cli(['listener-list'], { env: cleanEnv({ RELAY_URL: relayUrl, RELAY_DATA_DIR: empty }) });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(path.join(empty, 'admin.token'));
    expect(r.stderr).toContain('RELAY_TOKEN');
    fs.rmSync(empty, { recursive: true, force: true });
  }, T);

  it('exits 1 for a wrong token, naming where it came from', async () => {
    const r = await cli(['listener-list', '--token', 'not-the-token']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: 401 Unauthorized: the bearer token is not valid\nhint: the token came from the --token option/);
  }, T);

  it('exits 1 with the URL and a hint when the relay is down, after brief retries', async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    const started = Date.now();
    const r = await cli(['listener-list', '--url', url]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`cannot reach the relay at ${url} (ECONNREFUSED)`);
    expect(r.stderr).toContain('npm start');
    expect(Date.now() - started).toBeGreaterThan(1400);
  }, T);
});

describe('usage', () => {
  it('exits 2 for usage errors, before any request', async () => {
    const cases: string[][] = [
      ['listener-list', '-f', 'xml'],
      ['listener-add', 'execution', 'ex', 'http://127.0.0.1:9/x', '--method', 'TRACE'],
      ['listener-add', 'execution', 'ex', 'http://127.0.0.1:9/x', '--header', 'no colon here'],
      ['listener-add', 'execution', 'ex', 'http://127.0.0.1:9/x', '--event-type', 'BOGUS'],
      ['listener-add', 'pipeline', 'ex', 'http://127.0.0.1:9/x'],
      ['listener-add', 'execution', 'ex'],
      ['listener-add', 'workbook', 'a', 'http://127.0.0.1:9/x', '--workbook', 'b'],
      ['listener-list', '--limit', '0'],
      ['listener-list', '--bogus'],
      ['listener-update', 'some-id'],
      ['listener-update', 'some-id', '--enable', '--disable'],
      ['listener-unknown'],
      ['--url', 'ftp://example.com', 'listener-list'],
      [],
    ];
    const results = await Promise.all(cases.map((args) => cli(args)));
    results.forEach((r, i) => {
      expect({ args: cases[i], code: r.code, stdout: r.stdout }).toEqual({ args: cases[i], code: 2, stdout: '' });
      expect(r.stderr).not.toBe('');
    });
    expect(results[0].stderr).toMatch(/'xml' is invalid/);
    expect(results[1].stderr).toMatch(/TRACE/);
    expect(results[2].stderr).toMatch(/expected 'Name: value'/);
    expect(results[9].stderr).toMatch(/nothing to change/);
  }, T);

  it('prints help and the version with exit code 0', async () => {
    const [top, add, update, bin, version] = await Promise.all([
      cli(['--help']),
      cli(['listener-add', '--help']),
      cli(['help', 'listener-update']),
      cli(['--help'], { bin: 'listener-add' }),
      cli(['--version']),
    ]);
    for (const r of [top, add, update, bin, version]) expect(r.code).toBe(0);
    expect(top.stdout).toMatch(/listener-rotate-secret/);
    expect(add.stdout).toMatch(/Usage: callback-relay listener-add \[options\] <kind> <id> <url>/);
    expect(add.stdout).toMatch(/Examples:/);
    expect(add.stdout).toMatch(/-f, --output <format>/);
    expect(update.stdout).toMatch(/--callback-url <url>/);
    expect(bin.stdout).toMatch(/Usage: listener-add \[options\] <kind> <id> <url>/);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  }, T);
});

describe('retry schedule', () => {
  it('sets and changes a listener retry schedule, and refuses a malformed one', async () => {
    const created = json(await cli(['listener-add', 'workbook', 'retries', 'http://127.0.0.1:9/r', '--retry-schedule', '1000,1000', '-f', 'json']));
    expect(created.retry).toEqual({ schedule_ms: [1000, 1000] });
    const single = json(await cli(['listener-update', created.id, '--retry-schedule', 'none', '-f', 'json']));
    expect(single.retry).toEqual({ schedule_ms: [] });
    const bad = await cli(['listener-add', 'workbook', 'retries', 'http://127.0.0.1:9/r', '--retry-schedule', '5s,1m']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--retry-schedule.*milliseconds/);
  }, T);
});
