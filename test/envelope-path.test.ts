import { describe, expect, it } from 'vitest';
import { compileEnvelopePath, parseEnvelopePath, readEnvelopePath } from '../src/records/envelope-path.js';

const envelope = {
  type: 'compute.instance.update',
  data: {
    'nova_object.data': { host: 'compute-1', 'a.b': { c: 1 } },
    'dotted.key': 'flat',
    hosts: [{ name: 'h1' }, { name: 'h2' }],
    nested: { 'x.y': 'both', x: { y: 'plain' } },
  },
};

describe('the envelope path reader', () => {
  it.each<[string, unknown]>([
    ['type', 'compute.instance.update'],
    ['data.hosts.1.name', 'h2'],
    ['data["nova_object.data"].host', 'compute-1'],
    ['data["nova_object.data"]["a.b"].c', 1],
    ['data.nova_object.data.host', 'compute-1'], // dotted segments join when a key needs it
    ['data["dotted.key"]', 'flat'],
    ['data.dotted.key', 'flat'],
    ['data.nested.x.y', 'plain'], // the exact key first, then joins
    ['data.nested["x.y"]', 'both'],
    ['data["nova_object"].data', undefined], // a bracketed key is never joined
    ['data.missing', undefined],
    ['data.hosts.__proto__', undefined],
    ['data.constructor', undefined],
  ])('%s reads %j', (path, value) => {
    expect(readEnvelopePath(envelope, path)).toEqual(value);
  });

  it.each([
    ['', /empty path/],
    ['data..x', /empty path segment/],
    ['data.', /empty path segment/],
    ['data[x]', /JSON string/],
    ['data["a.b"', /closing/],
    ['data["a.b"]x', /expected "." or "\["/],
    ['data["\\q"]', /not a valid JSON string/],
  ])('refuses %j', (path, message) => {
    const parsed = parseEnvelopePath(path);
    expect('error' in parsed && parsed.error).toMatch(message);
    expect(() => compileEnvelopePath(path)).toThrow(TypeError);
  });

  it('parses segments, marking bracketed ones exact', () => {
    expect(parseEnvelopePath('data["a.b"].c')).toEqual({
      segments: [{ key: 'data', exact: false }, { key: 'a.b', exact: true }, { key: 'c', exact: false }],
    });
  });
});
