import { BACKLOG_WINDOW, type BacklogAction, type BacklogStep } from '../store.js';
import { statement, type Conn, type Database, type Statement } from './database.js';
import type { DueNotice } from './notify.js';

/*
 * A listener's waiting deliveries following it, a window at a time (db/postgres/010, 011): held
 * when it is disabled, due again when it is enabled, cancelled when it is deleted; with
 * `unorder` (its ordering turned off), no longer held behind its executions' heads. A window is
 * the listener's next deliveries in id order, read through deliveries_project_listener; the
 * change moves the first one in its own transaction and leaves a row for the rest, which
 * moveListenerBacklogs moves one window per transaction. Until they are moved, a claim holds a
 * disabled listener's deliveries and cancels a deleted one's as it meets them (claim.ts).
 *
 * Locks: a change locks its listener, then the backlog row (written before any delivery), then
 * the window's deliveries; moving locks the backlog row, then the deliveries. Both take the
 * row first, so neither waits for the other in a circle; several processes move different
 * backlogs side by side (SKIP LOCKED).
 */
// One statement per window: the listener's next deliveries in id order (through
// deliveries_project_listener, which gives them in that order), then those of them the change
// applies to, each by its primary key. Answers where the window ended and how many moved.
// The conditions on the window's rows are expressions no index serves (`status || ''`,
// `next_attempt_at + 0`): plain, they let the planner read deliveries_due for every held
// delivery of the database and join the window to them, which an estimate from stale
// statistics chose, taking minutes a window on 500,000 held deliveries (the primary key: 1,000 reads).
const windowed = (change: string, applies: string) =>
  statement(`WITH w AS (
      SELECT id FROM deliveries WHERE project = $1 AND listener_id = $2 AND id > $3 ORDER BY id LIMIT $4
    ), moved AS (
      UPDATE deliveries d SET ${change} FROM w WHERE d.id = w.id AND d.status || '' = 'pending' AND ${applies} RETURNING 1
    )
    SELECT (SELECT max(id) FROM w) AS last, (SELECT count(*) FROM w)::int AS n, (SELECT count(*) FROM moved)::int AS moved`);
// Disabling holds what waits (deliveries in flight finish and are held when they come back);
// enabling makes due now what it held, never a delivery held behind its execution's head
// unless the ordering was turned off ($6), which lets go of those as well.
// (Every window statement names $5, the time, and $6 so that they all take the same parameters.)
const moves: Record<BacklogAction, Statement> = {
  hold: windowed('next_attempt_at = NULL, held = CASE WHEN $6::boolean THEN NULL ELSE d.held END', 'd.lease_owner IS NULL AND $5::bigint IS NOT NULL'),
  release: windowed('next_attempt_at = $5, held = NULL', '(d.next_attempt_at + 0) IS NULL AND (d.held IS NULL OR $6::boolean)'),
  cancel: windowed(
    `status = 'cancelled', next_attempt_at = NULL, lease_owner = NULL, leased_until = NULL, held = NULL, last_error = 'listener deleted', updated_at = $5`,
    '$6::boolean IS NOT NULL',
  ),
};
// A change starts the listener's row again with its action; an unfinished unorder stays.
const mark = statement(`INSERT INTO listener_backlogs AS b (listener_id, project, action, after_id, since, unorder) VALUES ($1, $2, $3, '', $4, $5)
  ON CONFLICT (listener_id) DO UPDATE SET project = excluded.project, action = excluded.action, after_id = '', since = excluded.since,
    unorder = b.unorder OR excluded.unorder
  RETURNING unorder`);
const advance = statement('UPDATE listener_backlogs SET after_id = $2 WHERE listener_id = $1');
const unmark = statement('DELETE FROM listener_backlogs WHERE listener_id = $1');
const anyMark = statement('SELECT EXISTS (SELECT 1 FROM listener_backlogs) AS moving');
const oldest = statement(`SELECT listener_id, project, action, after_id, unorder FROM listener_backlogs
  ORDER BY since, listener_id LIMIT 1 FOR UPDATE SKIP LOCKED`);

interface MarkerRow {
  listener_id: string;
  project: string;
  action: BacklogAction;
  after_id: string;
  /** The listener's ordering was turned off: the windows also let go of what it held behind its executions' heads. */
  unorder: boolean;
}

export function backlogQueries(db: Database, notice: DueNotice, batch = BACKLOG_WINDOW) {
  /** Moves the window after `m.after_id`; leaves the row at its end, or removes it after the last. */
  async function step(c: Conn, m: MarkerRow, now: number): Promise<BacklogStep> {
    const [{ last, n, moved }] = await c.rows<{ last: string | null; n: number; moved: number }>(moves[m.action], [
      m.project,
      m.listener_id,
      m.after_id,
      batch,
      now,
      m.unorder,
    ]);
    if (m.action === 'release' && moved > 0) notice.afterCommit(c);
    const done = n < batch;
    if (done) await c.count(unmark, [m.listener_id]);
    else await c.count(advance, [m.listener_id, last]);
    return { listenerId: m.listener_id, project: m.project, action: m.action, unorder: m.unorder, moved, done };
  }

  return {
    /**
     * A listener change: its backlog starts to follow it with the first window (`unorder`: its
     * ordering was turned off). Call in the change's transaction, its listener locked.
     */
    async start(c: Conn, project: string, listenerId: string, action: BacklogAction, now: number, unorder = false): Promise<BacklogStep> {
      const [kept] = await c.rows<{ unorder: boolean }>(mark, [listenerId, project, action, now, unorder]);
      return step(c, { listener_id: listenerId, project, action, after_id: '', unorder: kept.unorder }, now);
    },
    /** The next window of the oldest backlog that no other process is moving right now; null when none is. */
    async next(now: number): Promise<BacklogStep | null> {
      // Looked for every second: one read, and a transaction only when there is a backlog to move.
      const [{ moving }] = await db.rows<{ moving: boolean }>(anyMark, []);
      if (!moving) return null;
      return db.transaction(async (c) => {
        const [m] = await c.rows<MarkerRow>(oldest, []);
        return m ? step(c, m, now) : null;
      });
    },
  };
}

export type BacklogQueries = ReturnType<typeof backlogQueries>;
