import { describe, expect, it } from 'vitest';
import { backoffDelay } from '../src/backoff.js';

describe('backoffDelay', () => {
  it('doubles from the base and stays within the upper half of each step', () => {
    const low = (n: number) => backoffDelay(n, { baseMs: 100, maxMs: 10_000, random: () => 0 });
    const high = (n: number) => backoffDelay(n, { baseMs: 100, maxMs: 10_000, random: () => 1 });
    expect([1, 2, 3, 4].map(low)).toEqual([50, 100, 200, 400]);
    expect([1, 2, 3, 4].map(high)).toEqual([100, 200, 400, 800]);
  });

  it('is capped at maxMs however many failures came before', () => {
    expect(backoffDelay(8, { baseMs: 100, maxMs: 10_000, random: () => 1 })).toBe(10_000);
    expect(backoffDelay(1_000, { baseMs: 100, maxMs: 10_000, random: () => 1 })).toBe(10_000);
    expect(backoffDelay(1_000, { baseMs: 100, maxMs: 10_000, random: () => 0 })).toBe(5_000);
  });

  it('treats zero or fractional failure counts as the first failure', () => {
    expect(backoffDelay(0, { baseMs: 100, random: () => 1 })).toBe(100);
    expect(backoffDelay(1.7, { baseMs: 100, random: () => 1 })).toBe(100);
  });
});
