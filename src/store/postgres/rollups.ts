import { HOUR_MS } from '../../records/health.js';
import { LATENCY_COLUMNS, tallyRollups, toListenerOutcomes, toRollupMinute, type MinuteTally, type OutcomeRow, type RollupRow } from '../rollup-tally.js';
import type { AttemptResult, ListenerOutcomes, RollupMinute, RollupQuery } from '../store.js';
import { statement, type Conn, type Database } from './database.js';

/**
 * What recording a batch adds, as three CTEs (`minutes`, `hours`, `outcomes`) of the recording
 * statement, their parameters numbered from `$first` (see rollupValues): an upsert of the
 * minutes, one of the hours and one of the last outcomes, each (listener, minute), (listener,
 * hour) and listener once in its arrays. The listener row supplies the project, and an attempt
 * of a listener deleted meanwhile adds nothing (its minutes stay as they were when it was
 * deleted). Two dispatchers may record out of order: an outcome older than the one kept is
 * ignored.
 */
export function rollupCtes(first: number): string {
  const p = (i: number) => `$${first + i}`;
  const newer = 'excluded.last_failure_at >= coalesce(o.last_failure_at, excluded.last_failure_at)';
  const h = SPAN_PARAMS;
  const o = 2 * SPAN_PARAMS;
  const upsert = (name: string, table: string, column: string, at: number) => `${name} AS (
    INSERT INTO ${table} AS r (listener_id, project, ${column}, succeeded, failed, retried, ${LATENCY_COLUMNS.join(', ')})
    SELECT l.id, l.project, x.at, x.succeeded, x.failed, x.retried, ${LATENCY_COLUMNS.map((c) => `x.${c}`).join(', ')}
    FROM unnest(${p(at)}::text[], ${p(at + 1)}::bigint[], ${p(at + 2)}::int[], ${p(at + 3)}::int[], ${p(at + 4)}::int[],
        ${LATENCY_COLUMNS.map((_, i) => `${p(at + i + 5)}::int[]`).join(', ')})
      AS x(listener_id, at, succeeded, failed, retried, ${LATENCY_COLUMNS.join(', ')})
    JOIN listeners l ON l.id = x.listener_id
    ORDER BY l.id, x.at
    ON CONFLICT (listener_id, ${column}) DO UPDATE SET succeeded = r.succeeded + excluded.succeeded,
      failed = r.failed + excluded.failed, retried = r.retried + excluded.retried,
      ${LATENCY_COLUMNS.map((c) => `${c} = r.${c} + excluded.${c}`).join(', ')}
  )`;
  return `${upsert('minutes', 'listener_rollups', 'minute', 0)}, ${upsert('hours', 'listener_rollups_hourly', 'hour', h)}, outcomes AS (
    INSERT INTO listener_outcomes AS o
      (listener_id, project, last_success_at, last_failure_at, last_failure_error, last_failure_status_code)
    SELECT l.id, l.project, x.success_at, x.failure_at, x.failure_error, x.failure_status_code
    FROM unnest(${p(o)}::text[], ${p(o + 1)}::bigint[], ${p(o + 2)}::bigint[], ${p(o + 3)}::text[], ${p(o + 4)}::int[])
      AS x(listener_id, success_at, failure_at, failure_error, failure_status_code)
    JOIN listeners l ON l.id = x.listener_id
    ORDER BY l.id
    ON CONFLICT (listener_id) DO UPDATE SET
      last_success_at = greatest(o.last_success_at, excluded.last_success_at),
      last_failure_at = CASE WHEN ${newer} THEN excluded.last_failure_at ELSE o.last_failure_at END,
      last_failure_error = CASE WHEN ${newer} THEN excluded.last_failure_error ELSE o.last_failure_error END,
      last_failure_status_code = CASE WHEN ${newer} THEN excluded.last_failure_status_code ELSE o.last_failure_status_code END
  )`;
}

/** The parameters of one span's upsert: listener, at, three counts and the histogram. */
const SPAN_PARAMS = LATENCY_COLUMNS.length + 5;
/** How many parameters rollupCtes takes. */
export const ROLLUP_PARAMS = 2 * SPAN_PARAMS + 5;

// Through the listeners primary key, so ids of other projects are absent and listeners
// without attempts yet are present with nulls.
const outcomes = statement(`SELECT l.id, o.last_success_at, o.last_failure_at, o.last_failure_error, o.last_failure_status_code
  FROM listeners l LEFT JOIN listener_outcomes o ON o.listener_id = l.id
  WHERE l.id = ANY($1::text[]) AND l.project = $2`);
const columns = `succeeded, failed, retried, ${LATENCY_COLUMNS.join(', ')}`;
const sums = `sum(succeeded)::int AS succeeded, sum(failed)::int AS failed,
    sum(retried)::int AS retried, ${LATENCY_COLUMNS.map((c) => `sum(${c})::int AS ${c}`).join(', ')}`;
// A series from the minutes or the hours. One listener: its primary key range. The project:
// the (project, minute|hour) index.
const seriesOf = (table: string, column: string) => ({
  listener: statement(`SELECT ${column} AS at, ${columns}
  FROM ${table} WHERE listener_id = $1 AND ${column} >= $2 AND project = $3 ORDER BY ${column}`),
  project: statement(`SELECT ${column} AS at, ${sums}
  FROM ${table} WHERE project = $1 AND ${column} >= $2 GROUP BY ${column} ORDER BY ${column}`),
});
const byMinute = seriesOf('listener_rollups', 'minute');
const byHour = seriesOf('listener_rollups_hourly', 'hour');
// A page of listeners' attempts summed per listener: their primary key ranges, the minutes
// before the first whole hour ($3), then the hours.
const totals = statement(`SELECT listener_id, min(at) AS at, ${sums}
  FROM (
    SELECT listener_id, minute AS at, ${columns} FROM listener_rollups
      WHERE listener_id = ANY($1::text[]) AND minute >= $2 AND minute < $3 AND project = $4
    UNION ALL
    SELECT listener_id, hour AS at, ${columns} FROM listener_rollups_hourly
      WHERE listener_id = ANY($1::text[]) AND hour >= $3 AND project = $4
  ) s GROUP BY listener_id`);
const prune = statement(`DELETE FROM listener_rollups WHERE (listener_id, minute) IN (
  SELECT listener_id, minute FROM listener_rollups WHERE minute < $1 LIMIT $2)`);
// An hour goes once all of it is older than the cutoff.
const pruneHours = statement(`DELETE FROM listener_rollups_hourly WHERE (listener_id, hour) IN (
  SELECT listener_id, hour FROM listener_rollups_hourly WHERE hour <= $1::bigint - ${HOUR_MS} LIMIT $2)`);

/** The parameters of rollupCtes for the attempts just recorded, as tallyRollups sums them. */
export function rollupValues(recorded: readonly AttemptResult[]): unknown[] {
  const { minutes, hours, outcomes: os } = tallyRollups(recorded);
  const span = (ms: MinuteTally[]) => [
    ms.map((m) => m.listener),
    ms.map((m) => m.at),
    ms.map((m) => m.succeeded),
    ms.map((m) => m.failed),
    ms.map((m) => m.retried),
    ...LATENCY_COLUMNS.map((_, i) => ms.map((m) => m.latency[i])),
  ];
  return [
    ...span(minutes),
    ...span(hours),
    os.map((o) => o.listener),
    os.map((o) => o.successAt),
    os.map((o) => o.failure?.at ?? null),
    os.map((o) => o.failure?.error ?? null),
    os.map((o) => o.failure?.statusCode ?? null),
  ];
}

/** Deletes up to `batch` minutes older than `before`, and as many hours wholly older. */
export async function pruneRollups(c: Conn, before: number, batch: number): Promise<number> {
  return (await c.count(prune, [before, batch])) + (await c.count(pruneHours, [before, batch]));
}

/** The reads of rollups and last outcomes. */
export function rollupQueries(db: Database) {
  return {
    async outcomes(project: string, listenerIds: readonly string[]): Promise<Map<string, ListenerOutcomes>> {
      return toListenerOutcomes(await db.rows<OutcomeRow>(outcomes, [listenerIds, project]));
    },
    async read(project: string, q: RollupQuery): Promise<RollupMinute[]> {
      const series = q.hours ? byHour : byMinute;
      const rows =
        q.listenerId === undefined
          ? await db.rows<RollupRow>(series.project, [project, q.since])
          : await db.rows<RollupRow>(series.listener, [q.listenerId, q.since, project]);
      return rows.map(toRollupMinute);
    },
    /** Each listener's attempts from `since` on summed into one (see ListenerStore.rollupTotals). */
    async totals(project: string, listenerIds: readonly string[], since: number): Promise<Map<string, RollupMinute>> {
      const hour = Math.ceil(since / HOUR_MS) * HOUR_MS;
      const rows = await db.rows<RollupRow & { listener_id: string }>(totals, [listenerIds, since, hour, project]);
      return new Map(rows.map((row) => [row.listener_id, toRollupMinute(row)]));
    },
  };
}
