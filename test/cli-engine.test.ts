import fs from 'node:fs';
import path from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeEvents, eventsOf, oneToN, sequences } from './helpers/engine.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { tempDir } from './helpers/relay.js';
import { boundCli, cleanEnv, eventually, fieldsOf, okJson, ROOT, spawnRelay, type SpawnedRelay } from './helpers/spawn-relay.js';

// workbook-*, execution-* and task-*: the built CLI against a real relay child process that
// runs examples/billing.yaml in its embedded engine, and a real receiver of its webhooks.
const T = 60_000;
const BILLING = path.join(ROOT, 'examples/billing.yaml');

let relay: SpawnedRelay;
let receiver: Receiver;
let workDir: string;
const cli = boundCli(() => ({ relay, workDir }));
const json = okJson;
/** The signing secret of the listener on workbook billing, to path /billing. */
let secret: string;

/** The rows of a table that follows `heading` (or starts the output), split on runs of 2+ spaces. */
const tableAfter = (stdout: string, heading?: string) => {
  const text = heading === undefined ? stdout : stdout.split(`${heading}\n`)[1];
  const lines = text.split('\n\n')[0].trim().split('\n');
  return lines.map((l) => l.split(/\s{2,}/));
};

const writeFile = (name: string, text: string) => {
  const file = path.join(workDir, name);
  fs.writeFileSync(file, text);
  return file;
};


interface Task {
  id: string;
  name: string;
  action: string;
  state: string;
  state_info: string | null;
  tries: number;
  result: unknown;
}

/** What execution-get -f json prints. */
interface ExecutionWithTasks {
  id: string;
  state: string;
  state_info: string | null;
  input: Record<string, unknown>;
  tasks: Task[];
}

/** execution-get -f json, once the execution is in one of `states`. */
async function waitForExecution(id: string, states: string[], timeoutMs = 20_000): Promise<ExecutionWithTasks> {
  let last = '';
  return eventually(
    async () => {
      const execution = json(await cli(['execution-get', id, '-f', 'json']));
      last = execution.state;
      return states.includes(execution.state) && execution;
    },
    timeoutMs,
    `execution ${id} in ${states.join('|')} (was ${last})`,
  );
}

/** Every request on `path` for `executionId` carries a signature the standardwebhooks library accepts. */
function expectValidSignatures(receiverPath: string, executionId: string): number {
  const verifier = new Webhook(secret);
  const requests = receiver.requests(receiverPath).filter((r) => JSON.parse(r.text).execution_id === executionId);
  for (const r of requests) {
    expect(() => verifier.verify(r.text, r.headers as Record<string, string>), `signature of ${r.headers['webhook-id']}`).not.toThrow();
  }
  return requests.length;
}

beforeAll(async () => {
  workDir = tempDir('relay-cli-engine-');
  [relay, receiver] = await Promise.all([spawnRelay(path.join(workDir, 'data')), startReceiver()]);
}, 30_000);

afterAll(async () => {
  await relay?.stop();
  await receiver?.close();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
});

describe('workbook-create, -list, -show, -update and -delete', () => {
  it('stores examples/billing.yaml; a bad definition exits 1 naming each problem with its line', async () => {
    const created = await cli(['workbook-create', BILLING]);
    expect({ code: created.code, stderr: created.stderr }).toEqual({ code: 0, stderr: '' });
    expect(fieldsOf(created.stdout)).toMatchObject({ name: 'billing', workflows: 'charge, refund' });
    expect(created.stdout).toContain(`start one with: callback-relay execution-create billing charge [INPUT_JSON]`);

    const again = await cli(['workbook-create', BILLING]);
    expect(again).toMatchObject({ code: 1, stdout: '' });
    expect(again.stderr).toBe(
      `error: 409 Conflict: workbook billing already exists\nhint: to replace its definition: callback-relay workbook-update billing ${BILLING}\n`,
    );

    writeFile(
      'bad.yaml',
      ["version: '2.0'", 'name: broken', 'workflows:', '  charge:', '    tasks:', '      x:', '        action: std.teleport', '        on-success: [nowhere]', ''].join('\n'),
    );
    const bad = await cli(['workbook-create', 'bad.yaml']);
    expect(bad).toMatchObject({ code: 1, stdout: '' });
    expect(bad.stderr.split('\n')).toEqual([
      'error: 400 Invalid request: bad.yaml is not a valid workbook (2 problems)',
      expect.stringMatching(/^ {2}workflows\.charge\.tasks\.x\.action \(line 7\): unknown action std\.teleport; one of std\.noop, /),
      '  workflows.charge.tasks.x.on-success (line 8): no task named nowhere in workflow charge',
      '',
    ]);
    expect(json(await cli(['workbook-list', '-f', 'json'])).items.map((w: { name: string }) => w.name)).not.toContain('broken');

    // JSON from stdin, told from YAML by its content; the same name again through workbook-update.
    const definition = { version: '2.0', name: 'from_json', workflows: { only: { tasks: { a: { action: 'std.noop' } } } } };
    const fromStdin = json(await cli(['workbook-create', '-', '-f', 'json'], { input: JSON.stringify(definition) }));
    expect(fromStdin).toMatchObject({ name: 'from_json', workflows: ['only'], definition: JSON.stringify(definition) });
    const renamed = { ...definition, workflows: { second: definition.workflows.only } };
    writeFile('from_json.json', JSON.stringify(renamed, null, 2));
    expect(json(await cli(['workbook-update', 'from_json', 'from_json.json', '-f', 'json']))).toMatchObject({ name: 'from_json', workflows: ['second'] });
    writeFile('json-error.json', '{"version": "2.0",\n "name": oops}\n');
    const badJson = await cli(['workbook-create', 'json-error.json']);
    expect(badJson.code).toBe(1);
    expect(badJson.stderr).toMatch(/^error: 400 Invalid request: json-error.json is not a valid workbook \(1 problem\)\n {2}\(body\)[^\n]*: invalid JSON: [^\n]+\n$/);

    const list = await cli(['workbook-list']);
    expect(list.code).toBe(0);
    expect(tableAfter(list.stdout).map((row) => row.slice(0, 2))).toEqual([
      ['NAME', 'WORKFLOWS'],
      ['billing', 'charge,refund'],
      ['from_json', 'second'],
    ]);
    const paged = await cli(['workbook-list', '--limit', '1']);
    expect(paged.stdout).toMatch(/\nmore: callback-relay workbook-list --limit 1 --cursor \S+\n$/);

    const shown = await cli(['workbook-show', 'billing']);
    expect(shown.code).toBe(0);
    const [head, source] = shown.stdout.split('\ndefinition:\n');
    expect(fieldsOf(head)).toMatchObject({ name: 'billing', workflows: 'charge, refund' });
    expect(source).toBe(`${fs.readFileSync(BILLING, 'utf8').trimEnd()}\n`);

    expect(await cli(['workbook-delete', 'from_json'])).toEqual({ code: 0, stdout: 'deleted workbook from_json\n', stderr: '' });
    const gone = await cli(['workbook-delete', 'from_json']);
    expect(gone).toMatchObject({ code: 1, stdout: '' });
    expect(gone.stderr).toMatch(/^error: 404 Not found: workbook from_json does not exist/);
  }, T);
});

describe('execution-create, -get, -list, -update, task-list and task-rerun', () => {
  beforeAll(async () => {
    // Idempotent: the workbook test above may or may not have run first.
    const created = await cli(['workbook-create', BILLING]);
    expect([0, 1]).toContain(created.code);
    const listener = json(await cli(['listener-add', 'workbook', 'billing', receiver.url('/billing'), '-f', 'json']));
    secret = listener.secret;
    expect(secret).toMatch(/^whsec_/);
  }, 30_000);

  it('billing charge runs to SUCCESS; the receiver gets every event, numbered 1..n, each validly signed', async () => {
    const created = await cli(['execution-create', 'billing', 'charge', '{"amount": 42}']);
    expect({ code: created.code, stderr: created.stderr }).toEqual({ code: 0, stderr: '' });
    const fields = fieldsOf(created.stdout);
    expect(fields).toMatchObject({ workbook: 'billing', workflow: 'charge', input: '{"amount":42,"currency":"EUR"}' });
    const id = fields.id;
    expect(created.stdout).toContain(`follow it with: callback-relay execution-get ${id}`);

    const done = await waitForExecution(id, ['SUCCESS', 'ERROR']);
    expect(done).toMatchObject({ id, state: 'SUCCESS', state_info: null, input: { amount: 42, currency: 'EUR' } });
    expect(done.tasks.map((t) => [t.name, t.action, t.state, t.tries, t.result])).toEqual([
      ['validate', 'std.echo', 'SUCCESS', 1, 42],
      ['reserve', 'std.sleep', 'SUCCESS', 1, null],
      ['charge', 'std.echo', 'SUCCESS', 1, { charged: 42, currency: 'EUR', receipt: 'R-42' }],
      ['notify', 'std.noop', 'SUCCESS', 1, null],
    ]);

    await receiver.waitFor(() => eventsOf(receiver, '/billing', id).some((e) => e.type === 'WORKFLOW_SUCCEEDED') && eventsOf(receiver, '/billing', id).length >= 10, 15_000);
    const events = eventsOf(receiver, '/billing', id);
    expect(describeEvents(events)).toEqual([
      'WORKFLOW_LAUNCHED',
      'TASK_LAUNCHED validate',
      'TASK_SUCCEEDED validate',
      'TASK_LAUNCHED reserve',
      'TASK_SUCCEEDED reserve',
      'TASK_LAUNCHED charge',
      'TASK_SUCCEEDED charge',
      'TASK_LAUNCHED notify',
      'TASK_SUCCEEDED notify',
      'WORKFLOW_SUCCEEDED',
    ]);
    expect(sequences(events)).toEqual(oneToN(10));
    expect(expectValidSignatures('/billing', id)).toBeGreaterThanOrEqual(10);
    expect(events[6].data).toMatchObject({ result: { charged: 42, currency: 'EUR', receipt: 'R-42' } });

    // The table views.
    const shown = await cli(['execution-get', id]);
    expect(shown.code).toBe(0);
    expect(fieldsOf(shown.stdout)).toMatchObject({ id, workbook: 'billing', workflow: 'charge', state: 'SUCCESS', state_info: '-' });
    expect(tableAfter(shown.stdout, 'tasks (4):')).toEqual([
      ['TASK', 'STATE', 'TRIES', 'ID', 'RESULT / STATE INFO'],
      ['validate', 'SUCCESS', '1', done.tasks[0].id, '42'],
      ['reserve', 'SUCCESS', '1', done.tasks[1].id, '-'],
      ['charge', 'SUCCESS', '1', done.tasks[2].id, '{"charged":42,"currency":"EUR","receipt":"R-42"}'],
      ['notify', 'SUCCESS', '1', done.tasks[3].id, '-'],
    ]);
    const tasks = await cli(['task-list', id]);
    expect(tasks.code).toBe(0);
    expect(tableAfter(tasks.stdout)).toEqual([
      ['ID', 'NAME', 'ACTION', 'STATE', 'TRIES', 'NEXT RUN AT', 'STATE INFO'],
      ...done.tasks.map((t) => [t.id, t.name, t.action, 'SUCCESS', '1', '-', '-']),
    ]);
    const firstPage = json(await cli(['task-list', id, '--limit', '3', '-f', 'json']));
    expect(firstPage.items.map((t: Task) => t.name)).toEqual(['validate', 'reserve', 'charge']);
    expect(firstPage.next_cursor).toEqual(expect.any(String));
    const paged = await cli(['task-list', id, '--limit', '3']);
    expect(paged.stdout).toContain(`\nmore: callback-relay task-list ${id} --limit 3 --cursor ${firstPage.next_cursor}\n`);

    const listed = json(await cli(['execution-list', '--workbook', 'billing', '--workflow', 'charge', '--state', 'success', '--all', '-f', 'json']));
    expect(listed.items.map((e: { id: string }) => e.id)).toContain(id);
    expect(listed.next_cursor).toBeNull();
    const table = await cli(['execution-list', '--workbook', 'billing', '--state', 'SUCCESS']);
    expect(tableAfter(table.stdout)[0]).toEqual(['ID', 'WORKBOOK', 'WORKFLOW', 'STATE', 'CREATED AT', 'STATE INFO']);
    // Times in a table read relative to now; -f json keeps them absolute.
    expect(table.stdout).toMatch(new RegExp(`\\n${id}\\s+billing\\s+charge\\s+SUCCESS\\s+(\\d+ (s|min) ago|now)\\s+-\\n`));
    expect(await cli(['execution-list', '--workbook', 'no-such-workbook'])).toEqual({ code: 0, stdout: 'no executions\n', stderr: '' });

    // A finished execution cannot be paused: the relay's 409, exit 1.
    const paused = await cli(['execution-update', id, '--state', 'PAUSED']);
    expect(paused).toMatchObject({ code: 1, stdout: '' });
    expect(paused.stderr).toMatch(/^error: 409 Conflict: the execution is finished \(SUCCESS\) and cannot move to PAUSED\n$/);

    const missingInput = await cli(['execution-create', 'billing', 'charge']);
    expect(missingInput).toMatchObject({ code: 1, stdout: '' });
    expect(missingInput.stderr).toMatch(/^error: 400 Invalid request: input\.amount: required/);
  }, T);

  it('billing refund ends in ERROR after its retries; task-rerun runs the failed task again, which fails again', async () => {
    writeFile('refund-input.json', '{"amount": 7}\n');
    const created = json(await cli(['execution-create', 'billing', 'refund', '--input-file', 'refund-input.json', '-f', 'json']));
    expect(created).toMatchObject({ workbook: 'billing', workflow: 'refund', state: 'RUNNING', input: { amount: 7 } });
    const id = created.id;

    const failed = await waitForExecution(id, ['ERROR', 'SUCCESS']);
    expect(failed).toMatchObject({ state: 'ERROR', state_info: 'task give_up failed: refund of 7 not made' });
    expect(failed.tasks.map((t) => [t.name, t.state, t.tries, t.state_info])).toEqual([
      ['call_bank', 'ERROR', 3, 'bank unavailable'],
      ['alert_ops', 'SUCCESS', 1, null],
      ['give_up', 'ERROR', 1, 'refund of 7 not made'],
    ]);
    const callBank = failed.tasks[0];
    const shown = await cli(['execution-get', id]);
    expect(shown.stdout).toContain(`\nre-run call_bank with: callback-relay task-rerun ${callBank.id}\n`);
    const before = json(await cli(['event-list', '--execution-id', id, '--all', '-f', 'json'])).items.length;
    expect(before).toBe(8);

    // ERROR → RUNNING is not an execution-update: the relay says so, the CLI says what to do.
    const resume = await cli(['execution-update', id, '--state', 'running']);
    expect(resume.code).toBe(1);
    expect(resume.stderr).toMatch(/^error: 409 Conflict: the execution is finished \(ERROR\)/);
    expect(resume.stderr).toContain(`hint: callback-relay execution-get ${id} shows its failed task; callback-relay task-rerun TASK_ID re-runs it`);

    const rerun = await cli(['task-rerun', callBank.id]);
    expect({ code: rerun.code, stderr: rerun.stderr }).toEqual({ code: 0, stderr: '' });
    expect(fieldsOf(rerun.stdout)).toMatchObject({ id: callBank.id, execution_id: id, name: 'call_bank', state: 'RUNNING', tries: '0', state_info: '-' });
    expect(rerun.stdout).toContain(`re-running task call_bank; follow it with: callback-relay execution-get ${id}`);

    // It is tried 3 times again, fails, and the on-error path fails the execution again.
    const again = await waitForExecutionWithTasks(id, 5);
    expect(again).toMatchObject({ state: 'ERROR', state_info: 'task give_up failed: refund of 7 not made' });
    expect(again.tasks.map((t) => [t.name, t.state, t.tries])).toEqual([
      ['call_bank', 'ERROR', 3],
      ['alert_ops', 'SUCCESS', 1],
      ['give_up', 'ERROR', 1],
      ['alert_ops', 'SUCCESS', 1],
      ['give_up', 'ERROR', 1],
    ]);

    const logged = json(await cli(['event-list', '--execution-id', id, '--all', '-f', 'json']));
    logged.items.sort((a: { sequence: number }, b: { sequence: number }) => a.sequence - b.sequence);
    const types = logged.items.map((e: { type: string; task_name: string | null }) => (e.task_name ? `${e.type} ${e.task_name}` : e.type));
    expect(types.slice(before, before + 4)).toEqual(['task.rerun.start call_bank', 'WORKFLOW_RERUN', 'TASK_RERUN call_bank', 'TASK_FAILED call_bank']);
    // The re-run ends in error with the commit of its task's failure; the on-error path goes on.
    expect(types.indexOf('task.rerun.error call_bank')).toBeGreaterThan(before + 3);
    expect(types.at(-1)).toBe('WORKFLOW_FAILED');
    expect(logged.items.find((e: { type: string }) => e.type === 'TASK_RERUN')).toMatchObject({ task_id: callBank.id, state: 'RUNNING', previous_state: 'ERROR' });

    await receiver.waitFor(() => eventsOf(receiver, '/billing', id).length >= logged.items.length, 15_000);
    const received = eventsOf(receiver, '/billing', id);
    expect(describeEvents(received)).toEqual(types);
    expect(sequences(received)).toEqual(oneToN(types.length));
    expectValidSignatures('/billing', id);

    // Only a failed task can be re-run.
    const succeeded = await cli(['task-rerun', again.tasks[1].id]);
    expect(succeeded.code).toBe(1);
    expect(succeeded.stderr).toMatch(/^error: 409 Conflict: task \S+ cannot be re-run: only a failed task \(ERROR\) can be re-run; this one is SUCCESS/);
    const unknown = await cli(['task-rerun', 'no-such-task']);
    expect(unknown).toMatchObject({ code: 1, stdout: '' });
    expect(unknown.stderr).toMatch(/^error: 404 Not found/);
  }, T);

  it('pauses, resumes and cancels a running execution', async () => {
    const slow = ["version: '2.0'", 'name: slow', 'workflows:', '  nap:', '    tasks:', '      long: {action: std.sleep, input: {seconds: 30}}', ''].join('\n');
    expect((await cli(['workbook-create', '-'], { input: slow })).code).toBe(0);
    const id = json(await cli(['execution-create', 'slow', 'nap', '-f', 'json'])).id;

    const paused = await cli(['execution-update', id, '--state', 'PAUSED']);
    expect(paused.code).toBe(0);
    expect(fieldsOf(paused.stdout)).toMatchObject({ id, state: 'PAUSED' });
    expect(json(await cli(['execution-update', id, '--state', 'RUNNING', '-f', 'json']))).toMatchObject({ id, state: 'RUNNING' });
    expect(json(await cli(['execution-list', '--workbook', 'slow', '--state', 'RUNNING', '-f', 'json'])).items.map((e: { id: string }) => e.id)).toEqual([id]);

    // A workbook with a running execution cannot be deleted.
    const busy = await cli(['workbook-delete', 'slow']);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(/^error: 409 Conflict: workbook slow has executions that are RUNNING or PAUSED/);
    expect(busy.stderr).toContain('hint: callback-relay execution-list --workbook slow --state RUNNING shows them');

    expect(json(await cli(['execution-update', id, '--state', 'CANCELLED', '-f', 'json']))).toMatchObject({ id, state: 'CANCELLED' });
    const done = await waitForExecution(id, ['CANCELLED']);
    expect(done.tasks.map((t) => [t.name, t.state])).toEqual([['long', 'CANCELLED']]);
    const after = await cli(['execution-update', id, '--state', 'RUNNING']);
    expect(after.code).toBe(1);
    expect(after.stderr).toMatch(/^error: 409 Conflict: the execution is finished \(CANCELLED\)/);
    expect(await cli(['workbook-delete', 'slow'])).toEqual({ code: 0, stdout: 'deleted workbook slow\n', stderr: '' });
  }, T);
});

/** execution-get -f json once the execution has `count` tasks and none RUNNING. */
async function waitForExecutionWithTasks(id: string, count: number): Promise<ExecutionWithTasks> {
  return eventually(
    async () => {
      const e: ExecutionWithTasks = json(await cli(['execution-get', id, '-f', 'json']));
      return e.tasks.length === count && e.state !== 'RUNNING' && e;
    },
    20_000,
    `${count} tasks in execution ${id}`,
  );
}

describe('usage', () => {
  it('exits 2 for bad arguments, option values and unreadable files, before any request', async () => {
    writeFile('empty.yaml', '\n \n');
    writeFile('array.json', '[1, 2]');
    fs.mkdirSync(path.join(workDir, 'a-dir'), { recursive: true });
    const cases: Array<[string[], RegExp]> = [
      [['workbook-create'], /missing required argument 'file'/],
      [['workbook-create', 'missing.yaml'], /cannot read missing.yaml: no such file/],
      [['workbook-create', 'a-dir'], /cannot read a-dir: it is a directory/],
      [['workbook-create', 'empty.yaml'], /empty.yaml is empty/],
      [['workbook-create', 'a.yaml', 'b.yaml'], /too many arguments/],
      [['workbook-show'], /missing required argument 'name'/],
      [['workbook-delete', ' '], /give a non-empty value/],
      [['workbook-list', '--limit', '0'], /expected a whole number from 1 to 1000/],
      [['execution-create', 'billing'], /missing required argument 'workflow'/],
      [['execution-create', 'billing', 'charge', 'amount=42'], /argument 'input_json'. not valid JSON/],
      [['execution-create', 'billing', 'charge', '[42]'], /argument 'input_json'. expected a JSON object/],
      [['execution-create', 'billing', 'charge', '{}', '--input-file', 'x.json'], /give the input once: INPUT_JSON or --input-file, not both/],
      [['execution-create', 'billing', 'charge', '--input-file', 'missing.json'], /cannot read missing.json: no such file/],
      [['execution-create', 'billing', 'charge', '--input-file', 'array.json'], /array.json: expected a JSON object/],
      [['execution-list', '--state', 'done'], /"done" is not one of IDLE, RUNNING, PAUSED, SUCCESS, ERROR, CANCELLED/],
      [['execution-list', '--cursor', 'not a cursor!'], /not a cursor/],
      [['execution-list', '--limit', '1001'], /expected a whole number from 1 to 1000/],
      [['execution-get'], /missing required argument 'id'/],
      [['execution-update', 'some-id'], /required option '--state <state>' not specified/],
      [['execution-update', 'some-id', '--state', 'SUCCESS'], /"SUCCESS" is not one of PAUSED, RUNNING, CANCELLED/],
      [['task-list'], /missing required argument 'execution_id'/],
      [['task-rerun', ''], /give a non-empty value/],
      [['execution-get', 'x', '-f', 'xml'], /'xml' is invalid. Allowed choices are table, json, yaml, value, csv/],
      [['execution-list', '-c', 'nope'], /unknown column "nope": give one of id, workbook, workflow, state, created_at, state_info, updated_at/],
      [['execution-list', '--sort-column', 'nope'], /unknown column "nope"/],
      [['execution-list', '--order', 'newest'], /'newest' is invalid. Allowed choices are desc, asc/],
      [['task-list', 'x', '--sort-ascending', '--sort-descending'], /cannot be used with option '--sort-descending'/],
    ];
    // No relay at this address: a request would exit 1, not 2.
    const env = cleanEnv({ RELAY_URL: 'http://127.0.0.1:9', RELAY_TOKEN: 'unused' });
    const results = await Promise.all(cases.map(([args]) => cli(args, { env })));
    results.forEach((r, i) => {
      expect({ args: cases[i][0], code: r.code, stdout: r.stdout }).toEqual({ args: cases[i][0], code: 2, stdout: '' });
      expect(r.stderr).toMatch(cases[i][1]);
    });

    const unreachable = await cli(['workbook-list'], { env });
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/^error: cannot reach the relay at http:\/\/127.0.0.1:9 \(ECONNREFUSED\)/);
  }, T);

  it('prints help with examples for every engine command, exit code 0', async () => {
    const commands = [
      'workbook-create',
      'workbook-update',
      'workbook-list',
      'workbook-show',
      'workbook-delete',
      'execution-create',
      'execution-list',
      'execution-get',
      'execution-update',
      'task-list',
      'task-rerun',
    ];
    const [top, ...helps] = await Promise.all([cli(['--help']), ...commands.map((c) => cli([c, '--help']))]);
    expect(top.code).toBe(0);
    for (const c of commands) expect(top.stdout).toContain(c);
    helps.forEach((r, i) => {
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Usage: callback-relay ${commands[i]}`);
      expect(r.stdout).toMatch(/Examples:\n {2}\$ callback-relay /);
      expect(r.stdout).toMatch(/-f, --output <format>/);
    });
  }, T);
});
