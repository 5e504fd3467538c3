import { describe, expect, it } from 'vitest';
import {
  defaultBucketMs,
  formatSpan,
  healthSince,
  healthState,
  listenerHealth,
  parseSpan,
  percentileMs,
  resolveStatsRange,
  seriesStart,
  statsSeries,
  type StatsRange,
} from '../src/records/health.js';
import { LATENCY_BOUNDS_MS, type RollupMinute } from '../src/store/store.js';

// Health and stats from handmade rollups: the pure decisions, with a fixed clock.
const MIN = 60_000;
const HOUR = 60 * MIN;
const NOW = Date.parse('2026-11-23T10:07:30.000Z');

/** A histogram from counts by upper bound (`Infinity` for the slower-than-everything bucket). */
function latency(counts: Record<number, number> = {}): number[] {
  const out = new Array(LATENCY_BOUNDS_MS.length + 1).fill(0);
  for (const [bound, count] of Object.entries(counts)) {
    const i = bound === 'Infinity' ? LATENCY_BOUNDS_MS.length : LATENCY_BOUNDS_MS.indexOf(Number(bound) as never);
    if (i < 0) throw new Error(`no bucket with bound ${bound}`);
    out[i] = count;
  }
  return out;
}

const minute = (at: string, m: Partial<Omit<RollupMinute, 'at'>> = {}): RollupMinute => ({
  at: Date.parse(at),
  succeeded: 0,
  failed: 0,
  retried: 0,
  latency: latency(),
  ...m,
});

describe('percentileMs', () => {
  it('is null for no attempts', () => {
    expect(percentileMs(latency(), 50)).toBeNull();
    expect(percentileMs(latency(), 95)).toBeNull();
  });

  it('is the upper bound of the bucket where the cumulative count reaches the rank', () => {
    // 20 attempts: 18 within 10 ms, one within 250 ms, one within 5 s.
    const h = latency({ 10: 18, 250: 1, 5000: 1 });
    expect(percentileMs(h, 50)).toBe(10);
    expect(percentileMs(h, 90)).toBe(10); // rank 18
    expect(percentileMs(h, 95)).toBe(250); // rank 19
    expect(percentileMs(h, 96)).toBe(5000); // rank ceil(19.2) = 20
    expect(percentileMs(h, 100)).toBe(5000);
  });

  it('counts one attempt as every percentile', () => {
    expect(percentileMs(latency({ 100: 1 }), 1)).toBe(100);
    expect(percentileMs(latency({ 100: 1 }), 95)).toBe(100);
  });

  it('ranks in whole numbers (7% of 100 is 7, where 0.07 * 100 is 7.000000000000001)', () => {
    expect(percentileMs(latency({ 25: 7, 1000: 93 }), 7)).toBe(25);
    expect(percentileMs(latency({ 25: 57, 1000: 3 }), 95)).toBe(25);
    expect(percentileMs(latency({ 25: 56, 1000: 4 }), 95)).toBe(1000);
  });

  it('reads attempts slower than the last bound as that bound', () => {
    expect(percentileMs(latency({ Infinity: 2 }), 50)).toBe(30_000);
    expect(percentileMs(latency({ 10: 1, Infinity: 1 }), 95)).toBe(30_000);
  });
});

describe('listener health', () => {
  const since = healthSince(NOW);

  it('reads the whole minute 24 hours back', () => {
    expect(new Date(since).toISOString()).toBe('2026-11-22T10:07:00.000Z');
  });

  it('is disabled before no_transport before the breaker before ok', () => {
    expect(healthState({ enabled: false, transportEnabled: false, breaker: 'open' })).toBe('disabled');
    expect(healthState({ enabled: true, transportEnabled: false, breaker: 'open' })).toBe('no_transport');
    expect(healthState({ enabled: true, transportEnabled: true, breaker: 'open' })).toBe('open');
    expect(healthState({ enabled: true, transportEnabled: true, breaker: 'half_open' })).toBe('half_open');
    expect(healthState({ enabled: true, transportEnabled: true, breaker: 'closed' })).toBe('ok');
    expect(healthState({ enabled: true, transportEnabled: true })).toBe('ok');
  });

  it('has nulls without attempts or outcomes', () => {
    expect(listenerHealth({ enabled: true, transportEnabled: true, rollups: [] })).toEqual({
      state: 'ok',
      success_rate_24h: null,
      p95_ms_24h: null,
      last_success_at: null,
      last_failure: null,
    });
  });

  it('sums the day of minutes: succeeded over all attempts, p95 of every attempt, outcomes as ISO times', () => {
    const rollups = [
      minute('2026-11-22T10:07:00Z', { succeeded: 3, latency: latency({ 50: 3 }) }),
      minute('2026-11-23T09:00:00Z', { succeeded: 2, retried: 2, latency: latency({ 50: 2, 2500: 2 }) }),
      minute('2026-11-23T10:07:00Z', { failed: 1, latency: latency({ Infinity: 1 }) }),
    ];
    const health = listenerHealth({
      enabled: true,
      transportEnabled: true,
      rollups,
      outcomes: {
        last_success_at: Date.parse('2026-11-23T09:00:12.345Z'),
        last_failure: { at: Date.parse('2026-11-23T10:07:01.000Z'), error: 'TIMEOUT', status_code: null },
      },
    });
    expect(health).toEqual({
      state: 'ok',
      success_rate_24h: 0.625, // 5 of 8
      p95_ms_24h: 30_000, // rank 8 of 8: the one slower than 30 s
      last_success_at: '2026-11-23T09:00:12.345Z',
      last_failure: { at: '2026-11-23T10:07:01.000Z', error: 'TIMEOUT', status_code: null },
    });
  });

  it('rounds the success rate to four places', () => {
    const rollups = [minute('2026-11-23T10:00:00Z', { succeeded: 2, failed: 1, latency: latency({ 10: 3 }) })];
    expect(listenerHealth({ enabled: true, transportEnabled: true, rollups }).success_rate_24h).toBe(0.6667);
    const none = [minute('2026-11-23T10:00:00Z', { failed: 1, retried: 3, latency: latency({ 10: 4 }) })];
    expect(listenerHealth({ enabled: false, transportEnabled: true, rollups: none })).toMatchObject({ state: 'disabled', success_rate_24h: 0, p95_ms_24h: 10 });
  });

  it('keeps a failure without a status code or error as null', () => {
    const health = listenerHealth({
      enabled: true,
      transportEnabled: false,
      rollups: [],
      outcomes: { last_success_at: null, last_failure: { at: 0, error: null, status_code: 500 } },
    });
    expect(health).toMatchObject({ state: 'no_transport', last_success_at: null, last_failure: { at: '1970-01-01T00:00:00.000Z', error: null, status_code: 500 } });
  });
});

describe('stats range', () => {
  it('reads spans in minutes, hours and days', () => {
    expect(parseSpan('1m')).toBe(MIN);
    expect(parseSpan('90m')).toBe(90 * MIN);
    expect(parseSpan('24h')).toBe(24 * HOUR);
    expect(parseSpan('7d')).toBe(7 * 24 * HOUR);
    for (const bad of ['', '0m', '05m', '1', 'h', '30s', '1.5h', '1w', ' 1h', '1H', '-1h', '1000000d']) expect([bad, parseSpan(bad)]).toEqual([bad, null]);
  });

  it('writes a span in its largest whole unit', () => {
    expect(formatSpan(5 * MIN)).toBe('5m');
    expect(formatSpan(90 * MIN)).toBe('90m');
    expect(formatSpan(HOUR)).toBe('1h');
    expect(formatSpan(3 * HOUR)).toBe('3h');
    expect(formatSpan(24 * HOUR)).toBe('1d');
  });

  it('chooses a default bucket that keeps the series at 300 points or fewer', () => {
    const cases: Array<[string, string]> = [
      ['1m', '1m'],
      ['90m', '1m'],
      ['5h', '1m'],
      ['6h', '5m'],
      ['24h', '5m'],
      ['2d', '10m'],
      ['7d', '1h'],
      ['30d', '3h'],
    ];
    for (const [window, bucket] of cases) {
      const result = resolveStatsRange(window, undefined);
      expect([window, result]).toEqual([window, { ok: true, range: { window, bucket, windowMs: parseSpan(window), bucketMs: parseSpan(bucket) } }]);
    }
    expect(resolveStatsRange(undefined, undefined)).toEqual({ ok: true, range: { window: '24h', bucket: '5m', windowMs: 24 * HOUR, bucketMs: 5 * MIN } });
    expect(defaultBucketMs(24 * HOUR, 24)).toBe(HOUR);
  });

  it('takes a bucket that is a whole number of minutes, no longer than the window, at most 1440 points', () => {
    expect(resolveStatsRange('24h', '1m')).toMatchObject({ ok: true, range: { bucket: '1m', bucketMs: MIN } });
    expect(resolveStatsRange('30d', '30m')).toMatchObject({ ok: true, range: { bucketMs: 30 * MIN } });
    expect(resolveStatsRange('1h', '60m')).toMatchObject({ ok: true, range: { bucket: '60m' } });
    expect(resolveStatsRange('24h', '7m')).toMatchObject({ ok: true });
  });

  it('names the field that is wrong', () => {
    expect(resolveStatsRange('1 day', undefined)).toMatchObject({ ok: false, field: 'window', message: expect.stringMatching(/^expected a whole number and a unit/) });
    expect(resolveStatsRange('31d', '1d')).toEqual({ ok: false, field: 'window', message: 'at most 30d' });
    expect(resolveStatsRange('721h', undefined)).toMatchObject({ ok: false, field: 'window' });
    expect(resolveStatsRange('24h', '30s')).toMatchObject({ ok: false, field: 'bucket', message: expect.stringMatching(/m \(minutes\)/) });
    expect(resolveStatsRange('1h', '2h')).toEqual({ ok: false, field: 'bucket', message: 'must not be longer than the window (1h)' });
    expect(resolveStatsRange('30d', '1m')).toEqual({
      ok: false,
      field: 'bucket',
      message: '30d in buckets of 1m is 43200 points, more than 1440: give a larger bucket (at least 30m)',
    });
    expect(resolveStatsRange('25h', '1m')).toMatchObject({ ok: false, field: 'bucket', message: expect.stringContaining('at least 2m') });
  });
});

describe('stats series', () => {
  const range = (windowMs: number, bucketMs: number): StatsRange => ({ window: '', bucket: '', windowMs, bucketMs });

  it('has every bucket of the window, aligned to the epoch, oldest first, the last one holding now', () => {
    const series = statsSeries([], range(HOUR, 5 * MIN), NOW);
    expect(series).toHaveLength(12);
    expect(series[0]).toEqual({ at: '2026-11-23T09:10:00.000Z', succeeded: 0, failed: 0, retried: 0, p50_ms: null, p95_ms: null });
    expect(series[11].at).toBe('2026-11-23T10:05:00.000Z');
    expect(series.map((p) => Date.parse(p.at) % (5 * MIN))).toEqual(new Array(12).fill(0));
    expect(new Date(seriesStart(range(HOUR, 5 * MIN), NOW)).toISOString()).toBe('2026-11-23T09:10:00.000Z');
  });

  it('rounds a window that is not a whole number of buckets up to one more bucket', () => {
    const series = statsSeries([], range(90 * MIN, HOUR), NOW);
    expect(series.map((p) => p.at)).toEqual(['2026-11-23T09:00:00.000Z', '2026-11-23T10:00:00.000Z']);
  });

  it('sums the minutes of each bucket, with percentiles of the bucket', () => {
    const minutes = [
      minute('2026-11-23T09:10:00Z', { succeeded: 1, latency: latency({ 10: 1 }) }),
      minute('2026-11-23T09:14:00Z', { succeeded: 1, retried: 2, latency: latency({ 10: 1, 500: 2 }) }),
      minute('2026-11-23T10:05:00Z', { succeeded: 19, failed: 1, latency: latency({ 100: 19, 10_000: 1 }) }),
      minute('2026-11-23T10:07:00Z', { failed: 2, latency: latency({ 25: 2 }) }),
    ];
    const series = statsSeries(minutes, range(HOUR, 5 * MIN), NOW);
    expect(series[0]).toEqual({ at: '2026-11-23T09:10:00.000Z', succeeded: 2, failed: 0, retried: 2, p50_ms: 10, p95_ms: 500 });
    expect(series.slice(1, 11).every((p) => p.succeeded + p.failed + p.retried === 0 && p.p50_ms === null)).toBe(true);
    // 19 at ≤100 ms, 1 at ≤10 s, 2 at ≤25 ms: p50 rank 11 → 100; p95 rank 21 → 100; the 22nd is the slow one.
    expect(series[11]).toEqual({ at: '2026-11-23T10:05:00.000Z', succeeded: 19, failed: 3, retried: 0, p50_ms: 100, p95_ms: 100 });
  });

  it('leaves out minutes before the first bucket and after the last', () => {
    const minutes = [
      minute('2026-11-23T09:09:00Z', { succeeded: 5 }),
      minute('2026-11-23T10:10:00Z', { succeeded: 7 }),
      minute('2026-11-23T10:09:00Z', { failed: 1, latency: latency({ 10: 1 }) }),
    ];
    const series = statsSeries(minutes, range(HOUR, 5 * MIN), NOW);
    expect(series.reduce((n, p) => n + p.succeeded + p.failed, 0)).toBe(1);
    expect(series[11]).toMatchObject({ failed: 1, p95_ms: 10 });
  });

  it('cuts a bucket that does not divide an hour on the epoch all the same', () => {
    const holds = (p: { at: string }, t: number) => Date.parse(p.at) <= t && t < Date.parse(p.at) + 7 * MIN;
    const at = Date.parse('2026-11-23T10:06:00Z');
    const series = statsSeries([minute('2026-11-23T10:06:00Z', { succeeded: 1, latency: latency({ 10: 1 }) })], range(HOUR, 7 * MIN), NOW);
    expect(series).toHaveLength(9);
    expect(series.every((p) => Date.parse(p.at) % (7 * MIN) === 0)).toBe(true);
    expect(holds(series[8], NOW)).toBe(true);
    const counted = series.filter((p) => p.succeeded);
    expect(counted).toHaveLength(1);
    expect(holds(counted[0], at)).toBe(true);
  });
});
