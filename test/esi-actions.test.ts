import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { actionDescription, anchoredPattern, keyForField, planImport, problemText, type ImportPlan } from '../src/cli/esi-actions.js';
import { parseConfig } from '../src/cli/esi-config.js';
import { compileFilter } from '../src/fanout/filter.js';
import { ESI_DOCS_SAMPLE } from './helpers/esi-sample.js';

/*
 * An esi-event-actions configuration as the relay's listeners and settings: every key of an
 * action section, every [DEFAULT] key, and what the old tool would have refused or crashed on.
 */

const BROKER = '[DEFAULT]\nuser = guest\npassword = guest\nhost = 127.0.0.1\nport = 5672\nqueues = q.info,q.error\n';
const plan = (text: string, timeoutMs?: number): ImportPlan => planImport(parseConfig(text), { fileName: '/etc/esi/esi-event-action-listener.conf', timeoutMs });
const action = (body: string) => plan(`${BROKER}\n[a]\n${body}`);

const DOCS_SAMPLE = ESI_DOCS_SAMPLE;

describe('the sample from the docs', () => {
  const p = plan(DOCS_SAMPLE);

  it('makes [fulfill] one exec listener', () => {
    expect(p.actions).toEqual([
      {
        section: 'fulfill',
        script: 'fulfill.sh',
        body: {
          workbook: '*',
          event_types: ['NOTIFICATION'],
          events: ['esi_leap.lease.fulfill.end'],
          filter: { 'data.purpose': { $regex: '^(?:test)' }, 'data.properties.vendor': { $regex: '^(?:dell)' } },
          callback: { transport: 'exec', command: 'fulfill.sh', args: ['data.node_name', 'data.fulfill_time'] },
          description: 'esi-event-actions [fulfill] from esi-event-action-listener.conf',
        },
        lines: { events: 9, script: 10, script_params: 11, filter_params: 12 },
      },
    ]);
  });

  it('refuses [delete] on filter_params, naming its line, and the placeholder port', () => {
    expect(p.problems.map(problemText)).toEqual([
      expect.stringMatching(/^\[delete\] filter_params \(line 18\): is not valid JSON: /),
      '[DEFAULT] port (line 5): "<port in transport_url>" is not a port number (1 to 65535)',
    ]);
    expect(p.ingestUrl).toBeNull();
    expect(p.queues).toEqual(['esi_leap_versioned_notifications.info', 'esi_leap_versioned_notifications.error']);
  });
});

describe('action sections', () => {
  it('split events on commas, dropping blanks', () => {
    expect(action('events = a.b.end, c.d.end,,\nscript = x.sh').actions[0].body.events).toEqual(['a.b.end', 'c.d.end']);
  });

  it('run the base name of script, which must be one file', () => {
    expect(action('events = a.end\nscript = /opt/esi/scripts/fulfill.sh').actions[0]).toMatchObject({ script: '/opt/esi/scripts/fulfill.sh', body: { callback: { command: 'fulfill.sh' } } });
    expect(action('events = a.end\nscript = ./fulfill.sh').actions[0].body.callback.command).toBe('fulfill.sh');
    expect(action('events = a.end\nscript = /opt/run.sh --verbose').problems.map(problemText)).toEqual([
      expect.stringMatching(/^\[a\] script \(line 10\): "\/opt\/run.sh --verbose" is more than one file name: esi-event-actions ran it through a shell/),
    ]);
    expect(action('events = a.end\nscript = .hidden').problems[0]).toMatchObject({ key: 'script', message: expect.stringMatching(/file name directly inside RELAY_EXEC_DIR/) });
  });

  it('turn script_params into data. paths, and none into no arguments', () => {
    expect(action('events = a.end\nscript = x.sh\nscript_params = node_name, properties.vendor ,lease.id').actions[0].body.callback.args).toEqual([
      'data.node_name', 'data.properties.vendor', 'data.lease.id',
    ]);
    expect(action('events = a.end\nscript = x.sh').actions[0].body.callback.args).toEqual([]);
    expect(action('events = a.end\nscript = x.sh\nscript_params =').actions[0].body.callback.args).toEqual([]);
  });

  it('explain an inline comment, which configparser keeps in the value', () => {
    const p = action('events = a.end\nscript = x.sh\nscript_params = node_name     # these must be attributes');
    expect(p.problems).toEqual([
      { section: 'a', key: 'script_params', line: 11, message: expect.stringMatching(/^"node_name     # these must be attributes" is not a key of the payload \(configparser keeps "# …"/) },
    ]);
    expect(p.problems[0].message).toMatch(/put the comment on a line of its own/);
    expect(action('events = a.end\nscript = x.sh\nfilter_params = {"a": "b"} # note').problems[0]).toMatchObject({
      key: 'filter_params',
      message: expect.stringMatching(/not valid JSON.*put the comment on a line of its own/),
    });
    expect(action('events = a.end # note\nscript = x.sh').problems[0]).toMatchObject({ key: 'events', message: expect.stringMatching(/line of its own/) });
  });

  it('refuse paths with empty segments', () => {
    expect(action('events = a.end\nscript = x.sh\nscript_params = a..b').problems[0]).toMatchObject({ key: 'script_params', message: expect.stringMatching(/empty path segment/) });
  });

  it('make filter_params anchored $regex filters under data.', () => {
    const filter = (json: string) => action(`events = a.end\nscript = x.sh\nfilter_params = ${json}`);
    expect(filter('{"purpose": "test|prod", "lease.owner": "^acme"}').actions[0].body.filter).toEqual({
      'data.purpose': { $regex: '^(?:test|prod)' },
      'data.lease.owner': { $regex: '^(?:^acme)' },
    });
    expect(filter('{}').actions[0].body.filter).toBeNull();
    expect(action('events = a.end\nscript = x.sh').actions[0].body.filter).toBeNull();
    expect(filter('["purpose"]').problems[0]).toMatchObject({ key: 'filter_params', message: expect.stringMatching(/must be a JSON object/) });
    expect(filter('null').problems[0]).toMatchObject({ key: 'filter_params', message: expect.stringMatching(/must be a JSON object/) });
    expect(filter('{"count": 5}').problems[0]).toMatchObject({ key: 'filter_params', message: 'the pattern of "count" must be a string (a regular expression), not 5' });
    expect(filter('{"": "x"}').problems[0]).toMatchObject({ key: 'filter_params', message: 'has an empty key' });
    // Python's lookahead has no linear-time equivalent: the relay refuses it, so the import says so.
    expect(filter('{"purpose": "(?=test)"}').problems[0]).toMatchObject({ key: 'filter_params', message: expect.stringMatching(/^filter\.data\.purpose/) });
  });

  it('read a filter over several lines', () => {
    expect(action('events = a.end\nscript = x.sh\nfilter_params = {"purpose": "test",\n    "properties.vendor": "dell"}').actions[0].body.filter).toEqual({
      'data.purpose': { $regex: '^(?:test)' },
      'data.properties.vendor': { $regex: '^(?:dell)' },
    });
  });

  it('need events and script', () => {
    expect(action('script = x.sh').problems.map(problemText)).toEqual(['[a] events: is missing or empty']);
    expect(action('events = a.end').problems.map(problemText)).toEqual(['[a] script: is missing or empty']);
    expect(action('events = ,\nscript = x.sh').problems.map(problemText)).toEqual(['[a] events (line 9): names no event type']);
  });

  it('inherit [DEFAULT] keys, as configparser does', () => {
    const p = plan(`${BROKER}script_params = node_name\n[a]\nevents = a.end\nscript = x.sh\n[b]\nevents = b.end\nscript = y.sh\nscript_params = other`);
    expect(p.actions.map((a) => a.body.callback.args)).toEqual([['data.node_name'], ['data.other']]);
  });

  it('interpolate values, and name the section and key of one that cannot be', () => {
    const p = plan(`${BROKER}dir = /opt/esi\n[a]\nevents = a.end\nscript = %(dir)s/a.sh\n[b]\nevents = b.end\nscript = x.sh\nfilter_params = {"purpose": "100%"}`);
    expect(p.actions.map((a) => [a.section, a.script, a.body.callback.command])).toEqual([['a', '/opt/esi/a.sh', 'a.sh']]);
    expect(p.problems).toEqual([{ section: 'b', key: 'filter_params', line: 14, message: expect.stringMatching(/'%' must be followed by/) }]);
  });

  it('warn about keys esi-event-actions never read', () => {
    const p = action('events = a.end\nscript = x.sh\nscript_param = node_name');
    expect(p.warnings.map(problemText)).toEqual(['[a] script_param (line 11): is not a key esi-event-actions reads (events, script, script_params, filter_params); it is ignored']);
    expect(p.actions).toHaveLength(1);
  });

  it('take a timeout for every script when given', () => {
    expect(plan(`${BROKER}[a]\nevents = a.end\nscript = x.sh`, 600_000).actions[0].body.callback).toEqual({ transport: 'exec', command: 'x.sh', args: [], timeout_ms: 600_000 });
  });

  it('describe the listener by section and file', () => {
    expect(actionDescription('fulfill', '/etc/esi/x.conf')).toBe('esi-event-actions [fulfill] from x.conf');
    expect(actionDescription('s'.repeat(2000), 'x.conf')).toHaveLength(1000);
  });
});

describe('[DEFAULT] as relay settings', () => {
  it('builds the ingest URL with the password masked, and the queue list', () => {
    const p = plan('[DEFAULT]\nuser = esi user\npassword = p@ss:w/rd\nhost = rabbit.example\nport = 5671\nqueues = a.info, a.error ,a.info\n');
    expect(p.ingestUrl).toBe('amqp://esi%20user:***@rabbit.example:5671/');
    expect(p.queues).toEqual(['a.info', 'a.error']);
    expect(p.problems).toEqual([]);
    expect(JSON.stringify(p)).not.toContain('p@ss');
  });

  it('brackets an IPv6 host', () => {
    expect(plan('[DEFAULT]\nuser = u\npassword = p\nhost = fd00::1\nport = 5672\nqueues = q\n').ingestUrl).toBe('amqp://u:***@[fd00::1]:5672/');
  });

  it('names each missing or bad key', () => {
    const p = plan('[DEFAULT]\nuser = u\nport = 99999\n');
    expect(p.problems.map(problemText)).toEqual([
      '[DEFAULT] password: is missing or empty: esi-event-actions needs it to reach the broker',
      '[DEFAULT] host: is missing or empty: esi-event-actions needs it to reach the broker',
      '[DEFAULT] port (line 3): "99999" is not a port number (1 to 65535)',
      '[DEFAULT] queues: is missing or empty: esi-event-actions consumes these queues',
    ]);
    expect(p.ingestUrl).toBeNull();
  });

  it('takes an empty password', () => {
    expect(plan('[DEFAULT]\nuser = u\npassword =\nhost = h\nport = 5672\nqueues = q\n').ingestUrl).toBe('amqp://u:@h:5672/');
  });
});

describe('the anchored filter matches where re.match does', () => {
  const PYTHON = 'import json, re, sys\ncases = json.load(sys.stdin)\nprint(json.dumps([re.match(p, v) is not None for p, v in cases]))';
  const cases: Array<[string, string]> = [
    ['test', 'test'], ['test', 'testing'], ['test', 'a test'], ['test', 'Test'],
    ['a|b', 'b-side'], ['a|b', 'xb'], ['dell$', 'dell'], ['dell$', 'dell-emc'],
    ['[0-9]+', '42 nodes'], ['[0-9]+', 'node 42'], ['x*', 'anything'], ['', ''], ['.', ''],
  ];

  it('on every case, as Python itself answers', () => {
    const python = JSON.parse(execFileSync('/usr/bin/python3', ['-c', PYTHON], { input: JSON.stringify(cases), encoding: 'utf8' })) as boolean[];
    const ours = cases.map(([pattern, value]) => compileFilter({ 'data.v': { $regex: anchoredPattern(pattern) } })({ data: { v: value } }));
    expect(ours).toEqual(python);
    expect(python.filter(Boolean).length).toBeGreaterThan(3);
  });
});

describe('keyForField', () => {
  it('names the section key a listener field came from', () => {
    expect(['callback.command', 'callback.args.2', 'filter.data.x', 'events.0', 'callback.transport'].map(keyForField)).toEqual([
      'script', 'script_params', 'filter_params', 'events', 'callback.transport',
    ]);
  });
});
