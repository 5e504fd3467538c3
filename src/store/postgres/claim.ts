import { initialGateState, type GateListener, type ListenerGateState } from '../../dispatch/listener-gate.js';
import { specCache, toClaimedDelivery, type ClaimEvent, type ClaimRow, type SpecColumn } from '../rows.js';
import type { AttemptResult, ClaimedDelivery, ClaimOptions } from '../store.js';
import { statement, type Conn, type Database } from './database.js';
import { leaseEnded } from './deliveries.js';
import { GATE_COLUMNS, GATE_PARAMS, gateUpsertCte, gateValues, toState, type GateRow } from './gates.js';
import { ROLLUP_PARAMS, rollupCtes, rollupValues } from './rollups.js';

/*
 * The second statement of a cycle (see queue.ts). The rollups and the judged gate states are
 * written; then the claim's candidates, for every project the gate allotted: each project's
 * due deliveries in due order, up to its share, looking past those whose lease has not ended,
 * skipping rows another dispatcher is claiming right now, and only of listeners whose transport
 * this process has (or of no listener). The first row of each listener brings the listener's
 * record and its gate state, locked; a state another transaction holds (a dispatcher recording
 * or claiming for that listener right now) is skipped rather than waited for: its candidates
 * stay due for the next cycle, and no two dispatchers wait for each other in a circle. (A state
 * judged in this cycle is this transaction's already, and its new value is the judgement's.)
 */
const G = ROLLUP_PARAMS + 1;
const P = G + GATE_PARAMS;
const pickCandidates = statement(`WITH ${rollupCtes(1)}, ${gateUpsertCte('judged', G)}, picked AS (
    SELECT c.*, a.project FROM unnest($${P}::text[], $${P + 1}::int[]) AS a(project, share)
    CROSS JOIN LATERAL (
      SELECT d.id, d.listener_id, d.attempt_count, d.gap, d.next_attempt_at AS due_at, l.id IS NOT NULL AS listener_exists,
        l.enabled, l.updated_at AS listener_updated_at, l.spec, l.secret, l.previous_secret, l.previous_secret_expires_at
      FROM deliveries d LEFT JOIN listeners l ON l.id = d.listener_id
      WHERE d.project = a.project AND d.status = 'pending' AND d.held IS NULL AND d.next_attempt_at <= $${P + 2}
        AND ${leaseEnded(`$${P + 2}`)} AND (l.id IS NULL OR l.transport = ANY($${P + 3}::text[]))
      ORDER BY d.next_attempt_at LIMIT a.share
      FOR UPDATE OF d SKIP LOCKED
    ) c
  ), candidate_gates AS (
    SELECT ${GATE_COLUMNS} FROM listener_gates WHERE listener_id IN (SELECT listener_id FROM picked WHERE enabled)
    ORDER BY listener_id FOR UPDATE SKIP LOCKED
  ), ranked AS (
    SELECT p.*, row_number() OVER (PARTITION BY p.listener_id ORDER BY p.due_at, p.id) = 1 AS first FROM picked p
  )
  SELECT r.id, r.project, r.listener_id, r.attempt_count, r.gap, r.due_at, r.listener_exists, r.enabled, r.listener_updated_at,
    r.secret, r.previous_secret, r.previous_secret_expires_at, r.first,
    CASE WHEN r.first THEN r.spec END AS spec,
    CASE WHEN r.first AND r.enabled THEN (SELECT row_to_json(g)::text FROM candidate_gates g WHERE g.listener_id = r.listener_id) END AS gate,
    CASE WHEN r.first AND r.enabled THEN EXISTS (SELECT 1 FROM listener_gates x WHERE x.listener_id = r.listener_id) END AS has_gate
  FROM ranked r`);

/*
 * The third statement of a cycle: the candidates settled: leased until the time given (now + leaseMs + the listener's
 * timeout: the lease outlives the attempt, so only a dead process's claims expire), in columns
 * no index names, so that the update is heap-only (migration 006), deferred by
 * the gate to their time (unleased), held when their listener is disabled, cancelled when it is
 * gone; the states the gate changed are written. What sending needs comes back for the leased.
 * The candidates are named by primary key as well as joined, so that the planner reads them
 * through it rather than hashing the whole table (see record.ts).
 * A hold is decided on the listener as it is now, its row locked for share: one enabled since the
 * pick read it leaves the delivery due ('leave'), and one being changed right now (its row locked
 * by a PATCH) is skipped and leaves the delivery due as well, for the next cycle to decide. The
 * skip is what keeps the two apart: a PATCH that disables holds the listener's row and then waits
 * for the deliveries this claim has locked (listeners.ts, holdPending), so waiting for its row
 * here would close a circle; and a PATCH that enables after this commit sees the hold and
 * releases it (releaseHeld).
 */
const settle = statement(`WITH given AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $${6 + GATE_PARAMS}::text[]) AS x(id, action, at, listener_id)
  ), held_by AS MATERIALIZED (
    SELECT l.id, l.enabled FROM listeners l WHERE l.id IN (SELECT listener_id FROM given WHERE action = 'hold') FOR SHARE SKIP LOCKED
  ), x AS (
    SELECT g.id, CASE WHEN g.action = 'hold' AND (SELECT h.enabled FROM held_by h WHERE h.id = g.listener_id) IS NOT FALSE THEN 'leave' ELSE g.action END AS action, g.at
    FROM given g
  ), settled AS (
    UPDATE deliveries d SET
      status = CASE WHEN x.action = 'cancel' THEN 'cancelled' ELSE d.status END,
      lease_owner = CASE WHEN x.action = 'take' THEN $4 END,
      leased_until = CASE WHEN x.action = 'take' THEN x.at END,
      next_attempt_at = CASE WHEN x.action IN ('take', 'leave') THEN d.next_attempt_at WHEN x.action = 'defer' THEN x.at END,
      last_error = CASE WHEN x.action = 'cancel' THEN 'listener deleted' ELSE d.last_error END,
      updated_at = CASE WHEN x.action IN ('cancel', 'hold') THEN $5 ELSE d.updated_at END
    FROM x WHERE d.id = x.id AND d.id = ANY($1::text[])
    RETURNING d.id, d.event_seq, x.action
  ), ${gateUpsertCte('admitted', 6)}
  SELECT s.id, e.envelope, e.original_body, e.original_format
  FROM settled s LEFT JOIN events e ON e.seq = s.event_seq WHERE s.action = 'take'`);

/*
 * Deliveries a claim took whose event is gone: a replay that read the event while the pruner
 * removed it (PostgreSQL has no foreign key between them) can leave one behind. Nothing can
 * be sent for it, so it is cancelled, once this process holds it.
 */
const cancelOrphans = statement(`UPDATE deliveries SET status = 'cancelled', lease_owner = NULL, leased_until = NULL,
    last_error = 'its event was pruned before it was sent', updated_at = $3
  WHERE id = ANY($1::text[]) AND lease_owner = $2 AND status = 'pending'`);

interface CandidateRow extends ClaimRow {
  gap: number[] | null;
  due_at: number;
  listener_exists: boolean;
  enabled: boolean | null;
  first: boolean;
  spec: string | null;
  gate: string | null;
  has_gate: boolean | null;
}

/** The claim's statements (see queue.ts), with a cache of parsed listener specs. */
export function claimQueries() {
  const specOf = specCache();

  return {
    /**
     * The second statement: the record's rollups and judged states written, the allotted
     * candidates picked. With no shares to pick it is the transaction's last (and commits).
     */
    async pick(
      c: Conn,
      recorded: readonly AttemptResult[],
      judged: ReadonlyMap<string, ListenerGateState>,
      shares: ReadonlyArray<[string, number]>,
      claim: ClaimOptions | null,
      now: number,
    ): Promise<CandidateRow[]> {
      const values = [
        ...rollupValues(recorded),
        ...gateValues(judged),
        shares.map(([p]) => p),
        shares.map(([, n]) => n),
        claim?.now ?? now,
        claim?.transports ?? [],
      ];
      return shares.length ? c.rows<CandidateRow>(pickCandidates, values) : c.commitWith<CandidateRow>(pickCandidates, values);
    },

    /**
     * The third statement, the transaction's last (it commits): the gate admits candidates
     * (oldest first, over all projects) and they are settled. `judged` are this transaction's
     * states already, newer than what was read.
     */
    async admitAndSettle(
      c: Conn,
      candidates: CandidateRow[],
      judged: ReadonlyMap<string, ListenerGateState>,
      claim: ClaimOptions,
    ): Promise<{ claimed: ClaimedDelivery[]; orphans: string[]; contended: number }> {
      candidates.sort((a, b) => a.due_at - b.due_at || (a.id < b.id ? -1 : 1));
      const settleIds: string[] = [];
      const actions: string[] = [];
      const times: Array<number | null> = [];
      const listenerIds: string[] = [];
      const settleAs = (row: CandidateRow, action: string, at: number | null) => {
        settleIds.push(row.id);
        actions.push(action);
        times.push(at);
        listenerIds.push(row.listener_id);
      };
      const specs = new Map<string, SpecColumn>();
      const listeners = new Map<string, GateListener>();
      for (const row of candidates) {
        if (!row.first || !row.enabled) continue;
        const spec = specOf(row.listener_id, row.listener_updated_at!, row.spec!);
        specs.set(row.listener_id, spec);
        // A row that exists but was not locked is another dispatcher's right now: not this cycle.
        // (A blank row, locked, is a listener the gate has not judged yet.)
        if (!judged.has(row.listener_id) && row.gate === null && row.has_gate) continue;
        const state = judged.get(row.listener_id) ?? (row.gate ? toState(JSON.parse(row.gate) as GateRow) : null);
        listeners.set(row.listener_id, { state: state ?? initialGateState(claim.now), ratePerS: spec.rate_limit_per_s, maxInFlight: spec.max_in_flight });
      }
      const offered: CandidateRow[] = [];
      let contended = 0;
      for (const row of candidates) {
        if (!row.listener_exists) settleAs(row, 'cancel', null);
        // A disabled listener's deliveries wait, unscheduled, until it is enabled again.
        else if (!row.enabled) settleAs(row, 'hold', null);
        else if (listeners.has(row.listener_id)) offered.push(row);
        else contended++;
      }
      const admission = offered.length
        ? claim.admit(offered.map((row) => ({ id: row.id, listenerId: row.listener_id })), listeners, claim.now)
        : { take: [], defer: new Map<string, number>(), changed: new Map<string, ListenerGateState>() };
      const byId = new Map(offered.map((row) => [row.id, row]));
      const taken: CandidateRow[] = [];
      for (const id of admission.take) {
        const row = byId.get(id);
        if (!row) continue;
        settleAs(row, 'take', claim.now + claim.leaseMs + specs.get(row.listener_id)!.callback.timeout_ms);
        taken.push(row);
      }
      for (const [id, at] of admission.defer) {
        const row = byId.get(id);
        if (row) settleAs(row, 'defer', at);
      }
      if (settleIds.length === 0 && admission.changed.size === 0) return { claimed: [], orphans: [], contended };
      const sent = await c.commitWith<Partial<ClaimEvent> & { id: string }>(settle, [
        settleIds,
        actions,
        times,
        claim.owner,
        claim.now,
        ...gateValues(admission.changed),
        listenerIds,
      ]);
      const events = new Map(sent.map((s) => [s.id, s]));
      const claimed: ClaimedDelivery[] = [];
      const orphans: string[] = [];
      for (const row of taken) {
        const event = events.get(row.id);
        if (event?.envelope == null) orphans.push(row.id);
        else claimed.push(toClaimedDelivery(row, event as ClaimEvent, specs.get(row.listener_id)!, row.gap));
      }
      return { claimed, orphans, contended };
    },

    /** Cancels the deliveries of `orphans` (see cancelOrphans), outside the claim's transaction. */
    async cancelOrphans(db: Database, owner: string, orphans: readonly string[], now: number): Promise<void> {
      await db.count(cancelOrphans, [orphans, owner, now]);
    },
  };
}
