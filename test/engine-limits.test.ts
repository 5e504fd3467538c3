import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';
import { evaluate } from '../src/engine/expressions.js';
import { boundedOutcome, ResultTooLargeError, taskRunLimitMessage, tooLargeMessage } from '../src/engine/limits.js';
import { describeBytes, jsonBytes, jsonBytesWithin } from '../src/json-size.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { startTestRelay, type TestRelay } from './helpers/relay.js';
import { createEngineListener, createWorkbook, eventsOf, startExecution, tasksOf, waitForEvents, waitForState, workbook } from './helpers/engine.js';

/*
 * The engine's bounds: bytes of JSON per result, task input and execution input
 * (RELAY_MAX_RESULT_BYTES), and task runs per execution (RELAY_MAX_TASKS_PER_EXECUTION), first
 * as pure functions, then against a real relay with small limits.
 */

const MiB = 1024 * 1024;

describe('sizes and their messages', () => {
  it.each<[number, string]>([
    [0, '0 bytes'],
    [900, '900 bytes'],
    [1023, '1023 bytes'],
    [1024, '1 KiB'],
    [2048, '2 KiB'],
    [1536, '1.5 KiB'],
    [MiB, '1 MiB'],
    [Math.round(1.3 * MiB), '1.3 MiB'],
    [64 * MiB, '64 MiB'],
  ])('%i bytes read %s', (bytes, text) => {
    expect(describeBytes(bytes)).toBe(text);
  });

  it('says what is too large, by how much, and which variable limits it', () => {
    expect(tooLargeMessage('result', Math.round(1.3 * MiB), MiB)).toBe('result is 1.3 MiB, larger than RELAY_MAX_RESULT_BYTES (1 MiB)');
    expect(tooLargeMessage('input', null, MiB)).toBe('input is larger than RELAY_MAX_RESULT_BYTES (1 MiB)');
    // Sizes that would round to the limit's own reading are given exactly.
    expect(tooLargeMessage('result', MiB + 1, MiB)).toBe('result is 1048577 bytes, larger than RELAY_MAX_RESULT_BYTES (1048576 bytes)');
  });

  it('turns a result over the limit into a failure that is not retried, and leaves the rest alone', () => {
    const big = { ok: true as const, result: 'x'.repeat(2000) };
    expect(boundedOutcome(big, 2048)).toBe(big);
    expect(boundedOutcome(big, 1024)).toEqual({ ok: false, error: 'result is 2 KiB, larger than RELAY_MAX_RESULT_BYTES (1 KiB)', retryable: false });
    const failed = { ok: false as const, error: 'x'.repeat(5000), retryable: true };
    expect(boundedOutcome(failed, 1024)).toBe(failed);
  });

  it('measures JSON exactly, counting a value reached twice each time, and stops past the limit', () => {
    for (const value of [null, 0, -1.5e300, true, 'plain', 'ünïcødé \u2028 "quoted" \n', [], {}, [1, [2, [3]]], { a: { 'ké y': [null, 'v'] }, b: '' }]) {
      expect(jsonBytesWithin(value, 10_000)).toBe(jsonBytes(value));
    }
    const shared = { text: 'y'.repeat(1000) };
    const repeated = Array(50).fill(shared);
    expect(jsonBytesWithin(repeated, 100_000)).toBe(Buffer.byteLength(JSON.stringify(repeated)));
    expect(jsonBytesWithin(repeated, 10_000)).toBeNull();
  });

  it('names the tasks that would pass the task run limit', () => {
    expect(taskRunLimitMessage(['pong'], 21, 20)).toBe('starting task pong would make 21 task runs, more than RELAY_MAX_TASKS_PER_EXECUTION (20)');
    expect(taskRunLimitMessage(['a', 'b'], 1001, 1000)).toBe('starting tasks a, b would make 1001 task runs, more than RELAY_MAX_TASKS_PER_EXECUTION (1000)');
  });
});

describe('evaluate within a byte limit', () => {
  const big = 'x'.repeat(100_000);
  const ctx = { input: { big, small: 'ok' }, taskResult: () => ({ rows: [big, big] }) };
  const limit = { maxBytes: MiB, what: 'input' };

  it('gives the same value as without a limit when it fits', () => {
    const spec = { url: 'http://h/<% $.small %>', body: { copy: '<% $.big %>', rows: "<% task('t').result.rows %>", n: 3 } };
    expect(evaluate(spec, ctx, limit)).toEqual(evaluate(spec, ctx));
  });

  it('refuses a template that would repeat a value past the limit, before building it', () => {
    // Written out this would be 10 000 × 100 kB = 1 GB.
    const spec = { output: Array(10_000).fill('<% $.big %>').join('') };
    const started = performance.now();
    expect(() => evaluate(spec, ctx, limit)).toThrow(ResultTooLargeError);
    expect(() => evaluate(spec, ctx, limit)).toThrow('input is larger than RELAY_MAX_RESULT_BYTES (1 MiB)');
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('refuses values of any type that add up past the limit', () => {
    const spec = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, "<% task('t').result %>"]));
    expect(() => evaluate(spec, ctx, limit)).toThrow(ResultTooLargeError);
    expect(() => evaluate(Array(20).fill('<% $.big %>'), ctx, limit)).toThrow(ResultTooLargeError);
    expect(() => evaluate(Array(9).fill('<% $.big %>'), ctx, limit)).not.toThrow();
  });
});

describe('configuration', () => {
  it('defaults to 1 MiB and 1000 task runs, and refuses bad values naming the variable', () => {
    const config = loadConfig({});
    expect(config.maxResultBytes).toBe(1048576);
    expect(config.maxTasksPerExecution).toBe(1000);
    expect(loadConfig({ RELAY_MAX_RESULT_BYTES: '4096', RELAY_MAX_TASKS_PER_EXECUTION: '7' })).toMatchObject({
      maxResultBytes: 4096,
      maxTasksPerExecution: 7,
    });
    for (const [name, value] of [
      ['RELAY_MAX_RESULT_BYTES', '10'],
      ['RELAY_MAX_RESULT_BYTES', '1mb'],
      ['RELAY_MAX_TASKS_PER_EXECUTION', '0'],
      ['RELAY_MAX_TASKS_PER_EXECUTION', '-5'],
    ]) {
      expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
      expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`^${name}: `));
    }
  });
});

describe('engine bounds against a real relay', () => {
  let relay: TestRelay;
  let receiver: Receiver;
  const HOOK = '/hook';
  const api = (...args: Parameters<TestRelay['api']>) => relay.api(...args);

  beforeAll(async () => {
    receiver = await startReceiver();
    relay = await startTestRelay({ RELAY_MAX_RESULT_BYTES: '2048', RELAY_MAX_TASKS_PER_EXECUTION: '20' });
    await createEngineListener(relay.api, receiver.url(HOOK));
  });

  afterAll(async () => {
    await relay.close();
    await receiver.close();
    fs.rmSync(relay.dataDir, { recursive: true, force: true });
  });

  it('refuses an execution input larger than RELAY_MAX_RESULT_BYTES with a 400 naming input', async () => {
    await createWorkbook(api, workbook('sized_input', `only: {action: std.echo, input: {output: "<% $.blob %>"}}`, ['blob']));
    // {"blob":"…"} is 11 bytes around the text.
    const fits = await api('POST', '/v1/executions', { workbook: 'sized_input', workflow: 'main', input: { blob: 'x'.repeat(2048 - 11) } });
    expect(fits.status, fits.text).toBe(201);
    const refused = await api('POST', '/v1/executions', { workbook: 'sized_input', workflow: 'main', input: { blob: 'x'.repeat(3000) } });
    expect(refused.status, refused.text).toBe(400);
    expect(refused.headers.get('content-type')).toContain('application/problem+json');
    expect(refused.body.errors).toEqual([
      { field: 'input', message: 'the execution input is 2.9 KiB, larger than RELAY_MAX_RESULT_BYTES (2 KiB)' },
    ]);
    expect((await api('GET', '/v1/executions?workbook=sized_input')).body.items).toHaveLength(1);
  });

  it('counts an input default toward the limit', async () => {
    await createWorkbook(api, workbook('sized_default', `only: {action: std.noop}`, [`{filler: "${'f'.repeat(2100)}"}`]));
    const refused = await api('POST', '/v1/executions', { workbook: 'sized_default', workflow: 'main' });
    expect(refused.status).toBe(400);
    expect(refused.body.errors[0].field).toBe('input');
  });

  it('fails a task whose evaluated input would pass the limit', async () => {
    await createWorkbook(
      api,
      workbook('growing', `
grow: {action: std.echo, input: {output: "<% $.s %><% $.s %><% $.s %>"}, retry: {count: 2, delay: 0}}`, ['s']),
    );
    const id = await startExecution(api, 'growing', { s: 'y'.repeat(1000) });
    const execution = await waitForState(api, id, ['SUCCESS', 'ERROR']);
    expect(execution.state).toBe('ERROR');
    expect(execution.state_info).toBe('task grow failed: input is larger than RELAY_MAX_RESULT_BYTES (2 KiB)');
    const [grow] = await tasksOf(api, id);
    expect(grow).toMatchObject({ state: 'ERROR', tries: 1, result: null, state_info: 'input is larger than RELAY_MAX_RESULT_BYTES (2 KiB)' });
  });

  it('fails a task whose result is larger than the limit, without retrying it, and follows on-error', async () => {
    // 2040 bytes of JSON text: read in full, but {"status":200,"body":…} is 2062 bytes.
    const body = JSON.stringify('z'.repeat(2038));
    receiver.respond('/just-too-big', [{ status: 200, headers: { 'content-type': 'application/json' }, body }]);
    receiver.respond('/far-too-big', [{ status: 200, body: 'w'.repeat(50_000) }]);
    await createWorkbook(
      api,
      workbook('big_results', `
near: {action: std.http, input: {url: "${receiver.url('/just-too-big')}"}, retry: {count: 2, delay: 0}, on-error: [far]}
far: {action: std.http, input: {url: "${receiver.url('/far-too-big')}"}, retry: {count: 2, delay: 0}, on-error: [after]}
after: {action: std.noop}`),
    );
    const id = await startExecution(api, 'big_results');
    const events = await waitForEvents(receiver, HOOK, id, 'WORKFLOW_SUCCEEDED');
    const tasks = await tasksOf(api, id);
    expect(tasks.map((t) => [t.name, t.state, t.tries, t.result, t.state_info])).toEqual([
      ['near', 'ERROR', 1, null, 'result is 2062 bytes, larger than RELAY_MAX_RESULT_BYTES (2048 bytes)'],
      ['far', 'ERROR', 1, null, `the response body is larger than RELAY_MAX_RESULT_BYTES (2 KiB): GET ${receiver.url('/far-too-big')}`],
      ['after', 'SUCCESS', 1, null, null],
    ]);
    expect(receiver.requests('/just-too-big')).toHaveLength(1);
    expect(receiver.requests('/far-too-big')).toHaveLength(1);
    const failed = events.filter((e) => e.type === 'TASK_FAILED');
    // The reason travels as data.fault too (DESIGN.md, "Event envelope additions").
    expect(failed.map((e) => e.data)).toEqual(
      tasks.slice(0, 2).map((t) => ({ tries: 1, fault: { exception: 'TaskFailed', exception_message: t.state_info } })),
    );
  });

  it('fails a task whose evaluated sleep or timeout is longer than the engine keeps time for, and goes on', async () => {
    await createWorkbook(
      api,
      workbook('endless', `
nap: {action: std.sleep, input: {seconds: "<% $.s %>"}, on-error: [call]}
call: {action: std.http, input: {url: "${receiver.url('/never')}", timeout: "<% $.t %>"}, on-error: [after]}
after: {action: std.noop}`, ['s', 't']),
    );
    const id = await startExecution(api, 'endless', { s: 1e17, t: 1e12 });
    const execution = await waitForState(api, id, ['SUCCESS', 'ERROR']);
    expect(execution.state).toBe('SUCCESS');
    const tasks = await tasksOf(api, id);
    expect(tasks.map((t) => [t.name, t.state, t.state_info])).toEqual([
      ['nap', 'ERROR', 'input.seconds must be a number of seconds ≥ 0 and at most 31536000'],
      ['call', 'ERROR', 'input.timeout must be a number of seconds > 0 and at most 86400'],
      ['after', 'SUCCESS', null],
    ]);
    expect(receiver.requests('/never')).toHaveLength(0);
  });

  it('ends a loop of transitions at RELAY_MAX_TASKS_PER_EXECUTION', async () => {
    // A loop with no way out at all is refused when the workbook is stored; this one leaves
    // through a side branch (tick) on every turn, so it is accepted and would run forever.
    await createWorkbook(
      api,
      workbook('ping_pong', `
begin: {action: std.noop, on-success: [ping]}
ping: {action: std.noop, on-success: [pong]}
pong: {action: std.noop, on-success: [ping, tick]}
tick: {action: std.noop}`),
    );
    const id = await startExecution(api, 'ping_pong');
    const execution = await waitForState(api, id, ['SUCCESS', 'ERROR'], 20_000);
    // begin, then turns of ping, pong and (ping, tick): the 21st run would be the 7th pong.
    const info = 'starting task pong would make 21 task runs, more than RELAY_MAX_TASKS_PER_EXECUTION (20)';
    expect(execution).toMatchObject({ state: 'ERROR', state_info: info });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const tasks = await tasksOf(api, id);
    expect(tasks).toHaveLength(20);
    const count = (name: string) => tasks.filter((t) => t.name === name).length;
    expect([count('begin'), count('ping'), count('pong'), count('tick')]).toEqual([1, 7, 6, 6]);
    // The last tick may have been waiting to start when the limit was reached: it is cancelled then.
    expect(tasks.filter((t) => t.name !== 'tick').every((t) => t.state === 'SUCCESS')).toBe(true);
    expect(tasks.every((t) => t.state === 'SUCCESS' || t.state === 'CANCELLED')).toBe(true);
    const stored = (await api('GET', `/v1/events?execution_id=${id}&limit=1000`)).body.items;
    // An action in flight at that moment still records its end, after WORKFLOW_FAILED.
    expect(stored.filter((e: any) => e.type.startsWith('WORKFLOW_')).map((e: any) => [e.type, e.state_info])).toEqual([
      ['WORKFLOW_LAUNCHED', null],
      ['WORKFLOW_FAILED', info],
    ]);
    await waitForEvents(receiver, HOOK, id, 'WORKFLOW_FAILED');
    // Nothing runs after the execution failed.
    expect(await tasksOf(api, id)).toHaveLength(20);
  }, 30_000);

  it('cancels the tasks still waiting when the limit ends an execution', async () => {
    await createWorkbook(
      api,
      workbook('spawning', `
spin: {action: std.noop, on-success: [spin, nap], on-error: [out]}
nap: {action: std.sleep, input: {seconds: 30}}
out: {action: std.noop}`),
    );
    const id = await startExecution(api, 'spawning');
    const execution = await waitForState(api, id, ['SUCCESS', 'ERROR'], 20_000);
    const info = 'starting tasks spin, nap would make 21 task runs, more than RELAY_MAX_TASKS_PER_EXECUTION (20)';
    expect(execution).toMatchObject({ state: 'ERROR', state_info: info });
    const tasks = await tasksOf(api, id);
    expect(tasks).toHaveLength(19);
    const spins = tasks.filter((t) => t.name === 'spin');
    const naps = tasks.filter((t) => t.name === 'nap');
    expect(spins).toHaveLength(10);
    expect(spins.every((t) => t.state === 'SUCCESS')).toBe(true);
    expect(naps).toHaveLength(9);
    for (const nap of naps) expect(nap).toMatchObject({ state: 'CANCELLED', state_info: `the execution failed: ${info}`, next_run_at: null });
    const stored = (await api('GET', `/v1/events?execution_id=${id}&limit=1000`)).body.items;
    expect(stored.filter((e: any) => e.type === 'TASK_CANCELLED')).toHaveLength(9);
    expect(stored.map((e: any) => e.sequence)).toEqual(Array.from({ length: stored.length }, (_, i) => i + 1));
    expect(stored[stored.length - 1]).toMatchObject({ type: 'WORKFLOW_FAILED', state_info: info });
    await receiver.waitFor(() => eventsOf(receiver, HOOK, id).length === stored.length);
  }, 30_000);
});
