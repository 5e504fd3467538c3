import { HOUR_MS } from '../records/health.js';
import { LATENCY_BOUNDS_MS, type AttemptResult, type ListenerOutcomes, type RollupMinute } from './store.js';

/*
 * What recorded attempts add to the per-minute rollups and the last outcomes, and how their rows
 * read back, for both backends. No SQL here: each backend writes the tallies its own way.
 */

const MINUTE_MS = 60_000;

/** The histogram's columns, one per bucket: latency_0 … latency_N. */
export const LATENCY_COLUMNS = Array.from({ length: LATENCY_BOUNDS_MS.length + 1 }, (_, i) => `latency_${i}`);

/** The histogram bucket of an attempt that took `ms`: the first bound it does not exceed, else the last. */
export function latencyBucket(ms: number): number {
  const i = LATENCY_BOUNDS_MS.findIndex((bound) => ms <= bound);
  return i === -1 ? LATENCY_BOUNDS_MS.length : i;
}

/** What a batch adds to one listener's minute. */
export interface MinuteTally extends RollupMinute {
  listener: string;
}

/** A listener's latest success and failure in a batch. */
export interface OutcomeTally {
  listener: string;
  successAt: number | null;
  failure: { at: number; error: string | null; statusCode: number | null } | null;
}

/**
 * The recorded attempts summed per (listener, minute) and per (listener, hour), and their last
 * outcomes per listener, each once, in the order they first appear. An attempt counts in the
 * minute it ended (started_at + duration_ms), the time its outcome was known, and in that
 * minute's hour.
 */
export function tallyRollups(recorded: readonly AttemptResult[]): { minutes: MinuteTally[]; hours: MinuteTally[]; outcomes: OutcomeTally[] } {
  const minutes = new Map<string, MinuteTally>();
  const lasts = new Map<string, OutcomeTally>();
  for (const r of recorded) {
    const a = r.attempt;
    const at = a.started_at + a.duration_ms;
    const minute = Math.floor(at / MINUTE_MS) * MINUTE_MS;
    const key = `${r.listenerId}\n${minute}`;
    let m = minutes.get(key);
    if (!m) {
      m = { listener: r.listenerId, at: minute, succeeded: 0, failed: 0, retried: 0, latency: LATENCY_COLUMNS.map(() => 0) };
      minutes.set(key, m);
    }
    // A pending result is a failed attempt whose delivery goes on (a retry, or held by a 410).
    if (r.status === 'succeeded') m.succeeded++;
    else if (r.status === 'failed') m.failed++;
    else m.retried++;
    m.latency[latencyBucket(a.duration_ms)]++;

    let o = lasts.get(r.listenerId);
    if (!o) {
      o = { listener: r.listenerId, successAt: null, failure: null };
      lasts.set(r.listenerId, o);
    }
    if (r.status === 'succeeded') o.successAt = Math.max(o.successAt ?? at, at);
    else if (!o.failure || at >= o.failure.at) o.failure = { at, error: r.lastError ?? a.error, statusCode: a.status_code };
  }
  return { minutes: [...minutes.values()], hours: byHour(minutes.values()), outcomes: [...lasts.values()] };
}

/** Minutes summed per (listener, hour), each once, in the order they first appear. */
function byHour(minutes: Iterable<MinuteTally>): MinuteTally[] {
  const hours = new Map<string, MinuteTally>();
  for (const m of minutes) {
    const hour = Math.floor(m.at / HOUR_MS) * HOUR_MS;
    const key = `${m.listener}\n${hour}`;
    const h = hours.get(key);
    if (!h) hours.set(key, { ...m, at: hour, latency: [...m.latency] });
    else {
      h.succeeded += m.succeeded;
      h.failed += m.failed;
      h.retried += m.retried;
      m.latency.forEach((n, i) => (h.latency[i] += n));
    }
  }
  return [...hours.values()];
}

/** A rollup row: a minute (or a sum of minutes) with one column per LATENCY_COLUMNS. */
export type RollupRow = { at: number; succeeded: number; failed: number; retried: number } & Record<string, number>;

export function toRollupMinute(row: RollupRow): RollupMinute {
  return {
    at: row.at,
    succeeded: row.succeeded,
    failed: row.failed,
    retried: row.retried,
    latency: LATENCY_COLUMNS.map((c) => row[c]),
  };
}

/** A listener with its last outcomes, null where it has had none. */
export interface OutcomeRow {
  id: string;
  last_success_at: number | null;
  last_failure_at: number | null;
  last_failure_error: string | null;
  last_failure_status_code: number | null;
}

export function toListenerOutcomes(rows: Iterable<OutcomeRow>): Map<string, ListenerOutcomes> {
  const answer = new Map<string, ListenerOutcomes>();
  for (const row of rows) {
    answer.set(row.id, {
      last_success_at: row.last_success_at,
      last_failure:
        row.last_failure_at === null
          ? null
          : { at: row.last_failure_at, error: row.last_failure_error, status_code: row.last_failure_status_code },
    });
  }
  return answer;
}
