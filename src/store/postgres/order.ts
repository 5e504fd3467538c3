import { statement, type Conn } from './database.js';
import { RetryTransaction } from './errors.js';

/*
 * The (listener, execution) keys of ordered deliveries (see DeliveryQueue in ../store.ts): a
 * delivery_heads row per key naming its head, and every other pending delivery of the key
 * `held` (naming the execution), out of the due index. Every call runs inside the transaction
 * that inserts, finishes or changes the deliveries concerned; heads rows are locked in key
 * order, so two transactions never wait for each other in a circle.
 */

const lockHeads = statement(`SELECT h.listener_id, h.execution_id, h.delivery_id, h.gap FROM delivery_heads h
  JOIN unnest($1::text[], $2::text[]) AS k(listener_id, execution_id)
    ON h.listener_id = k.listener_id AND h.execution_id = k.execution_id
  ORDER BY h.listener_id, h.execution_id FOR UPDATE OF h`);
// A key some other transaction created meanwhile (there was no row to lock) keeps its head:
// the caller sees it missing from the answer and runs again.
const takeHeads = statement(`INSERT INTO delivery_heads AS h (listener_id, execution_id, delivery_id, gap, updated_at)
  SELECT k.listener_id, k.execution_id, k.delivery_id, NULL, $4
  FROM unnest($1::text[], $2::text[], $3::text[]) AS k(listener_id, execution_id, delivery_id)
  ORDER BY k.listener_id, k.execution_id
  ON CONFLICT (listener_id, execution_id) DO UPDATE SET delivery_id = excluded.delivery_id, gap = NULL, updated_at = excluded.updated_at
    WHERE h.delivery_id IS NULL
  RETURNING listener_id`);

/**
 * Finished deliveries that head their key hand the key on: the held delivery with the lowest
 * event row becomes the head, due now (unscheduled instead when its listener is being turned
 * off); after a final failure it carries the failed head's gap plus its sequence. With nothing
 * held, a key keeps that gap for its next delivery, or goes when the head succeeded. As CTEs of
 * the recording statement: `finished` names a CTE of (id, status, gap, event_seq) of the
 * deliveries that just finished, `disabled` one of (id) of the listeners being turned off;
 * `promoted` answers the deliveries that became heads.
 */
export function handOnCtes(finished: string, disabled: string, now: string): string {
  return `done AS (
    SELECT h.listener_id, h.execution_id,
      CASE WHEN f.status = 'succeeded' THEN NULL ELSE array_append(coalesce(f.gap, '{}'), e.sequence) END AS gap
    FROM ${finished} f
    JOIN delivery_heads h ON h.delivery_id = f.id
    JOIN events e ON e.seq = f.event_seq
    ORDER BY h.listener_id, h.execution_id
    FOR UPDATE OF h
  ), nxt AS (
    SELECT k.listener_id, k.execution_id, k.gap, n.id AS next_id FROM done k
    LEFT JOIN LATERAL (
      SELECT id FROM deliveries WHERE listener_id = k.listener_id AND held = k.execution_id ORDER BY event_seq LIMIT 1 FOR UPDATE
    ) n ON true
  ), promoted AS (
    UPDATE deliveries d SET held = NULL, gap = n.gap, updated_at = ${now},
      next_attempt_at = CASE WHEN n.listener_id IN (SELECT id FROM ${disabled}) THEN NULL ELSE ${now} END
    FROM nxt n WHERE d.id = n.next_id
    RETURNING d.id, d.project, d.next_attempt_at
  ), moved AS (
    UPDATE delivery_heads h SET delivery_id = n.next_id, gap = CASE WHEN n.next_id IS NULL THEN n.gap END, updated_at = ${now}
    FROM nxt n WHERE h.listener_id = n.listener_id AND h.execution_id = n.execution_id AND (n.next_id IS NOT NULL OR n.gap IS NOT NULL)
  ), dropped AS (
    DELETE FROM delivery_heads h USING nxt n
    WHERE h.listener_id = n.listener_id AND h.execution_id = n.execution_id AND n.next_id IS NULL AND n.gap IS NULL
  )`;
}

const dropKeys = statement('DELETE FROM delivery_heads WHERE listener_id = $1');
const pruneHeadless = statement(`DELETE FROM delivery_heads WHERE (listener_id, execution_id) IN (
  SELECT listener_id, execution_id FROM delivery_heads WHERE delivery_id IS NULL AND updated_at < $1 LIMIT $2)`);

/** A delivery about to be inserted; `execution` is set when it keeps its execution's order. */
export interface Placing {
  id: string;
  listenerId: string;
  execution: string | null;
}

/** Where a new delivery goes: due now (with the gap its key kept) or held behind its key's head. */
export interface Placement {
  held: string | null;
  gap: number[] | null;
}

const UNORDERED: Placement = { held: null, gap: null };

/**
 * Places new deliveries, in the order given: each key's first one becomes its head when the key
 * has none, the others are held. Call before inserting them, in the same transaction.
 */
export async function placeDeliveries(c: Conn, list: readonly Placing[], now: number): Promise<Placement[]> {
  const keyOf = (p: Placing) => `${p.listenerId}\n${p.execution}`;
  const keys = new Map<string, { listenerId: string; execution: string }>();
  for (const p of list) if (p.execution !== null && !keys.has(keyOf(p))) keys.set(keyOf(p), { listenerId: p.listenerId, execution: p.execution });
  if (keys.size === 0) return list.map(() => UNORDERED);
  const ks = [...keys.values()];
  const rows = await c.rows<{ listener_id: string; execution_id: string; delivery_id: string | null; gap: number[] | null }>(lockHeads, [
    ks.map((k) => k.listenerId),
    ks.map((k) => k.execution),
  ]);
  const current = new Map(rows.map((r) => [`${r.listener_id}\n${r.execution_id}`, r]));
  const headed = new Set<string>();
  const heads: Placing[] = [];
  const placed = list.map((p): Placement => {
    if (p.execution === null) return UNORDERED;
    const key = keyOf(p);
    const row = current.get(key);
    if (headed.has(key) || (row && row.delivery_id !== null)) return { held: p.execution, gap: null };
    headed.add(key);
    heads.push(p);
    return { held: null, gap: row?.gap ?? null };
  });
  if (heads.length) {
    const taken = await c.rows(takeHeads, [heads.map((h) => h.listenerId), heads.map((h) => h.execution), heads.map((h) => h.id), now]);
    if (taken.length !== heads.length) throw new RetryTransaction('an ordered key was started by a concurrent transaction');
  }
  return placed;
}

/**
 * The listener's keys: it is deleted (its pending deliveries cancelled), or no longer keeps
 * order (what it held behind their heads goes with its backlog, backlogs.ts).
 */
export async function forgetOrder(c: Conn, listenerId: string): Promise<void> {
  await c.count(dropKeys, [listenerId]);
}

/** Deletes up to `batch` keys left without a head since before `before`. */
export async function pruneOrder(c: Conn, before: number, batch: number): Promise<number> {
  return c.count(pruneHeadless, [before, batch]);
}
