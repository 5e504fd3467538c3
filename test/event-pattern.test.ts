import { describe, expect, it } from 'vitest';
import { compileEventPattern, eventPatternProblem, isEventPattern } from '../src/fanout/event-pattern.js';
import { compileListenerRule, eventsOutsideCategories } from '../src/fanout/match.js';
import { categoryOf } from '../src/records/event.js';

describe('event patterns', () => {
  it.each([
    ['esi_leap.lease.*.end', 'esi_leap.lease.fulfill.end', true],
    ['esi_leap.lease.*.end', 'esi_leap.lease.delete.end', true],
    ['esi_leap.lease.*.end', 'esi_leap.lease.fulfill.start', false],
    ['esi_leap.lease.*.end', 'esi_leap.lease.end', false],
    ['esi_leap.lease.*.end', 'esi_leap.lease.a.b.end', false],
    ['action_plan.cancel.#', 'action_plan.cancel', true],
    ['action_plan.cancel.#', 'action_plan.cancel.start', true],
    ['action_plan.cancel.#', 'action_plan.cancel.x.y.z', true],
    ['action_plan.cancel.#', 'action_plan.cancelled', false],
    ['#', 'anything.at.all', true],
    ['#', 'PING', true],
    ['#.end', 'end', true],
    ['#.end', 'a.b.end', true],
    ['#.end', 'a.b.endx', false],
    ['*', 'one', true],
    ['*', 'one.two', false],
    ['a.#.#.b', 'a.b', true],
    ['a.#.b.#.c', 'a.x.b.y.y.c', true],
    ['a.#.b.#.c', 'a.x.c.y.b', false],
    ['*.*', 'a.b', true],
    ['task.rerun.*', 'task.rerun.error', true],
  ])('%s against %s is %s', (pattern, type, expected) => {
    expect(compileEventPattern(pattern)(type)).toBe(expected);
  });

  it('treats only whole words as wildcards', () => {
    expect(isEventPattern('WORKFLOW_*')).toBe(false);
    expect(isEventPattern('a.b*')).toBe(false);
    expect(isEventPattern('a.*')).toBe(true);
    expect(isEventPattern('#')).toBe(true);
  });

  it('names a malformed pattern', () => {
    expect(eventPatternProblem('a..*')).toMatch(/empty word/);
    expect(eventPatternProblem('a.*')).toBeNull();
    expect(eventPatternProblem('a..b')).toBeNull(); // an exact name, whatever it looks like
  });

  it('agrees with a plain table of pattern words against type words on random patterns', () => {
    // The reference: which prefixes of the type each prefix of the pattern can consume.
    const reference = (pattern: string, type: string) => {
      const words = pattern.split('.');
      const parts = type.split('.');
      let reach = parts.map((_, j) => j === 0).concat(parts.length === 0);
      for (const w of words) {
        const next = new Array<boolean>(parts.length + 1).fill(false);
        for (let j = 0; j <= parts.length; j++) {
          if (!reach[j]) continue;
          if (w === '#') for (let k = j; k <= parts.length; k++) next[k] = true;
          else if (j < parts.length && (w === '*' || w === parts[j])) next[j + 1] = true;
        }
        reach = next;
      }
      return reach[parts.length];
    };
    let x = 7;
    const pick = <T,>(from: readonly T[]) => from[(x = (Math.imul(x, 1103515245) + 12345) >>> 0) % from.length];
    const words = (n: number, from: readonly string[]) => Array.from({ length: n }, () => pick(from)).join('.');
    let matched = 0;
    for (let i = 0; i < 20_000; i++) {
      const pattern = words(1 + (i % 7), ['a', 'b', '*', '#', '#']);
      const type = words(1 + ((i * 5) % 9), ['a', 'b', 'c']);
      const expected = reference(pattern, type);
      if (compileEventPattern(pattern)(type) !== expected) expect({ pattern, type, matches: !expected }).toEqual({ pattern, type, matches: expected });
      if (expected) matched++;
    }
    // Both answers came up often.
    expect(matched).toBeGreaterThan(2_000);
    expect(matched).toBeLessThan(18_000);
  });

  it('stays linear on patterns full of #', () => {
    const pattern = Array.from({ length: 100 }, () => '#.a').join('.');
    const type = Array.from({ length: 100 }, () => 'b').join('.');
    const started = performance.now();
    expect(compileEventPattern(pattern)(type)).toBe(false);
    expect(performance.now() - started).toBeLessThan(100);
  });
});

describe('patterns in listener rules', () => {
  const rule = (event_types: string[], events: string[]) => ({ workbook: '*', event_types, events, enabled: true });

  it('matches patterns and exact names together, always within the listed categories', () => {
    const m = compileListenerRule(rule(['NOTIFICATION', 'EXECUTION'], ['esi_leap.lease.*.end', 'execution.cancel.#', 'WORKFLOW_FAILED']));
    expect(m({ type: 'esi_leap.lease.fulfill.end' })).toBe(true);
    expect(m({ type: 'esi_leap.lease.fulfill.start' })).toBe(false);
    expect(m({ type: 'execution.cancel.start' })).toBe(true);
    expect(m({ type: 'WORKFLOW_FAILED' })).toBe(true);
    expect(m({ type: 'WORKFLOW_SUCCEEDED' })).toBe(false);
    expect(m({ type: 'PING' })).toBe(false);
  });

  it('checks the category of the actual event, not the pattern', () => {
    // task.rerun.* is TASK: a listener of NOTIFICATION only does not get task.rerun.end.
    const m = compileListenerRule(rule(['NOTIFICATION'], ['task.rerun.*', '*.rerun.*']));
    expect(categoryOf('task.rerun.end')).toBe('TASK');
    expect(m({ type: 'task.rerun.end' })).toBe(false);
    expect(m({ type: 'node.rerun.end' })).toBe(true);
  });

  it('accepts a pattern that could match a type of a listed category, and names one that could not', () => {
    expect(eventsOutsideCategories(rule(['EXECUTION'], ['execution.*.start', 'execution.cancel.#']))).toEqual([]);
    expect(eventsOutsideCategories(rule(['TASK'], ['execution.*.start', 'task.rerun.*']))).toEqual(['execution.*.start']);
    expect(eventsOutsideCategories(rule(['NOTIFICATION'], ['anything.*']))).toEqual([]);
    expect(eventsOutsideCategories(rule(['EXECUTION'], ['esi_leap.lease.*.end']))).toEqual(['esi_leap.lease.*.end']);
  });
});
