import type { StatsPoint } from '../../records/health.js';
import type { ListenerHealth } from '../../records/listener-health.js';
import { dash, type Column, type FieldPair } from '../output.js';
import { relativeTime, timeWithRelative } from '../relative-time.js';

/** A listener's health and its stats series as tables and `key: value` lines. */

/** 0.6667 → "66.67%"; "-" without attempts. */
export const percentText = (rate: number | null) => (rate === null ? '-' : `${Number((rate * 100).toFixed(2))}%`);

// The error names the status when there is one ("HTTP 500 Internal Server Error").
const failureWhat = (f: NonNullable<ListenerHealth['last_failure']>) =>
  f.error ?? (f.status_code === null ? 'failed' : `status ${f.status_code}`);

export function healthFields(h: ListenerHealth, now: number): FieldPair[] {
  return [
    ['state', h.state],
    ['success_rate_24h', percentText(h.success_rate_24h), h.success_rate_24h],
    ['p95_ms_24h', dash(h.p95_ms_24h), h.p95_ms_24h],
    ['last_success_at', timeWithRelative(h.last_success_at, now), h.last_success_at],
    ['last_failure', h.last_failure ? `${timeWithRelative(h.last_failure.at, now)}: ${failureWhat(h.last_failure)}` : '-', h.last_failure],
  ];
}

/** One line for listener-show: the state, then what the last day's attempts say. */
export function healthSummary(h: ListenerHealth, now: number): string {
  const parts: string[] = [h.state];
  if (h.success_rate_24h !== null) parts.push(`${percentText(h.success_rate_24h)} succeeded in 24 h`, `p95 ${h.p95_ms_24h} ms`);
  if (h.last_failure) parts.push(`last failure ${relativeTime(h.last_failure.at, now)} (${failureWhat(h.last_failure)})`);
  return parts.join('; ');
}

// A bucket starts on a whole minute: seconds and milliseconds say nothing.
const minuteText = (iso: string) => iso.replace(/:00\.000Z$/, 'Z');

export const STATS_COLUMNS: Array<Column<StatsPoint>> = [
  { header: 'AT', field: 'at', cell: (p) => minuteText(p.at) },
  { header: 'SUCCEEDED', field: 'succeeded', cell: (p) => String(p.succeeded) },
  { header: 'FAILED', field: 'failed', cell: (p) => String(p.failed) },
  { header: 'RETRIED', field: 'retried', cell: (p) => String(p.retried) },
  { header: 'P50 MS', field: 'p50_ms', cell: (p) => dash(p.p50_ms) },
  { header: 'P95 MS', field: 'p95_ms', cell: (p) => dash(p.p95_ms) },
];
