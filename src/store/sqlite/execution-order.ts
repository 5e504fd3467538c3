import type { Database, Statement } from 'better-sqlite3';

interface KeyRow {
  listener_id: string;
  execution_id: string;
}

/**
 * The (listener, execution) keys of ordered deliveries (see DeliveryQueue in ../store.ts), as
 * the SQLite backend keeps them: a delivery_heads row per key naming its head, and every other
 * pending delivery of the key `held` (naming the execution), out of the due index. Every call
 * runs inside the transaction that inserts, finishes or changes the deliveries concerned.
 */
export function executionOrder(db: Database) {
  const keyRow = db.prepare(`SELECT delivery_id, gap FROM delivery_heads WHERE listener_id = ? AND execution_id = ?`) as Statement<
    [string, string],
    { delivery_id: string | null; gap: string | null }
  >;
  const newKey = db.prepare(`INSERT INTO delivery_heads (listener_id, execution_id, delivery_id, gap, updated_at)
    VALUES (@listener, @execution, @delivery, @gap, @now)`);
  const keyOf = db.prepare('SELECT listener_id, execution_id FROM delivery_heads WHERE delivery_id = ?') as Statement<[string], KeyRow>;
  const finished = db.prepare(`SELECT d.gap, e.sequence FROM deliveries d JOIN events e ON e.seq = d.event_seq
    WHERE d.id = ?`) as Statement<[string], { gap: string | null; sequence: number | null }>;
  const nextHeld = db
    .prepare(`SELECT id FROM deliveries WHERE listener_id = ? AND held = ? ORDER BY event_seq LIMIT 1`)
    .pluck() as Statement<[string, string], string>;
  const promote = db.prepare(`UPDATE deliveries SET held = NULL, next_attempt_at = @now, gap = @gap, updated_at = @now
    WHERE id = @id`);
  const setHead = db.prepare(`UPDATE delivery_heads SET delivery_id = @delivery, gap = @gap, updated_at = @now
    WHERE listener_id = @listener AND execution_id = @execution`);
  const dropKey = db.prepare('DELETE FROM delivery_heads WHERE listener_id = ? AND execution_id = ?');
  const dropKeys = db.prepare('DELETE FROM delivery_heads WHERE listener_id = ?');
  const prune = db.prepare(`DELETE FROM delivery_heads WHERE (listener_id, execution_id) IN (
    SELECT listener_id, execution_id FROM delivery_heads WHERE delivery_id IS NULL AND updated_at < ? LIMIT ?)`);

  return {
    /**
     * Makes `deliveryId` its key's head, or answers that it is held. Call before inserting the
     * delivery, with the answer: a head is due now with `gap`, a held one waits.
     */
    place(listenerId: string, executionId: string, deliveryId: string, now: number): { head: true; gap: string | null } | { head: false } {
      const k = keyRow.get(listenerId, executionId);
      if (k?.delivery_id) return { head: false };
      const params = { listener: listenerId, execution: executionId, delivery: deliveryId, gap: null, now };
      // A key without a head takes this one, with the gap the key kept.
      if (k) setHead.run(params);
      else newKey.run(params);
      return { head: true, gap: k?.gap ?? null };
    },
    /**
     * A delivery finished (succeeded, or failed for good). When it is its key's head, the held
     * delivery with the lowest sequence becomes the head, due now; after a failure it carries
     * the gap so far plus the failed one's sequence. A delivery that is no head (a manual retry
     * of a finished one, an unordered one) promotes nothing.
     */
    finished(deliveryId: string, succeeded: boolean, now: number): void {
      const key = keyOf.get(deliveryId);
      if (!key) return;
      let gap: string | null = null;
      if (!succeeded) {
        const f = finished.get(deliveryId)!;
        gap = JSON.stringify([...(f.gap === null ? [] : (JSON.parse(f.gap) as number[])), f.sequence]);
      }
      const next = nextHeld.get(key.listener_id, key.execution_id);
      if (next !== undefined) {
        promote.run({ id: next, gap, now });
        setHead.run({ ...keyParams(key), delivery: next, gap: null, now });
      } else if (gap !== null) {
        // Nothing waits yet: the key keeps the gap for its next delivery.
        setHead.run({ ...keyParams(key), delivery: null, gap, now });
      } else {
        dropKey.run(key.listener_id, key.execution_id);
      }
    },
    /**
     * The listener's keys: it is deleted (its pending deliveries cancelled), or no longer keeps
     * order (what it held behind their heads goes with its backlog, backlogs.ts).
     */
    forget(listenerId: string): void {
      dropKeys.run(listenerId);
    },
    /** Deletes up to `batch` keys left without a head since before `before`. */
    prune(before: number, batch: number): number {
      return prune.run(before, batch).changes;
    },
  };
}

const keyParams = (k: KeyRow) => ({ listener: k.listener_id, execution: k.execution_id });

export type ExecutionOrder = ReturnType<typeof executionOrder>;
