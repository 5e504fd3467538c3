import type { Database, Statement } from 'better-sqlite3';
import { newId } from '../../ids.js';
import { filteredPage } from './filtered-page.js';
import type { EventEnvelope } from '../../records/event.js';
import {
  StoreConflictError,
  type AppendedEvent,
  type EventQuery,
  type FanOut,
  type ListOrder,
  type NewEvent,
  type ReplayWindow,
  type StoredEvent,
} from '../store.js';


interface EventRow {
  seq: number;
  envelope: string;
  received_at: number;
}

/** Every event statement of the SQLite backend, prepared once. */
export function eventQueries(db: Database) {
  const existing = db.prepare('SELECT body_hash FROM events WHERE project = ? AND id = ?').pluck() as Statement<[string, string], string>;
  const nextSequence = db
    .prepare(`INSERT INTO execution_sequences (project, execution_id, last_sequence) VALUES (?, ?, 1)
      ON CONFLICT (project, execution_id) DO UPDATE SET last_sequence = last_sequence + 1
      RETURNING last_sequence`)
    .pluck() as Statement<[string, string], number>;
  const insertEvent = db.prepare(`INSERT INTO events
    (project, id, type, category, workbook, execution_id, sequence, envelope, original_body, original_format, body_hash, received_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  const insertDelivery = db.prepare(`INSERT INTO deliveries
    (id, project, event_seq, event_id, listener_id, status, attempt_count, next_attempt_at, created_at, updated_at)
    VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)`);
  const byId = db.prepare('SELECT seq, envelope, received_at FROM events WHERE project = ? AND id = ?') as Statement<[string, string], EventRow>;
  // One statement set per direction; the cursor bound is a filter, absent on the first page.
  const pageIn = (order: ListOrder) =>
    filteredPage<EventRow>(
      db,
      (clauses) => `SELECT seq, envelope, received_at FROM events
        WHERE project = @project ${clauses.map((c) => `AND ${c}`).join(' ')}
        ORDER BY seq ${order === 'desc' ? 'DESC' : 'ASC'} LIMIT @limit`,
      {
        after: order === 'desc' ? 'seq < @after' : 'seq > @after',
        workbook: 'workbook = @workbook',
        execution_id: 'execution_id = @execution_id',
        type: 'type = @type',
        since: 'received_at >= @since',
      },
    );
  const pages = { asc: pageIn('asc'), desc: pageIn('desc') };
  const windowEvents = db.prepare(`SELECT seq, id, envelope FROM events
    WHERE project = ? AND received_at >= ? AND received_at < ? AND seq > ? AND type <> 'PING'
    ORDER BY seq LIMIT ?`) as Statement<[string, number, number, number, number], { seq: number; id: string; envelope: string }>;
  const requeueFailed = db.prepare(`UPDATE deliveries SET status = 'pending', next_attempt_at = @now, updated_at = @now,
      lease_owner = NULL
    WHERE id IN (SELECT d.id FROM deliveries d JOIN events e ON e.seq = d.event_seq
      WHERE d.project = @project AND d.listener_id = @listener AND d.status = 'failed'
        AND e.received_at >= @since AND e.received_at < @until LIMIT @limit)`);

  const moreFailed = db.prepare(`SELECT EXISTS (SELECT 1 FROM deliveries d JOIN events e ON e.seq = d.event_seq
      WHERE d.project = @project AND d.listener_id = @listener AND d.status = 'failed'
        AND e.received_at >= @since AND e.received_at < @until)`).pluck();

  const toStored = (row: EventRow): StoredEvent => ({
    envelope: JSON.parse(row.envelope) as EventEnvelope,
    received_at: row.received_at,
  });

  function insertDeliveries(project: string, seq: number | bigint, eventId: string, listenerIds: readonly string[], now: number) {
    for (const listenerId of listenerIds) insertDelivery.run(newId(now), project, seq, eventId, listenerId, now, now, now);
  }

  return {
    /** One event with its deliveries. Call inside a transaction. */
    append(project: string, event: NewEvent, fanOut: FanOut, now: number): AppendedEvent {
      const id = event.envelope.id;
      const hash = existing.get(project, id);
      if (hash !== undefined) {
        if (hash !== event.bodyHash) throw new StoreConflictError(`event ${id} already exists with a different body`);
        return { id, duplicate: true, deliveries: 0 };
      }
      const e = event.envelope;
      const sequence = e.execution_id ? nextSequence.get(project, e.execution_id)! : null;
      const envelope: EventEnvelope = { ...e, sequence };
      const { lastInsertRowid } = insertEvent.run(
        project, id, e.type, e.category, e.workbook, e.execution_id, sequence,
        JSON.stringify(envelope), event.original?.body ?? null, event.original?.format ?? null, event.bodyHash, now,
      );
      const listenerIds = fanOut(envelope);
      insertDeliveries(project, lastInsertRowid, id, listenerIds, now);
      return { id, duplicate: false, deliveries: listenerIds.length };
    },
    get(project: string, id: string): StoredEvent | null {
      const row = byId.get(project, id);
      return row ? toStored(row) : null;
    },
    list(project: string, q: EventQuery): Array<StoredEvent & { cursor: string }> {
      return pages[q.order ?? 'asc']({
          project,
          after: q.after ? Number(q.after) : null,
          workbook: q.workbook ?? null,
          execution_id: q.execution_id ?? null,
          type: q.type ?? null,
          since: q.since ?? null,
          limit: q.limit,
        })
        .map((row) => ({ ...toStored(row), cursor: String(row.seq) }));
    },
    /** Replay for one listener. Call inside a transaction. */
    replay(project: string, listenerId: string, w: ReplayWindow, matches: FanOut, now: number): { count: number; truncated: boolean } {
      if (w.onlyFailed) {
        const params = { project, listener: listenerId, since: w.since, until: w.until };
        const { changes } = requeueFailed.run({ ...params, now, limit: w.limit });
        return { count: changes, truncated: changes === w.limit && moreFailed.get(params) === 1 };
      }
      let count = 0;
      let after = 0;
      for (;;) {
        const rows = windowEvents.all(project, w.since, w.until, after, 1000);
        if (rows.length === 0) return { count, truncated: false };
        for (const row of rows) {
          after = row.seq;
          if (matches(JSON.parse(row.envelope) as EventEnvelope).length === 0) continue;
          if (count === w.limit) return { count, truncated: true };
          insertDeliveries(project, row.seq, row.id, [listenerId], now);
          count++;
        }
      }
    },
  };
}
