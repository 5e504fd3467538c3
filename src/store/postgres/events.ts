import { newId } from '../../ids.js';
import { pageOfSql, withinBytesSql, type PageColumns } from '../page-bytes.js';
import { FilterBudgetError } from '../../fanout/filter-budget.js';
import type { EventEnvelope } from '../../records/event.js';
import {
  EVENT_SIEVE,
  eventCursor,
  eventPageFrom,
  eventSieve,
  executionAnswer,
  eventCursorScope,
  replayPage,
  walkMayGoOn,
  type ListedEventRow, parseFailedWalkCursor, requeueAnswer, toStoredEvent, windowAnswer, windowFrom, type EventRow, type ReplayRow, type WindowRow } from '../rows.js';
import {
  DEFAULT_LIST_SCAN_LIMIT,
  StoreConflictError,
  type AppendedEvent,
  type EventQuery,
  type FanOut,
  type Handoff,
  type ListenerRouting,
  type ListPage,
  type NewEvent,
  type ReplayAnswer,
  type ReplayExecution,
  type ReplayWindow,
  type StoredEvent,
} from '../store.js';
import { statement, type Conn, type Database } from './database.js';
import { namedStatements } from './filtered-page.js';
import { fanOutAt } from './listeners.js';
import type { DueNotice } from './notify.js';
import { placeDeliveries } from './order.js';
import { arrayLiteral, writeOutbox, type OutboxEvent } from './outbox.js';
import { startHanding, type Handing } from '../handing.js';

/*
 * The first statement of an append, one round trip: the project's listener version, which of
 * the ids exist already (with their body digests), and the next sequence numbers of the
 * executions of the new ones. The counter rows stay locked until commit, so sequences are
 * given out without gaps in commit order; they are taken in execution id order, so two
 * appends never wait for each other in a circle.
 */
const prepareAppend = statement(`WITH existing AS (
    SELECT id, body_hash FROM events WHERE project = $1 AND id = ANY($2::text[])
  ), bumped AS (
    INSERT INTO execution_sequences AS s (project, execution_id, last_sequence)
    SELECT $1, x.execution_id, count(*) FROM unnest($2::text[], $3::text[]) AS x(id, execution_id)
    WHERE x.execution_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM existing e WHERE e.id = x.id)
    GROUP BY x.execution_id ORDER BY x.execution_id
    ON CONFLICT (project, execution_id) DO UPDATE SET last_sequence = s.last_sequence + excluded.last_sequence
    RETURNING execution_id, last_sequence
  )
  SELECT 'version' AS kind, NULL::text AS key, coalesce((SELECT version FROM listener_versions WHERE project = $1), 0) AS value,
    NULL::text AS hash
  UNION ALL SELECT 'existing', id, NULL, body_hash FROM existing
  UNION ALL SELECT 'sequence', execution_id, last_sequence, NULL FROM bumped`);

const byId = statement('SELECT seq, envelope, received_at FROM events WHERE project = $1 AND id = $2');
// Walks events_project_received from a position on (receive time, then seq): each page starts
// where the last one stopped, however large the window.
const windowEvents = statement(`SELECT seq, id, envelope, received_at FROM events
  WHERE project = $1 AND received_at >= $2 AND received_at < $4 AND (received_at > $2 OR seq > $3) AND type <> 'PING'
  ORDER BY received_at, seq LIMIT $5`);
// Around each page of the window's walk, and only there: the index's order, sorted only within
// a receive time (an incremental sort). Without it, a table not analysed yet is planned as a
// sort of the whole rest of the window for each page (a replay of 300,000 events took 31 s a
// call that way). Left on for the page's other statements: without sorts, the lock of an
// ordered listener's heads walks the whole table.
const sortsOff = 'SET LOCAL enable_sort = off';
/** A list's reads, its page and its probe, in one snapshot. */
const readSnapshot = 'SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY';
const sortsBack = 'SET LOCAL enable_sort TO DEFAULT';
// Walks events_project_execution: the execution's events in sequence order, from a sequence on.
const executionEvents = statement(`SELECT seq, id, envelope, sequence FROM events
  WHERE project = $1 AND execution_id = $2 AND sequence >= $3
  ORDER BY sequence LIMIT $4`);
const insertReplayed = statement(`INSERT INTO deliveries
    (id, project, event_seq, event_id, listener_id, status, attempt_count, next_attempt_at, held, gap, created_at, updated_at)
  SELECT d.id, $1, d.seq, d.event_id, $2, 'pending', 0, CASE WHEN d.held IS NULL THEN $3::bigint END, d.held, d.gap::bigint[], $3, $3
  FROM unnest($4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[]) AS d(id, seq, event_id, held, gap)`);
// A re-queue walks the project's failed deliveries in id order (deliveries_project_status)
// from a position on ($2, null: the start), up to the end of a stretch of at most the call's
// scanLimit of them, and picks the listener's whose event is in the window. Positions are
// compared as the index orders them; a bound left out is null (each statement is planned for
// its values, so the null test costs nothing).
const failedStretchEnd = statement(`SELECT id FROM deliveries
  WHERE project = $1 AND status = 'failed' AND ($2::text IS NULL OR id > $2) ORDER BY id LIMIT 1 OFFSET $3 - 1`);
// $1 project, $2 listener, $3 since, $4 until, $5 after, $6 up to (inclusive).
const FAILED_PICKED = `FROM deliveries d JOIN events e ON e.seq = d.event_seq
  WHERE d.project = $1 AND d.status = 'failed' AND ($5::text IS NULL OR d.id > $5) AND ($6::text IS NULL OR d.id <= $6)
    AND d.listener_id = $2 AND e.received_at >= $3 AND e.received_at < $4`;
const requeueCap = statement(`SELECT d.id ${FAILED_PICKED} ORDER BY d.id LIMIT 1 OFFSET $7 - 1`);
// Like a manual retry: sent when asked, out of order, without the gap it once carried. The
// status stands on the UPDATE itself as well: a delivery a manual retry re-queued meanwhile (and
// a dispatcher may have leased) is checked again as it is after that commit, and left alone.
const requeueFailed = statement(`UPDATE deliveries SET status = 'pending', next_attempt_at = $7, updated_at = $7, lease_owner = NULL,
    leased_until = NULL, gap = NULL
  WHERE id IN (SELECT d.id ${FAILED_PICKED}) AND status = 'failed'`);

// A page of the log walks events_project_received from a position on (sorts off around it, as
// for a replay's window); a page of one execution's events walks events_project_execution in
// sequence order. The other filters are checked on at most scanLimit rows of the walk. One
// statement per order, walk and filters checked, made on first use.
const listStatement = namedStatements((key) => {
  const [order, walkName, ...sieve] = key.split(',');
  const dir = order === 'desc' ? 'DESC' : 'ASC';
  const [cmp, strict] = order === 'desc' ? ['<=', '<'] : ['>=', '>'];
  const execution = walkName === 'execution';
  const walk = execution
    ? `FROM events WHERE project = @project AND execution_id = @execution_id AND sequence ${strict} @sequence ORDER BY sequence ${dir}`
    : `FROM events
        WHERE project = @project AND received_at ${cmp} @r AND (received_at ${strict} @r OR seq ${strict} @seq) ${walkName === 'since' ? 'AND received_at >= @since' : ''}
        ORDER BY received_at ${dir}, seq ${dir}`;
  const walked = execution ? ['project', 'execution_id', 'sequence'] : ['project', 'r', 'seq', ...(walkName === 'since' ? ['since'] : [])];
  if (sieve[0] === 'probe') return { text: `SELECT received_at, seq, sequence ${walk} LIMIT 1 OFFSET @scan - 1`, names: [...walked, 'scan'] };
  // The page's rows, as many as fit in PAGE_BYTES of envelopes (see withinBytesSql).
  const order_ = execution ? `sequence ${dir}` : `received_at ${dir}, seq ${dir}`;
  const within = (page: string) => withinBytesSql(page, 'octet_length(envelope)', order_);
  if (!sieve.length) return { text: within(`SELECT seq, envelope, received_at, sequence ${walk} LIMIT @limit`), names: [...walked, 'limit'] };
  return {
    text: within(`SELECT e.seq, e.envelope, e.received_at, e.sequence
      FROM (SELECT seq, received_at, sequence, workbook, type ${walk} LIMIT @scan) w JOIN events e ON e.seq = w.seq
      WHERE ${sieve.map((k) => EVENT_SIEVE[k as keyof typeof EVENT_SIEVE]).join(' AND ')}
      ORDER BY ${execution ? `w.sequence ${dir}` : `w.received_at ${dir}, w.seq ${dir}`} LIMIT @limit`),
    names: [...walked, 'scan', ...sieve, 'limit'],
  };
});

const REPLAY_PAGE = 1000;

/** Every event statement of the PostgreSQL backend. */
/**
 * Calls of a batch refused (by their place in the batch), so that the others run again without
 * them: for a conflict, or for their fan-out's $regex budget (FilterBudgetError).
 */
class CallsRefused extends Error {
  constructor(readonly refused: ReadonlyMap<number, Error>) {
    super(`${refused.size} call(s) of the batch refused`);
  }
}

const conflict = (id: string) => new StoreConflictError(`event ${id} already exists with a different body`);

/** One appendEvents call waiting for its batch. */
interface Call {
  project: string;
  list: NewEvent[];
  routing: ListenerRouting;
  now: number;
  resolve(results: AppendedEvent[]): void;
  reject(err: unknown): void;
}

/** Events one batched transaction takes at most (a batch API request alone may bring 1000). */
const BATCH_EVENTS = 1000;
/** Events a project's waiting calls hold at least to start a transaction beside its running append. */
const SIDE_BY_SIDE = 100;

export function eventQueries(db: Database, notice: DueNotice, { appendsAtOnce = 4 }: { appendsAtOnce?: number } = {}) {
  /**
   * Appends inside a transaction the events of one or more calls, as if the calls ran one
   * after the other: an id an earlier call (or the same call) brought is a duplicate, or a
   * conflict when its body differs. A call with a conflict fails the transaction with
   * CallsRefused before anything is written for it. Each call's events are routed by its own
   * routing (a request's may be metered). `last`: the append ends the transaction (and commits
   * it). A concurrent append that took one of the ids fails it on the events' unique key: it runs again.
   */
  async function appendCalls(
    c: Conn,
    project: string,
    calls: NewEvent[][],
    routings: ListenerRouting[],
    now: number,
    last: boolean,
    handing: Handing | null,
  ): Promise<AppendedEvent[][]> {
    const refused = new Map<number, Error>();
    const firsts = new Map<string, NewEvent>();
    /** The call that brought each id first. */
    const callOf = new Map<string, number>();
    calls.forEach((list, i) => {
      const mine = new Map<string, NewEvent>();
      for (const e of list) {
        const first = mine.get(e.envelope.id) ?? firsts.get(e.envelope.id);
        if (!first) mine.set(e.envelope.id, e);
        else if (first.bodyHash !== e.bodyHash) {
          refused.set(i, conflict(e.envelope.id));
          return;
        }
      }
      for (const [id, e] of mine) {
        firsts.set(id, e);
        callOf.set(id, i);
      }
    });
    if (refused.size) throw new CallsRefused(refused);
    const unique = [...firsts.values()];
    const rows = await c.rows<{ kind: string; key: string | null; value: number | null; hash: string | null }>(prepareAppend, [
      project,
      unique.map((e) => e.envelope.id),
      unique.map((e) => e.envelope.execution_id),
    ]);
    let version = 0;
    const existing = new Map<string, string>();
    const lastSequence = new Map<string, number>();
    for (const r of rows) {
      if (r.kind === 'version') version = r.value!;
      else if (r.kind === 'existing') existing.set(r.key!, r.hash!);
      else lastSequence.set(r.key!, r.value!);
    }
    calls.forEach((list, i) => {
      const clash = list.find((e) => existing.has(e.envelope.id) && existing.get(e.envelope.id) !== e.bodyHash);
      if (clash) refused.set(i, conflict(clash.envelope.id));
    });
    // The sequences just reserved counted the refused calls' events too: run again without them.
    if (refused.size) throw new CallsRefused(refused);
    const fresh = unique.filter((e) => !existing.has(e.envelope.id));
    const outbox: OutboxEvent[] = [];
    let handed = new Map<string, number>();
    if (fresh.length) {
      // Each execution's new events take the numbers just reserved, in the calls' order.
      const next = new Map<string, number>();
      for (const e of fresh) {
        const x = e.envelope.execution_id;
        if (x) next.set(x, (next.get(x) ?? lastSequence.get(x)! + 1) - 1);
      }
      const routes: FanOut[] = [];
      for (const routing of routings) routes.push(await fanOutAt(c, project, version, routing));
      for (const e of fresh) {
        const x = e.envelope.execution_id;
        const sequence = x ? next.get(x)! : null;
        if (x) next.set(x, sequence! + 1);
        const envelope: EventEnvelope = { ...e.envelope, sequence };
        const i = callOf.get(e.envelope.id)!;
        if (refused.has(i)) continue;
        const route = routes[i];
        try {
          outbox.push({ envelope, original: e.original, bodyHash: e.bodyHash, listenerIds: route(envelope), fanOut: route });
        } catch (err) {
          if (!(err instanceof FilterBudgetError)) throw err;
          refused.set(i, err);
        }
      }
      if (refused.size) throw new CallsRefused(refused);
      handed = (await writeOutbox(c, project, outbox, now, notice, last, handing)).handedByEvent;
    }
    const deliveries = new Map(outbox.map((o) => [o.envelope.id, o.listenerIds.length]));
    const answered = new Set<string>();
    return calls.map((list) =>
      list.map((e) => {
        const id = e.envelope.id;
        const made = deliveries.get(id);
        if (made === undefined || answered.has(id)) return { id, duplicate: true, deliveries: 0, handed: 0 };
        answered.add(id);
        return { id, duplicate: false, deliveries: made, handed: handed.get(id) ?? 0 };
      }),
    );
  }

  /** An append of one call inside the caller's transaction. */
  async function append(c: Conn, project: string, list: NewEvent[], routing: ListenerRouting, now: number, last: boolean): Promise<AppendedEvent[]> {
    try {
      return (await appendCalls(c, project, [list], [routing], now, last, null))[0];
    } catch (err) {
      if (err instanceof CallsRefused) throw err.refused.get(0);
      throw err;
    }
  }

  /*
   * Group commit for appends. At most `appendsAtOnce` append transactions run at once. Calls
   * that come meanwhile wait, and the next transaction of a project takes its waiting calls (up
   * to BATCH_EVENTS events), so a stream of single-event requests costs a transaction per
   * several events, not one each. While a project's append runs, its waiting calls gather
   * until they are worth a transaction of their own (SIDE_BY_SIDE events): small appends of one
   * project side by side would mostly wait for each other, as each holds its executions'
   * sequence counters until it commits, and each is planned, written and flushed on its own;
   * large ones overlap one's flush with the next one's work. A call alone is written at once.
   * Each call is answered after the commit that stored its events, as if the calls had run one
   * by one.
   */
  const waiting = new Map<string, Call[]>();
  const busy = new Map<string, number>();
  let running = 0;
  let handoff: Handoff | null = null;

  async function runBatch(batch: Call[]): Promise<void> {
    let calls = batch;
    // What a transaction that did not commit (or runs again) handed over goes back.
    const handing = startHanding(handoff);
    while (calls.length) {
      // The calls' receive times differ by the moments they waited: the batch takes the latest.
      const now = Math.max(...calls.map((x) => x.now));
      try {
        const results = await db.transaction((c) => {
          handing.abandoned();
          return appendCalls(c, calls[0].project, calls.map((x) => x.list), calls.map((x) => x.routing), now, true, handing);
        });
        handing.committed();
        calls.forEach((x, i) => x.resolve(results[i]));
        return;
      } catch (err) {
        handing.abandoned();
        if (!(err instanceof CallsRefused)) {
          for (const x of calls) x.reject(err);
          return;
        }
        for (const [i, e] of err.refused) calls[i].reject(e);
        calls = calls.filter((_, i) => !err.refused.has(i));
      }
    }
  }

  /** Whether a project's waiting calls hold at least `n` events. */
  const holds = (queue: Call[], n: number) => {
    let events = 0;
    for (const x of queue) if ((events += x.list.length) >= n) return true;
    return false;
  };

  function pump() {
    for (const [project, queue] of waiting) {
      if (running >= appendsAtOnce) return;
      if (busy.has(project) && !holds(queue, SIDE_BY_SIDE)) continue;
      const batch: Call[] = [];
      let events = 0;
      for (let i = 0; i < queue.length; ) {
        const x = queue[i];
        // Each call keeps its own routing (a request's is metered): calls of any routing share a transaction.
        if (batch.length === 0 || events + x.list.length <= BATCH_EVENTS) {
          batch.push(x);
          events += x.list.length;
          queue.splice(i, 1);
        } else i++;
      }
      // The project's next turn comes after the other projects' waiting now.
      waiting.delete(project);
      if (queue.length) waiting.set(project, queue);
      running++;
      busy.set(project, (busy.get(project) ?? 0) + 1);
      void runBatch(batch).finally(() => {
        running--;
        const left = busy.get(project)! - 1;
        if (left) busy.set(project, left);
        else busy.delete(project);
        pump();
      });
    }
  }

  /**
   * Replays the rows `next` pages through (after the last one given), up to the limits (the
   * deliveries made, the events looked at), an insert per page.
   */
  async function replayRows<Row extends ReplayRow>(
    c: Conn,
    project: string,
    listenerId: string,
    next: (after: Row | null) => Promise<Row[]>,
    matches: FanOut,
    ordered: boolean,
    limits: { limit: number; scanLimit: number },
    now: number,
  ): Promise<{ count: number; truncated: boolean; last: Row | null; due: boolean }> {
    const state = { count: 0, scanned: 0, last: null as Row | null, truncated: false };
    let due = false;
    for (;;) {
      const rows = await next(state.last);
      const page = replayPage(rows, state, matches, limits);
      if (page.length) {
        const placing = page.map((p) => ({ id: newId(now), listenerId, execution: ordered ? p.envelope.execution_id : null }));
        const placed = await placeDeliveries(c, placing, now);
        await c.count(insertReplayed, [
          project, listenerId, now,
          placing.map((p) => p.id), page.map((p) => p.row.seq), page.map((p) => p.row.id),
          placed.map((p) => p.held), placed.map((p) => arrayLiteral(p.gap)),
        ]);
        due ||= placed.some((p) => p.held === null);
      }
      if (state.truncated || rows.length < REPLAY_PAGE) return { ...state, due };
    }
  }

  return {
    /** As appendEvents, inside the caller's transaction (the relay's own events, recorded with attempts). */
    appendIn: (c: Conn, project: string, list: NewEvent[], routing: ListenerRouting, now: number) => append(c, project, list, routing, now, false),
    /**
     * Writes the events with their sequences and deliveries in one transaction, all or none
     * (possibly together with other calls' events: see pump).
     */
    appendEvents(project: string, list: NewEvent[], routing: ListenerRouting, now: number): Promise<AppendedEvent[]> {
      return new Promise<AppendedEvent[]>((resolve, reject) => {
        const queue = waiting.get(project);
        if (queue) queue.push({ project, list, routing, now, resolve, reject });
        else waiting.set(project, [{ project, list, routing, now, resolve, reject }]);
        pump();
      });
    },
    /** From now on appendEvents hands fresh deliveries over to this dispatcher. */
    handOffTo(h: Handoff | null) {
      handoff = h;
    },
    /** Whether `text` is a cursor `list` hands out: an event's seq, in decimal. */
    cursorScope: eventCursorScope,
    async get(project: string, id: string): Promise<StoredEvent | null> {
      const [row] = await db.rows<EventRow>(byId, [project, id]);
      return row ? toStoredEvent(row) : null;
    },
    async list(project: string, q: EventQuery): Promise<ListPage<StoredEvent & { cursor: string }>> {
      const from = eventPageFrom(q);
      const sieve = eventSieve(q);
      const walkName = q.execution_id !== undefined ? 'execution' : q.since !== undefined ? 'since' : 'log';
      const head = [q.order ?? 'asc', walkName];
      const params = { ...q, project, r: from.receivedAt, seq: from.seq, sequence: from.sequence, scan: q.scanLimit ?? DEFAULT_LIST_SCAN_LIMIT };
      return db.transaction(async (c) => {
        // One snapshot for the page and its probe (see walkMayGoOn). The index's order rather
        // than a sort of what the walk finds (the plan for a table not analysed yet); an
        // execution's walk needs no sort.
        await c.count(walkName === 'execution' ? readSnapshot : `${readSnapshot}; ${sortsOff}`, []);
        const page = listStatement([...head, ...sieve].join(','), params);
        const found = pageOfSql(await c.rows<ListedEventRow & PageColumns>(page.statement, page.values));
        const rows = found.rows.map((row) => ({ ...toStoredEvent(row), cursor: eventCursor(row, q.execution_id) }));
        if (found.cut) return { rows, resume: rows[rows.length - 1].cursor };
        if (!walkMayGoOn(rows.length, q, sieve.length > 0)) return { rows, resume: null };
        const probe = listStatement([...head, 'probe'].join(','), params);
        const [end] = await c.rows<ListedEventRow>(probe.statement, probe.values);
        return { rows, resume: end ? eventCursor(end, q.execution_id) : null };
      });
    },
    /**
     * New deliveries for one listener of the window's events it matches, or its failed ones
     * re-queued. A replay of an execution keeps its order whatever the listener's `ordering`;
     * one of a window as fan-out says.
     */
    replay(project: string, listenerId: string, w: ReplayWindow | ReplayExecution, matches: FanOut, now: number): Promise<ReplayAnswer> {
      return db.transaction(async (c) => {
        let answer: ReplayAnswer;
        let due: boolean;
        if ('executionId' in w) {
          const next = (last: (ReplayRow & { sequence: number }) | null) =>
            c.rows<ReplayRow & { sequence: number }>(executionEvents, [project, w.executionId, last ? last.sequence + 1 : w.fromSequence, REPLAY_PAGE]);
          const r = await replayRows(c, project, listenerId, next, matches, true, w, now);
          answer = executionAnswer(w, r);
          due = r.due;
        } else if (w.onlyFailed) {
          const after = (w.after !== null && parseFailedWalkCursor(w.after)) || null;
          const endId = (await c.rows<{ id: string }>(failedStretchEnd, [project, after, w.scanLimit]))[0]?.id ?? null;
          const walk = [project, listenerId, w.since, w.until, after];
          const capId = (await c.rows<{ id: string }>(requeueCap, [...walk, endId, w.limit]))[0]?.id ?? null;
          const count = await c.count(requeueFailed, [...walk, capId ?? endId, now]);
          answer = requeueAnswer(count, capId, endId);
          due = count > 0;
        } else {
          const next = async (last: WindowRow | null) => {
            const from = windowFrom(w, last);
            await c.count(sortsOff, []);
            const rows = await c.rows<WindowRow>(windowEvents, [project, from.receivedAt, from.seq, w.until, REPLAY_PAGE]);
            await c.count(sortsBack, []);
            return rows;
          };
          const r = await replayRows(c, project, listenerId, next, matches, matches.ordered?.has(listenerId) === true, w, now);
          answer = windowAnswer(w, r);
          due = r.due;
        }
        if (due) notice.afterCommit(c);
        return answer;
      });
    },
  };
}
