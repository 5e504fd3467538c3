import type { Logger } from 'pino';
import type { AttemptResult, ClaimedDelivery } from '../store/store.js';

/** One failed attempt, as the failing-listener tally keeps it. */
export interface FailedAttempt {
  at: number;
  error: string | null;
  /** unix ms of the delivery's next try; null when it will not be tried again */
  nextAttemptAt: number | null;
}

/** One summary line's worth: a listener's failures since its previous line. */
export interface FailingListener {
  listenerId: string;
  failedAttempts: number;
  /** unix ms of the first failure this line counts */
  since: number;
  lastError: string | null;
  nextAttemptAt: number | null;
}

export interface FailureTally {
  record(listenerId: string, failure: FailedAttempt): void;
  /**
   * The summaries due at `now`: one per listener with failures not yet reported whose previous
   * line is at least `intervalMs` old (or that never had one). A listener quiet for a whole
   * interval is forgotten, so its next failure is reported at once again.
   */
  due(now: number): FailingListener[];
}

interface ListenerTally {
  failed: number;
  since: number;
  lastError: string | null;
  nextAttemptAt: number | null;
  reportedAt: number | null;
}

/** Counts failures per listener so that a storm of them becomes one line per listener per interval. */
export function createFailureTally(intervalMs: number): FailureTally {
  const tallies = new Map<string, ListenerTally>();
  return {
    record(listenerId, f) {
      const t = tallies.get(listenerId);
      if (t === undefined) {
        tallies.set(listenerId, { failed: 1, since: f.at, lastError: f.error, nextAttemptAt: f.nextAttemptAt, reportedAt: null });
        return;
      }
      if (t.failed === 0) t.since = f.at;
      t.failed++;
      t.lastError = f.error;
      t.nextAttemptAt = f.nextAttemptAt;
    },
    due(now) {
      const lines: FailingListener[] = [];
      for (const [listenerId, t] of tallies) {
        const quietEnough = t.reportedAt === null || now - t.reportedAt >= intervalMs;
        if (!quietEnough) continue;
        if (t.failed === 0) {
          tallies.delete(listenerId);
          continue;
        }
        lines.push({ listenerId, failedAttempts: t.failed, since: t.since, lastError: t.lastError, nextAttemptAt: t.nextAttemptAt });
        t.failed = 0;
        t.reportedAt = now;
      }
      return lines;
    },
  };
}

/** A listener's circuit breaker changing state. */
export interface CircuitChange {
  listenerId: string;
  state: 'open' | 'half-open' | 'closed';
  reason: string;
  /** unix ms of the next probe while open */
  probeAt?: number | null;
}

export interface FailureLog {
  /** Every finished attempt: a debug line, the listener's tally, and a warn line when the delivery failed for good. */
  attemptFinished(delivery: ClaimedDelivery, result: AttemptResult): void;
  /** Listeners the store just turned off; their reasons come from the attempts that caused it. */
  listenersDisabled(ids: readonly string[], results: readonly AttemptResult[]): void;
  circuitChanged(change: CircuitChange): void;
  /** Writes the summary lines that are due; cheap when nothing failed. */
  summarize(): void;
}

export interface FailureLogOptions {
  log: Logger;
  /** Shortest time between two summary lines of one listener. */
  summaryIntervalMs?: number;
  now?: () => number;
}

const SUMMARY_LOOK_MS = 1_000;

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** The event's id and type, read only for a delivery that failed for good (rare, so parsing is affordable). */
function eventOf(envelopeJson: string): { event?: string; eventType?: string } {
  try {
    const e = JSON.parse(envelopeJson) as { id?: unknown; type?: unknown };
    return { event: typeof e.id === 'string' ? e.id : undefined, eventType: typeof e.type === 'string' ? e.type : undefined };
  } catch {
    return {};
  }
}

/**
 * What the dispatcher tells operators about failures: each attempt at debug; a delivery that
 * failed for good, a listener turned off and a circuit that opened at warn, once each; and the
 * many failed attempts in between as one summary line per failing listener per interval, so a
 * receiver that is down does not flood the log.
 */
export function createFailureLog(o: FailureLogOptions): FailureLog {
  const { log } = o;
  const now = o.now ?? Date.now;
  const intervalMs = o.summaryIntervalMs ?? 60_000;
  const tally = createFailureTally(intervalMs);
  // The dispatcher asks every cycle, which under load is many times a second; looking once a
  // second is enough for lines that come at most once a minute.
  let lookedAt = -Infinity;

  return {
    attemptFinished(d, r) {
      if (log.isLevelEnabled('debug')) {
        log.debug(
          { delivery: d.id, listener: d.listenerId, attempt: r.attempt.number, statusCode: r.attempt.status_code, error: r.attempt.error, durationMs: r.attempt.duration_ms, outcome: r.status },
          'attempt finished',
        );
      }
      if (r.status === 'succeeded' || !log.isLevelEnabled('warn')) return;
      tally.record(d.listenerId, { at: r.attempt.started_at + r.attempt.duration_ms, error: r.lastError ?? r.attempt.error, nextAttemptAt: r.nextAttemptAt });
      if (r.status === 'failed') {
        log.warn(
          { listener: d.listenerId, project: d.project, delivery: d.id, ...eventOf(d.envelopeJson), attempts: r.attempt.number, statusCode: r.attempt.status_code, lastError: r.lastError },
          `delivery failed after ${r.attempt.number} attempt${r.attempt.number === 1 ? '' : 's'}; no retries left`,
        );
      }
    },

    listenersDisabled(ids, results) {
      for (const id of ids) {
        const cause = results.find((r) => r.listenerId === id && r.disableListener !== null);
        log.warn(
          { listener: id, project: cause?.project, delivery: cause?.deliveryId, reason: cause?.disableListener ?? null },
          `listener disabled: ${cause?.disableListener ?? 'its receiver asked to stop'}; its deliveries wait until it is enabled again`,
        );
      }
    },

    circuitChanged(c) {
      const fields = { listener: c.listenerId, circuit: c.state, reason: c.reason, probeAt: iso(c.probeAt ?? null) };
      if (c.state === 'open') log.warn(fields, `circuit opened: ${c.reason}`);
      else log.info(fields, `circuit ${c.state}: ${c.reason}`);
    },

    summarize() {
      const at = now();
      if (at - lookedAt < SUMMARY_LOOK_MS) return;
      lookedAt = at;
      for (const l of tally.due(at)) {
        log.warn(
          { listener: l.listenerId, failedAttempts: l.failedAttempts, since: iso(l.since), lastError: l.lastError, nextRetryAt: iso(l.nextAttemptAt) },
          `listener failing: ${l.failedAttempts} failed attempt${l.failedAttempts === 1 ? '' : 's'} since ${iso(l.since)}`,
        );
      }
    },
  };
}
