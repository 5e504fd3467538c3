import { describe, expect, it } from 'vitest';
import { evaluate, ExpressionError, referencedTasks, validateExpressions } from '../src/engine/expressions.js';

const results: Record<string, unknown> = {
  lookup: { id: 'c_1', tags: ['a', 'b'], nested: { deep: true } },
  count: 3,
  text: 'ok',
};
const ctx = {
  input: { amount: 42, order: { id: 'o-7', lines: [{ sku: 'x' }, { sku: 'y' }] }, name: 'Ada', flag: false, none: null },
  taskResult: (name: string) => results[name],
};

describe('evaluate', () => {
  it('gives the value itself, of any JSON type, for a string that is one expression', () => {
    expect(evaluate('<% $.amount %>', ctx)).toBe(42);
    expect(evaluate('<% $.order %>', ctx)).toEqual(ctx.input.order);
    expect(evaluate('<% $.flag %>', ctx)).toBe(false);
    expect(evaluate('<% $.none %>', ctx)).toBeNull();
    expect(evaluate("<% task('lookup').result %>", ctx)).toEqual(results.lookup);
    expect(evaluate("<% task('count').result %>", ctx)).toBe(3);
    expect(evaluate('<%$.amount%>', ctx)).toBe(42);
    expect(evaluate('  <% $.amount %>\n', ctx)).toBe(42);
  });

  it('follows dotted paths after both forms, including list indexes', () => {
    expect(evaluate('<% $.order.id %>', ctx)).toBe('o-7');
    expect(evaluate('<% $.order.lines.1.sku %>', ctx)).toBe('y');
    expect(evaluate("<% task('lookup').result.id %>", ctx)).toBe('c_1');
    expect(evaluate('<% task("lookup").result.nested.deep %>', ctx)).toBe(true);
    expect(evaluate("<% task( 'lookup' ).result.tags.0 %>", ctx)).toBe('a');
  });

  it('answers null for anything missing', () => {
    expect(evaluate('<% $.missing %>', ctx)).toBeNull();
    expect(evaluate('<% $.order.missing.deeper %>', ctx)).toBeNull();
    expect(evaluate('<% $.amount.value %>', ctx)).toBeNull();
    expect(evaluate('<% $.order.lines.9 %>', ctx)).toBeNull();
    expect(evaluate("<% task('never_ran').result %>", ctx)).toBeNull();
    expect(evaluate("<% task('never_ran').result.id %>", ctx)).toBeNull();
    expect(evaluate("<% task('text').result.length %>", ctx)).toBeNull();
    expect(evaluate('<% $.constructor %>', ctx)).toBeNull();
    expect(evaluate('<% $.order.toString %>', ctx)).toBeNull();
  });

  it('interpolates expressions inside longer strings as text, JSON for non-strings', () => {
    expect(evaluate('Hello <% $.name %>!', ctx)).toBe('Hello Ada!');
    expect(evaluate('amount=<% $.amount %> flag=<% $.flag %>', ctx)).toBe('amount=42 flag=false');
    expect(evaluate("id <% task('lookup').result.id %>, tags <% task('lookup').result.tags %>", ctx)).toBe(
      'id c_1, tags ["a","b"]',
    );
    expect(evaluate('order: <% $.order.lines.0 %>', ctx)).toBe('order: {"sku":"x"}');
    expect(evaluate('missing=<% $.missing %>', ctx)).toBe('missing=null');
    expect(evaluate('<% $.name %><% $.amount %>', ctx)).toBe('Ada42');
  });

  it('walks objects and lists, leaving keys and non-strings as written', () => {
    const value = {
      url: 'http://127.0.0.1:9000/orders/<% $.order.id %>',
      body: { amount: '<% $.amount %>', customer: "<% task('lookup').result %>", list: ['<% $.name %>', 1, true, null] },
      '<% $.name %>': 'key stays',
      plain: 'no expressions',
    };
    expect(evaluate(value, ctx)).toEqual({
      url: 'http://127.0.0.1:9000/orders/o-7',
      body: { amount: 42, customer: results.lookup, list: ['Ada', 1, true, null] },
      '<% $.name %>': 'key stays',
      plain: 'no expressions',
    });
    expect(evaluate(7, ctx)).toBe(7);
    expect(evaluate(null, ctx)).toBeNull();
  });

  it('throws ExpressionError for an expression it cannot parse', () => {
    expect(() => evaluate('<% $.a + 1 %>', ctx)).toThrow(ExpressionError);
    expect(() => evaluate('x <% $.a', ctx)).toThrow(/unterminated/);
  });
});

describe('validateExpressions', () => {
  it('accepts the two forms and strings without expressions', () => {
    expect(
      validateExpressions({ a: '<% $.x %>', b: ["<% task('t-1.x').result.y.0 %>", 'plain % text >'], c: 5 }),
    ).toEqual([]);
  });

  it('reports each string that does not parse', () => {
    expect(validateExpressions('<% $.amount * 2 %>')).toEqual([
      `unsupported expression "<% $.amount * 2 %>"; use <% $.name %> or <% task('name').result %>`,
    ]);
    expect(validateExpressions(['<% %>', '<% $ %>', "<% task('a') %>", "<% task(a).result %>", '<% env().x %>'])).toHaveLength(5);
    expect(validateExpressions({ url: 'http://x/<% $.id' })).toEqual(['unterminated expression "<% $.id" (missing %>)']);
    expect(validateExpressions('<% $.a..b %>')).toHaveLength(1);
  });
});

describe('referencedTasks', () => {
  it('lists each task whose result is read, once, in order', () => {
    expect(
      referencedTasks({
        a: "<% task('one').result %> and <% task(\"two\").result.x %>",
        b: ["<% task('one').result.y %>", '<% $.z %>', '<% bad %>'],
      }),
    ).toEqual(['one', 'two']);
    expect(referencedTasks('<% $.a %>')).toEqual([]);
  });
});
