import { LATENCY_COLUMNS, tallyRollups, toListenerOutcomes, toRollupMinute, type OutcomeRow, type RollupRow } from '../rollup-tally.js';
import type { AttemptResult, ListenerOutcomes, RollupMinute, RollupQuery } from '../store.js';
import { statement, type Conn, type Database } from './database.js';

/**
 * What recording a batch adds, as two CTEs (`minutes`, `outcomes`) of the recording statement,
 * their parameters numbered from `$first` (see rollupValues): an upsert of the minutes and one
 * of the last outcomes, each (listener, minute) and each listener once in its arrays. The
 * listener row supplies the project, and an attempt of a listener deleted meanwhile adds
 * nothing (its minutes stay as they were when it was deleted). Two dispatchers
 * may record out of order: an outcome older than the one kept is ignored.
 */
export function rollupCtes(first: number): string {
  const p = (i: number) => `$${first + i}`;
  const newer = 'excluded.last_failure_at >= coalesce(o.last_failure_at, excluded.last_failure_at)';
  const o = LATENCY_COLUMNS.length + 5;
  return `minutes AS (
    INSERT INTO listener_rollups AS r (listener_id, project, minute, succeeded, failed, retried, ${LATENCY_COLUMNS.join(', ')})
    SELECT l.id, l.project, x.minute, x.succeeded, x.failed, x.retried, ${LATENCY_COLUMNS.map((c) => `x.${c}`).join(', ')}
    FROM unnest(${p(0)}::text[], ${p(1)}::bigint[], ${p(2)}::int[], ${p(3)}::int[], ${p(4)}::int[],
        ${LATENCY_COLUMNS.map((_, i) => `${p(i + 5)}::int[]`).join(', ')})
      AS x(listener_id, minute, succeeded, failed, retried, ${LATENCY_COLUMNS.join(', ')})
    JOIN listeners l ON l.id = x.listener_id
    ORDER BY l.id, x.minute
    ON CONFLICT (listener_id, minute) DO UPDATE SET succeeded = r.succeeded + excluded.succeeded,
      failed = r.failed + excluded.failed, retried = r.retried + excluded.retried,
      ${LATENCY_COLUMNS.map((c) => `${c} = r.${c} + excluded.${c}`).join(', ')}
  ), outcomes AS (
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

/** How many parameters rollupCtes takes. */
export const ROLLUP_PARAMS = LATENCY_COLUMNS.length + 10;

// Through the listeners primary key, so ids of other projects are absent and listeners
// without attempts yet are present with nulls.
const outcomes = statement(`SELECT l.id, o.last_success_at, o.last_failure_at, o.last_failure_error, o.last_failure_status_code
  FROM listeners l LEFT JOIN listener_outcomes o ON o.listener_id = l.id
  WHERE l.id = ANY($1::text[]) AND l.project = $2`);
// One listener: its primary key range. The project: listener_rollups_project_minute.
const ofListener = statement(`SELECT minute AS at, succeeded, failed, retried, ${LATENCY_COLUMNS.join(', ')}
  FROM listener_rollups WHERE listener_id = $1 AND minute >= $2 AND project = $3 ORDER BY minute`);
const ofProject = statement(`SELECT minute AS at, sum(succeeded)::int AS succeeded, sum(failed)::int AS failed,
    sum(retried)::int AS retried, ${LATENCY_COLUMNS.map((c) => `sum(${c})::int AS ${c}`).join(', ')}
  FROM listener_rollups WHERE project = $1 AND minute >= $2 GROUP BY minute ORDER BY minute`);
// A page of listeners' minutes summed per listener: their primary key ranges.
const totals = statement(`SELECT listener_id, min(minute) AS at, sum(succeeded)::int AS succeeded, sum(failed)::int AS failed,
    sum(retried)::int AS retried, ${LATENCY_COLUMNS.map((c) => `sum(${c})::int AS ${c}`).join(', ')}
  FROM listener_rollups WHERE listener_id = ANY($1::text[]) AND minute >= $2 AND project = $3
  GROUP BY listener_id`);
const prune = statement(`DELETE FROM listener_rollups WHERE (listener_id, minute) IN (
  SELECT listener_id, minute FROM listener_rollups WHERE minute < $1 LIMIT $2)`);

/** The parameters of rollupCtes for the attempts just recorded, as tallyRollups sums them. */
export function rollupValues(recorded: readonly AttemptResult[]): unknown[] {
  const { minutes: ms, outcomes: os } = tallyRollups(recorded);
  return [
    ms.map((m) => m.listener),
    ms.map((m) => m.at),
    ms.map((m) => m.succeeded),
    ms.map((m) => m.failed),
    ms.map((m) => m.retried),
    ...LATENCY_COLUMNS.map((_, i) => ms.map((m) => m.latency[i])),
    os.map((o) => o.listener),
    os.map((o) => o.successAt),
    os.map((o) => o.failure?.at ?? null),
    os.map((o) => o.failure?.error ?? null),
    os.map((o) => o.failure?.statusCode ?? null),
  ];
}

/** Deletes up to `batch` minutes older than `before`. */
export async function pruneRollups(c: Conn, before: number, batch: number): Promise<number> {
  return c.count(prune, [before, batch]);
}

/** The reads of rollups and last outcomes. */
export function rollupQueries(db: Database) {
  return {
    async outcomes(project: string, listenerIds: readonly string[]): Promise<Map<string, ListenerOutcomes>> {
      return toListenerOutcomes(await db.rows<OutcomeRow>(outcomes, [listenerIds, project]));
    },
    async read(project: string, q: RollupQuery): Promise<RollupMinute[]> {
      const rows =
        q.listenerId === undefined
          ? await db.rows<RollupRow>(ofProject, [project, q.since])
          : await db.rows<RollupRow>(ofListener, [q.listenerId, q.since, project]);
      return rows.map(toRollupMinute);
    },
    /** Each listener's minutes from `since` on summed into one (`at`: its first minute). */
    async totals(project: string, listenerIds: readonly string[], since: number): Promise<Map<string, RollupMinute>> {
      const rows = await db.rows<RollupRow & { listener_id: string }>(totals, [listenerIds, since, project]);
      return new Map(rows.map((row) => [row.listener_id, toRollupMinute(row)]));
    },
  };
}
