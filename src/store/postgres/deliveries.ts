import { encodeTime } from 'ulid';
import { deliveryWalk, toDeliveryRecord, walkMayGoOn, type DeliveryRow } from '../rows.js';
import { DEFAULT_LIST_SCAN_LIMIT, type AttemptRecord, type DeliveryQuery, type DeliveryRecord, type ListPage, type QueueDepth } from '../store.js';
import { statement, type Database } from './database.js';
import { namedStatements } from './filtered-page.js';
import type { DueNotice } from './notify.js';
import { pruneOrder } from './order.js';
import { pruneRollups } from './rollups.js';

// With the event's type and workbook through event_seq, the events primary key: one lookup per row.
// A leased delivery's next try is its lease's end (see claim.ts), as on SQLite; a lease taken
// before migration 006 ends at next_attempt_at.
const COLUMNS = `d.id, d.event_id, e.type AS event_type, e.workbook, d.listener_id, d.status, d.attempt_count,
  CASE WHEN d.lease_owner IS NULL THEN d.next_attempt_at ELSE greatest(d.next_attempt_at, d.leased_until) END AS next_attempt_at,
  d.lease_owner, d.held, d.last_error, d.created_at, d.updated_at`;
const FROM = 'deliveries d JOIN events e ON e.seq = d.event_seq';

// A page walks one index in id order: a listener's, a status's (deliveries_project_status holds
// no succeeded ones), an event's (sorted), or the project's. The other filters are checked
// on at most scanLimit rows of the walk (see deliveryWalk). One statement per order, walk,
// cursor and filters checked, made on first use.
const walks = {
  listener: ['d.project = @project AND d.listener_id = @listener_id', ['project', 'listener_id']],
  status: [`d.project = @project AND d.status = @status AND d.status <> 'succeeded'`, ['project', 'status']],
  event: ['d.event_seq = (SELECT seq FROM events WHERE project = @project AND id = @event_id)', ['project', 'event_id']],
  project: ['d.project = @project', ['project']],
} as const;
const listStatement = namedStatements((key) => {
  const [order, walkName, after, ...sieve] = key.split(',');
  const dir = order === 'desc' ? 'DESC' : 'ASC';
  const [served, names] = walks[walkName as keyof typeof walks];
  const walk = `FROM deliveries d WHERE ${served} ${after ? `AND d.id ${order === 'desc' ? '<' : '>'} @after` : ''} ORDER BY d.id ${dir}`;
  const walked = [...names, ...(after ? ['after'] : [])];
  if (sieve[0] === 'probe') return { text: `SELECT d.id ${walk} LIMIT 1 OFFSET @scan - 1`, names: [...walked, 'scan'] };
  if (!sieve.length) return { text: `SELECT ${COLUMNS} ${walk.replace('WHERE', 'JOIN events e ON e.seq = d.event_seq WHERE')} LIMIT @limit`, names: [...walked, 'limit'] };
  return {
    text: `SELECT ${COLUMNS}
      FROM (SELECT d.id, d.project, d.listener_id, d.status, d.event_id ${walk} LIMIT @scan) w
        JOIN deliveries d ON d.id = w.id JOIN events e ON e.seq = d.event_seq
      WHERE ${sieve.map((k) => `w.${k} = @${k}`).join(' AND ')}
      ORDER BY w.id ${dir} LIMIT @limit`,
    names: [...walked, 'scan', ...sieve, 'limit'],
  };
});
const sortsOff = 'SET LOCAL enable_sort = off';
const snapshot = 'SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY';

const byId = statement(`SELECT ${COLUMNS} FROM ${FROM} WHERE d.project = $1 AND d.id = $2`);
const lockById = statement(`SELECT ${COLUMNS} FROM ${FROM} WHERE d.project = $1 AND d.id = $2 FOR UPDATE OF d`);
const attempts = statement(`SELECT a.number, a.started_at, a.duration_ms, a.status_code, a.error, a.response_excerpt
  FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
  WHERE d.project = $1 AND a.delivery_id = $2 ORDER BY a.number`);
const listenerExists = statement('SELECT 1 FROM listeners WHERE project = $1 AND id = $2');
// A manual retry of a finished delivery is sent when asked, out of order: it is no head and
// carries no gap. A pending one (a head waiting for its next try, say) keeps its gap.
const requeue = statement(`UPDATE deliveries SET status = 'pending', next_attempt_at = $2, lease_owner = NULL, leased_until = NULL,
    gap = CASE WHEN status = 'pending' THEN gap END, updated_at = $2 WHERE id = $1`);
const release = statement(`UPDATE deliveries SET lease_owner = NULL, leased_until = NULL, next_attempt_at = $3
  WHERE id = ANY($1::text[]) AND lease_owner = $2`);
// A lease is live while leased_until is to come; given back, the delivery keeps its place in the due order.
const leaseOwners = statement(`SELECT DISTINCT lease_owner FROM deliveries
  WHERE status = 'pending' AND lease_owner IS NOT NULL AND leased_until > $1`);
const releaseOwners = statement(`UPDATE deliveries SET lease_owner = NULL, leased_until = NULL
  WHERE status = 'pending' AND lease_owner = ANY($1::text[]) AND leased_until > $2`);
const renew = statement(`UPDATE deliveries SET leased_until = greatest(leased_until, $3)
  WHERE id = ANY($1::text[]) AND lease_owner = $2 AND status = 'pending' AND leased_until IS NOT NULL`);

/**
 * Whether delivery `d` is free of a live lease at `at` (an SQL value): never leased, or its
 * lease has ended (its process died). A claim leaves next_attempt_at, which deliveries_due
 * orders by, as it was, so every reader of the queue looks past live leases with this.
 */
export const leaseEnded = (at: string) => `(d.leased_until IS NULL OR d.leased_until <= ${at})`;

/**
 * The projects with pending due-index deliveries, as a recursive CTE `projects` (a query using
 * it says WITH RECURSIVE): found by skipping through deliveries_due's leading column, one index
 * probe per project however many deliveries each has. `when` may switch it off.
 */
export const pendingProjectsCte = (when = 'true') => `projects AS (
    (SELECT project FROM deliveries WHERE status = 'pending' AND held IS NULL AND ${when} ORDER BY project LIMIT 1)
    UNION ALL
    SELECT (SELECT d.project FROM deliveries d WHERE d.status = 'pending' AND d.held IS NULL AND d.project > p.project
      ORDER BY d.project LIMIT 1)
    FROM projects p WHERE p.project IS NOT NULL
  )`;
// Each project's earliest due time, read from the front of its part of the index, past the
// deliveries whose lease has not ended: when one of those ends (its process died), the
// dispatcher's poll finds it due.
const nextDue = statement(`WITH RECURSIVE ${pendingProjectsCte()}
  SELECT min((SELECT d.next_attempt_at FROM deliveries d
    WHERE d.status = 'pending' AND d.held IS NULL AND d.project = p.project AND d.next_attempt_at IS NOT NULL
      AND ${leaseEnded('$1')}
    ORDER BY d.next_attempt_at LIMIT 1)) AS at
  FROM projects p WHERE p.project IS NOT NULL`);

// A claimed delivery counts as due (in flight), not scheduled. One whose lease has ended (its
// process died) is due again and may be the oldest.
const depth = statement(`SELECT
    count(*) FILTER (WHERE next_attempt_at <= $1 OR lease_owner IS NOT NULL)::int AS due,
    count(*) FILTER (WHERE next_attempt_at > $1 AND lease_owner IS NULL)::int AS scheduled,
    min(greatest(next_attempt_at, leased_until)) FILTER (WHERE greatest(next_attempt_at, leased_until) <= $1) AS oldest
  FROM deliveries WHERE status = 'pending' AND held IS NULL`);

// A delivery goes once it has been finished (last updated) for the retention time, its attempts
// with it. It was created before it finished, and ids are ULIDs: the cutoff as an id bounds the
// key range read.
// The conditions stand on the DELETE itself as well as in its pick: a row that another
// transaction changed meanwhile (a manual retry, a replay re-queueing it) is checked again as it
// is after that commit, and a delivery re-queued and answered 202 is not removed. The pick's
// rows alone would be (PostgreSQL rechecks only the target row's own conditions).
const pruneDeliveries = statement(`WITH gone AS (
    DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE id < $1 AND status <> 'pending' AND updated_at < $3 LIMIT $2)
      AND status <> 'pending' AND updated_at < $3
    RETURNING id
  ), attempts_gone AS (
    DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM gone)
  )
  SELECT count(*)::int AS n FROM gone`);
const pruneEvents = statement(`DELETE FROM events WHERE seq IN (
  SELECT seq FROM events e WHERE received_at < $1
    AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_seq = e.seq) LIMIT $2)`);

/** Every delivery statement of the PostgreSQL backend but the dispatcher's cycle (queue.ts). */
export function deliveryQueries(db: Database, notice: DueNotice) {
  return {
    async list(project: string, q: DeliveryQuery): Promise<ListPage<DeliveryRecord>> {
      const now = Date.now();
      const { walk, sieve } = deliveryWalk(q, (status) => status !== 'succeeded');
      const head = [q.order ?? 'asc', walk, q.after ? 'after' : ''];
      const params = { ...q, project, scan: q.scanLimit ?? DEFAULT_LIST_SCAN_LIMIT };
      return db.transaction(async (c) => {
        // One snapshot for the page and its probe (see walkMayGoOn). With sorts off the planner
        // walks the index in order rather than sort what it finds; an event's few deliveries
        // are sorted.
        await c.count(walk === 'event' ? snapshot : `${snapshot}; ${sortsOff}`, []);
        const page = listStatement([...head, ...sieve].join(','), params);
        const rows = (await c.rows<DeliveryRow>(page.statement, page.values)).map((r) => toDeliveryRecord(r, now));
        if (!walkMayGoOn(rows.length, q, sieve.length > 0)) return { rows, resume: null };
        const probe = listStatement([...head, 'probe'].join(','), params);
        const [end] = await c.rows<{ id: string }>(probe.statement, probe.values);
        return { rows, resume: end?.id ?? null };
      });
    },
    async get(project: string, id: string): Promise<DeliveryRecord | null> {
      const [row] = await db.rows<DeliveryRow>(byId, [project, id]);
      return row ? toDeliveryRecord(row, Date.now()) : null;
    },
    async attempts(project: string, id: string): Promise<AttemptRecord[]> {
      return db.rows<AttemptRecord>(attempts, [project, id]);
    },
    /** Re-queues one delivery now, unless a dispatcher holds it; the row lock keeps a claim from slipping in between. */
    retry(project: string, id: string, now: number): Promise<'queued' | 'in_flight' | 'no_listener' | 'not_found'> {
      return db.transaction(async (c) => {
        const [row] = await c.rows<DeliveryRow>(lockById, [project, id]);
        if (!row) return 'not_found' as const;
        if (toDeliveryRecord(row, now).in_flight) return 'in_flight' as const;
        if ((await c.rows(listenerExists, [project, row.listener_id])).length === 0) return 'no_listener' as const;
        // Held behind its execution's head, it is queued already and keeps its place.
        if (row.held === null) {
          await c.count(requeue, [id, now]);
          notice.afterCommit(c);
        }
        return 'queued' as const;
      });
    },
    async renew(owner: string, ids: readonly string[], until: number): Promise<void> {
      if (ids.length === 0) return;
      await db.count(renew, [ids, owner, until]);
    },
    /** Gives back unsent deliveries' leases, due at `now`; other processes' dispatchers are told. */
    async release(owner: string, ids: string[], now: number): Promise<void> {
      if (ids.length === 0) return;
      await db.transaction(async (c) => {
        if ((await c.count(release, [ids, owner, now])) > 0) notice.afterCommit(c);
      });
    },
    /** Gives back the live leases of owners `isGone` judges dead; they keep their due times, and other processes' dispatchers are told. */
    async releaseGone(isGone: (owner: string) => boolean, now: number): Promise<{ owners: string[]; deliveries: number }> {
      const owners = (await db.rows<{ lease_owner: string }>(leaseOwners, [now])).map((r) => r.lease_owner).filter(isGone);
      if (owners.length === 0) return { owners, deliveries: 0 };
      const released = await db.transaction(async (c) => {
        const n = await c.count(releaseOwners, [owners, now]);
        if (n > 0) notice.afterCommit(c);
        return n;
      });
      return { owners, deliveries: released };
    },
    async nextDueAt(): Promise<number | null> {
      const [row] = await db.rows<{ at: number | null }>(nextDue, [Date.now()]);
      return row?.at ?? null;
    },
    async depth(now: number): Promise<QueueDepth> {
      const [r] = await db.rows<{ due: number; scheduled: number; oldest: number | null }>(depth, [now]);
      return { due: r.due, scheduled: r.scheduled, oldestDueAt: r.oldest };
    },
    /** One small batch of each: finished deliveries (attempts go with them), unreferenced events, rollup minutes. */
    prune(before: number, batch: number): Promise<{ deliveries: number; events: number; rollups: number }> {
      return db.transaction(async (c) => {
        const [{ n: deliveries }] = await c.rows<{ n: number }>(pruneDeliveries, [encodeTime(before, 10), batch, before]);
        const events = await c.count(pruneEvents, [before, batch]);
        // Ordered keys left without a head keep a gap for a next delivery that never came.
        await pruneOrder(c, before, batch);
        return { deliveries, events, rollups: await pruneRollups(c, before, batch) };
      });
    },
  };
}
