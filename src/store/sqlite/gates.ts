import type { Database, Statement } from 'better-sqlite3';
import type { ListenerGateState } from '../../dispatch/listener-gate.js';

type GateRow = ListenerGateState & { listener_id: string };

const toState = ({ listener_id: _id, ...state }: GateRow): ListenerGateState => state;

/**
 * Every listener gate statement of the SQLite backend, prepared once: one row per listener with
 * its breaker, rate limit bucket and failing streak (see ../../dispatch/listener-gate.ts).
 */
export function gateQueries(db: Database) {
  const COLUMNS = 'listener_id, breaker, probe_at, window_start, window_attempts, window_failures, prev_attempts, prev_failures, failing_since, tokens, tokens_at';
  const many = db.prepare(`SELECT ${COLUMNS} FROM listener_gates
    WHERE listener_id IN (SELECT value FROM json_each(?))`) as Statement<[string], GateRow>;
  const ofProject = db.prepare(`SELECT ${COLUMNS} FROM listener_gates
    WHERE listener_id IN (SELECT value FROM json_each(?)) AND project = ?`) as Statement<[string, string], GateRow>;
  // The listener row supplies the project, and a listener deleted meanwhile gets no state back.
  const write = db.prepare(`INSERT INTO listener_gates
      (listener_id, project, breaker, probe_at, window_start, window_attempts, window_failures, prev_attempts, prev_failures, failing_since, tokens, tokens_at)
    SELECT id, project, @breaker, @probe_at, @window_start, @window_attempts, @window_failures, @prev_attempts, @prev_failures, @failing_since, @tokens, @tokens_at
      FROM listeners WHERE id = @listener
    ON CONFLICT (listener_id) DO UPDATE SET breaker = excluded.breaker, probe_at = excluded.probe_at,
      window_start = excluded.window_start, window_attempts = excluded.window_attempts,
      window_failures = excluded.window_failures, prev_attempts = excluded.prev_attempts,
      prev_failures = excluded.prev_failures, failing_since = excluded.failing_since,
      tokens = excluded.tokens, tokens_at = excluded.tokens_at`);
  const forget = db.prepare('DELETE FROM listener_gates WHERE listener_id = ?');

  const toMap = (rows: GateRow[]) => new Map(rows.map((r) => [r.listener_id, toState(r)]));

  return {
    /** The states of the listeners that have one. Call inside the claiming or recording transaction. */
    read(listenerIds: readonly string[]): Map<string, ListenerGateState> {
      return toMap(many.all(JSON.stringify(listenerIds)));
    },
    /** As `read`, for the API: ids of other projects are absent. */
    ofProject(project: string, listenerIds: readonly string[]): Map<string, ListenerGateState> {
      return toMap(ofProject.all(JSON.stringify(listenerIds), project));
    },
    /** Call inside the transaction that decided them. */
    write(changed: ReadonlyMap<string, ListenerGateState>): void {
      for (const [listener, s] of changed) write.run({ listener, ...s });
    },
    /** Call inside the transaction that deletes the listener. */
    forget(listenerId: string): void {
      forget.run(listenerId);
    },
  };
}

export type GateQueries = ReturnType<typeof gateQueries>;
