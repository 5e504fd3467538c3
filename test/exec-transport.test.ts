import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EventEnvelope } from '../src/records/event.js';
import type { TransportAttempt, TransportModule } from '../src/transports/contract.js';
import { createExecTransport } from '../src/transports/exec.js';
import { argumentText, execArguments, argumentPathProblems } from '../src/transports/exec-args.js';
import { processOutcome } from '../src/transports/exec-process.js';
import { tempDir } from './helpers/relay.js';

/*
 * The exec transport against real scripts in a real folder: what a script receives (argument
 * vector, environment, stdin, working directory), which files may run, how a run ends, and how
 * many run at once.
 */

let root: string;
let execDir: string;
let recordDir: string;
let outsideDir: string;
let exec: TransportModule;
const SOURCE_ENV = () => ({
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  RECORD_DIR: recordDir,
  SECRET_TOKEN: 'must-not-reach-scripts',
  HOME: '/root',
});

function script(name: string, body: string, mode = 0o755): string {
  const file = path.join(execDir, name);
  fs.writeFileSync(file, `#!/bin/bash\n${body}\n`, { mode });
  fs.chmodSync(file, mode);
  return file;
}

function envelope(data: Record<string, unknown>, type = 'esi_leap.lease.fulfill.end'): EventEnvelope {
  return {
    id: `evt-${randomUUID()}`,
    type,
    category: 'NOTIFICATION',
    workbook: null,
    workflow: null,
    execution_id: null,
    task_id: null,
    task_name: null,
    state: null,
    previous_state: null,
    state_info: null,
    sequence: null,
    occurred_at: '2026-11-23T10:00:00.000Z',
    source: 'esi-leap.manager:lease-host',
    priority: 'INFO',
    data_schema: { namespace: 'esi_leap', name: 'LeasePayload', version: '1.0' },
    source_format: 'oslo',
    data,
  };
}

function attempt(
  command: string,
  opts: { args?: string[]; data?: Record<string, unknown>; timeoutMs?: number; gap?: number[] | null; attemptNumber?: number } = {},
): TransportAttempt {
  const env = envelope(opts.data ?? { node_name: 'node-1' });
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return {
    deliveryId: `dlv-${randomUUID()}`,
    query: null,
    attemptNumber: opts.attemptNumber ?? 1,
    listenerId: 'listener-1',
    project: 'default',
    callback: { transport: 'exec', command, args: opts.args ?? [], format: 'json', timeout_ms: timeoutMs },
    envelope: env,
    body: JSON.stringify(env),
    contentType: 'application/json',
    headers: {},
    gap: opts.gap ?? null,
    deadline: Date.now() + timeoutMs,
  };
}

/** Alive and not a zombie waiting to be reaped. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const record = (deliveryId: string, kind: string) => fs.readFileSync(path.join(recordDir, `${deliveryId}.${kind}`), 'utf8');
const nulSeparated = (text: string) => text.split('\0').slice(0, -1);

beforeAll(() => {
  root = tempDir('exec-transport-');
  execDir = path.join(root, 'scripts');
  recordDir = path.join(root, 'records');
  outsideDir = path.join(root, 'outside');
  for (const d of [execDir, recordDir, outsideDir]) fs.mkdirSync(d);
  // Records what it was given: argv (NUL-separated), its initial environment as the kernel has
  // it (bash adds variables of its own after start), stdin and working directory.
  script(
    'record.sh',
    [
      'printf "%s\\0" "$@" > "$RECORD_DIR/$RELAY_DELIVERY_ID.args"',
      'cat /proc/$$/environ > "$RECORD_DIR/$RELAY_DELIVERY_ID.env"',
      'cat > "$RECORD_DIR/$RELAY_DELIVERY_ID.stdin"',
      'pwd -P > "$RECORD_DIR/$RELAY_DELIVERY_ID.cwd"',
      'echo "recorded $#"',
    ].join('\n'),
  );
  exec = createExecTransport({ execDir, concurrency: 4, envNames: ['RECORD_DIR', 'NOT_SET_ANYWHERE'], env: SOURCE_ENV() });
});

afterAll(async () => {
  await exec?.close();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('what a script receives', () => {
  it('gets one argument per path (missing and null empty, scalars as text, objects as JSON), the envelope on stdin, the exec dir as cwd', async () => {
    const a = attempt('record.sh', {
      args: ['data.node_name', 'data.count', 'data.flag', 'data.properties', 'data.hosts', 'data.missing', 'data.nothing', 'type', 'data.properties.vendor', 'data.nova_object.data.x'],
      data: { node_name: 'node-1', count: 42, flag: true, properties: { vendor: 'dell' }, hosts: [1, 'a'], nothing: null, 'nova_object.data': { x: 'dotted' } },
    });
    const outcome = await exec.send(a);
    expect(outcome).toMatchObject({ ok: true, responseExcerpt: 'recorded 10\n' });
    expect(nulSeparated(record(a.deliveryId, 'args'))).toEqual([
      'node-1', '42', 'true', '{"vendor":"dell"}', '[1,"a"]', '', '', 'esi_leap.lease.fulfill.end', 'dell', 'dotted',
    ]);
    expect(record(a.deliveryId, 'stdin')).toBe(a.body);
    expect(record(a.deliveryId, 'cwd').trim()).toBe(fs.realpathSync(execDir));
  });

  it('has exactly PATH, RELAY_DELIVERY_ID, RELAY_ATTEMPT, RELAY_EVENT_TYPE, RELAY_GAP when set, and the RELAY_EXEC_ENV variables that are set', async () => {
    const withGap = attempt('record.sh', { gap: [3, 4], attemptNumber: 2 });
    const withoutGap = attempt('record.sh');
    expect((await exec.send(withGap)).ok).toBe(true);
    expect((await exec.send(withoutGap)).ok).toBe(true);
    const envOf = (id: string) => Object.fromEntries(nulSeparated(record(id, 'env')).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
    expect(envOf(withGap.deliveryId)).toEqual({
      PATH: SOURCE_ENV().PATH,
      RECORD_DIR: recordDir,
      RELAY_DELIVERY_ID: withGap.deliveryId,
      RELAY_ATTEMPT: '2',
      RELAY_EVENT_TYPE: 'esi_leap.lease.fulfill.end',
      RELAY_GAP: '3,4',
    });
    expect(envOf(withoutGap.deliveryId)).toEqual({
      PATH: SOURCE_ENV().PATH,
      RECORD_DIR: recordDir,
      RELAY_DELIVERY_ID: withoutGap.deliveryId,
      RELAY_ATTEMPT: '1',
      RELAY_EVENT_TYPE: 'esi_leap.lease.fulfill.end',
    });
  });

  it('passes a hostile value as one literal argument: no shell ever sees it', async () => {
    const marker = path.join(os.tmpdir(), `pwned-${randomUUID()}`);
    const hostile = `$(touch ${marker}); rm -rf`;
    const backticks = `\`touch ${marker}\` && echo *`;
    const a = attempt('record.sh', { args: ['data.node_name', 'data.other'], data: { node_name: hostile, other: backticks } });
    expect((await exec.send(a)).ok).toBe(true);
    expect(nulSeparated(record(a.deliveryId, 'args'))).toEqual([hostile, backticks]);
    expect(fs.existsSync(marker)).toBe(false);
  });

  it('refuses a value no program argument can carry (NUL) as a failed attempt', async () => {
    const outcome = await exec.send(attempt('record.sh', { args: ['data.node_name'], data: { node_name: 'a\0b' } }));
    expect(outcome).toMatchObject({ ok: false, error: 'EXEC_BAD_ARGUMENT' });
    expect(outcome.message).toMatch(/argument 1 \(data\.node_name\).*NUL/);
  });
});

describe('which files may run', () => {
  beforeAll(() => {
    fs.writeFileSync(path.join(outsideDir, 'evil.sh'), '#!/bin/bash\ntouch "$RECORD_DIR/evil-ran"\n', { mode: 0o755 });
    fs.symlinkSync(path.join(outsideDir, 'evil.sh'), path.join(execDir, 'outside-link.sh'));
    fs.symlinkSync('/bin/sh', path.join(execDir, 'sh-link'));
    fs.symlinkSync(path.join(execDir, 'record.sh'), path.join(execDir, 'inside-link.sh'));
    fs.writeFileSync(path.join(execDir, 'plain.sh'), '#!/bin/bash\ntouch "$RECORD_DIR/plain-ran"\n', { mode: 0o644 });
    fs.chmodSync(path.join(execDir, 'plain.sh'), 0o644);
    fs.mkdirSync(path.join(execDir, 'subdir.d'));
  });

  const refusals: Array<[string, RegExp]> = [
    ['../bin/sh', /not a bare file name/],
    ['/bin/sh', /not a bare file name/],
    ['..', /not a bare file name/],
    ['outside-link.sh', /leads outside/],
    ['sh-link', /leads outside/],
    ['plain.sh', /not executable/],
    ['subdir.d', /not a regular file/],
  ];

  it('check refuses at create, naming callback.command, without showing the folder', async () => {
    for (const [command, message] of refusals) {
      const problems = await exec.check!({ transport: 'exec', command, args: [] });
      expect(problems, command).toHaveLength(1);
      expect(problems[0].field).toBe('callback.command');
      expect(problems[0].message).toMatch(message);
      expect(problems[0].message).not.toContain(root);
    }
    expect(await exec.check!({ transport: 'exec', command: 'missing.sh' })).toEqual([
      { field: 'callback.command', message: expect.stringMatching(/not in the relay's script folder/) },
    ]);
    expect(await exec.check!({ transport: 'exec', command: 'record.sh' })).toEqual([]);
    expect(await exec.check!({ transport: 'exec', command: 'inside-link.sh' })).toEqual([]);
  });

  it('every attempt checks again: refused files fail with EXEC_REFUSED or EXEC_NOT_FOUND and never run', async () => {
    for (const [command] of refusals) {
      const outcome = await exec.send(attempt(command));
      expect(outcome, command).toMatchObject({ ok: false, error: 'EXEC_REFUSED' });
    }
    expect(await exec.send(attempt('missing.sh'))).toMatchObject({ ok: false, error: 'EXEC_NOT_FOUND' });
    expect(fs.existsSync(path.join(recordDir, 'evil-ran'))).toBe(false);
    expect(fs.existsSync(path.join(recordDir, 'plain-ran'))).toBe(false);

    // A script that passed at create and was then made unexecutable.
    script('later.sh', 'touch "$RECORD_DIR/later-ran"');
    expect(await exec.check!({ transport: 'exec', command: 'later.sh' })).toEqual([]);
    fs.chmodSync(path.join(execDir, 'later.sh'), 0o644);
    expect(await exec.send(attempt('later.sh'))).toMatchObject({ ok: false, error: 'EXEC_REFUSED' });
    expect(fs.existsSync(path.join(recordDir, 'later-ran'))).toBe(false);
  });

  it('validate refuses argument paths that do not start at an envelope field', () => {
    expect(exec.validate({ transport: 'exec', command: 'record.sh', args: ['data.node_name', 'node_name', 'data..x'] })).toEqual([
      { field: 'callback.args.1', message: expect.stringMatching(/data\.node_name/) },
      { field: 'callback.args.2', message: expect.stringMatching(/empty path segment/) },
    ]);
  });
});

describe('how a run ends', () => {
  it('exit 1 is EXIT_1 with stdout and stderr as the excerpt', async () => {
    script('fail.sh', 'echo "starting"\necho "node is busy" >&2\nexit 1');
    const outcome = await exec.send(attempt('fail.sh'));
    expect(outcome).toEqual({ ok: false, error: 'EXIT_1', message: 'fail.sh exited with code 1', responseExcerpt: 'starting\nnode is busy\n' });
  });

  it('any other exit code keeps its number', async () => {
    script('exit-42.sh', 'exit 42');
    expect(await exec.send(attempt('exit-42.sh'))).toMatchObject({ ok: false, error: 'EXIT_42', responseExcerpt: null });
  });

  it('a signal is SIGNAL, and the message names it', async () => {
    script('self-term.sh', 'kill -TERM $$\nsleep 5');
    const outcome = await exec.send(attempt('self-term.sh'));
    expect(outcome).toMatchObject({ ok: false, error: 'SIGNAL' });
    expect(outcome.message).toMatch(/SIGTERM/);
  });

  it('a script that hangs is killed at its timeout with everything it started', async () => {
    const pidFile = path.join(recordDir, `grandchild-${randomUUID()}`);
    script('hang.sh', `sleep 300 &\necho $! > "${pidFile}"\necho "waiting"\nwait`);
    const started = Date.now();
    const outcome = await exec.send(attempt('hang.sh', { timeoutMs: 700 }));
    const took = Date.now() - started;
    expect(outcome).toMatchObject({ ok: false, error: 'TIMEOUT', message: 'hang.sh ran longer than 700 ms; its process group was killed', responseExcerpt: 'waiting\n' });
    expect(took).toBeGreaterThanOrEqual(650);
    expect(took).toBeLessThan(5_000);
    const grandchild = Number(fs.readFileSync(pidFile, 'utf8'));
    expect(grandchild).toBeGreaterThan(1);
    await waitFor(() => !isAlive(grandchild), 2_000, `the grandchild sleep ${grandchild} to be gone`);
  });

  it('reads output to the end but keeps only the first 4 KiB, cut at a character boundary', async () => {
    // 1 MiB through a 64 KiB pipe: a run that stopped reading would hang until its timeout.
    script('chatty.sh', 'head -c 1048576 /dev/zero | tr "\\0" "x" | sed "s/^/é/" ; printf "é%.0s" $(seq 1 3000)');
    const started = Date.now();
    const outcome = await exec.send(attempt('chatty.sh', { timeoutMs: 20_000 }));
    expect(outcome.ok).toBe(true);
    expect(Date.now() - started).toBeLessThan(10_000);
    const excerpt = outcome.responseExcerpt!;
    expect(Buffer.byteLength(excerpt)).toBeLessThanOrEqual(4096);
    expect(Buffer.byteLength(excerpt)).toBeGreaterThan(4090);
    expect(excerpt.startsWith('éxxx')).toBe(true);
    expect(excerpt).not.toContain('\ufffd');

    script('wide.sh', 'printf "é%.0s" $(seq 1 5000)');
    const wide = await exec.send(attempt('wide.sh'));
    expect(wide.responseExcerpt).toBe('é'.repeat(2048));
  });

  it('a script that leaves a child in the background ends when it exits', async () => {
    const pidFile = path.join(recordDir, `background-${randomUUID()}`);
    script('background.sh', `sleep 30 &\necho $! > "${pidFile}"\necho done`);
    const started = Date.now();
    const outcome = await exec.send(attempt('background.sh', { timeoutMs: 20_000 }));
    expect(outcome).toMatchObject({ ok: true, responseExcerpt: 'done\n' });
    expect(Date.now() - started).toBeLessThan(5_000);
    process.kill(Number(fs.readFileSync(pidFile, 'utf8')), 'SIGKILL');
  });
});

describe('processes at once', () => {
  it('runs at most RELAY_EXEC_CONCURRENCY scripts together; the others wait, and their timeout starts when they run', async () => {
    const runDir = path.join(recordDir, `runs-${randomUUID()}`);
    fs.mkdirSync(runDir);
    script('slow.sh', `start=$(date +%s%N)\nsleep 0.4\necho "$start $(date +%s%N)" > "${runDir}/$RELAY_DELIVERY_ID"`);
    const attempts = Array.from({ length: 10 }, () => attempt('slow.sh', { timeoutMs: 1_200 }));
    const outcomes = await Promise.all(attempts.map((a) => exec.send(a)));
    expect(outcomes.map((o) => o.error ?? 'ok')).toEqual(Array(10).fill('ok'));
    const spans = fs.readdirSync(runDir).map((f) => fs.readFileSync(path.join(runDir, f), 'utf8').trim().split(' ').map(BigInt));
    expect(spans).toHaveLength(10);
    let most = 0;
    for (const [start] of spans) {
      const together = spans.filter(([s, e]) => s <= start && e > start).length;
      most = Math.max(most, together);
    }
    expect(most).toBe(4);
  });
});

describe('close', () => {
  it('lets running scripts finish within the grace, then kills their groups; waiting and later attempts are TRANSPORT_CLOSED', async () => {
    const transport = createExecTransport({ execDir, concurrency: 1, envNames: [], env: SOURCE_ENV(), closeGraceMs: 300 });
    const pidFile = path.join(recordDir, `close-${randomUUID()}`);
    script('stubborn.sh', `sleep 300 &\necho $! > "${pidFile}"\nwait`);
    const runningOne = transport.send(attempt('stubborn.sh', { timeoutMs: 60_000 }));
    const waitingOne = transport.send(attempt('stubborn.sh', { timeoutMs: 60_000 }));
    await waitFor(() => fs.existsSync(pidFile) && fs.readFileSync(pidFile, 'utf8').trim() !== '', 5_000, 'the script to start');
    const grandchild = Number(fs.readFileSync(pidFile, 'utf8'));
    const started = Date.now();
    await transport.close();
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(await runningOne).toMatchObject({ ok: false, error: 'TRANSPORT_CLOSED' });
    expect(await waitingOne).toMatchObject({ ok: false, error: 'TRANSPORT_CLOSED' });
    expect(await transport.send(attempt('record.sh'))).toMatchObject({ ok: false, error: 'TRANSPORT_CLOSED' });
    await waitFor(() => !isAlive(grandchild), 2_000, 'the grandchild to be gone');
  });
});

describe('pure parts', () => {
  it('turns every kind of value into one argument', () => {
    expect([undefined, null, '', 'a b', 0, -1.5, true, false, { a: [1] }, [], 10n].map(argumentText)).toEqual([
      '', '', '', 'a b', '0', '-1.5', 'true', 'false', '{"a":[1]}', '[]', '10',
    ]);
    expect(execArguments({ data: { constructor: 'x' } }, ['data.constructor', 'data.toString', 'data.__proto__'])).toEqual(['x', '', '']);
  });

  it('accepts paths from any envelope field', () => {
    expect(argumentPathProblems(['id', 'type', 'data', 'data.a.b', 'occurred_at'])).toEqual([]);
    expect(argumentPathProblems('not a list')).toEqual([]);
  });

  it('maps endings to outcomes', () => {
    const spec = { command: 'x.sh', timeoutMs: 1000 };
    const none = Buffer.alloc(0);
    expect(processOutcome({ code: 0, signal: null, timedOut: false, aborted: false }, spec, Buffer.from('hi'))).toEqual({ ok: true, responseExcerpt: 'hi' });
    expect(processOutcome({ code: 3, signal: null, timedOut: false, aborted: false }, spec, none)).toMatchObject({ error: 'EXIT_3' });
    expect(processOutcome({ code: null, signal: 'SIGSEGV', timedOut: false, aborted: false }, spec, none)).toMatchObject({ error: 'SIGNAL', message: 'x.sh was killed by SIGSEGV' });
    expect(processOutcome({ code: null, signal: 'SIGKILL', timedOut: true, aborted: false }, spec, none)).toMatchObject({ error: 'TIMEOUT' });
    expect(processOutcome({ code: null, signal: 'SIGKILL', timedOut: false, aborted: true }, spec, none)).toMatchObject({ error: 'TRANSPORT_CLOSED' });
  });
});
