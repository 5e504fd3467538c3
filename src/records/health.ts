import { z } from 'zod';
import { LATENCY_BOUNDS_MS, type ListenerOutcomes, type RollupMinute } from '../store/store.js';
import type { HealthState, ListenerHealth } from './listener-health.js';

/*
 * Endpoint health and delivery statistics, computed from the per-minute rollups the store keeps
 * with every recorded attempt (never from the attempts themselves) and the listeners' last
 * outcomes. Pure: the routes read, these decide.
 */

const MINUTE_MS = 60_000;
export const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

/** What `health` looks back over. */
export const HEALTH_WINDOW_MS = DAY_MS;

/** The circuit breaker's state; a listener without one is closed. */
export type BreakerState = 'closed' | 'open' | 'half_open';

export interface HealthFacts {
  enabled: boolean;
  /** Whether this relay has the listener's `callback.transport` enabled. */
  transportEnabled: boolean;
  breaker?: BreakerState;
  /** The listener's rollup minutes from healthSince(now) on. */
  rollups: readonly RollupMinute[];
  outcomes?: ListenerOutcomes;
}

/** The first minute `health` reads: the whole minute 24 hours ago. */
export const healthSince = (now: number) => Math.floor((now - HEALTH_WINDOW_MS) / MINUTE_MS) * MINUTE_MS;

/** Turned off wins over a transport that is missing, which wins over the breaker: each hides the next. */
export function healthState(f: Pick<HealthFacts, 'enabled' | 'transportEnabled' | 'breaker'>): HealthState {
  if (!f.enabled) return 'disabled';
  if (!f.transportEnabled) return 'no_transport';
  if (f.breaker === 'open' || f.breaker === 'half_open') return f.breaker;
  return 'ok';
}

export function listenerHealth(f: HealthFacts): ListenerHealth {
  const total = sumMinutes(f.rollups);
  const attempts = total.succeeded + total.failed + total.retried;
  const failure = f.outcomes?.last_failure ?? null;
  return {
    state: healthState(f),
    success_rate_24h: attempts ? round4(total.succeeded / attempts) : null,
    p95_ms_24h: percentileMs(total.latency, 95),
    last_success_at: nullableIso(f.outcomes?.last_success_at),
    last_failure: failure && { at: iso(failure.at), error: failure.error, status_code: failure.status_code },
  };
}

/** A new listener has no attempts yet: its health needs no read. */
export const newListenerHealth = (f: Pick<HealthFacts, 'enabled' | 'transportEnabled'>): ListenerHealth =>
  listenerHealth({ ...f, rollups: [] });

/**
 * The `pct`th percentile (1-100) of a latency histogram: the upper bound of the bucket in which
 * the cumulative count reaches that share of all attempts (nearest rank). Attempts slower than
 * the last bound read as that bound. Null for an empty histogram.
 */
export function percentileMs(latency: readonly number[], pct: number): number | null {
  const total = latency.reduce((a, b) => a + b, 0);
  if (!total) return null;
  // Whole percents in integer arithmetic: as a fraction, 0.07 * 100 is 7.000000000000001, and ceil would make it 8.
  const rank = Math.ceil((pct * total) / 100);
  let seen = 0;
  for (let i = 0; i < latency.length; i++) {
    seen += latency[i];
    if (seen >= rank) return LATENCY_BOUNDS_MS[Math.min(i, LATENCY_BOUNDS_MS.length - 1)];
  }
  return LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.length - 1];
}

interface Totals {
  succeeded: number;
  failed: number;
  retried: number;
  latency: number[];
}

const emptyTotals = (): Totals => ({ succeeded: 0, failed: 0, retried: 0, latency: new Array(LATENCY_BOUNDS_MS.length + 1).fill(0) });

function addMinute(into: Totals, m: RollupMinute): void {
  into.succeeded += m.succeeded;
  into.failed += m.failed;
  into.retried += m.retried;
  m.latency.forEach((count, i) => {
    if (i < into.latency.length) into.latency[i] += count;
  });
}

function sumMinutes(minutes: readonly RollupMinute[]): Totals {
  const total = emptyTotals();
  for (const m of minutes) addMinute(total, m);
  return total;
}

const round4 = (x: number) => Math.round(x * 10_000) / 10_000;
const iso = (ms: number) => new Date(ms).toISOString();
const nullableIso = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : iso(ms));

// ---- stats: a window of rollups in buckets ----

export const MAX_STATS_WINDOW_MS = 30 * DAY_MS;
/** At most this many buckets in one answer (a day of minutes). */
export const MAX_STATS_POINTS = 1440;
export const DEFAULT_STATS_WINDOW = '24h';
/** The default bucket keeps a series at about this many points, enough for a chart. */
export const DEFAULT_STATS_POINTS = 300;

/** Bucket sizes a default is chosen from: ones that read well on a time axis. */
const BUCKET_LADDER_MS = [1, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440].map((m) => m * MINUTE_MS);

const UNIT_MS = { m: MINUTE_MS, h: HOUR_MS, d: DAY_MS } as const;
const SPAN = /^([1-9][0-9]{0,5})([mhd])$/;

/** `90m`, `24h`, `7d` in ms; null for anything else. */
export function parseSpan(text: string): number | null {
  const match = SPAN.exec(text);
  return match ? Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS] : null;
}

/** A whole number of minutes in its largest whole unit: 300000 → `5m`, 3600000 → `1h`, 86400000 → `1d`. */
export function formatSpan(ms: number): string {
  for (const unit of ['d', 'h'] as const) if (ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  return `${ms / MINUTE_MS}m`;
}

/** The smallest ladder bucket that keeps the window at `points` buckets or fewer. */
export function defaultBucketMs(windowMs: number, points = DEFAULT_STATS_POINTS): number {
  return BUCKET_LADDER_MS.find((b) => Math.ceil(windowMs / b) <= points) ?? BUCKET_LADDER_MS[BUCKET_LADDER_MS.length - 1];
}

export interface StatsRange {
  /** As given (or the default), for the answer. */
  window: string;
  bucket: string;
  windowMs: number;
  bucketMs: number;
}

export type StatsRangeResult = { ok: true; range: StatsRange } | { ok: false; field: 'window' | 'bucket'; message: string };

const SPAN_HELP = 'a whole number and a unit: m (minutes), h (hours) or d (days), such as 90m, 24h or 7d';

/** Checks `window` and `bucket` as a client gave them (either may be absent). */
export function resolveStatsRange(window: string | undefined, bucket: string | undefined): StatsRangeResult {
  const windowText = window ?? DEFAULT_STATS_WINDOW;
  const windowMs = parseSpan(windowText);
  if (windowMs === null) return { ok: false, field: 'window', message: `expected ${SPAN_HELP}` };
  if (windowMs > MAX_STATS_WINDOW_MS) return { ok: false, field: 'window', message: 'at most 30d' };
  if (bucket === undefined) {
    const bucketMs = defaultBucketMs(windowMs);
    return { ok: true, range: { window: windowText, bucket: formatSpan(bucketMs), windowMs, bucketMs } };
  }
  const bucketMs = parseSpan(bucket);
  if (bucketMs === null) return { ok: false, field: 'bucket', message: `expected ${SPAN_HELP}` };
  if (bucketMs > windowMs) return { ok: false, field: 'bucket', message: `must not be longer than the window (${windowText})` };
  const points = Math.ceil(windowMs / bucketMs);
  if (points > MAX_STATS_POINTS) {
    return {
      ok: false,
      field: 'bucket',
      message: `${windowText} in buckets of ${bucket} is ${points} points, more than ${MAX_STATS_POINTS}: give a larger bucket (at least ${formatSpan(Math.ceil(windowMs / MAX_STATS_POINTS / MINUTE_MS) * MINUTE_MS)})`,
    };
  }
  return { ok: true, range: { window: windowText, bucket, windowMs, bucketMs } };
}

export const StatsPoint = z.object({
  at: z.string(),
  succeeded: z.number().int(),
  failed: z.number().int(),
  retried: z.number().int(),
  p50_ms: z.number().int().nullable(),
  p95_ms: z.number().int().nullable(),
});
export type StatsPoint = z.infer<typeof StatsPoint>;

export const StatsView = z.object({ window: z.string(), bucket: z.string(), series: z.array(StatsPoint) });
export type StatsView = z.infer<typeof StatsView>;

/**
 * The start of a series' first bucket. A series has ceil(window / bucket) buckets aligned to the
 * epoch (so every client and every refresh cuts the same buckets), the last one the bucket `now`
 * is in, still filling.
 */
export function seriesStart(range: Pick<StatsRange, 'windowMs' | 'bucketMs'>, now: number): number {
  const points = Math.ceil(range.windowMs / range.bucketMs);
  return Math.floor(now / range.bucketMs) * range.bucketMs - (points - 1) * range.bucketMs;
}

/** Rollup minutes summed into the range's buckets, oldest first, every bucket present. */
export function statsSeries(minutes: readonly RollupMinute[], range: Pick<StatsRange, 'windowMs' | 'bucketMs'>, now: number): StatsPoint[] {
  const points = Math.ceil(range.windowMs / range.bucketMs);
  const first = seriesStart(range, now);
  const buckets = Array.from({ length: points }, emptyTotals);
  for (const m of minutes) {
    const i = Math.floor((m.at - first) / range.bucketMs);
    // A minute outside the series (another process's clock ahead of this one) is left out.
    if (i >= 0 && i < points) addMinute(buckets[i], m);
  }
  return buckets.map((b, i) => ({
    at: iso(first + i * range.bucketMs),
    succeeded: b.succeeded,
    failed: b.failed,
    retried: b.retried,
    p50_ms: percentileMs(b.latency, 50),
    p95_ms: percentileMs(b.latency, 95),
  }));
}

export function toStatsView(range: StatsRange, minutes: readonly RollupMinute[], now: number): StatsView {
  return { window: range.window, bucket: range.bucket, series: statsSeries(minutes, range, now) };
}
