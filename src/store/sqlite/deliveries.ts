import type { Database, Statement } from 'better-sqlite3';
import { encodeTime } from 'ulid';
import { filteredPage } from './filtered-page.js';
import type { SourceFormat } from '../../records/event.js';
import type { ListenerSpec } from '../../records/listener.js';
import type {
  AttemptRecord,
  AttemptResult,
  ClaimedDelivery,
  ClaimOptions,
  DeliveryQuery,
  DeliveryRecord,
  ListOrder,
  QueueDepth,
} from '../store.js';

interface DeliveryRow {
  id: string;
  event_id: string;
  event_type: string;
  workbook: string | null;
  listener_id: string;
  status: DeliveryRecord['status'];
  attempt_count: number;
  next_attempt_at: number | null;
  lease_owner: string | null;
  last_error: string | null;
  created_at: number;
  updated_at: number;
}

interface DueRow {
  id: string;
  project: string;
  listener_id: string;
  attempt_count: number;
  envelope: string;
  original_body: string | null;
  original_format: SourceFormat | null;
  spec: string | null;
  enabled: number | null;
  secret: string | null;
  previous_secret: string | null;
  previous_secret_expires_at: string | null;
  listener_updated_at: string | null;
}

// With the event's type and workbook through event_seq, the events primary key: one lookup per row.
const COLUMNS = `d.id, d.event_id, e.type AS event_type, e.workbook, d.listener_id, d.status, d.attempt_count, d.next_attempt_at,
  d.lease_owner, d.last_error, d.created_at, d.updated_at`;
const FROM = 'deliveries d JOIN events e ON e.seq = d.event_seq';

function toRecord(row: DeliveryRow, now: number): DeliveryRecord {
  return {
    id: row.id,
    event_id: row.event_id,
    event_type: row.event_type,
    workbook: row.workbook,
    listener_id: row.listener_id,
    status: row.status,
    attempt_count: row.attempt_count,
    next_attempt_at: row.next_attempt_at,
    in_flight: row.status === 'pending' && row.lease_owner !== null && (row.next_attempt_at ?? 0) > now,
    last_error: row.last_error,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

/** Every delivery and attempt statement of the SQLite backend, prepared once. */
export function deliveryQueries(db: Database) {
  const pageIn = (order: ListOrder) =>
    filteredPage<DeliveryRow>(
      db,
      (clauses) => `SELECT ${COLUMNS} FROM ${FROM}
        WHERE d.project = @project ${clauses.map((c) => `AND ${c}`).join(' ')}
        ORDER BY d.id ${order === 'desc' ? 'DESC' : 'ASC'} LIMIT @limit`,
      {
        after: order === 'desc' ? 'd.id < @after' : 'd.id > @after',
        listener_id: 'd.listener_id = @listener_id',
        // Through the event's row number, which deliveries_event_seq indexes.
        event_id: 'd.event_seq = (SELECT seq FROM events WHERE project = @project AND id = @event_id)',
        status: 'd.status = @status',
      },
    );
  const pages = { asc: pageIn('asc'), desc: pageIn('desc') };
  const byId = db.prepare(`SELECT ${COLUMNS} FROM ${FROM} WHERE d.project = ? AND d.id = ?`) as Statement<[string, string], DeliveryRow>;
  const attempts = db.prepare(`SELECT number, started_at, duration_ms, status_code, error, response_excerpt
    FROM attempts WHERE delivery_id = ? ORDER BY number`) as Statement<[string], AttemptRecord>;
  const listenerExists = db.prepare('SELECT 1 FROM listeners WHERE project = ? AND id = ?').pluck();
  const requeue = db.prepare(`UPDATE deliveries SET status = 'pending', next_attempt_at = ?, lease_owner = NULL, updated_at = ?
    WHERE id = ?`);

  // The claim walks deliveries_due in due order; the joins fetch what sending needs in the
  // same statement so the dispatcher never reads per delivery.
  const due = db.prepare(`SELECT d.id, d.project, d.listener_id, d.attempt_count, e.envelope, e.original_body, e.original_format,
      l.spec, l.enabled, l.secret, l.previous_secret, l.previous_secret_expires_at, l.updated_at AS listener_updated_at
    FROM deliveries d
    JOIN events e ON e.seq = d.event_seq
    LEFT JOIN listeners l ON l.id = d.listener_id
    WHERE d.project = ? AND d.status = 'pending' AND d.next_attempt_at <= ?
      AND (l.id IS NULL OR l.transport IN (SELECT value FROM json_each(?)))
    ORDER BY d.next_attempt_at LIMIT ?`) as Statement<[string, number, string, number], DueRow>;
  // Pending deliveries only exist for listeners that exist (deleting one cancels them), so the
  // listeners table names every project that can have work.
  const projects = db.prepare('SELECT DISTINCT project FROM listeners').pluck() as Statement<[], string>;
  const projectNextDue = db
    .prepare(`SELECT min(next_attempt_at) FROM deliveries WHERE project = ? AND status = 'pending'`)
    .pluck() as Statement<[string], number | null>;
  const lease = db.prepare('UPDATE deliveries SET lease_owner = ?, next_attempt_at = ? WHERE id = ?');
  const hold = db.prepare('UPDATE deliveries SET next_attempt_at = NULL, lease_owner = NULL, updated_at = ? WHERE id = ?');
  const cancel = db.prepare(`UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL, lease_owner = NULL,
      last_error = 'listener deleted', updated_at = ? WHERE id = ?`);

  const insertAttempt = db.prepare(`INSERT OR IGNORE INTO attempts
    (delivery_id, number, started_at, duration_ms, status_code, error, response_excerpt) VALUES (?, ?, ?, ?, ?, ?, ?)`);
  const complete = db.prepare(`UPDATE deliveries SET status = ?, attempt_count = ?, next_attempt_at = ?, lease_owner = NULL,
      last_error = ?, updated_at = ?
    WHERE id = ? AND lease_owner = ?`);
  const disableListener = db.prepare(`UPDATE listeners SET enabled = 0, disabled_reason = ?, updated_at = ?
    WHERE id = ? AND enabled = 1`);
  const holdListener = db.prepare(`UPDATE deliveries SET next_attempt_at = NULL
    WHERE project = ? AND listener_id = ? AND status = 'pending' AND lease_owner IS NULL`);
  const release = db.prepare(`UPDATE deliveries SET lease_owner = NULL, next_attempt_at = ? WHERE id = ? AND lease_owner = ?`);

  // A claimed delivery's next_attempt_at is its lease's end: count it as due (in flight), not
  // scheduled. An expired lease (its process died) is due again and may be the oldest.
  const depth = db.prepare(`SELECT
      count(*) FILTER (WHERE next_attempt_at <= @now OR lease_owner IS NOT NULL) AS due,
      count(*) FILTER (WHERE next_attempt_at > @now AND lease_owner IS NULL) AS scheduled,
      min(next_attempt_at) FILTER (WHERE next_attempt_at <= @now) AS oldest
    FROM deliveries WHERE status = 'pending'`) as Statement<{ now: number }, { due: number; scheduled: number; oldest: number | null }>;
  // Delivery ids are ULIDs: ids below a cutoff id are deliveries created before that time.
  const pruneDeliveries = db.prepare(`DELETE FROM deliveries WHERE id IN (
    SELECT id FROM deliveries WHERE id < ? AND status <> 'pending' LIMIT ?)`);
  const pruneEvents = db.prepare(`DELETE FROM events WHERE seq IN (
    SELECT seq FROM events e WHERE received_at < ?
      AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_seq = e.seq) LIMIT ?)`);

  // Parsed listener specs by id and version, so a batch does not parse the same JSON twice.
  const specCache = new Map<string, { version: string; spec: Omit<ListenerSpec, 'workbook' | 'enabled'> }>();
  const specOf = (id: string, version: string, json: string) => {
    const cached = specCache.get(id);
    if (cached && cached.version === version) return cached.spec;
    if (specCache.size > 10_000) specCache.clear();
    const spec = JSON.parse(json) as Omit<ListenerSpec, 'workbook' | 'enabled'>;
    specCache.set(id, { version, spec });
    return spec;
  };

  /** Leases one due row, or settles it when its listener is gone or disabled (then null). */
  function leaseRow(row: DueRow, owner: string, now: number, leaseMs: number): ClaimedDelivery | null {
    if (row.spec === null) {
      cancel.run(now, row.id);
      return null;
    }
    if (row.enabled !== 1) {
      // A disabled listener's deliveries wait, unscheduled, until it is enabled again.
      hold.run(now, row.id);
      return null;
    }
    const spec = specOf(row.listener_id, row.listener_updated_at!, row.spec);
    // The lease outlives the attempt's own timeout, so only a dead process's claims expire.
    lease.run(owner, now + leaseMs + spec.callback.timeout_ms, row.id);
    return {
      id: row.id,
      project: row.project,
      listenerId: row.listener_id,
      attemptNumber: row.attempt_count + 1,
      envelopeJson: row.envelope,
      original: row.original_body !== null && row.original_format !== null ? { format: row.original_format, body: row.original_body } : null,
      listener: {
        callback: spec.callback,
        retry: spec.retry,
        secret: row.secret!,
        previous_secret: row.previous_secret,
        previous_secret_expires_at: row.previous_secret_expires_at,
        updated_at: row.listener_updated_at!,
      },
    };
  }

  return {
    list(project: string, q: DeliveryQuery, now: number): DeliveryRecord[] {
      return pages[q.order ?? 'asc']({
          project,
          after: q.after ?? null,
          listener_id: q.listener_id ?? null,
          event_id: q.event_id ?? null,
          status: q.status ?? null,
          limit: q.limit,
        })
        .map((r) => toRecord(r, now));
    },
    get(project: string, id: string, now: number): DeliveryRecord | null {
      const row = byId.get(project, id);
      return row ? toRecord(row, now) : null;
    },
    attempts(project: string, id: string): AttemptRecord[] {
      return byId.get(project, id) ? attempts.all(id) : [];
    },
    retry(project: string, id: string, now: number) {
      const row = byId.get(project, id);
      if (!row) return 'not_found' as const;
      if (toRecord(row, now).in_flight) return 'in_flight' as const;
      if (!listenerExists.get(project, row.listener_id)) return 'no_listener' as const;
      requeue.run(now, now, id);
      return 'queued' as const;
    },
    /**
     * Call inside a transaction. Finds the projects with due work, lets `allot` say how many
     * of each to take, and leases those, each project's in due order.
     */
    claim({ owner, now, leaseMs, transports, allot }: ClaimOptions): { claimed: ClaimedDelivery[]; asked: number } {
      const enabled = JSON.stringify(transports);
      const dueProjects: string[] = [];
      for (const project of projects.all()) {
        const at = projectNextDue.get(project);
        if (at != null && at <= now) dueProjects.push(project);
      }
      const claimed: ClaimedDelivery[] = [];
      let asked = 0;
      if (dueProjects.length === 0) return { claimed, asked };
      for (const [project, limit] of allot(dueProjects)) {
        if (limit <= 0) continue;
        asked += limit;
        for (const row of due.all(project, now, enabled, limit)) {
          const d = leaseRow(row, owner, now, leaseMs);
          if (d) claimed.push(d);
        }
      }
      return { claimed, asked };
    },
    /** Call inside a transaction. Returns the listeners this batch turned off. */
    record(owner: string, results: AttemptResult[], now: number): string[] {
      const disabled: string[] = [];
      for (const r of results) {
        const a = r.attempt;
        insertAttempt.run(r.deliveryId, a.number, a.started_at, a.duration_ms, a.status_code, a.error, a.response_excerpt);
        complete.run(r.status, a.number, r.nextAttemptAt, r.lastError, now, r.deliveryId, owner);
        if (r.disableListener && disableListener.run(r.disableListener, new Date(now).toISOString(), r.listenerId).changes) {
          holdListener.run(r.project, r.listenerId);
          disabled.push(r.listenerId);
        }
      }
      return disabled;
    },
    release(owner: string, ids: string[], now: number): void {
      for (const id of ids) release.run(now, id, owner);
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
    prune(before: number, batch: number): { deliveries: number; events: number } {
      const deliveries = pruneDeliveries.run(encodeTime(before, 10), batch).changes;
      const events = pruneEvents.run(before, batch).changes;
      return { deliveries, events };
    },
  };
}
