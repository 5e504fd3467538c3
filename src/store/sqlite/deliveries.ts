import type { Database, Statement } from 'better-sqlite3';
import { encodeTime } from 'ulid';
import { snapshotOf, statementCache } from './filtered-page.js';
import { initialGateState, type GateListener } from '../../dispatch/listener-gate.js';
import { deliveryWalk, specCache, toClaimedDelivery, toDeliveryRecord, walkMayGoOn, type ClaimEvent, type ClaimRow, type DeliveryRow, type SpecColumn } from '../rows.js';
import type {
  AttemptRecord,
  AttemptResult,
  ClaimedDelivery,
  ClaimOptions,
  DeliveryQuery,
  DeliveryRecord,
  ListPage,
  QueueDepth,
} from '../store.js';
import { DEFAULT_LIST_SCAN_LIMIT } from '../store.js';
import type { BacklogQueries } from './backlogs.js';
import type { ExecutionOrder } from './execution-order.js';
import type { GateQueries } from './gates.js';
import type { ListenerVersions } from './listener-versions.js';
import type { RollupQueries } from './rollups.js';

/** A due delivery with its event and its listener (all null when the listener is gone). */
interface DueRow extends ClaimRow, ClaimEvent {
  next_attempt_at: number;
  gap: string | null;
  spec: string | null;
  enabled: number | null;
}

// With the event's type and workbook through event_seq, the events primary key: one lookup per row.
const COLUMNS = `d.id, d.event_id, e.type AS event_type, e.workbook, d.listener_id, d.status, d.attempt_count, d.next_attempt_at,
  d.lease_owner, d.held, d.last_error, d.created_at, d.updated_at`;
const FROM = 'deliveries d JOIN events e ON e.seq = d.event_seq';

export interface DeliveryQueryDeps {
  versions: ListenerVersions;
  rollups: RollupQueries;
  gates: GateQueries;
  executionOrder: ExecutionOrder;
  backlogs: BacklogQueries;
}

/** Every delivery and attempt statement of the SQLite backend, prepared once. */
export function deliveryQueries(db: Database, { versions, rollups, gates, executionOrder, backlogs }: DeliveryQueryDeps) {
  // A page walks one index in id order (INDEXED BY: the planner could pick another and filter
  // rather than walk): a listener's, a status's, an event's (sorted), or the project's. The
  // other filters are checked on at most scanLimit rows of the walk (see deliveryWalk). One
  // statement per order, walk, cursor and filters checked, made on first use.
  const walks = {
    listener: ['deliveries_project_listener', 'd.project = @project AND d.listener_id = @listener_id'],
    status: ['deliveries_project_status', 'd.project = @project AND d.status = @status'],
    event: ['deliveries_event_seq', 'd.event_seq = (SELECT seq FROM events WHERE project = @project AND id = @event_id)'],
    project: ['deliveries_project_id', 'd.project = @project'],
  } as const;
  const inSnapshot = snapshotOf(db);
  const listStatement = statementCache((key) => {
    const [order, walkName, after, ...sieve] = key.split(',');
    const dir = order === 'desc' ? 'DESC' : 'ASC';
    const [index, served] = walks[walkName as keyof typeof walks];
    const walk = `FROM deliveries d INDEXED BY ${index} WHERE ${served} ${after ? `AND d.id ${order === 'desc' ? '<' : '>'} @after` : ''}
      ORDER BY d.id ${dir}`;
    if (sieve[0] === 'probe') return db.prepare(`SELECT d.id ${walk} LIMIT 1 OFFSET @scan - 1`).pluck();
    if (!sieve.length) return db.prepare(`SELECT ${COLUMNS} ${walk.replace('WHERE', `JOIN events e ON e.seq = d.event_seq WHERE`)} LIMIT @limit`);
    return db.prepare(`SELECT ${COLUMNS}
      FROM (SELECT d.rowid AS rid, d.id, d.project, d.listener_id, d.status, d.event_id ${walk} LIMIT @scan) w
        JOIN deliveries d ON d.rowid = w.rid JOIN events e ON e.seq = d.event_seq
      WHERE ${sieve.map((k) => `w.${k} = @${k}`).join(' AND ')}
      ORDER BY w.id ${dir} LIMIT @limit`);
  });
  const byId = db.prepare(`SELECT ${COLUMNS} FROM ${FROM} WHERE d.project = ? AND d.id = ?`) as Statement<[string, string], DeliveryRow>;
  const attempts = db.prepare(`SELECT number, started_at, duration_ms, status_code, error, response_excerpt
    FROM attempts WHERE delivery_id = ? ORDER BY number`) as Statement<[string], AttemptRecord>;
  const listenerExists = db.prepare('SELECT 1 FROM listeners WHERE project = ? AND id = ?').pluck();
  // A manual retry of a finished delivery is sent when asked, out of order: it is no head and
  // carries no gap. A pending one (a head waiting for its next try, say) keeps its gap.
  const requeue = db.prepare(`UPDATE deliveries SET status = 'pending', next_attempt_at = ?, lease_owner = NULL,
      gap = CASE WHEN status = 'pending' THEN gap END, updated_at = ? WHERE id = ?`);

  // The claim walks deliveries_due in due order (held deliveries are not in it); the joins fetch
  // what sending needs in the same statement so the dispatcher never reads per delivery.
  const due = db.prepare(`SELECT d.id, d.project, d.listener_id, d.attempt_count, d.next_attempt_at, d.gap, e.envelope,
      e.original_body, e.original_format,
      l.spec, l.enabled, l.secret, l.previous_secret, l.previous_secret_expires_at, l.updated_at AS listener_updated_at
    FROM deliveries d
    JOIN events e ON e.seq = d.event_seq
    LEFT JOIN listeners l ON l.id = d.listener_id
    WHERE d.project = ? AND d.status = 'pending' AND d.held IS NULL AND d.next_attempt_at <= ?
      AND (l.id IS NULL OR l.transport IN (SELECT value FROM json_each(?)))
    ORDER BY d.next_attempt_at LIMIT ?`) as Statement<[string, number, string, number], DueRow>;
  // Pending deliveries only exist for listeners that exist (deleting one cancels them), so the
  // listeners table names every project that can have work.
  const projects = db.prepare('SELECT DISTINCT project FROM listeners').pluck() as Statement<[], string>;
  const projectNextDue = db
    .prepare(`SELECT min(next_attempt_at) FROM deliveries WHERE project = ? AND status = 'pending' AND held IS NULL`)
    .pluck() as Statement<[string], number | null>;
  const lease = db.prepare('UPDATE deliveries SET lease_owner = ?, next_attempt_at = ? WHERE id = ?');
  const hold = db.prepare('UPDATE deliveries SET next_attempt_at = NULL, lease_owner = NULL, updated_at = ? WHERE id = ?');
  // The gate holds a delivery back until its time, unleased.
  const defer = db.prepare('UPDATE deliveries SET next_attempt_at = ?, lease_owner = NULL WHERE id = ?');
  const cancel = db.prepare(`UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL, lease_owner = NULL,
      last_error = 'listener deleted', updated_at = ? WHERE id = ?`);

  const insertAttempt = db.prepare(`INSERT OR IGNORE INTO attempts
    (delivery_id, number, started_at, duration_ms, status_code, error, response_excerpt) VALUES (?, ?, ?, ?, ?, ?, ?)`);
  const complete = db.prepare(`UPDATE deliveries SET status = ?, attempt_count = ?, next_attempt_at = ?, lease_owner = NULL,
      last_error = ?, updated_at = ?
    WHERE id = ? AND lease_owner = ?`);
  const disableListener = db
    .prepare(`UPDATE listeners SET enabled = 0, disabled_reason = ?, updated_at = ?, revision = revision + 1 WHERE id = ? AND enabled = 1 RETURNING project`)
    .pluck() as Statement<[string, string, string], string>;
  const release = db.prepare(`UPDATE deliveries SET lease_owner = NULL, next_attempt_at = ? WHERE id = ? AND lease_owner = ?`);
  // A lease is live while its end (next_attempt_at) is to come.
  const leaseOwners = db
    .prepare(`SELECT DISTINCT lease_owner FROM deliveries WHERE status = 'pending' AND lease_owner IS NOT NULL AND next_attempt_at > ?`)
    .pluck() as Statement<[number], string>;
  const releaseOwner = db.prepare(`UPDATE deliveries SET lease_owner = NULL, next_attempt_at = @now
    WHERE status = 'pending' AND lease_owner = @owner AND next_attempt_at > @now`);
  const renew = db.prepare(`UPDATE deliveries SET next_attempt_at = max(next_attempt_at, ?)
    WHERE id = ? AND lease_owner = ? AND status = 'pending' AND next_attempt_at IS NOT NULL`);

  // A claimed delivery's next_attempt_at is its lease's end: count it as due (in flight), not
  // scheduled. An expired lease (its process died) is due again and may be the oldest.
  const depth = db.prepare(`SELECT
      count(*) FILTER (WHERE next_attempt_at <= @now OR lease_owner IS NOT NULL) AS due,
      count(*) FILTER (WHERE next_attempt_at > @now AND lease_owner IS NULL) AS scheduled,
      min(next_attempt_at) FILTER (WHERE next_attempt_at <= @now) AS oldest
    FROM deliveries WHERE status = 'pending' AND held IS NULL`) as Statement<{ now: number }, { due: number; scheduled: number; oldest: number | null }>;
  // A delivery goes once it has been finished (last updated) for the retention time. It was
  // created before it finished, and ids are ULIDs: the cutoff as an id bounds the key range read.
  const pruneDeliveries = db.prepare(`DELETE FROM deliveries WHERE id IN (
    SELECT id FROM deliveries WHERE id < ? AND status <> 'pending' AND updated_at < ? LIMIT ?)`);
  // Events are stored in seq order at about their receive time, so the old ones come first: the
  // walk stops at the first event received after the cutoff (no index on received_at alone, which
  // every append would pay for). An event stored out of that order waits for the one it follows;
  // one stamped in the future (a clock that was ahead) is no stop, or it would hold every later
  // event until then.
  const pruneEvents = db.prepare(`DELETE FROM events WHERE seq IN (
    SELECT seq FROM events e WHERE seq < coalesce((SELECT seq FROM events WHERE received_at >= @before AND received_at <= @now ORDER BY seq LIMIT 1), 9e18)
      AND received_at < @before
      AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_seq = e.seq) LIMIT @batch)`);

  const specOf = specCache();

  /** The spec of a due row's listener, or null when it settles the row: listener gone (cancelled) or disabled (held). */
  function sendable(row: DueRow, now: number): SpecColumn | null {
    if (row.spec === null) {
      cancel.run(now, row.id);
      return null;
    }
    if (row.enabled !== 1) {
      // A disabled listener's deliveries wait, unscheduled, until it is enabled again.
      hold.run(now, row.id);
      return null;
    }
    return specOf(row.listener_id, row.listener_updated_at!, row.spec);
  }

  function leaseRow(row: DueRow, spec: SpecColumn, owner: string, now: number, leaseMs: number): ClaimedDelivery {
    // The lease outlives the attempt's own timeout, so only a dead process's claims expire.
    lease.run(owner, now + leaseMs + spec.callback.timeout_ms, row.id);
    return toClaimedDelivery(row, row, spec, row.gap === null ? null : (JSON.parse(row.gap) as number[]));
  }

  /**
   * Turns a listener off as a 410 does; whether it was on. Its waiting deliveries are held as
   * when a client disables it: the first window now, the rest by moveListenerBacklogs
   * (backlogs.ts). Call inside a transaction.
   */
  function disable(listenerId: string, reason: string, now: number): boolean {
    const project = disableListener.get(reason, new Date(now).toISOString(), listenerId);
    if (project === undefined) return false;
    backlogs.start(project, listenerId, 'hold', now);
    versions.bump(project);
    return true;
  }

  return {
    disable,
    list(project: string, q: DeliveryQuery, now: number): ListPage<DeliveryRecord> {
      const { walk, sieve } = deliveryWalk(q, () => true);
      const head = [q.order ?? 'asc', walk, q.after ? 'after' : ''];
      const params: Record<string, unknown> = { project, limit: q.limit, scan: q.scanLimit ?? DEFAULT_LIST_SCAN_LIMIT };
      for (const k of ['after', 'listener_id', 'status', 'event_id'] as const) if (q[k] !== undefined && q[k] !== null) params[k] = q[k];
      // Each statement binds only the names it uses.
      const bound = (names: string[]) => Object.fromEntries(Object.entries(params).filter(([k]) => names.includes(k)));
      const servedBy = { listener: ['listener_id'], status: ['status'], event: ['event_id'], project: [] }[walk];
      const walkNames = ['project', 'after', ...servedBy];
      const rowNames = [...walkNames, ...sieve, 'limit', ...(sieve.length ? ['scan'] : [])];
      return inSnapshot(() => {
        const rows = (listStatement([...head, ...sieve].join(',')).all(bound(rowNames)) as DeliveryRow[]).map((r) => toDeliveryRecord(r, now));
        if (!walkMayGoOn(rows.length, q, sieve.length > 0)) return { rows, resume: null };
        const end = listStatement([...head, 'probe'].join(',')).get(bound([...walkNames, 'scan'])) as string | undefined;
        return { rows, resume: end ?? null };
      });
    },
    get(project: string, id: string, now: number): DeliveryRecord | null {
      const row = byId.get(project, id);
      return row ? toDeliveryRecord(row, now) : null;
    },
    attempts(project: string, id: string): AttemptRecord[] {
      return byId.get(project, id) ? attempts.all(id) : [];
    },
    retry(project: string, id: string, now: number) {
      const row = byId.get(project, id);
      if (!row) return 'not_found' as const;
      if (toDeliveryRecord(row, now).in_flight) return 'in_flight' as const;
      if (!listenerExists.get(project, row.listener_id)) return 'no_listener' as const;
      // Held behind its execution's head, it is queued already and keeps its place.
      if (row.held === null) requeue.run(now, now, id);
      return 'queued' as const;
    },
    /**
     * Call inside a transaction. Finds the projects with due work, lets `allot` say how many
     * of each to take, hands those (oldest first) to the listeners' gate with their gate states,
     * leases what it takes, moves what it defers to its time and writes the states it changed.
     */
    claim({ owner, now, leaseMs, transports, allot, admit }: ClaimOptions): { claimed: ClaimedDelivery[]; asked: number } {
      const enabled = JSON.stringify(transports);
      const dueProjects: string[] = [];
      for (const project of projects.all()) {
        const at = projectNextDue.get(project);
        if (at != null && at <= now) dueProjects.push(project);
      }
      const claimed: ClaimedDelivery[] = [];
      let asked = 0;
      if (dueProjects.length === 0) return { claimed, asked };
      const rows: DueRow[] = [];
      for (const [project, limit] of allot(dueProjects)) {
        if (limit <= 0) continue;
        asked += limit;
        rows.push(...due.all(project, now, enabled, limit));
      }
      rows.sort((a, b) => a.next_attempt_at - b.next_attempt_at);
      const candidates = new Map<string, { row: DueRow; spec: SpecColumn }>();
      const specs = new Map<string, SpecColumn>();
      for (const row of rows) {
        const spec = sendable(row, now);
        if (spec === null) continue;
        candidates.set(row.id, { row, spec });
        specs.set(row.listener_id, spec);
      }
      if (candidates.size === 0) return { claimed, asked };
      const states = gates.read([...specs.keys()]);
      const listeners = new Map<string, GateListener>();
      for (const [id, spec] of specs) listeners.set(id, { state: states.get(id) ?? initialGateState(now), ratePerS: spec.rate_limit_per_s, maxInFlight: spec.max_in_flight });
      const admission = admit([...candidates.values()].map(({ row }) => ({ id: row.id, listenerId: row.listener_id })), listeners, now);
      for (const id of admission.take) {
        const c = candidates.get(id);
        if (c) claimed.push(leaseRow(c.row, c.spec, owner, now, leaseMs));
      }
      for (const [id, at] of admission.defer) if (candidates.has(id)) defer.run(at, id);
      gates.write(admission.changed);
      return { claimed, asked };
    },
    /**
     * Call inside a transaction. Records the attempts with their rollups and last outcomes,
     * promoting the next head of each ordered key whose head finished; returns the attempts
     * recorded (a try reported twice counts once) and the listeners a 410 turned off.
     */
    record(owner: string, results: AttemptResult[], now: number): { recorded: AttemptResult[]; disabled: string[] } {
      const disabled: string[] = [];
      const recorded: AttemptResult[] = [];
      for (const r of results) {
        const a = r.attempt;
        // A try reported twice (as by a dispatcher whose lease ran out) is counted once, like its row.
        if (insertAttempt.run(r.deliveryId, a.number, a.started_at, a.duration_ms, a.status_code, a.error, a.response_excerpt).changes) {
          recorded.push(r);
        }
        // Only the lease's owner finishes a delivery, so only it promotes the next head.
        const completed = complete.run(r.status, a.number, r.nextAttemptAt, r.lastError, now, r.deliveryId, owner).changes > 0;
        if (completed && r.status !== 'pending') executionOrder.finished(r.deliveryId, r.status === 'succeeded', now);
        if (r.disableListener && disable(r.listenerId, r.disableListener, now)) disabled.push(r.listenerId);
      }
      rollups.add(recorded);
      return { recorded, disabled };
    },
    release(owner: string, ids: string[], now: number): void {
      for (const id of ids) release.run(now, id, owner);
    },
    /** The owners of live leases. */
    leaseOwners(now: number): string[] {
      return leaseOwners.all(now);
    },
    /** Gives back the live leases of these owners, due at `now`; answers how many. */
    releaseOwners(owners: readonly string[], now: number): number {
      let released = 0;
      for (const owner of owners) released += releaseOwner.run({ owner, now }).changes;
      return released;
    },
    renew(owner: string, ids: readonly string[], until: number): void {
      for (const id of ids) renew.run(until, id, owner);
    },
    nextDueAt(): number | null {
      let next: number | null = null;
      for (const project of projects.all()) {
        const at = projectNextDue.get(project);
        if (at != null && (next === null || at < next)) next = at;
      }
      return next;
    },
    depth(now: number): QueueDepth {
      const r = depth.get({ now })!;
      return { due: r.due, scheduled: r.scheduled, oldestDueAt: r.oldest };
    },
    prune(before: number, batch: number): { deliveries: number; events: number; rollups: number } {
      const deliveries = pruneDeliveries.run(encodeTime(before, 10), before, batch).changes;
      const events = pruneEvents.run({ before, now: Date.now(), batch }).changes;
      // Ordered keys left without a head keep a gap for a next delivery that never came.
      executionOrder.prune(before, batch);
      return { deliveries, events, rollups: rollups.prune(before, batch) };
    },
  };
}
