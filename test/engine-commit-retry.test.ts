import fs from 'node:fs';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreUnavailableError } from '../src/store/store.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { createWorkbook, startEngineRelay, startExecution, tasksOf, waitForState, workbook, type EngineRelay } from './helpers/engine.js';
import { waitUntil } from './helpers/relay-process.js';

/*
 * An action's outcome that the database does not take at first is committed again, with
 * backoff, until it is: the task ends SUCCESS or ERROR instead of staying RUNNING while the
 * process lives, and its action is not run again. Against a real SQLite file.
 */

let receiver: Receiver;
const relays: EngineRelay[] = [];

beforeAll(async () => {
  receiver = await startReceiver();
});

afterAll(async () => {
  for (const relay of relays) {
    await relay.close();
    fs.rmSync(relay.dataDir, { recursive: true, force: true });
  }
  await receiver.close();
});

async function relay(opts: Parameters<typeof startEngineRelay>[0]): Promise<EngineRelay> {
  const started = await startEngineRelay(opts);
  relays.push(started);
  return started;
}

const logged = (r: EngineRelay, msg: string) => r.logs.filter((l) => l.msg === msg);
/** The store backoff policy's bounds for the n-th failure: base 100 ms doubling, upper half, capped at 10 s. */
const within = (failures: number, ms: number) => {
  const ceiling = Math.min(10_000, 100 * 2 ** (failures - 1));
  return ms >= ceiling / 2 && ms <= ceiling;
};

describe('engine: an outcome the database does not take at first', () => {
  it('is committed again with backoff until it is; the task succeeds and its action ran once', async () => {
    let refusals = 0;
    const r = await relay({
      hooks: {
        beforeCommitOutcome: (task) => {
          if (task.name === 'call' && refusals < 3) {
            refusals++;
            throw new StoreUnavailableError('database cannot take the write now (SQLITE_FULL)');
          }
        },
      },
    });
    receiver.respond('/charge', [{ status: 200, headers: { 'content-type': 'application/json' }, body: '{"id":"ch_1"}' }]);
    await createWorkbook(
      r.api,
      workbook('flaky_disk', `
call: {action: std.http, input: {url: "${receiver.url('/charge')}", method: POST}, on-success: [after]}
after: {action: std.echo, input: {output: "<% task('call').result.body.id %>"}}`),
    );
    const id = await startExecution(r.api, 'flaky_disk');
    const execution = await waitForState(r.api, id, ['SUCCESS', 'ERROR'], 15_000);
    expect(execution.state).toBe('SUCCESS');
    expect(refusals).toBe(3);
    const tasks = await tasksOf(r.api, id);
    expect(tasks.map((t) => [t.name, t.state, t.tries, t.result])).toEqual([
      ['call', 'SUCCESS', 1, { status: 200, body: { id: 'ch_1' } }],
      ['after', 'SUCCESS', 1, 'ch_1'],
    ]);
    expect(receiver.requests('/charge')).toHaveLength(1);
    const stored = (await r.api('GET', `/v1/events?execution_id=${id}`)).body.items;
    expect(stored.map((e: any) => `${e.type} ${e.task_name ?? ''}`.trim())).toEqual([
      'WORKFLOW_LAUNCHED',
      'TASK_LAUNCHED call',
      'TASK_SUCCEEDED call',
      'TASK_LAUNCHED after',
      'TASK_SUCCEEDED after',
      'WORKFLOW_SUCCEEDED',
    ]);
    const retries = logged(r, 'could not commit a task outcome; trying again');
    expect(retries.map((l) => l.failures)).toEqual([1, 2, 3]);
    for (const l of retries) {
      expect(within(l.failures, l.retry_in_ms), `${l.failures}: ${l.retry_in_ms} ms`).toBe(true);
      expect(l.err.message).toContain('SQLITE_FULL');
    }
  }, 20_000);

  it('waits out a write lock another connection holds on the real file; claims back off meanwhile', async () => {
    let blocker: Database.Database | undefined;
    let lockedAt = 0;
    const r = await relay({
      env: { RELAY_BUSY_TIMEOUT_MS: '0' },
      hooks: {
        beforeCommitOutcome: (task) => {
          if (task.name !== 'locked' || blocker) return;
          // Another process's writer: it holds the database's write lock for two seconds.
          blocker = new Database(r.databasePath);
          blocker.exec('BEGIN IMMEDIATE');
          lockedAt = Date.now();
          setTimeout(() => blocker!.exec('ROLLBACK'), 2000);
        },
      },
    });
    await createWorkbook(r.api, workbook('locked_out', `locked: {action: std.echo, input: {output: done}}`));
    const id = await startExecution(r.api, 'locked_out');
    const execution = await waitForState(r.api, id, ['SUCCESS', 'ERROR'], 15_000);
    expect(execution.state).toBe('SUCCESS');
    expect(Date.parse(execution.updated_at) - lockedAt).toBeGreaterThanOrEqual(1900);
    blocker!.close();
    const [task] = await tasksOf(r.api, id);
    expect(task).toMatchObject({ name: 'locked', state: 'SUCCESS', result: 'done', tries: 1 });

    const retries = logged(r, 'could not commit a task outcome; trying again');
    expect(retries.length).toBeGreaterThanOrEqual(3);
    expect(retries.every((l) => /SQLITE_BUSY/.test(l.err.message))).toBe(true);
    expect(retries.map((l) => l.failures)).toEqual(retries.map((_, i) => i + 1));
    for (const l of retries) expect(within(l.failures, l.retry_in_ms), `${l.failures}: ${l.retry_in_ms} ms`).toBe(true);
    // The runner's next look for work came while the lock was held: it backed off by the same policy.
    const claims = logged(r, 'could not claim runnable tasks');
    expect(claims.length).toBeGreaterThanOrEqual(2);
    expect(claims.slice(0, 2).map((l) => l.failures)).toEqual([1, 2]);
    for (const l of claims) expect(within(l.failures, l.retry_in_ms), `${l.failures}: ${l.retry_in_ms} ms`).toBe(true);
    // With the lock gone, the runner's next claim succeeds, and it says so once, with the failures before it.
    const resumedMsg = 'the store answers again; the engine claims tasks again';
    await waitUntil(() => logged(r, resumedMsg).length > 0, 5_000, () => `"${resumedMsg}" not logged`);
    expect(logged(r, resumedMsg).map((l) => l.failures)).toEqual([logged(r, 'could not claim runnable tasks').at(-1)!.failures]);
  }, 20_000);

  it('commits the task as failed when its outcome keeps being refused for what it holds', async () => {
    const r = await relay({
      hooks: {
        beforeCommitOutcome: (task, outcome) => {
          if (task.name === 'odd' && outcome.ok) throw new Error('SQLITE_TOOBIG: string or blob too big');
        },
      },
    });
    await createWorkbook(
      r.api,
      workbook('unstorable', `
odd: {action: std.echo, input: {output: whatever}, retry: {count: 3, delay: 0}, on-error: [cleanup]}
cleanup: {action: std.noop}`),
    );
    const id = await startExecution(r.api, 'unstorable');
    const execution = await waitForState(r.api, id, ['SUCCESS', 'ERROR'], 15_000);
    expect(execution.state).toBe('SUCCESS');
    const tasks = await tasksOf(r.api, id);
    expect(tasks.map((t) => [t.name, t.state, t.tries, t.state_info])).toEqual([
      ['odd', 'ERROR', 1, 'the outcome could not be recorded: SQLITE_TOOBIG: string or blob too big'],
      ['cleanup', 'SUCCESS', 1, null],
    ]);
    expect(logged(r, 'could not commit a task outcome; trying again').map((l) => l.failures)).toEqual([1, 2, 3]);
  }, 20_000);
});
