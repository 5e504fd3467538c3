import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import YAML from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/main.js';
import { UsageError } from '../src/cli/errors.js';
import { renderData, renderList, renderShow, sortItems, type Column, type FieldPair, type ViewOptions } from '../src/cli/output.js';
import { nextAttemptText, relativeTime, timeWithRelative } from '../src/cli/relative-time.js';
import { progressReporter } from '../src/cli/commands/replay-wait.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { tempDir } from './helpers/relay.js';
import { boundCli, cleanEnv, eventually, okJson, spawnRelay, type SpawnedRelay } from './helpers/spawn-relay.js';

// -f table|json|yaml|value|csv, -c and --sort-column on lists and shows, relative times in tables,
// and progress on a terminal: the pure formatters with a fixed clock, then the built CLI against
// a real relay child process.
const T = 60_000;
const NOW = Date.parse('2026-11-23T10:00:00.000Z');
const at = (offsetMs: number) => new Date(NOW + offsetMs).toISOString();

describe('relativeTime', () => {
  it('says how far a time is from now in its largest whole unit', () => {
    const cases: Array<[number, string]> = [
      [0, 'now'],
      [-999, 'now'],
      [999, 'now'],
      [-1000, '1 s ago'],
      [4000, 'in 4 s'],
      [4999, 'in 4 s'],
      [-59_999, '59 s ago'],
      [-60_000, '1 min ago'],
      [-150_000, '2 min ago'],
      [30 * 60_000, 'in 30 min'],
      [-3_600_000, '1 h ago'],
      [5 * 3_600_000, 'in 5 h'],
      [-23 * 3_600_000 - 59 * 60_000, '23 h ago'],
      [-86_400_000, '1 d ago'],
      [-13 * 86_400_000, '13 d ago'],
    ];
    for (const [offset, text] of cases) expect([offset, relativeTime(at(offset), NOW)]).toEqual([offset, text]);
    expect(relativeTime(NOW - 2000, NOW)).toBe('2 s ago');
  });

  it('gives the date beyond two weeks, "-" for nothing, and text it cannot read as it is', () => {
    expect(relativeTime(at(-14 * 86_400_000), NOW)).toBe('2026-11-09');
    expect(relativeTime(at(30 * 86_400_000), NOW)).toBe('2026-12-23');
    expect(relativeTime(null, NOW)).toBe('-');
    expect(relativeTime('', NOW)).toBe('-');
    expect(relativeTime('soon', NOW)).toBe('soon');
  });

  it('says "due now" for a next attempt whose time has come, and keeps the absolute time beside a relative one', () => {
    expect(nextAttemptText(at(4000), NOW)).toBe('in 4 s');
    expect(nextAttemptText(at(0), NOW)).toBe('due now');
    expect(nextAttemptText(at(-5000), NOW)).toBe('due now');
    expect(nextAttemptText(null, NOW)).toBe('-');
    expect(timeWithRelative(at(-120_000), NOW)).toBe('2026-11-23T09:58:00.000Z (2 min ago)');
    expect(timeWithRelative(null, NOW)).toBe('-');
  });
});

interface Row {
  id: string;
  status: string;
  attempts: number;
  next: string | null;
  note: string | null;
  tags: string[];
  target: { kind: string } | null;
}

const COLUMNS: Array<Column<Row>> = [
  { header: 'ID', field: 'id', cell: (r) => r.id },
  { header: 'STATUS', field: 'status', cell: (r) => r.status.toUpperCase() },
  { header: 'ATTEMPTS', field: 'attempts', cell: (r) => String(r.attempts) },
  { header: 'NEXT ATTEMPT', field: 'next_attempt_at', cell: (r, now) => nextAttemptText(r.next, now), value: (r) => r.next },
  { header: 'NOTE', field: 'note', cell: (r) => r.note ?? '-' },
  { header: 'TAGS', field: 'tags', cell: (r) => r.tags.join(','), optional: true },
  { header: 'TARGET KIND', field: 'target.kind', cell: (r) => r.target?.kind ?? '-', optional: true },
];

const ROWS: Row[] = [
  { id: 'b', status: 'pending', attempts: 2, next: at(4000), note: 'say "hi", then\nleave', tags: ['x', 'y'], target: { kind: 'task' } },
  { id: 'a', status: 'failed', attempts: 10, next: null, note: null, tags: [], target: null },
  { id: 'c', status: 'pending', attempts: 1, next: at(60_000), note: 'plain', tags: ['z'], target: { kind: 'execution' } },
];

const list = (view: Partial<ViewOptions>) => renderList({ items: ROWS, next_cursor: 'abc' }, COLUMNS, { format: 'table', ...view }, NOW).join('\n');

describe('renderList', () => {
  it('table: the non-optional columns, relative times, cells as the table shows them', () => {
    expect(list({})).toBe(
      [
        'ID  STATUS   ATTEMPTS  NEXT ATTEMPT  NOTE',
        'b   PENDING  2         in 4 s        say "hi", then\\u000aleave',
        'a   FAILED   10        -             -',
        'c   PENDING  1         in 1 min      plain',
      ].join('\n'),
    );
  });

  it('json and yaml: the API document as is, or with -c only the fields picked, keyed by their field names', () => {
    expect(JSON.parse(list({ format: 'json' }))).toEqual({ items: ROWS, next_cursor: 'abc' });
    expect(YAML.parse(list({ format: 'yaml' }))).toEqual({ items: ROWS, next_cursor: 'abc' });
    expect(JSON.parse(list({ format: 'json', columns: ['next attempt', 'ID', 'target_kind'] }))).toEqual({
      items: [
        { next_attempt_at: at(4000), id: 'b', 'target.kind': 'task' },
        { next_attempt_at: null, id: 'a', 'target.kind': null },
        { next_attempt_at: at(60_000), id: 'c', 'target.kind': 'execution' },
      ],
      next_cursor: 'abc',
    });
  });

  it('csv: a header row of field names; strings quoted with quotes doubled, numbers bare, null empty, absolute times', () => {
    expect(list({ format: 'csv', columns: ['id', 'attempts', 'next_attempt_at', 'note', 'tags'] })).toBe(
      [
        '"id","attempts","next_attempt_at","note","tags"',
        `"b",2,"${at(4000)}","say ""hi"", then\nleave","x,y"`,
        '"a",10,,,""',
        `"c",1,"${at(60_000)}","plain","z"`,
      ].join('\n'),
    );
  });

  it('value: the values only, space-separated, one record per line', () => {
    expect(list({ format: 'value', columns: ['id', 'status', 'note'] })).toBe(['b pending say "hi", then\\u000aleave', 'a failed ', 'c pending plain'].join('\n'));
    expect(list({ format: 'value', columns: ['ID'] })).toBe('b\na\nc');
  });

  it('sorts by one or more columns, ascending or descending, by value (numbers by size, nulls last)', () => {
    const ids = (sort: string[], descending = false) => sortItems(ROWS, COLUMNS, sort, descending).map((r) => r.id);
    expect(ids(['id'])).toEqual(['a', 'b', 'c']);
    expect(ids(['id'], true)).toEqual(['c', 'b', 'a']);
    expect(ids(['attempts'])).toEqual(['c', 'b', 'a']);
    expect(ids(['next attempt'])).toEqual(['b', 'c', 'a']);
    expect(ids(['STATUS', 'attempts'])).toEqual(['a', 'c', 'b']);
    expect(ids(['status', 'attempts'], true)).toEqual(['b', 'c', 'a']);
    expect(ids([])).toEqual(['b', 'a', 'c']);
    expect(JSON.parse(list({ format: 'json', sortColumns: ['id'] })).items.map((r: Row) => r.id)).toEqual(['a', 'b', 'c']);
  });

  it('refuses an unknown column as a usage error that lists the valid ones', () => {
    expect(() => list({ columns: ['id', 'nope'] })).toThrow(UsageError);
    expect(() => list({ columns: ['nope'] })).toThrow(
      'unknown column "nope": give one of id, status, attempts, NEXT ATTEMPT (next_attempt_at), note, tags, TARGET KIND (target.kind)',
    );
    expect(() => list({ sortColumns: ['nope'] })).toThrow(UsageError);
  });
});

const FIELDS: FieldPair[] = [
  ['id', 'b'],
  ['attempt_count', '2', 2],
  ['next_attempt_at', `${at(4000)} (in 4 s)`, at(4000)],
  ['last_error', '-', null],
];

describe('renderShow and renderData', () => {
  const show = (view: Partial<ViewOptions>) => renderShow({ id: 'b', api: true }, FIELDS, { format: 'table', ...view }).join('\n');

  it('prints one record as key: value lines, the API document, one value per line, or a csv header and row', () => {
    expect(show({})).toBe(['id:              b', 'attempt_count:   2', `next_attempt_at: ${at(4000)} (in 4 s)`, 'last_error:      -'].join('\n'));
    expect(show({ columns: ['LAST ERROR', 'id'] })).toBe('last_error: -\nid:         b');
    expect(JSON.parse(show({ format: 'json' }))).toEqual({ id: 'b', api: true });
    expect(YAML.parse(show({ format: 'yaml', columns: ['next_attempt_at', 'attempt_count'] }))).toEqual({ next_attempt_at: at(4000), attempt_count: 2 });
    expect(show({ format: 'value' })).toBe(`b\n2\n${at(4000)}\n`);
    expect(show({ format: 'csv', columns: ['id', 'attempt_count'] })).toBe('"id","attempt_count"\n"b",2');
    expect(() => show({ columns: ['secret'] })).toThrow('unknown column "secret": give one of id, attempt_count, next_attempt_at, last_error');
  });

  it('prints a plain answer: a list of items as rows, an object as fields', () => {
    const items = { items: [{ id: 'e1', duplicate: false }, { id: 'e2', duplicate: true }] };
    expect(renderData(items, 'csv')).toEqual(['"id","duplicate"', '"e1","false"', '"e2","true"']);
    expect(renderData(items, 'value')).toEqual(['e1 false', 'e2 true']);
    expect(renderData({ count: 3, truncated: false }, 'value')).toEqual(['3', 'false']);
    expect(renderData({ count: 3, truncated: false }, 'csv')).toEqual(['"count","truncated"', '3,"false"']);
    expect(YAML.parse(renderData(items, 'yaml').join('\n'))).toEqual(items);
  });
});

describe('progressReporter', () => {
  it('prints "n of m finished" when n moves, at most once a second, and always the last one', () => {
    let clock = 0;
    const lines: string[] = [];
    const report = progressReporter((l) => lines.push(l), 5, () => clock);
    report(0);
    clock = 300;
    report(1);
    clock = 900;
    report(2);
    clock = 1000;
    report(2);
    clock = 1100;
    report(3);
    report(3);
    clock = 1200;
    report(5);
    expect(lines).toEqual(['0 of 5 finished\n', '2 of 5 finished\n', '5 of 5 finished\n']);
  });
});

describe('the CLI against a relay', () => {
  let relay: SpawnedRelay;
  let receiver: Receiver;
  let workDir: string;
  const cli = boundCli(() => ({ relay, workDir }));

  beforeAll(async () => {
    workDir = tempDir('relay-cli-output-');
    [relay, receiver] = await Promise.all([spawnRelay(path.join(workDir, 'data')), startReceiver()]);
  }, 30_000);

  afterAll(async () => {
    await relay?.stop();
    await receiver?.close();
    fs.rmSync(workDir, { recursive: true, force: true });
  });

  const api = async (method: string, pathname: string, body?: unknown, contentType = 'application/json') => {
    const res = await fetch(relay.url + pathname, {
      method,
      headers: { authorization: `Bearer ${relay.token}`, ...(body !== undefined && { 'content-type': contentType }) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as any };
  };

  it('prints listener-list and -show as yaml, value and csv, with -c and --sort-column, and a secret alone with -c', async () => {
    const created = [];
    for (const [workbook, path] of [['zeta', '/z'], ['alpha', '/a'], ['mid', '/m']]) {
      const r = await cli(['listener-add', 'workbook', workbook, receiver.url(path), '-f', 'value', '-c', 'secret', '-c', 'id']);
      expect(r.code, r.stderr).toBe(0);
      const [secret, id] = r.stdout.trim().split('\n');
      expect(secret).toMatch(/^whsec_/);
      created.push({ id, workbook, url: receiver.url(path) });
    }
    const sorted = [...created].sort((a, b) => a.workbook.localeCompare(b.workbook));

    const value = await cli(['listener-list', '-f', 'value', '-c', 'ID', '-c', 'workbook', '--sort-column', 'WORKBOOK']);
    expect(value).toEqual({ code: 0, stdout: sorted.map((l) => `${l.id} ${l.workbook}\n`).join(''), stderr: '' });
    // The help's example: -c url prints where deliveries go, not the callback's whole record.
    const urls = await cli(['listener-list', '-f', 'value', '-c', 'id', '-c', 'url', '--sort-column', 'workbook']);
    expect(urls).toEqual({ code: 0, stdout: sorted.map((l) => `${l.id} ${l.url}\n`).join(''), stderr: '' });
    const descending = await cli(['listener-list', '-f', 'value', '-c', 'workbook', '--sort-column', 'workbook', '--sort-descending']);
    expect(descending.stdout).toBe('zeta\nmid\nalpha\n');

    const csv = await cli(['listener-list', '-f', 'csv', '-c', 'id', '-c', 'event types', '-c', 'enabled', '-c', 'callback.format', '--sort-column', 'id']);
    expect(csv.code).toBe(0);
    expect(csv.stdout).toBe(
      ['"id","event_types","enabled","callback.format"', ...[...created].sort((a, b) => (a.id < b.id ? -1 : 1)).map((l) => `"${l.id}","EXECUTION,TASK","true","json"`)].join('\n') + '\n',
    );

    // The listener's JSON fields that are no default column are columns when asked for.
    const extra = await cli(['listener-list', '-f', 'csv', '-c', 'id', '-c', 'created_at', '-c', 'updated_at', '-c', 'filter', '--sort-column', 'id']);
    expect(extra.code, extra.stderr).toBe(0);
    const extraRows = extra.stdout.trim().split('\n');
    expect(extraRows[0]).toBe('"id","created_at","updated_at","filter"');
    expect(extraRows.slice(1).map((r) => r.split(',')[0])).toEqual([...created].map((l) => `"${l.id}"`).sort());
    for (const row of extraRows.slice(1)) expect(row).toMatch(/^"[^"]+","\d{4}-\d\d-\d\dT[^"]+Z","\d{4}-\d\d-\d\dT[^"]+Z",$/);

    const asJson = okJson(await cli(['listener-list', '-f', 'json']));
    const asYaml = await cli(['listener-list', '-f', 'yaml']);
    expect(asYaml.code).toBe(0);
    expect(YAML.parse(asYaml.stdout)).toEqual(asJson);

    const shown = await cli(['listener-show', created[0].id, '-f', 'yaml']);
    expect(YAML.parse(shown.stdout)).toEqual(okJson(await cli(['listener-show', created[0].id, '-f', 'json'])));
    const url = await cli(['listener-show', created[0].id, '-f', 'value', '-c', 'callback.url']);
    expect(url).toEqual({ code: 0, stdout: `${created[0].url}\n`, stderr: '' });
    const fields = await cli(['listener-show', created[0].id, '-c', 'workbook', '-c', 'enabled']);
    expect(fields.stdout).toBe('workbook: zeta\nenabled:  yes\n');

    const unknown = await cli(['listener-list', '-c', 'colour']);
    expect(unknown).toMatchObject({ code: 2, stdout: '' });
    expect(unknown.stderr).toMatch(/^error: unknown column "colour": give one of id, workbook, event_types, target, URL \(callback\), FORMAT \(callback.format\), enabled/);
    const unknownShow = await cli(['listener-show', created[0].id, '-c', 'colour']);
    expect(unknownShow).toMatchObject({ code: 2, stdout: '' });
    expect(unknownShow.stderr).toMatch(/^error: unknown column "colour": give one of id, workbook, event_types, /);

    // A change made with a mistyped -c: the answer is printed whole (the secret, shown once, is
    // not lost), and the usage error says the change was made.
    const typo = await cli(['listener-add', 'workbook', 'typo', receiver.url('/typo'), '-f', 'json', '-c', 'secrett']);
    expect(typo.code).toBe(2);
    const made = JSON.parse(typo.stdout);
    expect(made.secret).toMatch(/^whsec_/);
    expect(typo.stderr).toMatch(new RegExp(`^error: unknown column "secrett": give one of id, workbook, .*; listener ${made.id} was created all the same, shown whole above\n`));
    expect((await api('GET', `/v1/listeners/${made.id}`)).status).toBe(200);
    const rotated = await cli(['listener-rotate-secret', made.id, '-f', 'value', '-c', 'nope']);
    expect(rotated.code).toBe(2);
    expect(rotated.stdout).toMatch(/^whsec_/m);
    expect(rotated.stdout).not.toContain(made.secret);
    expect(rotated.stderr).toContain(`listener ${made.id} has its new secret all the same, shown whole above`);
  }, T);

  it('lists deliveries and executions newest first by default, --order asc oldest first, --all walking each once', async () => {
    const listener = (await api('POST', '/v1/listeners', { workbook: 'newest', event_types: ['NOTIFICATION'], callback: { url: receiver.url('/newest') } })).body.id;
    const events = Array.from({ length: 12 }, (_, i) => ({ id: `newest-${i}`, type: i % 2 ? 'ODD' : 'EVEN', workbook: 'newest' }));
    expect((await api('POST', '/v1/events', { events })).status).toBe(202);
    await eventually(async () => (await api('GET', `/v1/deliveries?listener_id=${listener}&status=succeeded`)).body.items.length === 12, 10_000, '12 delivered');

    const byDefault = await cli(['delivery-list', '--listener-id', listener, '-f', 'value', '-c', 'event_id', '-c', 'event_type', '-c', 'workbook']);
    expect(byDefault.stdout.trim().split('\n')).toEqual([...events].reverse().map((e) => `${e.id} ${e.type} newest`));
    const paged = await cli(['delivery-list', '--listener-id', listener, '--limit', '5', '--all', '-f', 'value', '-c', 'event_id']);
    expect(paged.stdout.trim().split('\n')).toEqual([...events].reverse().map((e) => e.id));
    const ascending = await cli(['delivery-list', '--listener-id', listener, '--order', 'asc', '--limit', '5', '--all', '-f', 'csv', '-c', 'event_id']);
    expect(ascending.stdout).toBe(['"event_id"', ...events.map((e) => `"${e.id}"`)].join('\n') + '\n');

    // Table: relative times; csv: the API's absolute ones.
    const table = await cli(['delivery-list', '--listener-id', listener, '--limit', '2']);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ID\s+EVENT\s+EVENT TYPE\s+WORKBOOK\s+LISTENER\s+STATUS\s+ATTEMPTS\s+NEXT ATTEMPT\s+UPDATED AT\s+LAST ERROR$/);
    expect(lines[1]).toMatch(new RegExp(`^\\S+\\s+newest-11\\s+ODD\\s+newest\\s+${listener}\\s+succeeded\\s+1\\s+-\\s+(\\d+ s ago|now)\\s+-$`));
    expect(lines.at(-1)).toMatch(new RegExp(`^more: callback-relay delivery-list --listener-id ${listener} --limit 2 --cursor \\S+$`));
    const times = await cli(['delivery-list', '--listener-id', listener, '--limit', '2', '-f', 'csv', '-c', 'updated_at']);
    expect(times.stdout).toMatch(/^"updated_at"\n"\d{4}-\d\d-\d\dT[\d:.]+Z"\n"\d{4}-\d\d-\d\dT[\d:.]+Z"\n$/);
    // The next page's command goes to stderr, so that stdout is only records.
    expect(times.stderr).toMatch(/^more: callback-relay delivery-list --listener-id \S+ --limit 2 --cursor \S+\n$/);

    const wb = "version: '2.0'\nname: newest_runs\nworkflows:\n  main:\n    tasks:\n      only: {action: std.noop}\n";
    expect((await api('POST', '/v1/workbooks', wb, 'application/yaml')).status).toBe(201);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await api('POST', '/v1/executions', { workbook: 'newest_runs', workflow: 'main' })).body.id);
    const executions = await cli(['execution-list', '--workbook', 'newest_runs', '-f', 'value', '-c', 'id']);
    expect(executions.stdout.trim().split('\n')).toEqual([...ids].reverse());
    const oldest = await cli(['execution-list', '--workbook', 'newest_runs', '--order', 'asc', '--limit', '3', '--all', '-f', 'value', '-c', 'id']);
    expect(oldest.stdout.trim().split('\n')).toEqual(ids);
    const shown = await cli(['execution-get', ids[0], '-f', 'csv', '-c', 'id', '-c', 'workflow']);
    expect(shown).toEqual({ code: 0, stdout: `"id","workflow"\n"${ids[0]}","main"\n`, stderr: '' });
  }, T);

  it('event-publish shows progress every second on a terminal, and only every 10 requests in a log', async () => {
    const events = Array.from({ length: 3500 }, (_, i) => JSON.stringify({ id: `tty-${i}`, type: 'TTY', workbook: 'tty' })).join('\n');
    const run = async (terminal: boolean, now: () => number) => {
      let stdout = '';
      let stderr = '';
      const code = await runCli(['event-publish'], {
        io: {
          stdout: (t) => (stdout += t),
          stderr: (t) => (stderr += t),
          env: cleanEnv({ RELAY_URL: relay.url, RELAY_TOKEN: relay.token }),
          cwd: workDir,
          version: 'test',
          stdin: Readable.from([events]),
          terminal: { stdout: terminal, stderr: terminal },
          now,
        },
      });
      return { code, stdout, stderr };
    };
    // A clock that moves 600 ms each time it is read: a second has passed at every other request.
    let t = 0;
    const onTerminal = await run(true, () => (t += 600));
    expect(onTerminal).toEqual({
      code: 0,
      stdout: 'published 3500 events (0 duplicates) in 4 requests\n',
      stderr: '… 2000 events published (2 requests)\n… 3500 events published (4 requests)\n',
    });
    const inLog = await run(false, () => (t += 600));
    expect(inLog).toEqual({ code: 0, stdout: 'published 3500 events (3500 duplicates) in 4 requests\n', stderr: '' });
  }, T);
});
