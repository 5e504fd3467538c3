import { describe, it, expect } from 'vitest';
import {
  FilterSchema,
  FilterConditionSchema,
  compileFilter,
  getPath,
  InvalidFilterError,
  type Filter,
} from '../src/fanout/filter.js';
import type { EventEnvelope } from '../src/records/event.js';

const envelope: EventEnvelope = {
  id: '01JD0000000000000000000000',
  type: 'TASK_SUCCEEDED',
  category: 'TASK',
  workbook: 'billing',
  workflow: 'charge',
  execution_id: 'exec-1',
  task_id: 'task-1',
  task_name: 'charge_card',
  state: 'SUCCESS',
  previous_state: 'RUNNING',
  state_info: null,
  sequence: 7,
  occurred_at: '2026-11-23T10:00:00.123Z',
  source: 'engine',
  data: {
    purpose: 'test',
    count: 3,
    zero: 0,
    flag: false,
    nothing: null,
    tags: ['a', 'b'],
    hosts: [{ name: 'h1' }, { name: 'h2' }],
    properties: { vendor: 'dell', model: 'dell-740', cores: 64, nested: { deep: { value: 'x' } } },
    'dotted.key': 'flat',
    payload: { 'nova_object.data': { host: 'compute-1', 'a.b': { c: 1 } } },
  },
};

const matches = (filter: Filter, env: object = envelope) => compileFilter(filter)(env);

describe('getPath', () => {
  it.each<[string, unknown]>([
    ['workbook', 'billing'],
    ['state_info', null],
    ['sequence', 7],
    ['data.properties.vendor', 'dell'],
    ['data.properties.nested.deep.value', 'x'],
    ['data.tags.1', 'b'],
    ['data.tags.length', 2],
    ['data.hosts.0.name', 'h1'],
    ['data.hosts.2.name', undefined],
    ['data.missing', undefined],
    ['data.missing.deeper', undefined],
    ['data.purpose.length', undefined], // strings are not walked into
    ['data.nothing.x', undefined],
    ['data.count.x', undefined],
    ['data.dotted.key', 'flat'],
    ['data.payload.nova_object.data.host', 'compute-1'],
    ['data.payload.nova_object.data.a.b.c', 1],
    ['constructor', undefined],
    ['data.constructor', undefined],
    ['data.__proto__', undefined],
    ['data.toString', undefined],
  ])('%s → %j', (path, expected) => {
    expect(getPath(envelope, path)).toEqual(expected);
  });

  it('takes a list of segments', () => {
    expect(getPath(envelope, ['data', 'properties', 'vendor'])).toBe('dell');
    expect(getPath(envelope, ['data', 'dotted.key'])).toBe('flat');
  });

  it('prefers an exact segment over a dotted key, without backtracking', () => {
    const obj = { a: { b: 1 }, 'a.b': 2 };
    expect(getPath(obj, 'a.b')).toBe(1);
    // "a" exists, so "a.b" is never tried even though the walk then fails inside "a".
    expect(getPath({ a: { x: 1 }, 'a.b': 2 }, 'a.b')).toBeUndefined();
    expect(getPath({ 'a.b': 2 }, 'a.b')).toBe(2);
  });

  it('reads own properties parsed from JSON, even odd names', () => {
    const obj = JSON.parse('{"__proto__": {"x": 1}, "constructor": "c"}');
    expect(getPath(obj, '__proto__.x')).toBe(1);
    expect(getPath(obj, 'constructor')).toBe('c');
  });

  it('is undefined for non-objects at the root', () => {
    for (const root of [null, undefined, 1, 'str', true]) expect(getPath(root, 'a')).toBeUndefined();
    expect(getPath(null, 'a.b')).toBeUndefined();
  });
});

describe('compileFilter: plain values', () => {
  it.each<[string, Filter, boolean]>([
    ['empty filter matches everything', {}, true],
    ['top-level string equal', { workbook: 'billing' }, true],
    ['top-level string different', { workbook: 'other' }, false],
    ['state', { state: 'SUCCESS' }, true],
    ['nested path equal', { 'data.properties.vendor': 'dell' }, true],
    ['nested path different', { 'data.properties.vendor': 'hp' }, false],
    ['deep nested path', { 'data.properties.nested.deep.value': 'x' }, true],
    ['number equal', { 'data.count': 3 }, true],
    ['number vs numeric string is a mismatch', { 'data.count': '3' }, false],
    ['string vs number is a mismatch', { 'data.properties.cores': '64' }, false],
    ['zero is not false', { 'data.zero': false }, false],
    ['false equal', { 'data.flag': false }, true],
    ['null equal to present null', { 'data.nothing': null }, true],
    ['null equal to top-level null', { state_info: null }, true],
    ['null does not match a missing key', { 'data.missing': null }, false],
    ['null does not match a value', { 'data.purpose': null }, false],
    ['missing key', { 'data.missing': 'x' }, false],
    ['missing intermediate', { 'data.nope.vendor': 'dell' }, false],
    ['array never equals a scalar', { 'data.tags': 'a' }, false],
    ['object never equals a scalar', { 'data.properties': 'dell' }, false],
    ['array index', { 'data.hosts.1.name': 'h2' }, true],
    ['all keys must match (both do)', { workbook: 'billing', 'data.purpose': 'test' }, true],
    ['all keys must match (one does not)', { workbook: 'billing', 'data.purpose': 'prod' }, false],
    ['all keys must match (one missing)', { workbook: 'billing', 'data.missing': 'x' }, false],
    ['dotted payload key', { 'data.payload.nova_object.data.host': 'compute-1' }, true],
  ])('%s', (_name, filter, expected) => {
    expect(matches(filter)).toBe(expected);
  });
});

describe('compileFilter: operators', () => {
  it.each<[string, Filter, boolean]>([
    // $in
    ['$in hit', { 'data.properties.vendor': { $in: ['hp', 'dell'] } }, true],
    ['$in miss', { 'data.properties.vendor': { $in: ['hp', 'lenovo'] } }, false],
    ['$in numbers', { 'data.count': { $in: [1, 2, 3] } }, true],
    ['$in is type-strict', { 'data.count': { $in: ['3'] } }, false],
    ['$in mixed scalars', { 'data.nothing': { $in: ['x', 1, true, null] } }, true],
    ['$in with null does not match a missing key', { 'data.missing': { $in: [null] } }, false],
    ['$in on a missing key', { 'data.missing': { $in: ['x'] } }, false],
    ['$in on an array value does not look inside it', { 'data.tags': { $in: ['a', 'b'] } }, false],
    ['$in on booleans', { 'data.flag': { $in: [false] } }, true],
    // $ne
    ['$ne different', { 'data.properties.vendor': { $ne: 'hp' } }, true],
    ['$ne same', { 'data.properties.vendor': { $ne: 'dell' } }, false],
    ['$ne on a missing key is a non-match', { 'data.missing': { $ne: 'dell' } }, false],
    ['$ne null on a present value', { 'data.purpose': { $ne: null } }, true],
    ['$ne null on null', { 'data.nothing': { $ne: null } }, false],
    ['$ne is type-strict', { 'data.count': { $ne: '3' } }, true],
    ['$ne on an object value', { 'data.properties': { $ne: 'x' } }, true],
    // $regex
    ['$regex hit', { 'data.properties.model': { $regex: '^dell-[0-9]+$' } }, true],
    ['$regex miss', { 'data.properties.model': { $regex: '^hp-' } }, false],
    ['$regex unanchored', { 'data.properties.model': { $regex: '74' } }, true],
    ['$regex is case-sensitive', { 'data.properties.model': { $regex: '^DELL' } }, false],
    ['$regex on a number is a non-match', { 'data.count': { $regex: '3' } }, false],
    ['$regex on null is a non-match', { 'data.nothing': { $regex: '.*' } }, false],
    ['$regex on a missing key', { 'data.missing': { $regex: '.*' } }, false],
    ['$regex on an array is a non-match', { 'data.tags': { $regex: 'a' } }, false],
    ['$regex on event type', { type: { $regex: '^TASK_' } }, true],
    // $exists
    ['$exists true on a value', { 'data.purpose': { $exists: true } }, true],
    ['$exists true on null', { 'data.nothing': { $exists: true } }, true],
    ['$exists true on falsy values', { 'data.zero': { $exists: true }, 'data.flag': { $exists: true } }, true],
    ['$exists true on an object', { 'data.properties': { $exists: true } }, true],
    ['$exists true on a missing key', { 'data.missing': { $exists: true } }, false],
    ['$exists false on a missing key', { 'data.missing': { $exists: false } }, true],
    ['$exists false on a missing intermediate', { 'data.nope.deeper': { $exists: false } }, true],
    ['$exists false on null', { 'data.nothing': { $exists: false } }, false],
    ['$exists false on a value', { 'data.purpose': { $exists: false } }, false],
    ['$exists false on an inherited name', { 'data.toString': { $exists: false } }, true],
    // $gt / $lt
    ['$gt number hit', { 'data.count': { $gt: 2 } }, true],
    ['$gt number equal is a miss', { 'data.count': { $gt: 3 } }, false],
    ['$lt number hit', { 'data.count': { $lt: 4 } }, true],
    ['$lt number equal is a miss', { 'data.count': { $lt: 3 } }, false],
    ['$gt and $lt range hit', { 'data.properties.cores': { $gt: 32, $lt: 128 } }, true],
    ['$gt and $lt range miss', { 'data.properties.cores': { $gt: 64, $lt: 128 } }, false],
    ['$gt negative and zero', { 'data.zero': { $gt: -1, $lt: 1 } }, true],
    ['$gt string (ISO time) hit', { occurred_at: { $gt: '2026-11-23T00:00:00Z' } }, true],
    ['$lt string (ISO time) miss', { occurred_at: { $lt: '2026-01-01T00:00:00Z' } }, false],
    ['$gt string is code-unit order', { 'data.purpose': { $gt: 'tess' } }, true],
    ['$gt number vs string value is a mismatch', { 'data.purpose': { $gt: 1 } }, false],
    ['$gt string vs number value is a mismatch', { 'data.count': { $gt: '1' } }, false],
    ['$lt string vs number value is a mismatch', { 'data.count': { $lt: '9' } }, false],
    ['$lt on null is a mismatch', { 'data.nothing': { $lt: 1 } }, false],
    ['$lt on a boolean is a mismatch', { 'data.flag': { $lt: 1 } }, false],
    ['$gt on a missing key', { 'data.missing': { $gt: 0 } }, false],
    ['$gt on the sequence', { sequence: { $gt: 6 } }, true],
    // combinations
    ['$exists and $regex', { 'data.properties.model': { $exists: true, $regex: 'dell' } }, true],
    ['$in and $ne', { 'data.properties.vendor': { $in: ['dell', 'hp'], $ne: 'dell' } }, false],
    ['operators and plain values together', { workbook: 'billing', 'data.count': { $gt: 1 } }, true],
  ])('%s', (_name, filter, expected) => {
    expect(matches(filter)).toBe(expected);
  });

  it('keeps no regex state between events', () => {
    const test = compileFilter({ 'data.v': { $regex: 'a' } });
    for (let i = 0; i < 5; i++) expect(test({ data: { v: 'aaa' } })).toBe(true);
  });

  it('can be reused across many envelopes', () => {
    const test = compileFilter({ 'data.properties.vendor': 'dell', 'data.count': { $gt: 1 } });
    expect(test(envelope)).toBe(true);
    expect(test({ ...envelope, data: { properties: { vendor: 'dell' }, count: 0 } })).toBe(false);
    expect(test({ ...envelope, data: {} })).toBe(false);
    expect(test({})).toBe(false);
  });

  it('works on NOTIFICATION envelopes with oslo payloads', () => {
    const notification = {
      ...envelope,
      type: 'compute.instance.create.end',
      category: 'NOTIFICATION',
      workbook: null,
      execution_id: null,
      task_id: null,
      data: { publisher_id: 'compute:host1', payload: { 'nova_object.data': { flavor: 'm1.small' } } },
    };
    expect(matches({ 'data.publisher_id': { $regex: '^compute:' } }, notification)).toBe(true);
    expect(matches({ 'data.payload.nova_object.data.flavor': 'm1.small' }, notification)).toBe(true);
    expect(matches({ workbook: null }, notification)).toBe(true);
    expect(matches({ execution_id: { $exists: true } }, notification)).toBe(true);
  });

  it('refuses malformed filters that bypassed the schema', () => {
    const bad: unknown[] = [
      { 'data.x': { $foo: 1 } },
      { 'data.x': {} },
      { 'data.x': [1] },
      { 'data.x': { $in: 'a' } },
      { 'data.x': { $in: [{}] } },
      { 'data.x': { $regex: '(' } },
      { 'data.x': { $regex: 1 } },
      { 'data.x': { $exists: 'yes' } },
      { 'data.x': { $gt: null } },
      { 'data.x': { $lt: true } },
      { 'data.x': { $ne: {} } },
    ];
    for (const filter of bad) {
      expect(() => compileFilter(filter as Filter), JSON.stringify(filter)).toThrow(InvalidFilterError);
    }
    try {
      compileFilter({ 'data.x': { $foo: 1 } } as unknown as Filter);
    } catch (err) {
      expect((err as InvalidFilterError).code).toBe('INVALID_FILTER');
      expect((err as Error).message).toContain('data.x');
      expect((err as Error).message).toContain('$foo');
    }
  });
});

describe('FilterSchema', () => {
  const issues = (input: unknown) => {
    const r = FilterSchema.safeParse(input);
    return r.success ? [] : r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
  };

  it.each<[string, unknown]>([
    ['empty', {}],
    ['scalars', { workbook: 'billing', 'data.count': 3, 'data.flag': false, state_info: null }],
    ['every operator', {
      'data.a': { $in: ['x', 1, true, null] },
      'data.b': { $ne: 'x' },
      'data.c': { $regex: '^dell-[0-9]+$' },
      'data.d': { $exists: true },
      'data.e': { $exists: false },
      'data.f': { $gt: 1, $lt: 10 },
      'data.g': { $gt: 'a', $lt: 'b' },
    }],
    ['the design example', { 'data.purpose': 'test', 'data.properties.vendor': 'dell' }],
    ['safe regexes', { 'data.a': { $regex: '\\bfoo\\b' }, 'data.b': { $regex: '(beep|boop)*' }, 'data.c': { $regex: '(?<name>a)b' } }],
    ['every envelope field', { id: 'x', type: 'x', category: 'TASK', workflow: 'w', execution_id: 'e', task_id: 't',
      task_name: 'n', state: 's', previous_state: 'p', sequence: 1, occurred_at: 'o', source: 'engine' }],
  ])('accepts %s', (_name, input) => {
    expect(issues(input)).toEqual([]);
    expect(FilterSchema.parse(input)).toEqual(input);
  });

  it.each<[string, unknown, string, RegExp]>([
    ['unknown operator', { 'data.x': { $foo: 1 } }, 'data.x', /unknown operator "\$foo".*\$in, \$ne, \$regex, \$exists, \$gt, \$lt/],
    ['nested object instead of a dot path', { data: { vendor: 'dell' } }, 'data', /unknown operator "vendor".*dot path/],
    ['empty operator object', { 'data.x': {} }, 'data.x', /needs at least one of/],
    ['array as a plain value', { 'data.x': ['a'] }, 'data.x', /must be a string, number, boolean, null, or an object of operators/],
    ['exponential regex', { 'data.x': { $regex: '(a+)+$' } }, 'data.x.$regex', /may take exponential time/],
    ['another exponential regex', { 'data.x': { $regex: '(x+x+)+y' } }, 'data.x.$regex', /exponential time/],
    ['star height two', { 'data.x': { $regex: '(a*)*' } }, 'data.x.$regex', /exponential time/],
    ['repeated group', { 'data.x': { $regex: '(a+){10}' } }, 'data.x.$regex', /exponential time/],
    ['invalid regex', { 'data.x': { $regex: '(' } }, 'data.x.$regex', /Invalid regular expression/],
    ['invalid regex class', { 'data.x': { $regex: '[z-a]' } }, 'data.x.$regex', /Invalid regular expression/],
    ['non-string regex', { 'data.x': { $regex: 5 } }, 'data.x', /\$regex: .*expected string/],
    ['empty $in', { 'data.x': { $in: [] } }, 'data.x.$in', /\$in needs at least one value/],
    ['$in with an object', { 'data.x': { $in: [{ a: 1 }] } }, 'data.x', /\$in\.0: must be a string, number, boolean or null/],
    ['$in not an array', { 'data.x': { $in: 'a' } }, 'data.x', /\$in: .*expected array/],
    ['$exists not a boolean', { 'data.x': { $exists: 'yes' } }, 'data.x', /\$exists: .*expected boolean/],
    ['$gt a boolean', { 'data.x': { $gt: true } }, 'data.x', /\$gt: must be a number or a string/],
    ['$ne an object', { 'data.x': { $ne: {} } }, 'data.x', /\$ne: must be a string, number, boolean or null/],
    ['$gt and $lt of different types', { 'data.x': { $gt: 1, $lt: 'z' } }, 'data.x', /both be numbers or both be strings/],
    ['$exists false with another operator', { 'data.x': { $exists: false, $ne: 'a' } }, 'data.x', /cannot be combined/],
    ['unknown root field', { 'payload.vendor': 'dell' }, 'payload.vendor', /"payload" is not a field of the event envelope/],
    ['empty segment', { 'data..vendor': 'dell' }, 'data..vendor', /empty path segment/],
    ['trailing dot', { 'data.': 'dell' }, 'data.', /empty path segment/],
    ['empty key', { '': 'dell' }, '', /dot path/],
    ['overlong key', { ['data.' + 'x'.repeat(300)]: 1 }, 'data.' + 'x'.repeat(300), /at most 256 characters/],
    ['not an object', 'data.x=1', '', /expected record/],
  ])('refuses %s', (_name, input, path, message) => {
    const found = issues(input);
    expect(found.length).toBeGreaterThan(0);
    expect(found[0].path).toBe(path);
    expect(found[0].message).toMatch(message);
  });

  it('reports one message for an unknown operator', () => {
    expect(issues({ 'data.x': { $foo: 1 } })).toHaveLength(1);
  });

  it('limits the number of keys', () => {
    const many = Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`data.k${i}`, i]));
    expect(issues(many)[0].message).toMatch(/at most 50 keys/);
  });

  it('accepts what compileFilter compiles, and the compiled filter behaves', () => {
    const filter = FilterSchema.parse({ 'data.properties.model': { $regex: '^dell-[0-9]+$' }, 'data.count': { $gt: 2 } });
    expect(compileFilter(filter)(envelope)).toBe(true);
  });

  it('validates a single condition', () => {
    expect(FilterConditionSchema.safeParse('dell').success).toBe(true);
    expect(FilterConditionSchema.safeParse({ $regex: '(a+)+$' }).success).toBe(false);
    expect(FilterConditionSchema.safeParse(undefined).success).toBe(false);
  });
});
