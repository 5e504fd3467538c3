import type { ListenerGateState } from '../../dispatch/listener-gate.js';
import { statement, type Database } from './database.js';

const STATE_COLUMNS = 'breaker, probe_at, window_start, window_attempts, window_failures, prev_attempts, prev_failures, failing_since, tokens, tokens_at';

/*
 * A listener's gate row is made with the listener, blank (its breaker NULL), and holds a state
 * once the gate has judged or admitted for it (migration 007): dispatchers take turns on the
 * row, which exists to be locked before any state does.
 */
export type GateRow = Omit<ListenerGateState, 'breaker'> & { listener_id: string; breaker: ListenerGateState['breaker'] | null };

/** A row's state, or null for a blank one. */
export const toState = ({ listener_id: _id, ...state }: GateRow): ListenerGateState | null =>
  state.breaker === null ? null : (state as ListenerGateState);
const toMap = (rows: GateRow[]) => new Map(rows.map((r) => [r.listener_id, toState(r)!]));

export const GATE_COLUMNS = `listener_id, ${STATE_COLUMNS}`;

const ofProject = statement(`SELECT listener_id, ${STATE_COLUMNS} FROM listener_gates
  WHERE listener_id = ANY($1::text[]) AND project = $2 AND breaker IS NOT NULL`);

/** The blank row of a listener being created (in its transaction). */
export const blankGate = statement('INSERT INTO listener_gates (listener_id, project) VALUES ($1, $2)');
/** A listener enabled again starts afresh: its row goes back to blank (the failures that turned it off no longer count). */
export const blankGateAgain = statement(`UPDATE listener_gates SET breaker = NULL, probe_at = NULL, window_start = 0, window_attempts = 0,
    window_failures = 0, prev_attempts = 0, prev_failures = 0, failing_since = NULL, tokens = NULL, tokens_at = NULL
  WHERE listener_id = $1`);

/**
 * Writes gate states, as a CTE named `name` whose parameters are numbered from `$first` (see
 * gateValues). The listener row supplies the project, and a listener deleted meanwhile gets
 * no state back.
 */
export function gateUpsertCte(name: string, first: number): string {
  const p = (i: number) => `$${first + i}`;
  return `${name} AS (
    INSERT INTO listener_gates AS g (listener_id, project, ${STATE_COLUMNS})
    SELECT l.id, l.project, x.breaker, x.probe_at, x.window_start, x.window_attempts, x.window_failures, x.prev_attempts, x.prev_failures,
      x.failing_since, x.tokens, x.tokens_at
    FROM unnest(${p(0)}::text[], ${p(1)}::text[], ${p(2)}::bigint[], ${p(3)}::bigint[], ${p(4)}::int[], ${p(5)}::int[], ${p(6)}::int[],
        ${p(7)}::int[], ${p(8)}::bigint[], ${p(9)}::float8[], ${p(10)}::bigint[])
      AS x(listener_id, breaker, probe_at, window_start, window_attempts, window_failures, prev_attempts, prev_failures, failing_since, tokens, tokens_at)
    JOIN listeners l ON l.id = x.listener_id
    ORDER BY l.id
    ON CONFLICT (listener_id) DO UPDATE SET breaker = excluded.breaker, probe_at = excluded.probe_at,
      window_start = excluded.window_start, window_attempts = excluded.window_attempts,
      window_failures = excluded.window_failures, prev_attempts = excluded.prev_attempts,
      prev_failures = excluded.prev_failures, failing_since = excluded.failing_since,
      tokens = excluded.tokens, tokens_at = excluded.tokens_at
  )`;
}

/** How many parameters gateUpsertCte takes. */
export const GATE_PARAMS = 11;

/** The parameters of gateUpsertCte for the states a claim or a record decided. */
export function gateValues(changed: ReadonlyMap<string, ListenerGateState>): unknown[] {
  const rows = [...changed];
  return [
    rows.map(([id]) => id),
    rows.map(([, s]) => s.breaker),
    rows.map(([, s]) => s.probe_at),
    rows.map(([, s]) => s.window_start),
    rows.map(([, s]) => s.window_attempts),
    rows.map(([, s]) => s.window_failures),
    rows.map(([, s]) => s.prev_attempts),
    rows.map(([, s]) => s.prev_failures),
    rows.map(([, s]) => s.failing_since),
    rows.map(([, s]) => s.tokens),
    rows.map(([, s]) => s.tokens_at),
  ];
}

/** For the API: the states of the listeners asked about that have one (other projects' are absent). */
export async function readGates(db: Database, project: string, listenerIds: readonly string[]): Promise<Map<string, ListenerGateState>> {
  if (listenerIds.length === 0) return new Map();
  return toMap(await db.rows<GateRow>(ofProject, [listenerIds, project]));
}
