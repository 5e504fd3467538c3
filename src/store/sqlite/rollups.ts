import type { Database, Statement } from 'better-sqlite3';
import { HOUR_MS } from '../../records/health.js';
import { LATENCY_COLUMNS, tallyRollups, toListenerOutcomes, toRollupMinute, type OutcomeRow, type RollupRow } from '../rollup-tally.js';
import type { AttemptResult, ListenerOutcomes, RollupMinute, RollupQuery } from '../store.js';

/** Every rollup and last-outcome statement of the SQLite backend, prepared once. */
export function rollupQueries(db: Database) {
  // The listener row supplies the project, and an attempt of a listener deleted meanwhile
  // adds nothing (its minutes stay as they were when it was deleted).
  // The same upsert into the minutes and into the hours.
  const addTo = (table: string, column: string) =>
    db.prepare(`INSERT INTO ${table}
      (listener_id, project, ${column}, succeeded, failed, retried, ${LATENCY_COLUMNS.join(', ')})
    SELECT id, project, @at, @succeeded, @failed, @retried, ${LATENCY_COLUMNS.map((c) => `@${c}`).join(', ')}
      FROM listeners WHERE id = @listener
    ON CONFLICT (listener_id, ${column}) DO UPDATE SET succeeded = succeeded + excluded.succeeded,
      failed = failed + excluded.failed, retried = retried + excluded.retried,
      ${LATENCY_COLUMNS.map((c) => `${c} = ${c} + excluded.${c}`).join(', ')}`);
  const addMinute = addTo('listener_rollups', 'minute');
  const addHour = addTo('listener_rollups_hourly', 'hour');
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
  const columns = `succeeded, failed, retried, ${LATENCY_COLUMNS.join(', ')}`;
  const sums = `sum(succeeded) AS succeeded, sum(failed) AS failed, sum(retried) AS retried, ${LATENCY_COLUMNS.map((c) => `sum(${c}) AS ${c}`).join(', ')}`;
  // A series from the minutes or the hours. One listener: its primary key range. The project:
  // the (project, minute|hour) index, whose order is the grouping order.
  const seriesOf = (table: string, column: string) => ({
    listener: db.prepare(`SELECT ${column} AS at, ${columns}
    FROM ${table} WHERE listener_id = ? AND ${column} >= ? AND project = ? ORDER BY ${column}`) as Statement<[string, number, string], RollupRow>,
    project: db.prepare(`SELECT ${column} AS at, ${sums}
    FROM ${table} WHERE project = ? AND ${column} >= ? GROUP BY ${column} ORDER BY ${column}`) as Statement<[string, number], RollupRow>,
  });
  const byMinute = seriesOf('listener_rollups', 'minute');
  const byHour = seriesOf('listener_rollups_hourly', 'hour');
  // Several listeners at once (a page of a list): each one's primary key ranges, summed: the
  // minutes before the first whole hour, then the hours. (`+project`: not through the project's
  // index, which holds every listener of the project, not only the page's.)
  const totals = db.prepare(`SELECT listener_id, min(at) AS at, ${sums} FROM (
      SELECT listener_id, minute AS at, ${columns} FROM listener_rollups
        WHERE listener_id IN (SELECT value FROM json_each(@ids)) AND minute >= @since AND minute < @hour AND +project = @project
      UNION ALL
      SELECT listener_id, hour AS at, ${columns} FROM listener_rollups_hourly
        WHERE listener_id IN (SELECT value FROM json_each(@ids)) AND hour >= @hour AND +project = @project
    ) GROUP BY listener_id`) as Statement<[{ ids: string; since: number; hour: number; project: string }], RollupRow & { listener_id: string }>;
  const prune = db.prepare(`DELETE FROM listener_rollups WHERE (listener_id, minute) IN (
    SELECT listener_id, minute FROM listener_rollups WHERE minute < ? LIMIT ?)`);
  // An hour goes once all of it is older than the cutoff.
  const pruneHours = db.prepare(`DELETE FROM listener_rollups_hourly WHERE (listener_id, hour) IN (
    SELECT listener_id, hour FROM listener_rollups_hourly WHERE hour <= ? - ${HOUR_MS} LIMIT ?)`);
  const forgetOutcomes = db.prepare('DELETE FROM listener_outcomes WHERE listener_id = ?');

  return {
    /**
     * Adds recorded attempts to their listeners' minutes and last outcomes: one upsert per
     * (listener, minute) and one per listener, however many attempts the batch holds.
     * Call inside the transaction that records them.
     */
    add(recorded: readonly AttemptResult[]): void {
      const { minutes, hours, outcomes: lasts } = tallyRollups(recorded);
      for (const [add, rows] of [[addMinute, minutes], [addHour, hours]] as const) {
        for (const m of rows) {
          const params: Record<string, unknown> = { listener: m.listener, at: m.at, succeeded: m.succeeded, failed: m.failed, retried: m.retried };
          LATENCY_COLUMNS.forEach((c, i) => (params[c] = m.latency[i]));
          add.run(params);
        }
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
      const hour = Math.ceil(since / HOUR_MS) * HOUR_MS;
      for (const row of totals.all({ ids: JSON.stringify(listenerIds), since, hour, project })) out.set(row.listener_id, toRollupMinute(row));
      return out;
    },

    read(project: string, q: RollupQuery): RollupMinute[] {
      const series = q.hours ? byHour : byMinute;
      const rows = q.listenerId === undefined ? series.project.all(project, q.since) : series.listener.all(q.listenerId, q.since, project);
      return rows.map(toRollupMinute);
    },
    /** Deletes up to `batch` minutes older than `before`, and as many hours wholly older. Call inside a transaction. */
    prune(before: number, batch: number): number {
      return prune.run(before, batch).changes + pruneHours.run(before, batch).changes;
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
