import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { startTestRelay, tempDir, type TestRelay } from './helpers/relay.js';
import { createEngineListener, createWorkbook, describeEvents, oneToN, sequences, startExecution, waitForEvents, workbook } from './helpers/engine.js';

/*
 * Operation notifications (Watcher-style triads) from the engine: `start` commits with the
 * accepted request, before its state events; `end` when the operation is complete, which for a
 * cancel or pause with an action in flight is when that action's outcome commits; `error`
 * when a restart interrupts the wait.
 */

/** A server whose answers wait until the test releases them: an action kept in flight. */
async function slowServer() {
  let release!: () => void;
  let gate = new Promise<void>((r) => (release = r));
  let arrived!: () => void;
  const started = new Promise<void>((r) => (arrived = r));
  const server = http.createServer((req, res) => {
    arrived();
    void gate.then(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/work`,
    started,
    release: () => release(),
    reset() {
      gate = new Promise<void>((r) => (release = r));
    },
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

let receiver: Receiver;
const HOOK = '/ops';
/** The events of an execution whose first task, `call`, has its action in flight. */
const LAUNCHED = ['WORKFLOW_LAUNCHED', 'TASK_LAUNCHED call'];

beforeAll(async () => {
  receiver = await startReceiver();
});
afterAll(async () => {
  await receiver.close();
});

describe('operation notifications', () => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startTestRelay({ RELAY_SHUTDOWN_GRACE_MS: '300' });
    await createEngineListener(relay.api, receiver.url(HOOK));
  });
  afterAll(async () => {
    await relay.close();
  });

  /** An execution whose first task's action (std.http to a slow server) is in flight; `next` follows it. */
  async function slowCall(name: string) {
    const slow = await slowServer();
    await createWorkbook(relay.api, workbook(name, `
call: {action: std.http, input: {url: "${slow.url}"}, on-success: [next]}
next: {action: std.noop}`));
    const id = await startExecution(relay.api, name);
    await slow.started;
    return { slow, id };
  }

  it('ends a cancel when the action in flight has ended, after the state events', async () => {
    const { slow, id } = await slowCall('cancel_in_flight');
    try {
      const cancelled = await relay.api('PUT', `/v1/executions/${id}`, { state: 'CANCELLED' });
      expect(cancelled.status, cancelled.text).toBe(200);
      await waitForEvents(receiver, HOOK, id, 'WORKFLOW_CANCELLED');
      // The action is still in flight: the cancel is not complete yet.
      await new Promise((r) => setTimeout(r, 300));
      expect(describeEvents(await waitForEvents(receiver, HOOK, id, 'WORKFLOW_CANCELLED'))).not.toContain('execution.cancel.end');
      slow.release();
      const events = await waitForEvents(receiver, HOOK, id, 'execution.cancel.end');
      expect(describeEvents(events)).toEqual([
        ...LAUNCHED,
        'execution.cancel.start',
        'WORKFLOW_CANCELLED',
        'TASK_SUCCEEDED call',
        'execution.cancel.end',
      ]);
      expect(sequences(events)).toEqual(oneToN(6));
      expect(events[2]).toMatchObject({ state: 'RUNNING', data: {} });
      expect(events[5]).toMatchObject({ state: 'CANCELLED' });
    } finally {
      await slow.close();
    }
  });

  it('reports a re-run that fails again as task.rerun.error with the fault', async () => {
    await createWorkbook(relay.api, workbook('rerun_fails', `
boom: {action: std.fail, input: {error_message: "still broken"}}`));
    const id = await startExecution(relay.api, 'rerun_fails');
    const failed = await waitForEvents(receiver, HOOK, id, 'WORKFLOW_FAILED');
    const task = failed.find((e) => e.type === 'TASK_FAILED')!;
    expect((await relay.api('PUT', `/v1/tasks/${task.task_id}`, { state: 'RUNNING' })).status).toBe(200);
    const events = await waitForEvents(receiver, HOOK, id, 'task.rerun.error');
    // The operation ends after everything its outcome caused in the same commit.
    expect(describeEvents(events).slice(4)).toEqual([
      'task.rerun.start boom',
      'WORKFLOW_RERUN',
      'TASK_RERUN boom',
      'TASK_FAILED boom',
      'WORKFLOW_FAILED',
      'task.rerun.error boom',
    ]);
    expect(events.at(-1)).toMatchObject({ data: { fault: { exception: 'TaskFailed', exception_message: 'still broken' } } });
    expect(sequences(events)).toEqual(oneToN(events.length));
  });

  it('ends a pause still waiting for its action in flight in an error when a resume overtakes it', async () => {
    const { slow, id } = await slowCall('pause_overtaken');
    try {
      expect((await relay.api('PUT', `/v1/executions/${id}`, { state: 'PAUSED' })).status).toBe(200);
      expect((await relay.api('PUT', `/v1/executions/${id}`, { state: 'RUNNING' })).status).toBe(200);
      slow.release();
      const events = await waitForEvents(receiver, HOOK, id, 'WORKFLOW_SUCCEEDED');
      expect(describeEvents(events)).toEqual([
        ...LAUNCHED,
        'execution.pause.start',
        'WORKFLOW_PAUSED',
        'execution.pause.error',
        'execution.resume.start',
        'WORKFLOW_RESUMED',
        'execution.resume.end',
        'TASK_SUCCEEDED call',
        'TASK_LAUNCHED next',
        'TASK_SUCCEEDED next',
        'WORKFLOW_SUCCEEDED',
      ]);
      expect(events[4]).toMatchObject({ data: { fault: { exception: 'Superseded', exception_message: 'the execution was resumed before the pause was complete' } } });
      expect(sequences(events)).toEqual(oneToN(events.length));
    } finally {
      await slow.close();
    }
  });

  it('ends a re-run in task.rerun.error when a cancel stops the task while it waits', async () => {
    await createWorkbook(relay.api, workbook('rerun_cancelled', `
flaky: {action: std.fail, input: {error_message: "down"}, retry: {count: 1, delay: 5}}`));
    const id = await startExecution(relay.api, 'rerun_cancelled');
    const failed = await waitForEvents(receiver, HOOK, id, 'WORKFLOW_FAILED', undefined, 20_000);
    const task = failed.find((e) => e.type === 'TASK_FAILED')!;
    expect((await relay.api('PUT', `/v1/tasks/${task.task_id}`, { state: 'RUNNING' })).status).toBe(200);
    // The re-run's first try fails at once and waits 5 s for its retry: the cancel finds it waiting.
    await vi.waitFor(
      async () => {
        const t = (await relay.api('GET', `/v1/tasks/${task.task_id}`)).body;
        if (!(t.state === 'RUNNING' && t.tries === 1 && t.next_run_at !== null)) throw new Error(`not waiting for its retry yet: ${JSON.stringify(t)}`);
      },
      { timeout: 5000, interval: 20 },
    );
    expect((await relay.api('PUT', `/v1/executions/${id}`, { state: 'CANCELLED' })).status).toBe(200);
    const events = await waitForEvents(receiver, HOOK, id, 'execution.cancel.end');
    expect(describeEvents(events).slice(4)).toEqual([
      'task.rerun.start flaky',
      'WORKFLOW_RERUN',
      'TASK_RERUN flaky',
      'execution.cancel.start',
      'TASK_CANCELLED flaky',
      'task.rerun.error flaky',
      'WORKFLOW_CANCELLED',
      'execution.cancel.end',
    ]);
    expect(events.find((e) => e.type === 'task.rerun.error')).toMatchObject({ data: { fault: { exception: 'TaskCancelled' } } });
    expect(sequences(events)).toEqual(oneToN(events.length));
  }, 30_000);

  it('emits nothing for a refused request', async () => {
    await createWorkbook(relay.api, workbook('refused_op', `only: {action: std.noop}`));
    const id = await startExecution(relay.api, 'refused_op');
    await waitForEvents(receiver, HOOK, id, 'WORKFLOW_SUCCEEDED');
    expect((await relay.api('PUT', `/v1/executions/${id}`, { state: 'CANCELLED' })).status).toBe(409);
    await new Promise((r) => setTimeout(r, 300));
    expect(describeEvents(await waitForEvents(receiver, HOOK, id, 'WORKFLOW_SUCCEEDED')).filter((t) => t.startsWith('execution.'))).toEqual([]);
  });
});

describe('an operation interrupted by a restart', () => {
  it('ends in execution.pause.error, then recovery completes the state change', async () => {
    const slow = await slowServer();
    const dataDir = tempDir();
    const first = await startTestRelay({ RELAY_SHUTDOWN_GRACE_MS: '100' }, dataDir);
    let second: TestRelay | undefined;
    try {
      await createEngineListener(first.api, receiver.url('/restart'));
      await createWorkbook(first.api, workbook('pause_restart', `
call: {action: std.http, input: {url: "${slow.url}"}}`));
      const id = await startExecution(first.api, 'pause_restart');
      await slow.started;
      expect((await first.api('PUT', `/v1/executions/${id}`, { state: 'PAUSED' })).status).toBe(200);
      await waitForEvents(receiver, '/restart', id, 'WORKFLOW_PAUSED');
      await first.close(); // the action's outcome is never committed
      second = await startTestRelay({}, dataDir);
      // The interrupted task fails and, with no on-error path, the workflow with it.
      const events = await waitForEvents(receiver, '/restart', id, 'WORKFLOW_FAILED');
      expect(describeEvents(events)).toEqual([
        ...LAUNCHED,
        'execution.pause.start',
        'WORKFLOW_PAUSED',
        'execution.pause.error',
        'TASK_FAILED call',
        'WORKFLOW_FAILED',
      ]);
      expect(events[4]).toMatchObject({ data: { fault: { exception: 'Interrupted', exception_message: 'interrupted by restart' } } });
      expect(sequences(events)).toEqual(oneToN(7));
      expect((await second.api('GET', `/v1/executions/${id}`)).body.state).toBe('ERROR');
    } finally {
      slow.release();
      await second?.close();
      await first.close();
      await slow.close();
    }
  });
});
