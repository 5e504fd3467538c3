import type { Database, Statement } from 'better-sqlite3';
import { newId } from '../../ids.js';
import { snapshotOf, statementCache } from './filtered-page.js';
import { takeWithinBytes } from '../page-bytes.js';
import type { EventEnvelope, OriginalMessage } from '../../records/event.js';
import type { Handing } from '../handing.js';
import {
  EVENT_SIEVE,
  eventCursor,
  eventPageFrom,
  eventSieve,
  executionAnswer,
  eventCursorScope,
  replayPage,
  walkMayGoOn,
  type ListedEventRow, LAST_DELIVERY_ID, parseFailedWalkCursor, requeueAnswer, toStoredEvent, windowAnswer, windowFrom, type EventRow, type ReplayRow, type WindowRow } from '../rows.js';
import {
  DEFAULT_LIST_SCAN_LIMIT,
  StoreConflictError,
  type AppendedEvent,
  type EventQuery,
  type FanOut,
  type ListPage,
  type NewEvent,
  type ReplayAnswer,
  type ReplayExecution,
  type ReplayWindow,
  type StoredEvent,
} from '../store.js';
import type { ExecutionOrder } from './execution-order.js';

/** Events a replay reads at a time. */
const REPLAY_PAGE = 1000;

/** Every event statement of the SQLite backend, prepared once. */
export function eventQueries(db: Database, executionOrder: ExecutionOrder) {
  const existing = db.prepare('SELECT body_hash FROM events WHERE project = ? AND id = ?').pluck() as Statement<[string, string], string>;
  // An execution's next sequence: read, then written back. Appends run in write transactions,
  // so nothing comes between the two. (One upsert with RETURNING took 7.7 µs of an append,
  // these 2.2, measured in the store's own append loop.)
  const lastSequence = db
    .prepare('SELECT last_sequence FROM execution_sequences WHERE project = ? AND execution_id = ?')
    .pluck() as Statement<[string, string], number>;
  const firstSequence = db.prepare('INSERT INTO execution_sequences (project, execution_id, last_sequence) VALUES (?, ?, 1)');
  const setSequence = db.prepare('UPDATE execution_sequences SET last_sequence = ? WHERE project = ? AND execution_id = ?');
  function nextSequence(project: string, executionId: string): number {
    const last = lastSequence.get(project, executionId);
    if (last === undefined) {
      firstSequence.run(project, executionId);
      return 1;
    }
    setSequence.run(last + 1, project, executionId);
    return last + 1;
  }
  const insertEvent = db.prepare(`INSERT INTO events
    (project, id, type, category, workbook, execution_id, sequence, envelope, original_body, original_format, body_hash, received_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  const insertDelivery = db.prepare(`INSERT INTO deliveries
    (id, project, event_seq, event_id, listener_id, status, attempt_count, next_attempt_at, lease_owner, held, gap, created_at, updated_at)
    VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?, ?, ?)`);
  const byId = db.prepare('SELECT seq, envelope, received_at FROM events WHERE project = ? AND id = ?') as Statement<[string, string], EventRow>;
  // A page of the log walks events_project_received (whose entries end with the rowid, seq) from
  // a position on; a page of one execution's events walks events_project_execution in sequence
  // order (INDEXED BY: a walk that the planner swapped for the other index would filter rather
  // than walk). The other filters are checked on at most scanLimit rows of the walk. One
  // statement per order, walk and filters checked, made on first use.
  const inSnapshot = snapshotOf(db);
  const listStatement = statementCache((key) => {
    const [order, walkName, ...sieve] = key.split(',');
    const dir = order === 'desc' ? 'DESC' : 'ASC';
    const [cmp, strict] = order === 'desc' ? ['<=', '<'] : ['>=', '>'];
    const walk =
      walkName === 'execution'
        ? `FROM events INDEXED BY events_project_execution
            WHERE project = @project AND execution_id = @execution_id AND sequence ${strict} @sequence ORDER BY sequence ${dir}`
        : `FROM events INDEXED BY events_project_received
            WHERE project = @project AND received_at ${cmp} @r AND (received_at ${strict} @r OR seq ${strict} @seq) ${walkName === 'since' ? 'AND received_at >= @since' : ''}
            ORDER BY received_at ${dir}, seq ${dir}`;
    if (sieve[0] === 'probe') return db.prepare(`SELECT received_at, seq, sequence ${walk} LIMIT 1 OFFSET @scan - 1`);
    if (!sieve.length) return db.prepare(`SELECT seq, envelope, received_at, sequence ${walk} LIMIT @limit`);
    const order_ = walkName === 'execution' ? `w.sequence ${dir}` : `w.received_at ${dir}, w.seq ${dir}`;
    return db.prepare(`SELECT e.seq, e.envelope, e.received_at, e.sequence
      FROM (SELECT seq, received_at, sequence, workbook, type ${walk} LIMIT @scan) w JOIN events e ON e.seq = w.seq
      WHERE ${sieve.map((k) => EVENT_SIEVE[k as keyof typeof EVENT_SIEVE]).join(' AND ')}
      ORDER BY ${order_} LIMIT @limit`);
  });
  // Walks events_project_received (whose entries end with the rowid, seq) from a position on:
  // each page starts where the last one stopped, however large the window.
  const windowEvents = db.prepare(`SELECT seq, id, envelope, received_at FROM events
    WHERE project = @project AND received_at >= @r AND received_at < @until AND (received_at > @r OR seq > @seq)
      AND type <> 'PING'
    ORDER BY received_at, seq LIMIT @limit`) as Statement<[{ project: string; r: number; seq: number; until: number; limit: number }], WindowRow>;
  // Walks events_project_execution: the execution's events in sequence order, from a sequence on.
  const executionEvents = db.prepare(`SELECT seq, id, envelope, sequence FROM events
    WHERE project = ? AND execution_id = ? AND sequence >= ?
    ORDER BY sequence LIMIT ?`) as Statement<[string, string, number, number], ReplayRow & { sequence: number }>;
  // A re-queue walks the project's failed deliveries in id order (deliveries_project_status)
  // from a position on, up to the end of a stretch of at most the call's scanLimit of them, and
  // picks the listener's whose event is in the window.
  const failedStretchEnd = db
    .prepare(`SELECT id FROM deliveries INDEXED BY deliveries_project_status
      WHERE project = @project AND status = 'failed' AND id > @after ORDER BY id LIMIT 1 OFFSET @scan - 1`)
    .pluck() as Statement<[{ project: string; after: string; scan: number }], string>;
  const FAILED_PICKED = `FROM deliveries d INDEXED BY deliveries_project_status JOIN events e ON e.seq = d.event_seq
    WHERE d.project = @project AND d.status = 'failed' AND d.id > @after AND d.id <= @upto
      AND d.listener_id = @listener AND e.received_at >= @since AND e.received_at < @until`;
  type FailedWalk = { project: string; listener: string; since: number; until: number; after: string; upto: string };
  const requeueCap = db.prepare(`SELECT d.id ${FAILED_PICKED} ORDER BY d.id LIMIT 1 OFFSET @limit - 1`).pluck() as Statement<[FailedWalk & { limit: number }], string>;
  // Like a manual retry: sent when asked, out of order, without the gap it once carried.
  const requeueFailed = db.prepare(`UPDATE deliveries SET status = 'pending', next_attempt_at = @now, updated_at = @now,
      lease_owner = NULL, gap = NULL
    WHERE id IN (SELECT d.id ${FAILED_PICKED})`) as Statement<[FailedWalk & { now: number }]>;

  /**
   * One delivery per listener. A delivery that keeps its execution's order (`ordered` says so of
   * its listener) is its key's head and due now, or held behind the head, unscheduled. Any other
   * is due now, or leased to this process's dispatcher when `handing` takes it.
   */
  function insertDeliveries(
    project: string,
    event: { seq: number | bigint; id: string; executionId: string | null },
    listenerIds: readonly string[],
    ordered: (listenerId: string) => boolean,
    now: number,
    handing?: { to: Handing; fanOut: FanOut; envelopeJson: string; original: OriginalMessage | null },
  ) {
    for (const listenerId of listenerIds) {
      const id = newId(now);
      const place = event.executionId !== null && ordered(listenerId) ? executionOrder.place(listenerId, event.executionId, id, now) : null;
      if (place?.head === false) {
        insertDelivery.run(id, project, event.seq, event.id, listenerId, null, null, event.executionId, null, now, now);
        continue;
      }
      const leasedUntil =
        place === null && handing ? handing.to.offer({ id, project, listenerId, envelopeJson: handing.envelopeJson, original: handing.original }, handing.fanOut, now) : null;
      if (leasedUntil !== null) insertDelivery.run(id, project, event.seq, event.id, listenerId, leasedUntil, handing!.to.owner, null, null, now, now);
      else insertDelivery.run(id, project, event.seq, event.id, listenerId, now, null, null, place?.gap ?? null, now, now);
    }
  }

  /**
   * Replays the rows `next` pages through (after the last one given), up to the limits: the
   * deliveries made, and the events looked at.
   */
  function replayRows<Row extends ReplayRow>(
    project: string,
    listenerId: string,
    next: (after: Row | null) => Row[],
    matches: FanOut,
    ordered: boolean,
    limits: { limit: number; scanLimit: number },
    now: number,
  ): { count: number; truncated: boolean; last: Row | null } {
    const state = { count: 0, scanned: 0, last: null as Row | null, truncated: false };
    for (;;) {
      const rows = next(state.last);
      for (const { row, envelope } of replayPage(rows, state, matches, limits)) {
        insertDeliveries(project, { seq: row.seq, id: row.id, executionId: envelope.execution_id }, [listenerId], () => ordered, now);
      }
      if (state.truncated || rows.length < REPLAY_PAGE) return state;
    }
  }

  return {
    /** Whether `text` is a cursor `list` hands out: an event's seq, in decimal. */
    cursorScope: eventCursorScope,
    /** One event with its deliveries (handed over to `handing` where it takes them). Call inside a transaction. */
    append(project: string, event: NewEvent, fanOut: FanOut, now: number, handing?: Handing): AppendedEvent {
      const id = event.envelope.id;
      const hash = existing.get(project, id);
      if (hash !== undefined) {
        if (hash !== event.bodyHash) throw new StoreConflictError(`event ${id} already exists with a different body`);
        return { id, duplicate: true, deliveries: 0, handed: 0 };
      }
      const e = event.envelope;
      const sequence = e.execution_id ? nextSequence(project, e.execution_id) : null;
      const envelope: EventEnvelope = { ...e, sequence };
      const envelopeJson = JSON.stringify(envelope);
      const { lastInsertRowid } = insertEvent.run(
        project, id, e.type, e.category, e.workbook, e.execution_id, sequence,
        envelopeJson, event.original?.body ?? null, event.original?.format ?? null, event.bodyHash, now,
      );
      const listenerIds = fanOut(envelope);
      const ordered = fanOut.ordered;
      const before = handing?.count ?? 0;
      insertDeliveries(
        project,
        { seq: lastInsertRowid, id, executionId: e.execution_id },
        listenerIds,
        (l) => ordered?.has(l) === true,
        now,
        handing && { to: handing, fanOut, envelopeJson, original: event.original },
      );
      return { id, duplicate: false, deliveries: listenerIds.length, handed: (handing?.count ?? 0) - before };
    },
    get(project: string, id: string): StoredEvent | null {
      const row = byId.get(project, id);
      return row ? toStoredEvent(row) : null;
    },
    list(project: string, q: EventQuery): ListPage<StoredEvent & { cursor: string }> {
      const from = eventPageFrom(q);
      const sieve = eventSieve(q);
      const walkName = q.execution_id !== undefined ? 'execution' : q.since !== undefined ? 'since' : 'log';
      const head = [q.order ?? 'asc', walkName];
      // Each statement binds only the names it uses.
      const walked =
        walkName === 'execution'
          ? { project, execution_id: q.execution_id, sequence: from.sequence }
          : { project, r: from.receivedAt, seq: from.seq, ...(walkName === 'since' && { since: q.since }) };
      const scan = q.scanLimit ?? DEFAULT_LIST_SCAN_LIMIT;
      const checked = Object.fromEntries(sieve.map((k) => [k, q[k]]));
      return inSnapshot(() => {
        const walk = listStatement([...head, ...sieve].join(',')).iterate({ ...walked, ...checked, limit: q.limit, ...(sieve.length && { scan }) });
        const found = takeWithinBytes(walk as Iterable<ListedEventRow>, (row) => row.envelope.length);
        const rows = found.rows.map((row) => ({ ...toStoredEvent(row), cursor: eventCursor(row, q.execution_id) }));
        if (found.cut) return { rows, resume: rows[rows.length - 1].cursor };
        if (!walkMayGoOn(rows.length, q, sieve.length > 0)) return { rows, resume: null };
        const end = listStatement([...head, 'probe'].join(',')).get({ ...walked, scan }) as ListedEventRow | undefined;
        return { rows, resume: end ? eventCursor(end, q.execution_id) : null };
      });
    },
    /**
     * Replay for one listener. Call inside a transaction. A replay of an execution keeps its
     * order whatever the listener's `ordering`; one of a window as fan-out says.
     */
    replay(project: string, listenerId: string, w: ReplayWindow | ReplayExecution, matches: FanOut, now: number): ReplayAnswer {
      if ('executionId' in w) {
        const next = (last: { sequence: number } | null) =>
          executionEvents.all(project, w.executionId, last ? last.sequence + 1 : w.fromSequence, REPLAY_PAGE);
        return executionAnswer(w, replayRows(project, listenerId, next, matches, true, w, now));
      }
      if (w.onlyFailed) {
        const after = (w.after !== null && parseFailedWalkCursor(w.after)) || '';
        const endId = failedStretchEnd.get({ project, after, scan: w.scanLimit }) ?? null;
        const walk = { project, listener: listenerId, since: w.since, until: w.until, after, upto: endId ?? LAST_DELIVERY_ID };
        const capId = requeueCap.get({ ...walk, limit: w.limit }) ?? null;
        const { changes } = requeueFailed.run({ ...walk, upto: capId ?? walk.upto, now });
        return requeueAnswer(changes, capId, endId);
      }
      const next = (last: WindowRow | null) => {
        const from = windowFrom(w, last);
        return windowEvents.all({ project, r: from.receivedAt, seq: from.seq, until: w.until, limit: REPLAY_PAGE });
      };
      return windowAnswer(w, replayRows(project, listenerId, next, matches, matches.ordered?.has(listenerId) === true, w, now));
    },
  };
}
