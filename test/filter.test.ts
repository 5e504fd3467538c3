import { describe, it, expect } from 'vitest';
import {
  FilterSchema,
  FilterConditionSchema,
  compileFilter,
  InvalidFilterError,
  MAX_CONDITION_DEPTH,
  MAX_FILTER_BYTES,
  MAX_FILTER_KEYS,
  MAX_IN_VALUES,
  MAX_PATH_LENGTH,
  MAX_REGEX_PROGRAM,
  MAX_REGEX_SUBJECT_LENGTH,
  type Filter,
} from '../src/fanout/filter.js';
import { compilePattern } from '../src/fanout/pattern.js';
import { readEnvelopePath as getPath } from '../src/records/envelope-path.js';
import type { EventEnvelope } from '../src/records/event.js';
import { taskEnvelope } from './helpers/envelopes.js';

const envelope = taskEnvelope({
  id: '01JD0000000000000000000000',
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
});

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

describe('compileFilter: $regex on the linear-time engine', () => {
  const test = (source: string, value: unknown) => compileFilter({ 'data.v': { $regex: source } })({ data: { v: value } });

  it('decides at once on patterns that freeze a backtracking engine', () => {
    const cases: Array<[string, string]> = [
      ['^([a-z]|[a-z0-9])*$', 'a'.repeat(32) + '!'],
      ['(a+)+$', 'a'.repeat(5000) + '!'],
      ['(x+x+)+y', 'x'.repeat(5000)],
      ['^(a|a)*$', 'a'.repeat(MAX_REGEX_SUBJECT_LENGTH - 1) + '!'],
    ];
    for (const [source, value] of cases) {
      const started = performance.now();
      expect(test(source, value), source).toBe(false);
      expect(performance.now() - started, source).toBeLessThan(500);
    }
    expect(test('^([a-z]|[a-z0-9])*$', 'a'.repeat(32))).toBe(true);
  });

  it.each<[string, string, string, boolean]>([
    // A plain pattern searches anywhere, as RegExp.test does.
    ['a plain pattern finds a match anywhere', '74', 'dell-740', true],
    ['a plain pattern finds a match in the middle', 'ell', 'dell-740', true],
    ['a plain pattern misses', 'hp', 'dell-740', false],
    // A pattern anchored with ^ tests the start, as Python's re.match does (the importer's form).
    ['^ matches at the start', '^node-1', 'node-1', true],
    ['^ matches a prefix, as re.match does', '^node-1', 'node-10', true],
    ['^ does not match later in the string', '^node-1', 'xnode-1', false],
    ['^ does not match after a newline', '^node', 'x\nnode', false],
    ['^ with a group anchors every branch', '^(?:spare|prod)-', 'host-prod-1', false],
    ['^ without a group anchors the first branch only', '^spare|prod-', 'host-prod-1', true],
    ['^ and $ together test the whole string', '^dell-[0-9]+$', 'dell-740', true],
    ['$ is the end of the text', '^dell$', 'dell-740', false],
    // Unlike Python's $, RE2's $ does not match before a final newline; \z is the same as $.
    ['$ does not match before a final newline', '^dell$', 'dell\n', false],
    ['\\z is the end of the text', 'dell\\z', 'a dell', true],
    ['\\A is the start of the text', '\\Adell', 'dell', true],
    // Flags are written inline.
    ['case-sensitive by default', '^DELL', 'dell-740', false],
    ['(?i) ignores case', '(?i)^DELL', 'dell-740', true],
    ['. does not match a newline', '^a.b$', 'a\nb', false],
    ['(?s) lets . match a newline', '(?s)^a.b$', 'a\nb', true],
    ['(?m) makes ^ match after a newline', '(?m)^node', 'x\nnode', true],
    // Syntax shared by JavaScript, Python and RE2.
    ['classes and counts', '^[0-9a-f]{8}-[0-9a-f]{4}$', 'deadbeef-0123', true],
    ['\\d and \\w', '^\\w+-\\d+$', 'compute_1-42', true],
    ['\\b', '\\bfail(ed|ure)\\b', 'deploy failed on x', true],
    ['\\b misses inside a word', '\\bfail\\b', 'failed', false],
    ['escaped dots', '^esi_leap\\.lease\\.', 'esi_leap.lease.fulfill.end', true],
    ['escaped dots do not match other characters', '^esi_leap\\.lease', 'esi_leapxlease', false],
    ['non-greedy repetition', '^a.*?z$', 'abcz', true],
    ['JavaScript named groups', '^(?<host>[a-z]+)-\\d+$', 'node-7', true],
    ['Python named groups', '^(?P<host>[a-z]+)-\\d+$', 'node-7', true],
    ['\\x{…} code points', '^caf\\x{e9}$', 'café', true],
    ['Unicode classes', '^\\p{Greek}+$', 'αβγ', true],
    ['a non-BMP character is one character', '^.$', '😀', true],
    ['the empty pattern matches everything', '', 'anything', true],
    ['the empty pattern matches the empty string', '', '', true],
  ])('%s', (_name, source, value, expected) => {
    expect(test(source, value)).toBe(expected);
  });

  it('agrees with RegExp.test on patterns both engines read alike', () => {
    const patterns = ['^dell', 'dell$', '74', '^[a-z]+-[0-9]+$', '(?:spare|prod)-\\d', 'a|b', '^$', 'x*', '[^.]+\\.[^.]+', '\\bnode\\b'];
    const values = ['dell-740', 'hp-740', 'node-1', 'spare-7', 'a.b', '', 'x', 'the node here', 'prod-', 'nodes'];
    for (const source of patterns) {
      const native = new RegExp(source);
      for (const value of values) expect(test(source, value), `${source} on ${JSON.stringify(value)}`).toBe(native.test(value));
    }
  });

  it('does not test strings longer than MAX_REGEX_SUBJECT_LENGTH', () => {
    const atLimit = 'x'.repeat(MAX_REGEX_SUBJECT_LENGTH - 1) + 'y';
    expect(test('y$', atLimit)).toBe(true);
    expect(test('y$', atLimit + 'y')).toBe(false);
    expect(test('', atLimit + 'y')).toBe(false);
  });

  it('refuses, when compiling a stored filter, a pattern RE2 cannot run', () => {
    expect(() => compileFilter({ 'data.v': { $regex: 'a(?=b)' } })).toThrow(InvalidFilterError);
    expect(() => compileFilter({ 'data.v': { $regex: 'a(?=b)' } })).toThrow(/filter key "data\.v": lookahead .* cannot be used/);
  });
});

describe('getPath: compiling is linear in the path', () => {
  it('reads a path of 1,500 segments at once', () => {
    // Precomputing every joined span was cubic in characters: this took seconds.
    const n = 1500;
    const segments = Array.from({ length: n }, () => 'a');
    const nested = segments.reduceRight<unknown>((inner) => ({ a: inner }), 'deep');
    const flat = { [segments.join('.')]: 'flat' };
    const started = performance.now();
    expect(getPath(nested, segments.join('.'))).toBe('deep');
    expect(getPath(flat, segments.join('.'))).toBe('flat');
    expect(getPath({ a: { [segments.slice(1).join('.')]: 'joined' } }, segments.join('.'))).toBe('joined');
    expect(getPath(nested, segments.join('.') + '.b')).toBeUndefined();
    expect(performance.now() - started).toBeLessThan(500);
  });

  it('joins segments given as a list as it joins a dot path', () => {
    const obj = { data: { 'x.y': { 'p.q.r': 1 } } };
    expect(getPath(obj, ['data', 'x', 'y', 'p', 'q', 'r'])).toBe(1);
    expect(getPath(obj, ['data', 'x.y', 'p.q', 'r'])).toBe(1);
    expect(getPath(obj, 'data.x.y.p.q.r')).toBe(1);
    expect(getPath(obj, 'data.x.y.p.q')).toBeUndefined();
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
    ['regexes', { 'data.a': { $regex: '\\bfoo\\b' }, 'data.b': { $regex: '(beep|boop)*' }, 'data.c': { $regex: '(?<name>a)b' } }],
    // Exponential for a backtracking engine, linear for RE2: nothing to refuse any more.
    ['nested repetition', { 'data.a': { $regex: '(a+)+$' }, 'data.b': { $regex: '^([a-z]|[a-z0-9])*$' }, 'data.c': { $regex: '(x+x+)+y' } }],
    ['Python-style named groups and inline flags', { 'data.a': { $regex: '(?P<host>[a-z]+)-\\d+' }, 'data.b': { $regex: '(?i)^dell' } }],
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
    ['a backreference', { 'data.x': { $regex: '(a)\\1' } }, 'data.x.$regex', /backreferences \(\\1\) cannot be used: \$regex runs on RE2, which matches in linear time/],
    ['a named backreference', { 'data.x': { $regex: '(?<n>a)\\k<n>' } }, 'data.x.$regex', /named backreferences/],
    ['a Python named backreference', { 'data.x': { $regex: '(?P<n>a)(?P=n)' } }, 'data.x.$regex', /named backreferences .* cannot be used/],
    ['lookahead', { 'data.x': { $regex: 'a(?=b)' } }, 'data.x.$regex', /lookahead .* cannot be used/],
    ['negative lookahead', { 'data.x': { $regex: '^(?!test)' } }, 'data.x.$regex', /lookahead .* cannot be used/],
    ['lookbehind', { 'data.x': { $regex: '(?<=a)b' } }, 'data.x.$regex', /lookbehind .* cannot be used/],
    ['negative lookbehind', { 'data.x': { $regex: '(?<!a)b' } }, 'data.x.$regex', /lookbehind .* cannot be used/],
    ['an atomic group', { 'data.x': { $regex: '(?>a+)b' } }, 'data.x.$regex', /atomic groups/],
    ['a possessive quantifier', { 'data.x': { $regex: 'a*+b' } }, 'data.x.$regex', /possessive quantifiers/],
    ['a JavaScript \\u escape', { 'data.x': { $regex: '\\u00e9' } }, 'data.x.$regex', /not a valid RE2 pattern: .*write a code point as \\x\{hhhh\}/],
    ['a Python \\Z', { 'data.x': { $regex: '^a\\Z' } }, 'data.x.$regex', /write \\z for the end of the text/],
    ['invalid regex', { 'data.x': { $regex: '(' } }, 'data.x.$regex', /not a valid RE2 pattern: missing closing \)/],
    ['invalid regex class', { 'data.x': { $regex: '[z-a]' } }, 'data.x.$regex', /not a valid RE2 pattern: invalid character class range/],
    ['a repeat count over 1000', { 'data.x': { $regex: 'a{1001}' } }, 'data.x.$regex', /invalid repeat count/],
    ['an overlong regex', { 'data.x': { $regex: 'a'.repeat(1001) } }, 'data.x.$regex', /1000/],
    ['non-string regex', { 'data.x': { $regex: 5 } }, 'data.x', /\$regex: .*expected string/],
    ['empty $in', { 'data.x': { $in: [] } }, 'data.x.$in', /\$in needs at least one value/],
    ['$in with an object', { 'data.x': { $in: [{ a: 1 }] } }, 'data.x', /\$in\.0: must be a string, number, boolean or null/],
    ['$in with an array', { 'data.x': { $in: [1, [1]] } }, 'data.x', /\$in\.1: must be a string, number, boolean or null/],
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

  it('accepts what compileFilter compiles, and the compiled filter behaves', () => {
    const filter = FilterSchema.parse({ 'data.properties.model': { $regex: '^dell-[0-9]+$' }, 'data.count': { $gt: 2 } });
    expect(compileFilter(filter)(envelope)).toBe(true);
  });

  it('validates a single condition by its shape; patterns are checked by FilterSchema', () => {
    expect(FilterConditionSchema.safeParse('dell').success).toBe(true);
    expect(FilterConditionSchema.safeParse({ $regex: 'a(?=b)' }).success).toBe(true);
    expect(FilterSchema.safeParse({ 'data.x': { $regex: 'a(?=b)' } }).success).toBe(false);
    expect(FilterConditionSchema.safeParse(undefined).success).toBe(false);
  });

  it('reports every pattern it cannot run, beside other problems', () => {
    const found = issues({ 'data.a': { $regex: '(a)\\1' }, 'data.b': { $regex: '(?=x)' }, 'data.c': { $foo: 1 } });
    expect(found.map((f) => f.path).sort()).toEqual(['data.a.$regex', 'data.b.$regex', 'data.c']);
  });
});

describe('FilterSchema: size limits', () => {
  const issues = (input: unknown) => {
    const r = FilterSchema.safeParse(input);
    return r.success ? [] : r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
  };
  const keys = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`data.k${i}`, i]));

  it('has the documented limits', () => {
    expect({ MAX_FILTER_KEYS, MAX_PATH_LENGTH, MAX_CONDITION_DEPTH, MAX_IN_VALUES, MAX_FILTER_BYTES, MAX_REGEX_PROGRAM, MAX_REGEX_SUBJECT_LENGTH }).toEqual({
      MAX_FILTER_KEYS: 50,
      MAX_PATH_LENGTH: 256,
      MAX_CONDITION_DEPTH: 2,
      MAX_IN_VALUES: 1000,
      MAX_FILTER_BYTES: 16384,
      MAX_REGEX_PROGRAM: 1000,
      MAX_REGEX_SUBJECT_LENGTH: 65536,
    });
  });

  it('limits the number of keys', () => {
    expect(issues(keys(MAX_FILTER_KEYS))).toEqual([]);
    expect(issues(keys(MAX_FILTER_KEYS + 1))).toEqual([{ path: '', message: 'a filter has at most 50 keys, this one has 51' }]);
  });

  it('refuses too many keys without compiling any of their patterns', () => {
    // Each pattern compiles to a large program: compiling ten thousand of them takes seconds.
    const many = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`data.k${i}`, { $regex: `\\pL{1000}${i}` }]));
    const started = performance.now();
    expect(issues(many)).toEqual([{ path: '', message: 'a filter has at most 50 keys, this one has 10000' }]);
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it('limits the length of a key', () => {
    const at = 'data.' + 'x'.repeat(MAX_PATH_LENGTH - 5);
    expect(issues({ [at]: 1 })).toEqual([]);
    expect(issues({ [at + 'x']: 1 })[0]).toEqual({ path: at + 'x', message: 'a filter key is at most 256 characters' });
  });

  it('limits how deep a condition nests', () => {
    expect(issues({ 'data.x': { $in: ['a', 1, null] } })).toEqual([]);
    // The shape of a condition says what is wrong; the limit adds no second message.
    expect(issues({ 'data.ok': 1, 'data.x': { $in: [['a']] } })).toEqual([
      { path: 'data.x', message: '$in.0: must be a string, number, boolean or null' },
    ]);
    // Far deeper than serialising could go without overflowing the stack: refused all the same.
    let nested: unknown = 'bottom';
    for (let i = 0; i < 100_000; i++) nested = { $ne: nested };
    expect(() => JSON.stringify(nested)).toThrow(RangeError);
    const found = issues({ 'data.x': nested, 'data.y': 'x'.repeat(MAX_FILTER_BYTES) });
    expect(found).toEqual([{ path: 'data.x', message: '$ne: must be a string, number, boolean or null' }]);
  });

  it('limits the size of a $in list', () => {
    const values = (n: number) => Array.from({ length: n }, (_, i) => i % 10);
    expect(issues({ 'data.x': { $in: values(MAX_IN_VALUES) } })).toEqual([]);
    const over = issues({ 'data.x': { $in: values(MAX_IN_VALUES + 1) } });
    expect(over[0].path).toMatch(/^data\.x/);
    expect(over[0].message).toMatch(/1000/);
  });

  it('limits the serialised size of the whole filter', () => {
    const sized = (bytes: number) => {
      const base = JSON.stringify({ 'data.x': '' }).length;
      return { 'data.x': 'é'.repeat(Math.floor((bytes - base) / 2)) + 'x'.repeat((bytes - base) % 2) };
    };
    expect(Buffer.byteLength(JSON.stringify(sized(MAX_FILTER_BYTES)))).toBe(MAX_FILTER_BYTES);
    expect(issues(sized(MAX_FILTER_BYTES))).toEqual([]);
    expect(issues(sized(MAX_FILTER_BYTES + 1))).toEqual([
      { path: '', message: `a filter is at most 16384 bytes of JSON, this one is ${MAX_FILTER_BYTES + 1}` },
    ]);
  });

  it('limits the RE2 program of all patterns together, naming the pattern that crosses it', () => {
    const size = (source: string) => {
      const c = compilePattern(source);
      if (!c.ok) throw new Error(c.reason);
      return c.pattern.programSize();
    };
    expect(size('a{500}')).toBe(502);
    expect(size('a{496}')).toBe(498);
    expect(issues({ 'data.a': { $regex: 'a{500}' }, 'data.b': { $regex: 'a{496}' } })).toEqual([]);
    const over = issues({ 'data.a': { $regex: 'a{500}' }, 'data.b': { $regex: 'a{497}' } });
    expect(over).toEqual([
      {
        path: 'data.b.$regex',
        message:
          "a filter's $regex patterns compile to at most 1000 RE2 instructions together, and these come to 1001 " +
          'with this one: use smaller repeat counts or fewer patterns',
      },
    ]);
    expect(issues({ 'data.a': { $regex: '\\pL{1000}' } })[0].path).toBe('data.a.$regex');
  });
});

describe('bracketed keys', () => {
  it('reads a key with dots in it exactly, in filters as everywhere', () => {
    expect(FilterSchema.safeParse({ 'data.payload["nova_object.data"].host': 'compute-1' }).success).toBe(true);
    expect(matches({ 'data.payload["nova_object.data"].host': 'compute-1' })).toBe(true);
    expect(matches({ 'data.payload["nova_object.data"]["a.b"].c': 1 })).toBe(true);
    expect(matches({ 'data.payload["nova_object"].data': { $exists: false } })).toBe(true);
    const bad = FilterSchema.safeParse({ 'data["unclosed': 1 });
    expect(bad.success).toBe(false);
    expect(FilterSchema.safeParse({ '["data"].x': 1 }).success).toBe(false);
  });
});
