import { describe, expect, it } from 'vitest';
import { parseWorkbook, WorkbookError, type WorkbookIssue } from '../src/engine/workbook.js';

const EXAMPLE = `version: '2.0'
name: billing
workflows:
  charge:
    input: [amount]
    tasks:
      validate:   {action: std.echo, input: {output: "<% $.amount %>"}, on-success: [charge_card]}
      charge_card:
        action: std.http
        input: {url: "http://127.0.0.1:9000/charge", method: POST}
        retry: {count: 3, delay: 1}
        on-success: [done]
        on-error: [refund]
      done:   {action: std.noop}
      refund: {action: std.fail}
`;

/** A workbook whose tasks are `tasks` (unindented); line k of `tasks` is line 5 + k of the workbook. */
function withTasks(tasks: string): string {
  const body = tasks
    .trim()
    .split('\n')
    .map((line) => `      ${line}`)
    .join('\n');
  return `version: '2.0'\nname: billing\nworkflows:\n  flow:\n    tasks:\n${body}\n`;
}

function issuesOf(source: string, contentType?: 'yaml' | 'json'): WorkbookIssue[] {
  try {
    parseWorkbook(source, contentType);
  } catch (err) {
    expect(err).toBeInstanceOf(WorkbookError);
    return (err as WorkbookError).issues;
  }
  throw new Error('expected the workbook to be refused');
}

const task = (name: string) => `workflows.flow.tasks.${name}`;

describe('parseWorkbook accepts', () => {
  it('the example from the issue', () => {
    const spec = parseWorkbook(EXAMPLE);
    expect(spec.name).toBe('billing');
    expect(spec.version).toBe('2.0');
    const charge = spec.workflows.charge;
    expect(charge).toMatchObject({ name: 'charge', line: 4, startTasks: ['validate'], input: [{ name: 'amount', required: true }] });
    expect(Object.keys(charge.tasks)).toEqual(['validate', 'charge_card', 'done', 'refund']);
    expect(charge.tasks.validate).toEqual({
      name: 'validate',
      action: 'std.echo',
      input: { output: '<% $.amount %>' },
      onSuccess: ['charge_card'],
      onError: [],
      onComplete: [],
      retry: null,
      line: 7,
    });
    expect(charge.tasks.charge_card).toMatchObject({
      action: 'std.http',
      input: { url: 'http://127.0.0.1:9000/charge', method: 'POST' },
      retry: { count: 3, delay: 1 },
      onSuccess: ['done'],
      onError: ['refund'],
      line: 8,
    });
    expect(charge.tasks.done).toMatchObject({ action: 'std.noop', input: {}, onSuccess: [], line: 14 });
    expect(charge.tasks.refund).toMatchObject({ action: 'std.fail', line: 15 });
  });

  it('the same workbook as JSON', () => {
    const json = JSON.stringify(parseWorkbook(EXAMPLE), (key, value) => (key === 'line' ? undefined : value), 2);
    const fromJson = parseWorkbook(
      JSON.stringify({
        version: '2.0',
        name: 'billing',
        workflows: { charge: { input: ['amount'], tasks: JSON.parse(EXAMPLE_TASKS_JSON) } },
      }),
      'json',
    );
    expect(JSON.stringify(fromJson, (key, value) => (key === 'line' ? undefined : value), 2)).toBe(json);
  });

  it('numeric version 2.0, single-string transitions, on-complete, inputs with defaults, retry without delay', () => {
    const spec = parseWorkbook(`version: 2.0
name: ops.v1
workflows:
  wf-1:
    input: [a, {b: 5}, {c: null}]
    tasks:
      first: {action: std.sleep, input: {seconds: "<% $.b %>"}, on-complete: second, retry: {count: 0}}
      second: {action: std.echo, input: {output: "<% task('first').result %> then <% $.a %>"}}
`);
    const wf = spec.workflows['wf-1'];
    expect(wf.input).toEqual([
      { name: 'a', required: true },
      { name: 'b', default: 5, required: false },
      { name: 'c', default: null, required: false },
    ]);
    expect(wf.tasks.first).toMatchObject({ onComplete: ['second'], retry: { count: 0, delay: 0 } });
    expect(wf.startTasks).toEqual(['first']);
  });

  it('several start tasks, and a loop that can finish (retry until success)', () => {
    const spec = parseWorkbook(
      withTasks(`
a: {action: std.noop, on-success: [poll]}
b: {action: std.noop}
poll: {action: std.http, input: {url: "https://example.com/status"}, on-error: [wait]}
wait: {action: std.sleep, input: {seconds: 5}, on-success: [poll]}
self: {action: std.noop, on-error: [self]}
`),
    );
    expect(spec.workflows.flow.startTasks).toEqual(['a', 'b', 'self']);
  });
});

const EXAMPLE_TASKS_JSON = JSON.stringify({
  validate: { action: 'std.echo', input: { output: '<% $.amount %>' }, 'on-success': ['charge_card'] },
  charge_card: {
    action: 'std.http',
    input: { url: 'http://127.0.0.1:9000/charge', method: 'POST' },
    retry: { count: 3, delay: 1 },
    'on-success': ['done'],
    'on-error': ['refund'],
  },
  done: { action: 'std.noop' },
  refund: { action: 'std.fail' },
});

describe('parseWorkbook refuses, with field, message and line', () => {
  it('a YAML syntax error', () => {
    expect(issuesOf(`version: '2.0'\nname: billing\nworkflows:\n  charge:\n    tasks: [a, b\n    x: 1\n`)).toEqual([
      { field: '(body)', message: expect.stringContaining('Flow sequence'), line: 6 },
    ]);
    expect(issuesOf(`version: '2.0'\nname: a\nname: b\n`)).toEqual([{ field: '(body)', message: 'Map keys must be unique', line: 3 }]);
  });

  it('a JSON syntax error', () => {
    const [issue] = issuesOf('{\n  "version": "2.0",\n  "name": "x",\n}', 'json');
    expect(issue).toMatchObject({ field: '(body)', message: expect.stringMatching(/^invalid JSON: /), line: 4 });
  });

  it('a JSON workbook with the same rules, and its lines', () => {
    const source = JSON.stringify({ version: '2.0', name: 'x', workflows: { w: { tasks: { a: { action: 'std.foo' } } } } }, null, 2);
    expect(issuesOf(source, 'json')).toEqual([
      {
        field: 'workflows.w.tasks.a.action',
        message: 'unknown action std.foo; one of std.noop, std.echo, std.fail, std.sleep, std.http',
        line: 8,
      },
    ]);
  });

  it('a document that is not a mapping', () => {
    expect(issuesOf('')).toEqual([{ field: '(body)', message: 'a workbook must be a mapping with version, name and workflows' }]);
    expect(issuesOf('- a\n- b\n')).toEqual([
      { field: '(body)', message: 'a workbook must be a mapping with version, name and workflows', line: 1 },
    ]);
  });

  it('a wrong or missing version', () => {
    expect(issuesOf(EXAMPLE.replace("version: '2.0'", "version: '1.0'"))).toEqual([
      { field: 'version', message: "version must be '2.0'", line: 1 },
    ]);
    expect(issuesOf(EXAMPLE.replace("version: '2.0'\n", ''))).toEqual([
      { field: 'version', message: "version is required; use '2.0'", line: 1 },
    ]);
  });

  it('a missing or malformed workbook name', () => {
    expect(issuesOf(EXAMPLE.replace('name: billing', 'name: bill ing'))).toEqual([
      { field: 'name', message: 'workbook name must match ^[A-Za-z0-9_.-]{1,100}$', line: 2 },
    ]);
    expect(issuesOf(EXAMPLE.replace('name: billing\n', ''))).toEqual([{ field: 'name', message: 'workbook name is required', line: 1 }]);
    // Its URL, /v1/workbooks/.., is one that clients turn into /v1/.
    for (const name of ['.', '..']) {
      expect(issuesOf(EXAMPLE.replace('name: billing', `name: '${name}'`))).toEqual([
        { field: 'name', message: `workbook name cannot be ${name}: no URL path can name it`, line: 2 },
      ]);
    }
    expect(parseWorkbook(EXAMPLE.replace('name: billing', 'name: billing.v2')).name).toBe('billing.v2');
  });

  it('unknown top-level and workflow keys', () => {
    const source = EXAMPLE.replace('name: billing', 'name: billing\nworkflow: {}').replace('    input:', '    output: {}\n    input:');
    expect(issuesOf(source)).toEqual([
      { field: 'workflow', message: 'unknown key workflow; allowed: version, name, description, tags, workflows', line: 3 },
      { field: 'workflows.charge.output', message: 'unknown key output; allowed: description, input, tasks', line: 6 },
    ]);
  });

  it('no workflows, or a workflow without tasks', () => {
    expect(issuesOf(`version: '2.0'\nname: x\nworkflows: {}\n`)).toEqual([
      { field: 'workflows', message: 'at least one workflow is required', line: 3 },
    ]);
    expect(issuesOf(`version: '2.0'\nname: x\nworkflows:\n  w:\n    input: []\n`)).toEqual([
      { field: 'workflows.w.tasks', message: 'at least one task is required', line: 4 },
    ]);
  });

  it('malformed workflow and task names', () => {
    expect(issuesOf(EXAMPLE.replace('  charge:', '  "charge flow":'))).toEqual([
      { field: 'workflows.charge flow', message: 'workflow name must match ^[A-Za-z0-9_.-]{1,100}$', line: 4 },
    ]);
    expect(issuesOf(withTasks('"a/b": {action: std.noop}'))).toEqual([
      { field: task('a/b'), message: 'task name must match ^[A-Za-z0-9_.-]{1,100}$', line: 6 },
    ]);
  });

  it('malformed workflow inputs', () => {
    const source = EXAMPLE.replace('input: [amount]', 'input:\n      - amount\n      - {a: 1, b: 2}\n      - amount\n      - a.b');
    expect(issuesOf(source)).toEqual([
      { field: 'workflows.charge.input', message: 'each input must be a name or a {name: default} mapping', line: 7 },
      { field: 'workflows.charge.input', message: 'input amount is declared twice', line: 8 },
      { field: 'workflows.charge.input', message: 'input name a.b must match ^[A-Za-z0-9_-]{1,100}$', line: 9 },
    ]);
    expect(issuesOf(EXAMPLE.replace('input: [amount]', 'input: amount'))).toEqual([
      { field: 'workflows.charge.input', message: 'input must be a list of names or {name: default} mappings', line: 5 },
    ]);
  });

  it('an unknown action', () => {
    expect(issuesOf(EXAMPLE.replace('refund: {action: std.fail}', 'refund: {action: std.foo}'))).toEqual([
      {
        field: 'workflows.charge.tasks.refund.action',
        message: 'unknown action std.foo; one of std.noop, std.echo, std.fail, std.sleep, std.http',
        line: 15,
      },
    ]);
  });

  it('a task without an action, or that is not a mapping', () => {
    expect(issuesOf(withTasks('a: {input: {}}\nb:\nc: std.noop'))).toEqual([
      { field: `${task('a')}.action`, message: 'action is required', line: 6 },
      { field: task('b'), message: 'a task must be a mapping with an action', line: 7 },
      { field: task('c'), message: 'a task must be a mapping with an action', line: 8 },
    ]);
  });

  it('unknown task keys', () => {
    expect(issuesOf(withTasks('a:\n  action: std.noop\n  on_success: [b]\nb: {action: std.noop}'))).toEqual([
      {
        field: `${task('a')}.on_success`,
        message: 'unknown key on_success; allowed: action, input, on-success, on-error, on-complete, retry, description',
        line: 8,
      },
    ]);
  });

  it('a transition to a missing task', () => {
    expect(issuesOf(EXAMPLE.replace('on-error: [refund]', 'on-error:\n          - done\n          - refnud'))).toEqual([
      { field: 'workflows.charge.tasks.charge_card.on-error', message: 'no task named refnud in workflow charge', line: 15 },
    ]);
    expect(issuesOf(withTasks('a: {action: std.noop, on-complete: b}'))).toEqual([
      { field: `${task('a')}.on-complete`, message: 'no task named b in workflow flow', line: 6 },
    ]);
  });

  it('a transition that is not a task name', () => {
    expect(issuesOf(withTasks('a: {action: std.noop, on-success: [{b: "<% $.x %>"}]}\nb: {action: std.noop}'))).toEqual([
      { field: `${task('a')}.on-success`, message: 'a transition must be a task name or a list of task names', line: 6 },
    ]);
  });

  it('a malformed retry', () => {
    const source = withTasks('a:\n  action: std.noop\n  retry:\n    count: 101\n    delay: -1\n    break-on: x');
    expect(issuesOf(source)).toEqual([
      { field: `${task('a')}.retry.count`, message: 'count must be an integer from 0 to 100', line: 9 },
      { field: `${task('a')}.retry.delay`, message: 'delay must be a number of seconds from 0 to 86400', line: 10 },
      { field: `${task('a')}.retry.break-on`, message: 'unknown key break-on; allowed: count, delay', line: 11 },
    ]);
    expect(issuesOf(withTasks('a: {action: std.noop, retry: {count: 1.5, delay: 86401}}'))).toHaveLength(2);
    expect(issuesOf(withTasks('a: {action: std.noop, retry: 3}'))).toEqual([
      { field: `${task('a')}.retry`, message: 'retry must be a mapping {count, delay}', line: 6 },
    ]);
  });

  it('a workflow without a start task', () => {
    const source = withTasks('a: {action: std.noop, on-error: [b]}\nb: {action: std.noop, on-error: [a]}');
    expect(issuesOf(source)).toEqual([
      { field: 'workflows.flow.tasks', message: 'no start task: every task has an incoming transition', line: 5 },
    ]);
  });

  it('an expression that does not parse', () => {
    const source = withTasks('a:\n  action: std.echo\n  input:\n    output:\n      total: "<% $.amount * 2 %>"');
    expect(issuesOf(source)).toEqual([
      {
        field: `${task('a')}.input.output.total`,
        message: `unsupported expression "<% $.amount * 2 %>"; use <% $.name %> or <% task('name').result %>`,
        line: 10,
      },
    ]);
    expect(issuesOf(withTasks('a: {action: std.echo, input: {output: ["x", "<% $.id"]}}'))).toEqual([
      { field: `${task('a')}.input.output.1`, message: 'unterminated expression "<% $.id" (missing %>)', line: 6 },
    ]);
  });

  it('an expression reading a task that is not in the workflow', () => {
    const source = withTasks('a: {action: std.noop, on-success: [b]}\nb:\n  action: std.echo\n  input: {output: "id <% task(\'lookup\').result.id %>"}');
    expect(issuesOf(source)).toEqual([
      { field: `${task('b')}.input.output`, message: "task('lookup') refers to no task of workflow flow", line: 9 },
    ]);
  });

  it('std.http without url and std.sleep without seconds', () => {
    const source = withTasks('a: {action: std.http, input: {method: POST}}\nb:\n  action: std.sleep');
    expect(issuesOf(source)).toEqual([
      { field: `${task('a')}.input.url`, message: 'std.http needs input url', line: 6 },
      { field: `${task('b')}.input.seconds`, message: 'std.sleep needs input seconds', line: 8 },
    ]);
  });

  it('literal action inputs of the wrong kind, and inputs the action does not take', () => {
    const source = withTasks(`
a: {action: std.http, input: {url: "ftp://x", method: FETCH, timeout: 0, headers: {x: 1}}}
b: {action: std.sleep, input: {seconds: -1}}
c: {action: std.echo, input: {out: 1}}
d: {action: std.http, input: {url: "<% $.target %>", method: "<% $.verb %>"}}
e: {action: std.http, input: {url: "http://x", method: put}}
`);
    expect(issuesOf(source)).toEqual([
      { field: `${task('a')}.input.url`, message: 'url must be an http or https URL', line: 6 },
      { field: `${task('a')}.input.method`, message: 'method must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS', line: 6 },
      { field: `${task('a')}.input.headers`, message: 'headers header values must be strings', line: 6 },
      { field: `${task('a')}.input.timeout`, message: 'timeout must be a number of seconds > 0 and at most 86400', line: 6 },
      { field: `${task('b')}.input.seconds`, message: 'seconds must be a number of seconds ≥ 0 and at most 31536000', line: 7 },
      { field: `${task('c')}.input.out`, message: 'std.echo takes no input out; it takes output', line: 8 },
    ]);
  });

  it('a sleep or a timeout longer than the engine keeps time for', () => {
    const source = withTasks(`
a: {action: std.sleep, input: {seconds: 1e308}}
b: {action: std.sleep, input: {seconds: 31536001}}
c: {action: std.http, input: {url: "http://x", timeout: 1e17}}
d: {action: std.sleep, input: {seconds: 31536000}, on-success: [e]}
e: {action: std.http, input: {url: "http://x", timeout: 86400}}
`);
    expect(issuesOf(source)).toEqual([
      { field: `${task('a')}.input.seconds`, message: 'seconds must be a number of seconds ≥ 0 and at most 31536000', line: 6 },
      { field: `${task('b')}.input.seconds`, message: 'seconds must be a number of seconds ≥ 0 and at most 31536000', line: 7 },
      { field: `${task('c')}.input.timeout`, message: 'timeout must be a number of seconds > 0 and at most 86400', line: 8 },
    ]);
  });

  it('a cycle without an exit', () => {
    const source = withTasks(`
start: {action: std.noop, on-success: [a]}
a: {action: std.noop, on-success: [b]}
b: {action: std.noop, on-success: [a], on-error: [done]}
done: {action: std.noop}
`);
    expect(issuesOf(source)).toEqual([{ field: task('a'), message: 'cycle a → b → a has no exit', line: 7 }]);
  });

  it('a task that transitions to itself on success', () => {
    expect(issuesOf(withTasks('loop: {action: std.noop, on-complete: [loop]}'))).toEqual([
      { field: task('loop'), message: 'cycle loop → loop has no exit', line: 6 },
    ]);
  });

  it('every loop of a larger component, named by its shortest cycle', () => {
    const source = withTasks(`
s: {action: std.noop, on-success: [x]}
x: {action: std.noop, on-success: [y, z]}
y: {action: std.noop, on-success: [x]}
z: {action: std.noop, on-complete: [y]}
`);
    expect(issuesOf(source)).toEqual([{ field: task('x'), message: 'cycle x → y → x has no exit', line: 7 }]);
  });

  it('collecting every issue, in line order', () => {
    const source = EXAMPLE.replace("version: '2.0'", 'version: 3')
      .replace('on-success: [done]', 'on-success: [gone]')
      .replace('{action: std.fail}', '{action: std.fial}');
    const issues = issuesOf(source);
    expect(issues.map((i) => [i.field, i.line])).toEqual([
      ['version', 1],
      ['workflows.charge.tasks.charge_card.on-success', 12],
      ['workflows.charge.tasks.refund.action', 15],
    ]);
  });
});

describe('WorkbookError', () => {
  it('summarises the first issue and counts the rest', () => {
    try {
      parseWorkbook(`version: '1.0'\nname: ''\nworkflows: {}\n`);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(WorkbookError);
      expect((err as WorkbookError).code).toBe('INVALID_WORKBOOK');
      expect((err as Error).message).toBe("invalid workbook: version: version must be '2.0' (line 1) and 2 more");
    }
  });
});

describe('parseWorkbook and YAML aliases', () => {
  /** Nine aliases of the level below per level: `levels` levels expand to 9^levels copies of "lol". */
  function billionLaughs(levels: number): string {
    const lines = [`      l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]`];
    for (let i = 1; i <= levels; i++) lines.push(`      l${i}: &l${i} [${Array(9).fill(`*l${i - 1}`).join(', ')}]`);
    return withTasks(`only:\n  action: std.echo\n  input:\n    output:\n${lines.map((l) => `  ${l}`).join('\n')}`);
  }

  it('accepts aliases that repeat a little', () => {
    const spec = parseWorkbook(
      withTasks(`
first: {action: std.echo, input: {output: &greeting {text: hello, to: [a, b]}}, on-success: [second]}
second: {action: std.echo, input: {output: *greeting}}`),
    );
    expect(spec.workflows.flow.tasks.second.input).toEqual({ output: { text: 'hello', to: ['a', 'b'] } });
  });

  it('refuses a "billion laughs" document at once, without expanding it', () => {
    const started = performance.now();
    const issues = issuesOf(billionLaughs(9));
    expect(performance.now() - started).toBeLessThan(1000);
    expect(issues).toHaveLength(1);
    expect(issues[0].field).toBe('(body)');
    expect(issues[0].message).toMatch(/^the aliases in this document expand too much/);
  });

  it('refuses a document whose few aliases repeat a large node past 4 MiB', () => {
    // 12 aliases (few enough for the alias count) of a 400 kB string: about 5 MB written out.
    const big = 'x'.repeat(400_000);
    const tasks = Array.from({ length: 12 }, (_, i) => `t${i}: {action: std.echo, input: {output: *big}}`).join('\n');
    const source = withTasks(`anchor: {action: std.echo, input: {output: &big "${big}"}}\n${tasks}`);
    expect(source.length).toBeLessThan(1024 * 1024);
    const started = performance.now();
    const issues = issuesOf(source);
    expect(performance.now() - started).toBeLessThan(2000);
    expect(issues).toEqual([
      {
        field: '(body)',
        message: 'with its aliases expanded the definition is more than 4 MiB of JSON; write the repeated parts fewer times',
      },
    ]);
    // The same document with fewer aliases fits.
    const fewer = withTasks(`anchor: {action: std.echo, input: {output: &big "${big}"}}\n${tasks.split('\n').slice(0, 8).join('\n')}`);
    expect(Object.keys(parseWorkbook(fewer).workflows.flow.tasks)).toHaveLength(9);
  });
});
