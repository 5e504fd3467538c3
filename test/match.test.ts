import { describe, it, expect } from 'vitest';
import {
  compileListenerRule,
  matchesListener,
  expandEventAliases,
  eventsOutsideCategories,
  EVENT_ALIASES,
  type ListenerRule,
  type MatchableEvent,
} from '../src/fanout/match.js';
import {
  categoryOf,
  EXECUTION_EVENT_TYPES,
  TASK_EVENT_TYPES,
  PING_EVENT_TYPE,
  type EventEnvelope,
} from '../src/records/event.js';
import type { StoredListener } from '../src/records/listener.js';

function event(type: string, over: Partial<EventEnvelope> = {}): EventEnvelope {
  const category = categoryOf(type);
  return {
    id: `evt-${type}`,
    type,
    category,
    workbook: 'billing',
    workflow: 'charge',
    execution_id: 'exec-1',
    task_id: category === 'TASK' ? 'task-1' : null,
    task_name: category === 'TASK' ? 'charge_card' : null,
    state: null,
    previous_state: null,
    state_info: null,
    sequence: 1,
    occurred_at: '2026-11-23T10:00:00.000Z',
    source: 'engine',
    priority: null,
    data_schema: null,
    source_format: null,
    data: {},
    ...over,
  };
}

function rule(over: Partial<ListenerRule> = {}): ListenerRule {
  return { workbook: 'billing', event_types: ['EXECUTION', 'TASK'], enabled: true, ...over };
}

const ALL_KNOWN = [...EXECUTION_EVENT_TYPES, ...TASK_EVENT_TYPES];
const NOTIFICATIONS = ['compute.instance.create.end', 'esi_leap.lease.fulfill.end', 'action_plan.cancel.start'];

describe('expandEventAliases', () => {
  it.each<[string[], string[]]>([
    [[], []],
    [['on-task-complete'], ['TASK_SUCCEEDED', 'TASK_FAILED', 'TASK_CANCELLED', 'TASK_SKIPPED']],
    [['on-execution-complete'], ['WORKFLOW_SUCCEEDED', 'WORKFLOW_FAILED', 'WORKFLOW_CANCELLED']],
    [['on-task-complete', 'WORKFLOW_FAILED'], ['TASK_SUCCEEDED', 'TASK_FAILED', 'TASK_CANCELLED', 'TASK_SKIPPED', 'WORKFLOW_FAILED']],
    [['TASK_FAILED', 'on-task-complete'], ['TASK_FAILED', 'TASK_SUCCEEDED', 'TASK_CANCELLED', 'TASK_SKIPPED']],
    [['WORKFLOW_LAUNCHED', 'WORKFLOW_LAUNCHED'], ['WORKFLOW_LAUNCHED']],
    [['compute.instance.create.end'], ['compute.instance.create.end']],
    [['constructor', 'toString'], ['constructor', 'toString']],
    [['ON-TASK-COMPLETE'], ['ON-TASK-COMPLETE']],
  ])('%j → %j', (input, expected) => {
    expect(expandEventAliases(input)).toEqual(expected);
  });

  it('does not change its input or the alias table', () => {
    const input = ['on-task-complete'];
    expandEventAliases(input).push('X');
    expect(input).toEqual(['on-task-complete']);
    expect(EVENT_ALIASES['on-task-complete']).toHaveLength(4);
    expect(Object.isFrozen(EVENT_ALIASES)).toBe(true);
  });
});

describe('eventsOutsideCategories', () => {
  it.each<[string[], string[] | null, string[]]>([
    [['TASK'], null, []],
    [['TASK'], ['on-task-complete', 'TASK_LAUNCHED'], []],
    [['TASK'], ['on-execution-complete', 'TASK_FAILED'], ['on-execution-complete']],
    [['EXECUTION'], ['TASK_FAILED', 'compute.instance.create.end'], ['TASK_FAILED', 'compute.instance.create.end']],
    [['NOTIFICATION'], ['compute.instance.create.end'], []],
    [['EXECUTION', 'TASK', 'NOTIFICATION'], ['on-task-complete', 'WORKFLOW_FAILED', 'x.y'], []],
  ])('%j with %j → %j', (event_types, events, expected) => {
    expect(eventsOutsideCategories({ event_types, events })).toEqual(expected);
  });
});

describe('matchesListener: categories and events', () => {
  const cases: Array<[string, Partial<ListenerRule>, string[], string[]]> = [
    ['EXECUTION only', { event_types: ['EXECUTION'] }, [...EXECUTION_EVENT_TYPES], [...TASK_EVENT_TYPES, ...NOTIFICATIONS]],
    ['TASK only', { event_types: ['TASK'] }, [...TASK_EVENT_TYPES], [...EXECUTION_EVENT_TYPES, ...NOTIFICATIONS]],
    ['NOTIFICATION only', { event_types: ['NOTIFICATION'] }, NOTIFICATIONS, ALL_KNOWN],
    ['all three categories', { event_types: ['EXECUTION', 'TASK', 'NOTIFICATION'] }, [...ALL_KNOWN, ...NOTIFICATIONS], []],
    ['events null = all of the categories', { event_types: ['TASK'], events: null }, [...TASK_EVENT_TYPES], [...EXECUTION_EVENT_TYPES]],
    ['events empty = all of the categories', { event_types: ['TASK'], events: [] }, [...TASK_EVENT_TYPES], [...EXECUTION_EVENT_TYPES]],
    [
      'on-task-complete',
      { event_types: ['TASK'], events: ['on-task-complete'] },
      ['TASK_SUCCEEDED', 'TASK_FAILED', 'TASK_CANCELLED', 'TASK_SKIPPED'],
      ['TASK_LAUNCHED', 'TASK_PAUSED', 'TASK_RESUMED', 'TASK_RERUN', ...EXECUTION_EVENT_TYPES],
    ],
    [
      'on-execution-complete',
      { event_types: ['EXECUTION'], events: ['on-execution-complete'] },
      ['WORKFLOW_SUCCEEDED', 'WORKFLOW_FAILED', 'WORKFLOW_CANCELLED'],
      ['WORKFLOW_LAUNCHED', 'WORKFLOW_PAUSED', 'WORKFLOW_RESUMED', 'WORKFLOW_RERUN', ...TASK_EVENT_TYPES],
    ],
    [
      'the design example',
      { event_types: ['EXECUTION', 'TASK'], events: ['on-task-complete', 'WORKFLOW_FAILED'] },
      ['TASK_SUCCEEDED', 'TASK_FAILED', 'TASK_CANCELLED', 'TASK_SKIPPED', 'WORKFLOW_FAILED'],
      ['TASK_LAUNCHED', 'WORKFLOW_SUCCEEDED', 'WORKFLOW_LAUNCHED', ...NOTIFICATIONS],
    ],
    [
      'an event outside the listed categories never matches',
      { event_types: ['TASK'], events: ['on-task-complete', 'WORKFLOW_FAILED'] },
      ['TASK_SUCCEEDED', 'TASK_FAILED', 'TASK_CANCELLED', 'TASK_SKIPPED'],
      ['WORKFLOW_FAILED'],
    ],
    ['only aliases of other categories', { event_types: ['TASK'], events: ['on-execution-complete'] }, [], [...ALL_KNOWN]],
    [
      'exact notification name',
      { event_types: ['NOTIFICATION'], events: ['compute.instance.create.end'] },
      ['compute.instance.create.end'],
      ['compute.instance.create.start', 'compute.instance.create', 'esi_leap.lease.fulfill.end', ...ALL_KNOWN],
    ],
    [
      'notification and task names together',
      { event_types: ['TASK', 'NOTIFICATION'], events: ['TASK_FAILED', 'esi_leap.lease.fulfill.end'] },
      ['TASK_FAILED', 'esi_leap.lease.fulfill.end'],
      ['TASK_SUCCEEDED', 'compute.instance.create.end', 'WORKFLOW_FAILED'],
    ],
    ['names are case-sensitive', { event_types: ['TASK'], events: ['task_failed'] }, [], ['TASK_FAILED']],
    ['no categories', { event_types: [] }, [], [...ALL_KNOWN, ...NOTIFICATIONS]],
    ['an unknown category is ignored', { event_types: ['BOGUS', 'TASK'] }, [...TASK_EVENT_TYPES], [...EXECUTION_EVENT_TYPES, ...NOTIFICATIONS]],
  ];

  it.each(cases)('%s', (_name, over, yes, no) => {
    const r = rule(over);
    const match = compileListenerRule(r);
    for (const type of yes) {
      expect(match(event(type)), `${type} should match`).toBe(true);
      expect(matchesListener(r, event(type)), `${type} should match`).toBe(true);
    }
    for (const type of no) {
      expect(match(event(type)), `${type} should not match`).toBe(false);
      expect(matchesListener(r, event(type)), `${type} should not match`).toBe(false);
    }
  });
});

describe('matchesListener: PING is never fanned out', () => {
  it.each<[string, Partial<ListenerRule>]>([
    ['NOTIFICATION category', { event_types: ['NOTIFICATION'] }],
    ['all categories, any workbook', { workbook: '*', event_types: ['EXECUTION', 'TASK', 'NOTIFICATION'] }],
    ['PING named in events', { event_types: ['NOTIFICATION'], events: ['PING'] }],
  ])('%s', (_name, over) => {
    expect(matchesListener(rule(over), event(PING_EVENT_TYPE))).toBe(false);
    expect(matchesListener(rule(over), event(PING_EVENT_TYPE, { workbook: null, execution_id: null }))).toBe(false);
  });
});

describe('matchesListener: workbook', () => {
  it.each<[string, string | null, boolean]>([
    ['billing', 'billing', true],
    ['billing', 'shipping', false],
    ['billing', 'Billing', false],
    ['billing', null, false],
    ['*', 'billing', true],
    ['*', 'shipping', true],
    ['*', null, true],
    ['*', '*', true],
    ['bill*', 'billing', false],
  ])('listener %j, event %j → %s', (workbook, eventWorkbook, expected) => {
    const r = rule({ workbook, event_types: ['EXECUTION', 'NOTIFICATION'] });
    expect(matchesListener(r, event('WORKFLOW_FAILED', { workbook: eventWorkbook }))).toBe(expected);
    expect(matchesListener(r, event('compute.instance.create.end', { workbook: eventWorkbook }))).toBe(expected);
  });

  it('a NOTIFICATION without a workbook reaches "*" listeners only', () => {
    const n = event('compute.instance.create.end', { workbook: null, workflow: null, execution_id: null });
    expect(matchesListener(rule({ workbook: '*', event_types: ['NOTIFICATION'] }), n)).toBe(true);
    expect(matchesListener(rule({ workbook: 'billing', event_types: ['NOTIFICATION'] }), n)).toBe(false);
  });
});

describe('matchesListener: target', () => {
  const all = { event_types: ['EXECUTION', 'TASK', 'NOTIFICATION'] };
  it.each<[string, ListenerRule['target'], Partial<EventEnvelope> & { type: string }, boolean]>([
    ['no target', null, { type: 'TASK_FAILED' }, true],
    ['undefined target', undefined, { type: 'TASK_FAILED' }, true],
    ['execution: its own event', { kind: 'execution', id: 'exec-1' }, { type: 'WORKFLOW_SUCCEEDED' }, true],
    ['execution: its task event', { kind: 'execution', id: 'exec-1' }, { type: 'TASK_SUCCEEDED', task_id: 'task-9' }, true],
    ['execution: another execution', { kind: 'execution', id: 'exec-1' }, { type: 'WORKFLOW_SUCCEEDED', execution_id: 'exec-2' }, false],
    ['execution: another execution task', { kind: 'execution', id: 'exec-1' }, { type: 'TASK_FAILED', execution_id: 'exec-2' }, false],
    ['execution: event without execution', { kind: 'execution', id: 'exec-1' }, { type: 'compute.instance.create.end', execution_id: null }, false],
    ['execution: id is not a task id', { kind: 'execution', id: 'task-1' }, { type: 'TASK_FAILED' }, false],
    ['task: its event', { kind: 'task', id: 'task-1' }, { type: 'TASK_FAILED' }, true],
    ['task: another task', { kind: 'task', id: 'task-1' }, { type: 'TASK_FAILED', task_id: 'task-2' }, false],
    ['task: the execution event', { kind: 'task', id: 'task-1' }, { type: 'WORKFLOW_FAILED' }, false],
    ['task: id is not an execution id', { kind: 'task', id: 'exec-1' }, { type: 'WORKFLOW_FAILED' }, false],
    ['task: event with no task id', { kind: 'task', id: 'task-1' }, { type: 'TASK_FAILED', task_id: null }, false],
  ])('%s', (_name, target, ev, expected) => {
    const { type, ...over } = ev;
    expect(matchesListener(rule({ ...all, target }), event(type, over))).toBe(expected);
  });

  it('an unknown target kind matches nothing', () => {
    const target = { kind: 'workbook', id: 'billing' } as unknown as ListenerRule['target'];
    expect(matchesListener(rule({ target }), event('TASK_FAILED'))).toBe(false);
  });
});

describe('matchesListener: filter', () => {
  const ev = event('TASK_FAILED', { state: 'ERROR', data: { purpose: 'test', properties: { vendor: 'dell', model: 'dell-740' } } });
  it.each<[string, ListenerRule['filter'], boolean]>([
    ['no filter', null, true],
    ['empty filter', {}, true],
    ['the design example', { 'data.purpose': 'test', 'data.properties.vendor': 'dell' }, true],
    ['one key differs', { 'data.purpose': 'prod', 'data.properties.vendor': 'dell' }, false],
    ['missing key', { 'data.region': 'eu' }, false],
    ['$regex', { 'data.properties.model': { $regex: '^dell-[0-9]+$' } }, true],
    ['envelope fields', { state: 'ERROR', task_name: 'charge_card' }, true],
    ['$exists false', { 'data.region': { $exists: false } }, true],
  ])('%s', (_name, filter, expected) => {
    expect(matchesListener(rule({ filter }), ev)).toBe(expected);
  });

  it('the filter is applied after the other rules', () => {
    const r = rule({ event_types: ['EXECUTION'], filter: { 'data.purpose': 'test' } });
    expect(matchesListener(r, ev)).toBe(false);
  });
});

describe('matchesListener: $regex filters in the esi-event-actions style', () => {
  // The importer turns each filter_params entry into a pattern anchored at the start, as
  // Python's re.match is; a listener written by hand keeps RegExp.test's search anywhere.
  const lease = (data: Record<string, unknown>) =>
    event('esi_leap.lease.fulfill.end', { workbook: null, execution_id: null, data });
  const listener = (filter: ListenerRule['filter']) =>
    rule({ workbook: '*', event_types: ['NOTIFICATION'], events: ['esi_leap.lease.fulfill.end'], filter });

  it.each<[string, ListenerRule['filter'], Record<string, unknown>, boolean]>([
    ['re.match: a prefix matches', { 'data.node_name': { $regex: '^spare-' } }, { node_name: 'spare-07' }, true],
    ['re.match: the value itself matches', { 'data.node_name': { $regex: '^spare-07' } }, { node_name: 'spare-07' }, true],
    ['re.match: a later occurrence does not', { 'data.node_name': { $regex: '^spare-' } }, { node_name: 'prod-spare-07' }, false],
    ['re.match: alternatives in a group stay anchored', { 'data.project_id': { $regex: '^(?:abc|def)' } }, { project_id: 'xabc' }, false],
    ['re.match: every key must match', { 'data.node_name': { $regex: '^spare-' }, 'data.project_id': { $regex: '^abc' } }, { node_name: 'spare-1', project_id: 'zzz' }, false],
    ['search: a later occurrence matches', { 'data.node_name': { $regex: 'spare-' } }, { node_name: 'prod-spare-07' }, true],
    ['search: no occurrence', { 'data.node_name': { $regex: 'spare-' } }, { node_name: 'prod-07' }, false],
    ['a missing key never matches', { 'data.node_name': { $regex: '' } }, {}, false],
    ['a number is not a string', { 'data.node_name': { $regex: '^1' } }, { node_name: 12 }, false],
  ])('%s', (_name, filter, data, expected) => {
    expect(matchesListener(listener(filter), lease(data))).toBe(expected);
  });

  it('decides at once on a pattern that would freeze a backtracking engine', () => {
    const match = compileListenerRule(listener({ 'data.x': { $regex: '^([a-z]|[a-z0-9])*$' } }));
    const started = performance.now();
    expect(match(lease({ x: 'a'.repeat(32) + '!' }))).toBe(false);
    expect(performance.now() - started).toBeLessThan(500);
  });

  it('refuses to compile a stored pattern the linear-time engine cannot run', () => {
    expect(() => compileListenerRule(listener({ 'data.x': { $regex: '(?<!a)b' } }))).toThrow(/lookbehind/);
  });
});

describe('matchesListener: enabled', () => {
  it.each<[string, Partial<ListenerRule>]>([
    ['plain', {}],
    ['wildcard workbook', { workbook: '*' }],
    ['all categories', { event_types: ['EXECUTION', 'TASK', 'NOTIFICATION'] }],
    ['target and filter', { target: { kind: 'execution', id: 'exec-1' }, filter: { workbook: 'billing' } }],
  ])('a disabled listener matches nothing (%s)', (_name, over) => {
    for (const type of [...ALL_KNOWN, ...NOTIFICATIONS]) {
      expect(matchesListener(rule({ ...over, enabled: true, event_types: ['EXECUTION', 'TASK', 'NOTIFICATION'] }), event(type))).toBe(true);
      expect(matchesListener(rule({ ...over, enabled: false, event_types: ['EXECUTION', 'TASK', 'NOTIFICATION'] }), event(type))).toBe(false);
    }
  });
});

describe('compileListenerRule', () => {
  it('combines every rule', () => {
    const match = compileListenerRule({
      workbook: 'billing',
      event_types: ['EXECUTION', 'TASK'],
      events: ['on-task-complete', 'WORKFLOW_FAILED'],
      target: { kind: 'execution', id: 'exec-1' },
      filter: { 'data.properties.vendor': 'dell' },
      enabled: true,
    });
    const dell = { properties: { vendor: 'dell' } };
    expect(match(event('TASK_SUCCEEDED', { data: dell }))).toBe(true);
    expect(match(event('WORKFLOW_FAILED', { data: dell }))).toBe(true);
    expect(match(event('TASK_SUCCEEDED', { data: { properties: { vendor: 'hp' } } }))).toBe(false);
    expect(match(event('TASK_SUCCEEDED', { data: dell, execution_id: 'exec-2' }))).toBe(false);
    expect(match(event('TASK_SUCCEEDED', { data: dell, workbook: 'shipping' }))).toBe(false);
    expect(match(event('TASK_LAUNCHED', { data: dell }))).toBe(false);
    expect(match(event('WORKFLOW_SUCCEEDED', { data: dell }))).toBe(false);
  });

  it('reads only the structural fields of an event', () => {
    const minimal: MatchableEvent = { type: 'TASK_FAILED', workbook: 'billing' };
    expect(compileListenerRule(rule())(minimal)).toBe(true);
    expect(compileListenerRule(rule({ target: { kind: 'task', id: 't' } }))(minimal)).toBe(false);
  });

  it('keeps the rule as it was compiled', () => {
    const events = ['TASK_FAILED'];
    const r = { ...rule({ event_types: ['TASK'] }), events };
    const match = compileListenerRule(r);
    events.push('TASK_SUCCEEDED');
    expect(match(event('TASK_SUCCEEDED'))).toBe(false);
    expect(matchesListener(r, event('TASK_SUCCEEDED'))).toBe(true);
  });

  it('accepts a stored listener record as a rule', () => {
    const stored: StoredListener = {
      id: 'lst_1',
      project: 'default',
      workbook: '*',
      event_types: ['NOTIFICATION'],
      events: ['compute.instance.create.end'],
      target: null,
      filter: { 'data.payload.flavor': { $in: ['m1.small', 'm1.large'] } },
      callback: { transport: 'http', url: 'https://hooks.example.com/wf', method: 'POST', headers: {}, format: 'json', timeout_ms: 15000 },
      retry: { schedule_ms: [5000] },
      ordering: 'none',
      max_in_flight: 32,
      rate_limit_per_s: null,
      enabled: true,
      description: null,
      secret: 'whsec_x',
      previous_secret: null,
      previous_secret_expires_at: null,
      disabled_reason: null,
      created_at: '2026-11-23T10:00:00.000Z',
      updated_at: '2026-11-23T10:00:00.000Z',
    };
    const n = event('compute.instance.create.end', { workbook: null, execution_id: null, data: { payload: { flavor: 'm1.small' } } });
    expect(matchesListener(stored, n)).toBe(true);
    const other: EventEnvelope = { ...n, data: { payload: { flavor: 'm1.tiny' } } };
    expect(matchesListener(stored, other)).toBe(false);
    expect(matchesListener({ ...stored, enabled: false }, n)).toBe(false);
  });
});
