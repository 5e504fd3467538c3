import fs from 'node:fs';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import type { RunnerHooks } from '../src/engine/runner.js';
import { startRelay, type Relay } from '../src/relay.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { request, startTestRelay, tempDir, TOKEN_A } from './helpers/relay.js';
import {
  createEngineListener,
  createWorkbook,
  describeEvents,
  oneToN,
  sequences,
  startExecution,
  tasksOf,
  waitForEvents,
  waitForState,
  workbook,
  type Api,
} from './helpers/engine.js';

/*
 * Engine state across a restart of an in-process relay (close, then a new relay on the same
 * data folder): waits are rows, and an outcome that never committed emits nothing and is
 * recorded as interrupted when the relay comes back.
 */

let receiver: Receiver;
const dirs: string[] = [];
const HOOK = '/hook';

beforeAll(async () => {
  receiver = await startReceiver();
});

afterAll(async () => {
  await receiver.close();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** A relay like startTestRelay's, with engine hooks. */
async function relayWithHooks(dataDir: string, hooks: RunnerHooks): Promise<Relay & { api: Api }> {
  const config = loadConfig({
    RELAY_PORT: '0',
    RELAY_DATA_DIR: dataDir,
    RELAY_TOKENS: `${TOKEN_A}=project-a`,
    RELAY_LOG_LEVEL: 'silent',
    RELAY_SHUTDOWN_GRACE_MS: '0',
  });
  const relay = await startRelay(config, pino({ level: 'silent' }), { engineHooks: hooks });
  return { ...relay, api: (method, pathname, body, opts) => request(relay.url, method, pathname, body, opts) };
}

describe('engine across restarts', () => {
  it('keeps a std.sleep wait as a row: the execution finishes after a restart, on time', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const first = await startTestRelay({}, dir);
    await createEngineListener(first.api, receiver.url(HOOK));
    await createWorkbook(first.api, workbook('sleepy', `
nap: {action: std.sleep, input: {seconds: 1.2}, on-success: [after]}
after: {action: std.noop}`));
    const started = Date.now();
    const id = await startExecution(first.api, 'sleepy');
    // Wait until the wait is on disk (the task has a next_run_at in the future), then stop.
    for (;;) {
      const [nap] = await tasksOf(first.api, id);
      if (nap?.next_run_at && Date.parse(nap.next_run_at) > Date.now()) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await first.close();

    const second = await startTestRelay({}, dir);
    try {
      const execution = await waitForState(second.api, id, ['SUCCESS']);
      expect(Date.parse(execution.updated_at) - started).toBeGreaterThanOrEqual(1200);
      const events = await waitForEvents(receiver, HOOK, id, 'WORKFLOW_SUCCEEDED', 6);
      expect(describeEvents(events)).toEqual([
        'WORKFLOW_LAUNCHED',
        'TASK_LAUNCHED nap',
        'TASK_SUCCEEDED nap',
        'TASK_LAUNCHED after',
        'TASK_SUCCEEDED after',
        'WORKFLOW_SUCCEEDED',
      ]);
      expect(sequences(events)).toEqual(oneToN(6));
      expect((await tasksOf(second.api, id)).map((t) => [t.name, t.state, t.tries])).toEqual([
        ['nap', 'SUCCESS', 1],
        ['after', 'SUCCESS', 1],
      ]);
    } finally {
      await second.close();
    }
  });

  it('emits nothing for an outcome that did not commit before the stop; on restart the task is interrupted and on-error runs', async () => {
    const dir = tempDir();
    dirs.push(dir);
    receiver.respond('/side-effect', [200]);
    let injected = 0;
    const first = await relayWithHooks(dir, {
      beforeCommitOutcome: (task) => {
        if (task.name === 'doomed') {
          injected++;
          throw new Error('injected: crash between the result and its commit');
        }
      },
    });
    await createEngineListener(first.api, receiver.url(HOOK));
    await createWorkbook(first.api, workbook('injected', `
doomed: {action: std.http, input: {url: "${receiver.url('/side-effect')}"}, retry: {count: 3, delay: 0}, on-success: [next], on-error: [cleanup]}
next: {action: std.noop}
cleanup: {action: std.noop}`));
    const id = await startExecution(first.api, 'injected');
    await receiver.waitForCount('/side-effect', 1);
    await waitForEvents(receiver, HOOK, id, 'TASK_LAUNCHED', 2);
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Each try to commit the outcome fails (until the stop below): the action itself ran once.
    expect(injected).toBeGreaterThanOrEqual(2);
    // The action ran, its outcome did not commit: no event left the relay, none is stored.
    expect(describeEvents(await waitForEvents(receiver, HOOK, id, 'TASK_LAUNCHED'))).toEqual(['WORKFLOW_LAUNCHED', 'TASK_LAUNCHED doomed']);
    const stored = await first.api('GET', `/v1/events?execution_id=${id}`);
    expect(stored.body.items.map((e: any) => e.type)).toEqual(['WORKFLOW_LAUNCHED', 'TASK_LAUNCHED']);
    const [doomed] = await tasksOf(first.api, id);
    expect(doomed).toMatchObject({ state: 'RUNNING', tries: 1, next_run_at: null });
    await first.close();

    const second = await startTestRelay({}, dir);
    try {
      const execution = await waitForState(second.api, id, ['SUCCESS', 'ERROR']);
      expect(execution.state).toBe('SUCCESS');
      const events = await waitForEvents(receiver, HOOK, id, 'WORKFLOW_SUCCEEDED', 6);
      expect(describeEvents(events)).toEqual([
        'WORKFLOW_LAUNCHED',
        'TASK_LAUNCHED doomed',
        'TASK_FAILED doomed',
        'TASK_LAUNCHED cleanup',
        'TASK_SUCCEEDED cleanup',
        'WORKFLOW_SUCCEEDED',
      ]);
      expect(sequences(events)).toEqual(oneToN(6));
      expect(events[2]).toMatchObject({ state: 'ERROR', previous_state: 'RUNNING', state_info: 'interrupted by restart' });
      const tasks = await tasksOf(second.api, id);
      expect(tasks.map((t) => [t.name, t.state, t.state_info])).toEqual([
        ['doomed', 'ERROR', 'interrupted by restart'],
        ['cleanup', 'SUCCESS', null],
      ]);
      // Side effects are never silently repeated: the retry policy does not apply to an interruption.
      expect(receiver.requests('/side-effect')).toHaveLength(1);
    } finally {
      await second.close();
    }
  });

  it('fails the workflow when an interrupted task has no on-error path', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const first = await relayWithHooks(dir, {
      beforeCommitOutcome: () => {
        throw new Error('injected');
      },
    });
    await createWorkbook(first.api, workbook('unhandled', `only: {action: std.echo, input: {output: 1}}`));
    const id = await startExecution(first.api, 'unhandled');
    for (;;) {
      const [only] = await tasksOf(first.api, id);
      if (only?.tries === 1) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await first.close();
    const second = await startTestRelay({}, dir);
    try {
      const execution = await waitForState(second.api, id, ['ERROR']);
      expect(execution.state_info).toBe('task only failed: interrupted by restart');
      const stored = await second.api('GET', `/v1/events?execution_id=${id}`);
      expect(stored.body.items.map((e: any) => [e.type, e.sequence])).toEqual([
        ['WORKFLOW_LAUNCHED', 1],
        ['TASK_LAUNCHED', 2],
        ['TASK_FAILED', 3],
        ['WORKFLOW_FAILED', 4],
      ]);
    } finally {
      await second.close();
    }
  });
});
