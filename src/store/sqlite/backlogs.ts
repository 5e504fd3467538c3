import type { Database, Statement } from 'better-sqlite3';
import { BACKLOG_WINDOW, type BacklogAction, type BacklogStep } from '../store.js';

interface MarkerRow {
  listener_id: string;
  project: string;
  action: BacklogAction;
  after_id: string;
  /** 1: the listener's ordering was turned off; the windows also let go of what it held behind its executions' heads. */
  unorder: number;
}

/**
 * A listener's waiting deliveries following it, a window at a time (db/sqlite/013): held when
 * it is disabled, due again when it is enabled, cancelled when it is deleted; with `unorder`
 * (its ordering turned off), no longer held behind its executions' heads. A window is the
 * listener's next `batch` deliveries in id order, read through deliveries_project_listener;
 * the change moves the first one in its own transaction and leaves a row for the rest, which
 * moveListenerBacklogs moves one window per transaction. Until they are moved, the claim holds
 * a disabled listener's deliveries and cancels a deleted one's as it meets them.
 */
export type BacklogQueries = ReturnType<typeof backlogQueries>;

export function backlogQueries(db: Database, batch = BACKLOG_WINDOW) {
  const windowEnd = db.prepare(`SELECT max(id) AS last, count(*) AS n FROM (
      SELECT id FROM deliveries WHERE project = ? AND listener_id = ? AND id > ? ORDER BY id LIMIT ?)`) as Statement<
    [string, string, string, number],
    { last: string | null; n: number }
  >;
  // Read through deliveries_project_listener: `+status` keeps the planner off the project's status index, whose id range
  // would hold every listener's deliveries of that span.
  const range = 'project = @project AND listener_id = @listener AND id > @after AND id <= @last';
  // Disabling holds what waits (deliveries in flight finish and are held when they come back);
  // enabling makes due now what it held, never a delivery held behind its execution's head
  // unless the ordering was turned off (@unorder), which lets go of those as well.
  const moves: Record<BacklogAction, Statement> = {
    hold: db.prepare(`UPDATE deliveries SET next_attempt_at = NULL, held = CASE WHEN @unorder THEN NULL ELSE held END
      WHERE ${range} AND +status = 'pending' AND lease_owner IS NULL`),
    release: db.prepare(`UPDATE deliveries SET next_attempt_at = @now, held = NULL
      WHERE ${range} AND +status = 'pending' AND next_attempt_at IS NULL AND (held IS NULL OR @unorder)`),
    cancel: db.prepare(`UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL, lease_owner = NULL, held = NULL,
        last_error = 'listener deleted', updated_at = @now
      WHERE ${range} AND +status = 'pending'`),
  };
  // A change starts the listener's row again with its action; an unfinished unorder stays.
  const mark = db.prepare(`INSERT INTO listener_backlogs (listener_id, project, action, after_id, since, unorder)
    VALUES (@listener, @project, @action, @after, @now, @unorder)
    ON CONFLICT (listener_id) DO UPDATE SET project = excluded.project, action = excluded.action, after_id = excluded.after_id, since = excluded.since,
      unorder = max(unorder, excluded.unorder)
    RETURNING unorder`).pluck() as Statement<{ listener: string; project: string; action: BacklogAction; after: string; now: number; unorder: number }, number>;
  const advance = db.prepare('UPDATE listener_backlogs SET after_id = ? WHERE listener_id = ?');
  const unmark = db.prepare('DELETE FROM listener_backlogs WHERE listener_id = ?');
  const anyMark = db.prepare('SELECT 1 FROM listener_backlogs LIMIT 1').pluck() as Statement<[], number>;
  const oldest = db.prepare('SELECT listener_id, project, action, after_id, unorder FROM listener_backlogs ORDER BY since, listener_id LIMIT 1') as Statement<[], MarkerRow>;

  /** Moves the window after `m.after_id`; leaves the row at its end, or removes it after the last. Call inside a transaction. */
  function step(m: MarkerRow, now: number): BacklogStep {
    const { last, n } = windowEnd.get(m.project, m.listener_id, m.after_id, batch)!;
    const moved = last === null ? 0 : moves[m.action].run({ project: m.project, listener: m.listener_id, after: m.after_id, last, now, unorder: m.unorder }).changes;
    const done = n < batch;
    if (done) unmark.run(m.listener_id);
    else advance.run(last, m.listener_id);
    return { listenerId: m.listener_id, project: m.project, action: m.action, unorder: m.unorder === 1, moved, done };
  }

  return {
    /**
     * A listener change: its backlog starts to follow it with the first window (`unorder`: its
     * ordering was turned off). Call inside the change's transaction.
     */
    start(project: string, listenerId: string, action: BacklogAction, now: number, unorder = false): BacklogStep {
      const kept = mark.get({ listener: listenerId, project, action, after: '', now, unorder: unorder ? 1 : 0 })!;
      return step({ listener_id: listenerId, project, action, after_id: '', unorder: kept }, now);
    },
    /** Whether any backlog is still moving: a read, so that looking takes no write lock. */
    moving(): boolean {
      return anyMark.get() !== undefined;
    },
    /** The next window of the oldest backlog still moving; null when none is. Call inside a transaction. */
    next(now: number): BacklogStep | null {
      const m = oldest.get();
      return m ? step(m, now) : null;
    },
  };
}
