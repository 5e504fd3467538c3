import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { startTestRelay, TOKEN_B, type TestRelay } from './helpers/relay.js';
import {
  createEngineListener,
  createWorkbook,
  describeEvents,
  eventsOf,
  oneToN,
  sequences,
  startExecution,
  tasksOf,
  waitForEvents,
  waitForState,
  workbook,
} from './helpers/engine.js';

/*
 * The embedded engine against a real relay (SQLite file, port 0) and a real receiver: each
 * execution's events reach a listener in full, numbered 1..n, and agree with the records.
 */

let relay: TestRelay;
let receiver: Receiver;
const HOOK = '/hook';

beforeAll(async () => {
  receiver = await startReceiver();
  relay = await startTestRelay();
  await createEngineListener(relay.api, receiver.url(HOOK));
});

afterAll(async () => {
  await relay.close();
  await receiver.close();
  fs.rmSync(relay.dataDir, { recursive: true, force: true });
});

const api = (...args: Parameters<TestRelay['api']>) => relay.api(...args);

describe('engine: events follow the state changes', () => {
  it('runs a success path; events, execution and tasks agree', async () => {
    await createWorkbook(
      api,
      workbook('ok_path', `
a: {action: std.echo, input: {output: "<% $.name %>"}, on-success: [b]}
b: {action: std.echo, input: {output: {greeting: "hi <% task('a').result %>"}}, on-success: [c]}
c: {action: std.noop}`, ['name']),
    );
    const id = await startExecution(api, 'ok_path', { name: 'ada' });
    const events = await waitForEvents(receiver, HOOK, id, 'WORKFLOW_SUCCEEDED', 8);
    expect(describeEvents(events)).toEqual([
      'WORKFLOW_LAUNCHED',
      'TASK_LAUNCHED a',
      'TASK_SUCCEEDED a',
      'TASK_LAUNCHED b',
      'TASK_SUCCEEDED b',
      'TASK_LAUNCHED c',
      'TASK_SUCCEEDED c',
      'WORKFLOW_SUCCEEDED',
    ]);
    expect(sequences(events)).toEqual(oneToN(8));
    expect(events[0]).toMatchObject({ state: 'RUNNING', previous_state: null, data: { input: { name: 'ada' } } });
    expect(events[4]).toMatchObject({ state: 'SUCCESS', previous_state: 'RUNNING', data: { result: { greeting: 'hi ada' } } });
    expect(events.every((e) => (e as any).source === 'engine' && (e as any).workbook === 'ok_path' && (e as any).workflow === 'main')).toBe(true);

    const execution = await api('GET', `/v1/executions/${id}`);
    expect(execution.body).toMatchObject({ id, workbook: 'ok_path', workflow: 'main', state: 'SUCCESS', input: { name: 'ada' }, state_info: null });
    const tasks = await tasksOf(api, id);
    expect(tasks.map((t) => [t.name, t.state, t.result, t.tries])).toEqual([
      ['a', 'SUCCESS', 'ada', 1],
      ['b', 'SUCCESS', { greeting: 'hi ada' }, 1],
      ['c', 'SUCCESS', null, 1],
    ]);
    // Every task event names the task record it is about.
    for (const e of events.filter((e) => e.task_name)) expect(tasks.find((t) => t.name === e.task_name).id).toBe(e.task_id);
  });

  it('retries a std.http task without events per try; the task records its tries', async () => {
    receiver.respond('/flaky-api', [500, { status: 200, headers: { 'content-type': 'application/json' }, body: '{"ok":true}' }]);
    await createWorkbook(
      api,
      workbook('retrying', `
call:
  action: std.http
  input: {url: "${receiver.url('/flaky-api')}", method: POST, body: {order: 7}}
  retry: {count: 2, delay: 0.05}`),
    );
    const id = await startExecution(api, 'retrying');
    const events = await waitForEvents(receiver, HOOK, id, 'WORKFLOW_SUCCEEDED', 4);
    expect(describeEvents(events)).toEqual(['WORKFLOW_LAUNCHED', 'TASK_LAUNCHED call', 'TASK_SUCCEEDED call', 'WORKFLOW_SUCCEEDED']);
    expect(sequences(events)).toEqual(oneToN(4));
    expect(events[2].data).toEqual({ result: { status: 200, body: { ok: true } }, tries: 2 });
    const calls = receiver.requests('/flaky-api');
    expect(calls).toHaveLength(2);
    expect(JSON.parse(calls[1].text)).toEqual({ order: 7 });
    expect(calls[1].at - calls[0].at).toBeGreaterThanOrEqual(40);
    const [task] = await tasksOf(api, id);
    expect(task).toMatchObject({ name: 'call', action: 'std.http', state: 'SUCCESS', tries: 2, result: { status: 200, body: { ok: true } } });
  });

  it('runs 200 parallel tasks of one execution, each reading its input, and ends the workflow after the last of them', async () => {
    const tasks = Array.from({ length: 200 }, (_, i) =>
      i === 150
        ? `t${i}: {action: std.fail, input: {error_message: "<% $.tag %> failed"}}`
        : `t${i}: {action: std.echo, input: {output: "<% $.tag %> ${i}"}}`,
    );
    await createWorkbook(api, workbook('wide', tasks.join('\n'), ['tag', 'pad']));
    const id = await startExecution(api, 'wide', { tag: 'w', pad: 'x'.repeat(100_000) });
    const execution = await waitForState(api, id, ['SUCCESS', 'ERROR'], 30_000);
    expect(execution).toMatchObject({ state: 'ERROR', state_info: 'task t150 failed: w failed', input: { tag: 'w' } });
    const all = await tasksOf(api, id);
    expect(all).toHaveLength(200);
    expect(all.filter((t) => t.state === 'SUCCESS')).toHaveLength(199);
    expect(all.find((t) => t.name === 't7')).toMatchObject({ state: 'SUCCESS', result: 'w 7' });
    // Launched, each task launched and ended, then the workflow's end: last, after every task's.
    const events = await waitForEvents(receiver, HOOK, id, 'WORKFLOW_FAILED', 402, 30_000);
    expect(events).toHaveLength(402);
    expect(events.map((e) => e.type).slice(-1)).toEqual(['WORKFLOW_FAILED']);
    expect(sequences(events)).toEqual(oneToN(402));
  }, 60_000);

  it('follows on-error after a failure, and the workflow succeeds', async () => {
    await createWorkbook(
      api,
      workbook('error_path', `
boom: {action: std.fail, input: {error_message: "card declined"}, on-success: [never], on-error: [refund]}
never: {action: std.noop}
refund: {action: std.echo, input: {output: refunded}}`),
    );
    const id = await startExecution(api, 'error_path');
    const events = await waitForEvents(receiver, HOOK, id, 'WORKFLOW_SUCCEEDED', 6);
    expect(describeEvents(events)).toEqual([
      'WORKFLOW_LAUNCHED',
      'TASK_LAUNCHED boom',
      'TASK_FAILED boom',
      'TASK_LAUNCHED refund',
      'TASK_SUCCEEDED refund',
      'WORKFLOW_SUCCEEDED',
    ]);
    expect(sequences(events)).toEqual(oneToN(6));
    expect(events[2]).toMatchObject({ state: 'ERROR', previous_state: 'RUNNING', state_info: 'card declined' });
    const tasks = await tasksOf(api, id);
    expect(tasks.map((t) => [t.name, t.state, t.state_info])).toEqual([
      ['boom', 'ERROR', 'card declined'],
      ['refund', 'SUCCESS', null],
    ]);
  });

  it('fails the workflow on an unhandled failure; re-running the task continues without re-running what succeeded', async () => {
    receiver.respond('/down-then-up', [503, 200]);
    await createWorkbook(
      api,
      workbook('rerun', `
first: {action: std.noop, on-success: [call]}
call: {action: std.http, input: {url: "${receiver.url('/down-then-up')}"}, on-success: [last]}
last: {action: std.echo, input: {output: "<% task('call').result.status %>"}}`),
    );
    const id = await startExecution(api, 'rerun');
    const failed = await waitForEvents(receiver, HOOK, id, 'WORKFLOW_FAILED', 6);
    expect(describeEvents(failed)).toEqual([
      'WORKFLOW_LAUNCHED',
      'TASK_LAUNCHED first',
      'TASK_SUCCEEDED first',
      'TASK_LAUNCHED call',
      'TASK_FAILED call',
      'WORKFLOW_FAILED',
    ]);
    expect(failed[4].state_info).toContain('HTTP 503');
    expect(failed[5]).toMatchObject({ state: 'ERROR', previous_state: 'RUNNING' });
    expect(failed[5].state_info).toContain('task call failed');
    const execution = await waitForState(api, id, ['ERROR']);
    expect(execution.state_info).toContain('task call failed');

    const tasks = await tasksOf(api, id);
    const call = tasks.find((t) => t.name === 'call');
    const first = tasks.find((t) => t.name === 'first');
    expect((await api('PUT', `/v1/tasks/${first.id}`, { state: 'RUNNING' })).status).toBe(409);
    expect((await api('PUT', `/v1/tasks/${call.id}`, { state: 'SUCCESS' })).status).toBe(400);
    expect((await api('PUT', `/v1/tasks/${call.id}`, { state: 'RUNNING' }, { token: TOKEN_B })).status).toBe(404);
    const rerun = await api('PUT', `/v1/tasks/${call.id}`, { state: 'RUNNING' });
    expect(rerun.status, rerun.text).toBe(200);
    expect(rerun.body).toMatchObject({ id: call.id, state: 'RUNNING', tries: 0, state_info: null });

    const events = await waitForEvents(receiver, HOOK, id, 'WORKFLOW_SUCCEEDED', 14);
    // The re-run is an operation: task.rerun.start with the request, task.rerun.end once the task succeeded.
    expect(describeEvents(events).slice(6)).toEqual([
      'task.rerun.start call',
      'WORKFLOW_RERUN',
      'TASK_RERUN call',
      'TASK_SUCCEEDED call',
      'TASK_LAUNCHED last',
      'task.rerun.end call',
      'TASK_SUCCEEDED last',
      'WORKFLOW_SUCCEEDED',
    ]);
    expect(sequences(events)).toEqual(oneToN(14));
    expect(events[6]).toMatchObject({ category: 'TASK', task_id: call.id, source: 'engine' });
    expect(events[7]).toMatchObject({ state: 'RUNNING', previous_state: 'ERROR' });
    expect(events[8]).toMatchObject({ task_id: call.id, state: 'RUNNING', previous_state: 'ERROR' });
    const after = await tasksOf(api, id);
    expect(after.map((t) => [t.name, t.state, t.tries])).toEqual([
      ['first', 'SUCCESS', 1],
      ['call', 'SUCCESS', 1],
      ['last', 'SUCCESS', 1],
    ]);
    expect(after[2].result).toBe(200);
    expect(after[0].updated_at).toBe(first.updated_at);
    expect((await api('PUT', `/v1/tasks/${call.id}`, { state: 'RUNNING' })).status).toBe(409);
  });
});

describe('engine: pause, resume, cancel', () => {
  it('holds successors while PAUSED and goes on after RUNNING', async () => {
    await createWorkbook(api, workbook('pausing', `
nap: {action: std.sleep, input: {seconds: 0.3}, on-success: [after]}
after: {action: std.noop}`));
    const id = await startExecution(api, 'pausing');
    const paused = await api('PUT', `/v1/executions/${id}`, { state: 'PAUSED' });
    expect(paused.status, paused.text).toBe(200);
    expect(paused.body.state).toBe('PAUSED');
    expect((await api('PUT', `/v1/executions/${id}`, { state: 'PAUSED' })).status).toBe(409);
    await new Promise((resolve) => setTimeout(resolve, 600));
    // The sleep's end is due, but nothing moves while the execution is paused.
    expect((await tasksOf(api, id)).map((t) => [t.name, t.state])).toEqual([['nap', 'RUNNING']]);
    const resumed = await api('PUT', `/v1/executions/${id}`, { state: 'RUNNING' });
    expect(resumed.status).toBe(200);
    const events = await waitForEvents(receiver, HOOK, id, 'WORKFLOW_SUCCEEDED', 12);
    // No action was in flight (a sleep's wait is a row): each operation is complete at once.
    expect(describeEvents(events)).toEqual([
      'WORKFLOW_LAUNCHED',
      'TASK_LAUNCHED nap',
      'execution.pause.start',
      'WORKFLOW_PAUSED',
      'execution.pause.end',
      'execution.resume.start',
      'WORKFLOW_RESUMED',
      'execution.resume.end',
      'TASK_SUCCEEDED nap',
      'TASK_LAUNCHED after',
      'TASK_SUCCEEDED after',
      'WORKFLOW_SUCCEEDED',
    ]);
    expect(sequences(events)).toEqual(oneToN(12));
    expect(events[2]).toMatchObject({ category: 'EXECUTION', state: 'RUNNING' });
    expect(events[6]).toMatchObject({ state: 'RUNNING', previous_state: 'PAUSED' });
    const done = await api('PUT', `/v1/executions/${id}`, { state: 'PAUSED' });
    expect(done.status).toBe(409);
    expect(done.body.detail).toContain('finished');
  });

  it('cancels the tasks that have not started, then the execution', async () => {
    await createWorkbook(api, workbook('cancelling', `
long: {action: std.sleep, input: {seconds: 30}, on-complete: [after]}
after: {action: std.noop}`));
    const id = await startExecution(api, 'cancelling');
    await waitForEvents(receiver, HOOK, id, 'TASK_LAUNCHED', 2);
    const cancelled = await api('PUT', `/v1/executions/${id}`, { state: 'CANCELLED' });
    expect(cancelled.status, cancelled.text).toBe(200);
    expect(cancelled.body.state).toBe('CANCELLED');
    const events = await waitForEvents(receiver, HOOK, id, 'execution.cancel.end', 6);
    // start → state events → end, all in sequence order.
    expect(describeEvents(events)).toEqual([
      'WORKFLOW_LAUNCHED',
      'TASK_LAUNCHED long',
      'execution.cancel.start',
      'TASK_CANCELLED long',
      'WORKFLOW_CANCELLED',
      'execution.cancel.end',
    ]);
    expect(sequences(events)).toEqual(oneToN(6));
    expect((await tasksOf(api, id)).map((t) => [t.name, t.state, t.next_run_at])).toEqual([['long', 'CANCELLED', null]]);
    for (const state of ['RUNNING', 'PAUSED', 'CANCELLED']) {
      const res = await api('PUT', `/v1/executions/${id}`, { state });
      expect(res.status).toBe(409);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
    }
  });

  it('answers 400 for bad requests and 404 for unknown or other projects\' records', async () => {
    await createWorkbook(api, workbook('needs_input', `only: {action: std.noop}`, ['amount']));
    expect((await api('POST', '/v1/executions', { workbook: 'nope', workflow: 'main' })).status).toBe(400);
    expect((await api('POST', '/v1/executions', { workbook: 'needs_input', workflow: 'other' })).status).toBe(400);
    const missing = await api('POST', '/v1/executions', { workbook: 'needs_input', workflow: 'main', input: { extra: 1 } });
    expect(missing.status).toBe(400);
    expect(missing.body.errors).toEqual(
      expect.arrayContaining([{ field: 'input.extra', message: expect.any(String) }, { field: 'input.amount', message: 'required' }]),
    );
    const id = await startExecution(api, 'needs_input', { amount: 3 });
    expect((await api('PUT', `/v1/executions/${id}`, { state: 'SUCCESS' })).status).toBe(400);
    expect((await api('GET', `/v1/executions/${id}`, undefined, { token: TOKEN_B })).status).toBe(404);
    expect((await api('GET', `/v1/executions/${id}/tasks`, undefined, { token: TOKEN_B })).status).toBe(404);
    expect((await api('PUT', `/v1/executions/${id}`, { state: 'PAUSED' }, { token: TOKEN_B })).status).toBe(404);
    const [task] = await tasksOf(api, id);
    expect((await api('GET', `/v1/tasks/${task.id}`)).body).toMatchObject({ id: task.id, execution_id: id, action: 'std.noop' });
    expect((await api('GET', `/v1/tasks/${task.id}`, undefined, { token: TOKEN_B })).status).toBe(404);
    expect((await api('GET', '/v1/executions/01ZZZZZZZZZZZZZZZZZZZZZZZZ')).status).toBe(404);
  });

  it('lists executions with filters and pages', async () => {
    await createWorkbook(api, workbook('listed', `only: {action: std.noop}`));
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push(await startExecution(api, 'listed'));
    for (const id of ids) await waitForState(api, id, ['SUCCESS']);
    const first = await api('GET', '/v1/executions?workbook=listed&limit=2');
    expect(first.body.items.map((e: any) => e.id)).toEqual(ids.slice(0, 2));
    const second = await api('GET', `/v1/executions?workbook=listed&limit=2&cursor=${first.body.next_cursor}`);
    expect(second.body).toEqual({ items: [expect.objectContaining({ id: ids[2], state: 'SUCCESS' })], next_cursor: null });
    expect((await api('GET', '/v1/executions?workbook=listed&state=RUNNING')).body.items).toEqual([]);
    expect((await api('GET', '/v1/executions?state=DONE')).status).toBe(400);
    expect((await api('GET', '/v1/executions?cursor=bogus')).status).toBe(400);
    expect((await api('GET', '/v1/executions', undefined, { token: TOKEN_B })).body.items).toEqual([]);
  });
});

describe('engine: PUT answers the record as committed', () => {
  const pause = () => new Promise((resolve) => setTimeout(resolve, 20));

  it('execution-update answers what a following GET reads, updated_at included', async () => {
    await createWorkbook(api, workbook('truthful_execution', `nap: {action: std.sleep, input: {seconds: 30}}`));
    const id = await startExecution(api, 'truthful_execution');
    await waitForEvents(receiver, HOOK, id, 'TASK_LAUNCHED', 2);
    const created = (await api('GET', `/v1/executions/${id}`)).body;
    // Nothing else moves this execution: the sleep waits 30 s, and PAUSED holds it anyway.
    for (const state of ['PAUSED', 'RUNNING', 'CANCELLED']) {
      await pause();
      const put = await api('PUT', `/v1/executions/${id}`, { state });
      expect(put.status, put.text).toBe(200);
      const get = await api('GET', `/v1/executions/${id}`);
      expect(put.body).toEqual(get.body);
      expect(put.body.state).toBe(state);
      expect(Date.parse(put.body.updated_at)).toBeGreaterThan(Date.parse(created.updated_at));
    }
  });

  it('task-rerun answers what a following GET reads, the whole record with updated_at', async () => {
    // The failure is handled, so the execution goes on (into a long sleep) and is paused before the re-run:
    // the re-run task stays due and unclaimed, as the answer left it.
    await createWorkbook(api, workbook('truthful_rerun', `
boom: {action: std.fail, on-error: [nap]}
nap: {action: std.sleep, input: {seconds: 30}}`));
    const id = await startExecution(api, 'truthful_rerun');
    await waitForEvents(receiver, HOOK, id, 'TASK_LAUNCHED', 4);
    const boom = (await tasksOf(api, id)).find((t) => t.name === 'boom');
    expect(boom).toMatchObject({ state: 'ERROR', tries: 1 });
    expect((await api('PUT', `/v1/executions/${id}`, { state: 'PAUSED' })).status).toBe(200);
    await pause();
    const put = await api('PUT', `/v1/tasks/${boom.id}`, { state: 'RUNNING' });
    expect(put.status, put.text).toBe(200);
    const get = await api('GET', `/v1/tasks/${boom.id}`);
    expect(put.body).toEqual(get.body);
    expect(put.body).toMatchObject({ state: 'RUNNING', tries: 0, result: null });
    expect(Date.parse(put.body.updated_at)).toBeGreaterThan(Date.parse(boom.updated_at));
    expect((await api('PUT', `/v1/executions/${id}`, { state: 'CANCELLED' })).status).toBe(200);
  });
});
