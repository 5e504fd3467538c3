import type { Database, Statement } from 'better-sqlite3';
import { LATENCY_COLUMNS, tallyRollups, toListenerOutcomes, toRollupMinute, type OutcomeRow, type RollupRow } from '../rollup-tally.js';
import type { AttemptResult, ListenerOutcomes, RollupMinute, RollupQuery } from '../store.js';

/** Every rollup and last-outcome statement of the SQLite backend, prepared once. */
export function rollupQueries(db: Database) {
  // The listener row supplies the project, and an attempt of a listener deleted meanwhile
  // adds nothing (its minutes stay as they were when it was deleted).
  const addMinute = db.prepare(`INSERT INTO listener_rollups
      (listener_id, project, minute, succeeded, failed, retried, ${LATENCY_COLUMNS.join(', ')})
    SELECT id, project, @minute, @succeeded, @failed, @retried, ${LATENCY_COLUMNS.map((c) => `@${c}`).join(', ')}
      FROM listeners WHERE id = @listener
    ON CONFLICT (listener_id, minute) DO UPDATE SET succeeded = succeeded + excluded.succeeded,
      failed = failed + excluded.failed, retried = retried + excluded.retried,
      ${LATENCY_COLUMNS.map((c) => `${c} = ${c} + excluded.${c}`).join(', ')}`);
  // Two dispatchers may record out of order: an outcome older than the one kept is ignored.
  const newer = 'excluded.last_failure_at >= coalesce(last_failure_at, excluded.last_failure_at)';
  const keepOutcome = db.prepare(`INSERT INTO listener_outcomes
      (listener_id, project, last_success_at, last_failure_at, last_failure_error, last_failure_status_code)
    SELECT id, project, @success_at, @failure_at, @failure_error, @failure_status_code FROM listeners WHERE id = @listener
    ON CONFLICT (listener_id) DO UPDATE SET
      last_success_at = max(coalesce(last_success_at, excluded.last_success_at), coalesce(excluded.last_success_at, last_success_at)),
      last_failure_at = CASE WHEN ${newer} THEN excluded.last_failure_at ELSE last_failure_at END,
      last_failure_error = CASE WHEN ${newer} THEN excluded.last_failure_error ELSE last_failure_error END,
      last_failure_status_code = CASE WHEN ${newer} THEN excluded.last_failure_status_code ELSE last_failure_status_code END`);
  // Through the listeners primary key, so ids of other projects are absent and listeners
  // without attempts yet are present with nulls.
  const outcomes = db.prepare(`SELECT l.id, o.last_success_at, o.last_failure_at, o.last_failure_error, o.last_failure_status_code
    FROM listeners l LEFT JOIN listener_outcomes o ON o.listener_id = l.id
    WHERE l.id IN (SELECT value FROM json_each(?)) AND l.project = ?`) as Statement<[string, string], OutcomeRow>;
  // One listener: its primary key range. The project: listener_rollups_project_minute, whose
  // order is the grouping order.
  const ofListener = db.prepare(`SELECT minute AS at, succeeded, failed, retried, ${LATENCY_COLUMNS.join(', ')}
    FROM listener_rollups WHERE listener_id = ? AND minute >= ? AND project = ? ORDER BY minute`) as Statement<[string, number, string], RollupRow>;
  const ofProject = db.prepare(`SELECT minute AS at, sum(succeeded) AS succeeded, sum(failed) AS failed, sum(retried) AS retried,
      ${LATENCY_COLUMNS.map((c) => `sum(${c}) AS ${c}`).join(', ')}
    FROM listener_rollups WHERE project = ? AND minute >= ? GROUP BY minute ORDER BY minute`) as Statement<[string, number], RollupRow>;
  // Several listeners at once (a page of a list): each one's primary key range, summed.
  const totals = db.prepare(`SELECT listener_id, min(minute) AS at, sum(succeeded) AS succeeded, sum(failed) AS failed, sum(retried) AS retried,
      ${LATENCY_COLUMNS.map((c) => `sum(${c}) AS ${c}`).join(', ')}
    FROM listener_rollups WHERE listener_id IN (SELECT value FROM json_each(?)) AND minute >= ? AND project = ?
    GROUP BY listener_id`) as Statement<[string, number, string], RollupRow & { listener_id: string }>;
  const prune = db.prepare(`DELETE FROM listener_rollups WHERE (listener_id, minute) IN (
    SELECT listener_id, minute FROM listener_rollups WHERE minute < ? LIMIT ?)`);
  const forgetOutcomes = db.prepare('DELETE FROM listener_outcomes WHERE listener_id = ?');

  return {
    /**
     * Adds recorded attempts to their listeners' minutes and last outcomes: one upsert per
     * (listener, minute) and one per listener, however many attempts the batch holds.
     * Call inside the transaction that records them.
     */
    add(recorded: readonly AttemptResult[]): void {
      const { minutes, outcomes: lasts } = tallyRollups(recorded);
      for (const m of minutes) {
        const params: Record<string, unknown> = { listener: m.listener, minute: m.at, succeeded: m.succeeded, failed: m.failed, retried: m.retried };
        LATENCY_COLUMNS.forEach((c, i) => (params[c] = m.latency[i]));
        addMinute.run(params);
      }
      for (const o of lasts) {
        keepOutcome.run({
          listener: o.listener,
          success_at: o.successAt,
          failure_at: o.failure?.at ?? null,
          failure_error: o.failure?.error ?? null,
          failure_status_code: o.failure?.statusCode ?? null,
        });
      }
    },
    outcomes(project: string, listenerIds: readonly string[]): Map<string, ListenerOutcomes> {
      return toListenerOutcomes(outcomes.all(JSON.stringify(listenerIds), project));
    },
    totals(project: string, listenerIds: readonly string[], since: number): Map<string, RollupMinute> {
      const out = new Map<string, RollupMinute>();
      for (const row of totals.all(JSON.stringify(listenerIds), since, project)) out.set(row.listener_id, toRollupMinute(row));
      return out;
    },

    read(project: string, q: RollupQuery): RollupMinute[] {
      const rows = q.listenerId === undefined ? ofProject.all(project, q.since) : ofListener.all(q.listenerId, q.since, project);
      return rows.map(toRollupMinute);
    },
    /** Deletes up to `batch` minutes older than `before`. Call inside a transaction. */
    prune(before: number, batch: number): number {
      return prune.run(before, batch).changes;
    },
    /**
     * A deleted listener's last outcomes. Its minutes stay, part of the project's history
     * (GET /v1/stats), until they are as old as the pruner's cutoff; no attempt is added to them
     * (addMinute reads the listener). Call inside the transaction that deletes it.
     */
    forget(listenerId: string): void {
      forgetOutcomes.run(listenerId);
    },
  };
}

export type RollupQueries = ReturnType<typeof rollupQueries>;
