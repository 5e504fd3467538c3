import type { Stats } from './types.js';
import { parseSpan } from './format.js';

export const OUTCOMES = ['succeeded', 'failed', 'retried'] as const;
export type Outcome = (typeof OUTCOMES)[number];

/**
 * A stats answer as chart columns: times in seconds (as uPlot counts them), then one column
 * per outcome, on a full grid of buckets ending with the one `now` is in. The API answers
 * every bucket; a bucket it leaves out all the same is drawn as zero, never as a line across
 * the gap.
 */
export function toColumns(stats: Stats, now: number): [number[], ...number[][]] {
  const bucketMs = parseSpan(stats.bucket);
  const windowMs = parseSpan(stats.window);
  const byBucket = new Map(stats.series.map((p) => [Date.parse(p.at), p]));
  const times = new Set<number>();
  if (bucketMs && windowMs) {
    const last = Math.floor(now / bucketMs) * bucketMs;
    for (let t = last - (Math.ceil(windowMs / bucketMs) - 1) * bucketMs; t <= last; t += bucketMs) times.add(t);
  }
  for (const t of byBucket.keys()) times.add(t);
  const sorted = [...times].sort((a, b) => a - b);
  return [sorted.map((t) => t / 1000), ...OUTCOMES.map((o) => sorted.map((t) => byBucket.get(t)?.[o] ?? 0))];
}

/** `12 succeeded, 3 failed, 5 retried` over the whole answer. */
export function totals(stats: Stats): string {
  return OUTCOMES.map((o) => `${stats.series.reduce((n, p) => n + (p[o] ?? 0), 0)} ${o}`).join(', ');
}
