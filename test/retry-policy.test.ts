import { describe, it, expect } from 'vitest';
import {
  nextAttemptDelay,
  parseRetryAfter,
  parseHttpDate,
  isRetryAfterStatus,
  DEFAULT_RETRY_SCHEDULE_MS,
} from '../src/dispatch/retry-policy.js';

const fixed = (r: number) => () => r;
const ALMOST_ONE = 0.9999999999;

describe('DEFAULT_RETRY_SCHEDULE_MS', () => {
  it('is 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: 8 attempts over about 27 h', () => {
    expect(DEFAULT_RETRY_SCHEDULE_MS).toEqual([5000, 300000, 1800000, 7200000, 18000000, 36000000, 36000000]);
    const total = DEFAULT_RETRY_SCHEDULE_MS.reduce((a, b) => a + b, 0);
    expect(total / 3_600_000).toBeCloseTo(27.59, 1);
  });
});

describe('nextAttemptDelay: schedule', () => {
  const scheduleMs = DEFAULT_RETRY_SCHEDULE_MS;
  it.each<[number, number | null]>([
    [1, 5000],
    [2, 300000],
    [3, 1800000],
    [4, 7200000],
    [5, 18000000],
    [6, 36000000],
    [7, 36000000],
    [8, null],
    [9, null],
    [100, null],
  ])('after attempt %i → %j (no jitter at random 0.5)', (attemptNumber, expected) => {
    expect(nextAttemptDelay({ scheduleMs, attemptNumber, random: fixed(0.5) })).toBe(expected);
  });

  it.each<[number[], number, number | null]>([
    [[], 1, null],
    [[1000], 1, 1000],
    [[1000], 2, null],
    [[0], 1, 0],
    [[1000, 2000], 2, 2000],
    [[1000, 2000], 3, null],
  ])('schedule %j after attempt %i → %j', (schedule, attemptNumber, expected) => {
    expect(nextAttemptDelay({ scheduleMs: schedule, attemptNumber, random: fixed(0.5) })).toBe(expected);
  });

  it.each([0, -1, 1.5, NaN])('refuses attempt number %s', (attemptNumber) => {
    expect(() => nextAttemptDelay({ scheduleMs: [1000], attemptNumber })).toThrow(RangeError);
  });
});

describe('nextAttemptDelay: jitter', () => {
  it.each<[number, number, number]>([
    [0, 5000, 4000],
    [0.5, 5000, 5000],
    [ALMOST_ONE, 5000, 6000],
    [0.25, 5000, 4500],
    [0.75, 5000, 5500],
    [0, 36000000, 28800000],
    [0.5, 36000000, 36000000],
    [ALMOST_ONE, 36000000, 43200000],
    [0, 0, 0],
    [ALMOST_ONE, 0, 0],
    [0, 7, 6],
  ])('random %s on %i ms → %i ms', (r, scheduled, expected) => {
    expect(nextAttemptDelay({ scheduleMs: [scheduled], attemptNumber: 1, random: fixed(r) })).toBe(expected);
  });

  it('stays within ±20% with the default random source and returns whole ms', () => {
    for (let i = 0; i < 2000; i++) {
      const d = nextAttemptDelay({ scheduleMs: [300000], attemptNumber: 1 })!;
      expect(d).toBeGreaterThanOrEqual(240000);
      expect(d).toBeLessThanOrEqual(360000);
      expect(Number.isInteger(d)).toBe(true);
    }
  });

  it('clamps a random source that strays outside [0, 1]', () => {
    expect(nextAttemptDelay({ scheduleMs: [1000], attemptNumber: 1, random: fixed(-3) })).toBe(800);
    expect(nextAttemptDelay({ scheduleMs: [1000], attemptNumber: 1, random: fixed(7) })).toBe(1200);
  });
});

describe('nextAttemptDelay: Retry-After', () => {
  // scheduled 300 000 ms; with random r the floor is the jittered delay j and the ceiling 2j.
  it.each<[string, number, number | null | undefined, number]>([
    ['no Retry-After', 0.5, undefined, 300000],
    ['null Retry-After', 0.5, null, 300000],
    ['within the range is honoured', 0.5, 450000, 450000],
    ['shorter is raised to the scheduled delay', 0.5, 1000, 300000],
    ['zero is raised to the scheduled delay', 0.5, 0, 300000],
    ['longer is capped at twice the scheduled delay', 0.5, 10_000_000, 600000],
    ['exactly the floor', 0.5, 300000, 300000],
    ['exactly the ceiling', 0.5, 600000, 600000],
    ['floor follows the jitter (r = 0)', 0, 1000, 240000],
    ['ceiling follows the jitter (r = 0)', 0, 10_000_000, 480000],
    ['floor follows the jitter (r → 1)', ALMOST_ONE, 1000, 360000],
    ['ceiling follows the jitter (r → 1)', ALMOST_ONE, 10_000_000, 720000],
    ['inside the jittered range (r = 0)', 0, 400000, 400000],
    ['fractional ms are rounded', 0.5, 450000.6, 450001],
    ['infinite is ignored', 0.5, Infinity, 300000],
    ['NaN is ignored', 0.5, NaN, 300000],
  ])('%s', (_name, r, retryAfterMs, expected) => {
    expect(nextAttemptDelay({ scheduleMs: [5000, 300000], attemptNumber: 2, retryAfterMs, random: fixed(r) })).toBe(expected);
  });

  it('does not extend the schedule', () => {
    expect(nextAttemptDelay({ scheduleMs: [5000], attemptNumber: 2, retryAfterMs: 1000, random: fixed(0.5) })).toBeNull();
  });

  it('on the first retry of the default schedule', () => {
    const delay = (retryAfterMs: number) =>
      nextAttemptDelay({ scheduleMs: DEFAULT_RETRY_SCHEDULE_MS, attemptNumber: 1, retryAfterMs, random: fixed(0.5) });
    expect(delay(0)).toBe(5000);
    expect(delay(7000)).toBe(7000);
    expect(delay(120_000)).toBe(10000);
  });
});

describe('isRetryAfterStatus', () => {
  it.each<[number, boolean]>([
    [429, true],
    [502, true],
    [503, true],
    [504, true],
    [500, false],
    [501, false],
    [505, false],
    [408, false],
    [410, false],
    [200, false],
    [301, false],
  ])('%i → %s', (status, expected) => {
    expect(isRetryAfterStatus(status)).toBe(expected);
  });
});

describe('parseRetryAfter', () => {
  const now = Date.UTC(2015, 9, 21, 7, 28, 0); // Wed, 21 Oct 2015 07:28:00 GMT

  it.each<[string | undefined | null, number | null]>([
    // delta-seconds
    ['0', 0],
    ['1', 1000],
    ['120', 120000],
    [' 30 ', 30000],
    ['007', 7000],
    ['1.5', 1500],
    ['-5', 0],
    ['+5', 5000],
    ['86400', 86_400_000],
    // IMF-fixdate
    ['Wed, 21 Oct 2015 07:28:00 GMT', 0],
    ['Wed, 21 Oct 2015 07:28:30 GMT', 30000],
    ['Wed, 21 Oct 2015 08:28:00 GMT', 3_600_000],
    ['Thu, 22 Oct 2015 07:28:00 GMT', 86_400_000],
    ['wed, 21 oct 2015 07:29:00 gmt', 60000],
    ['Tue, 20 Oct 2015 07:28:00 GMT', 0], // in the past
    ['Mon, 01 Jan 1990 00:00:00 GMT', 0],
    ['Sun, 01 Nov 2015 00:00:00 GMT', Date.UTC(2015, 10, 1) - now],
    ['Fri, 21 Oct 2015 07:28:10 GMT', 10000], // a wrong weekday is ignored
    // RFC 850
    ['Wednesday, 21-Oct-15 07:28:05 GMT', 5000],
    ['Thursday, 22-Oct-15 07:28:00 GMT', 86_400_000],
    ['Sunday, 06-Nov-94 08:49:37 GMT', 0],
    // asctime
    ['Wed Oct 21 07:28:20 2015', 20000],
    ['Sun Nov  1 00:00:00 2015', Date.UTC(2015, 10, 1) - now],
    // invalid
    [undefined, null],
    [null, null],
    ['', null],
    ['   ', null],
    ['soon', null],
    ['1e3', null],
    ['0x10', null],
    ['5 seconds', null],
    ['2015-10-21T07:28:30Z', null],
    ['Wed, 21 Oct 2015 07:28:30', null],
    ['Wed, 21 Oct 2015 07:28:30 UTC', null],
    ['Wed, 21 Oct 2015 07:28:30 +0000', null],
    ['Wed, 21 Foo 2015 07:28:30 GMT', null],
    ['Wed, 31 Feb 2015 07:28:30 GMT', null],
    ['Wed, 32 Oct 2015 07:28:30 GMT', null],
    ['Wed, 21 Oct 2015 24:00:00 GMT', null],
    ['Wed, 21 Oct 2015 07:60:00 GMT', null],
    ['Wed, 1 Oct 2015 07:28:30 GMT', null],
    ['9'.repeat(400), null],
  ])('%j → %j', (value, expected) => {
    expect(parseRetryAfter(value, now)).toBe(expected);
  });

  it('reads a leap second as the last second of the minute', () => {
    expect(parseRetryAfter('Wed, 21 Oct 2015 07:28:60 GMT', now)).toBe(59000);
  });

  it('feeds nextAttemptDelay', () => {
    const retryAfterMs = parseRetryAfter('Wed, 21 Oct 2015 07:28:08 GMT', now);
    expect(nextAttemptDelay({ scheduleMs: [5000], attemptNumber: 1, retryAfterMs, random: fixed(0.5) })).toBe(8000);
  });
});

describe('parseHttpDate', () => {
  const now = Date.UTC(2026, 10, 23);
  it.each<[string, number | null]>([
    ['Sun, 06 Nov 1994 08:49:37 GMT', Date.UTC(1994, 10, 6, 8, 49, 37)],
    ['Sunday, 06-Nov-94 08:49:37 GMT', Date.UTC(1994, 10, 6, 8, 49, 37)],
    ['Sun Nov  6 08:49:37 1994', Date.UTC(1994, 10, 6, 8, 49, 37)],
    ['Sun Nov 16 08:49:37 1994', Date.UTC(1994, 10, 16, 8, 49, 37)],
    // two-digit years: no more than 50 years ahead of now
    ['Friday, 01-Jan-76 00:00:00 GMT', Date.UTC(2076, 0, 1)],
    ['Friday, 01-Jan-77 00:00:00 GMT', Date.UTC(1977, 0, 1)],
    ['Monday, 01-Jan-30 00:00:00 GMT', Date.UTC(2030, 0, 1)],
    ['Sat, 29 Feb 2028 00:00:00 GMT', Date.UTC(2028, 1, 29)],
    ['Sun, 29 Feb 2027 00:00:00 GMT', null],
    ['not a date', null],
  ])('%j → %j', (value, expected) => {
    expect(parseHttpDate(value, now)).toBe(expected);
  });
});
