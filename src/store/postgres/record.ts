import type { ListenerGateState } from '../../dispatch/listener-gate.js';
import { judgeRecorded, turnedOffEvents } from '../rows.js';
import type { AttemptResult, ListenerRouting, NewEvent, RecordJudge } from '../store.js';
import { statement, type Conn } from './database.js';
import { leaseEnded, pendingProjectsCte } from './deliveries.js';
import { GATE_COLUMNS, toState, type GateRow } from './gates.js';
import { handOnCtes } from './order.js';

/**
 * Turns listeners off as a 410 does: disabled_reason, listener version bumped. Their waiting
 * deliveries are held afterwards, in the same transaction, as a client's disabling holds them
 * (backlogs.ts: the first window, then the rest a window at a time).
 */
const disableCtes = (ids: string, reasons: string, nowIso: string) => `disabled AS (
    UPDATE listeners l SET enabled = false, disabled_reason = x.reason, updated_at = ${nowIso}, revision = l.revision + 1
    FROM (SELECT DISTINCT ON (listener_id) listener_id, reason
      FROM unnest(${ids}::text[], ${reasons}::text[]) WITH ORDINALITY AS x(listener_id, reason, n) ORDER BY listener_id, n) x
    WHERE l.id = x.listener_id AND l.enabled
    RETURNING l.id, l.project
  ), bumped AS (
    INSERT INTO listener_versions AS v (project, version) SELECT project, 1 FROM disabled GROUP BY project ORDER BY project
    ON CONFLICT (project) DO UPDATE SET version = v.version + 1
  )`;

/*
 * The first statement of a cycle (see queue.ts). The attempts go in (one reported twice is kept
 * once, also when a concurrent transaction stored it meanwhile: ON CONFLICT waits for that
 * transaction and skips the row); each delivery takes
 * its outcome while this dispatcher still holds its lease (so only the lease's owner finishes
 * one, and hands its ordered key on); listeners that answered 410 are turned off (the head a
 * finish promotes for one of them is made head but not due). The gate states of the batch's
 * listeners are read locked in id order, so two dispatchers judging one listener take turns.
 * The projects with due work are found by skipping through deliveries_due (see deliveries.ts).
 * The batch's rows in tables that grow are found through their primary keys: the deliveries
 * named by it as well (`id = ANY(…)`), the attempts by ON CONFLICT. Joined to the batch alone
 * (an anti-join for the attempts, even with `= ANY(…)`), a table of some ten thousand rows is
 * planned as a scan of all of it, hashed, in every cycle. The lease's owner is compared as a
 * column of the batch, not as a constant, which the planner would take for rare and so rescan
 * the batch once per delivery.
 */
const record = statement(`WITH RECURSIVE input AS (
    SELECT r.*, $1::text AS owner FROM unnest($3::text[], $4::int[], $5::bigint[], $6::bigint[], $7::int[], $8::text[], $9::text[], $10::text[],
      $11::bigint[], $12::text[])
      AS r(delivery_id, number, started_at, duration_ms, status_code, error, response_excerpt, status, next_attempt_at, last_error)
  ), recorded AS (
    INSERT INTO attempts (delivery_id, number, started_at, duration_ms, status_code, error, response_excerpt)
    SELECT DISTINCT ON (delivery_id, number) delivery_id, number, started_at, duration_ms, status_code, error, response_excerpt FROM input r
    ON CONFLICT (delivery_id, number) DO NOTHING
    RETURNING delivery_id, number
  ), completed AS (
    UPDATE deliveries d SET status = r.status, attempt_count = r.number, next_attempt_at = r.next_attempt_at,
      lease_owner = NULL, leased_until = NULL, last_error = r.last_error, updated_at = $2
    FROM input r WHERE d.id = ANY($3::text[]) AND d.id = r.delivery_id AND d.lease_owner = r.owner
    RETURNING d.id, d.status, d.gap, d.event_seq
  ), finished AS (
    SELECT * FROM completed WHERE status <> 'pending'
  ), ${disableCtes('$14', '$15', '$13')}, ${handOnCtes('finished', 'disabled', '$2')}, gates AS (
    SELECT ${GATE_COLUMNS} FROM listener_gates WHERE listener_id = ANY($16::text[]) ORDER BY listener_id FOR UPDATE
  ), ${pendingProjectsCte('$17::boolean')}
  SELECT 'recorded' AS kind, delivery_id AS id, number, NULL::text AS data FROM recorded
  UNION ALL SELECT 'disabled', id, NULL, project FROM disabled
  UNION ALL SELECT 'gate', listener_id, NULL, row_to_json(gates)::text FROM gates
  UNION ALL SELECT 'promoted', id, NULL, project FROM promoted WHERE next_attempt_at IS NOT NULL
  UNION ALL SELECT 'due', p.project, NULL, NULL FROM projects p
    WHERE p.project IS NOT NULL AND (SELECT d.next_attempt_at FROM deliveries d
      WHERE d.status = 'pending' AND d.held IS NULL AND d.project = p.project AND ${leaseEnded('$18')}
      ORDER BY d.next_attempt_at LIMIT 1) <= $18`);

/** Listeners the judgement turns off, as a 410 does. */
const disableListeners = statement(`WITH ${disableCtes('$1', '$2', '$3')}
  SELECT id, project FROM disabled`);

/** What the first statement of a cycle found. */
export interface RecordedBatch {
  /** The results whose attempts were new (a try reported twice counts once, like its row). */
  recorded: AttemptResult[];
  /** Listeners a 410 turned off, in the order of the results, with their projects (their backlogs are to be held). */
  disabled: Map<string, string>;
  /** The gate states of the batch's listeners that have one, locked (when judging). */
  states: Map<string, ListenerGateState>;
  /**
   * Projects with due work (when claiming), the projects of heads this statement promoted
   * among them: the statement's own view of the queue cannot see those.
   */
  due: string[];
  /** Held deliveries that became heads, due now. */
  promoted: number;
}

/** The first statement of a cycle (see queue.ts); `claimNow` asks for the projects due then. */
export async function recordBatch(
  c: Conn,
  owner: string,
  results: readonly AttemptResult[],
  now: number,
  judging: boolean,
  claimNow: number | null,
): Promise<RecordedBatch> {
  const off = results.filter((r) => r.disableListener);
  const rows = await c.rows<{ kind: string; id: string; number: number | null; data: string | null }>(record, [
    owner,
    now,
    results.map((r) => r.deliveryId),
    results.map((r) => r.attempt.number),
    results.map((r) => r.attempt.started_at),
    results.map((r) => r.attempt.duration_ms),
    results.map((r) => r.attempt.status_code),
    results.map((r) => r.attempt.error),
    results.map((r) => r.attempt.response_excerpt),
    results.map((r) => r.status),
    results.map((r) => r.nextAttemptAt),
    results.map((r) => r.lastError),
    new Date(now).toISOString(),
    off.map((r) => r.listenerId),
    off.map((r) => r.disableListener),
    judging ? [...new Set(results.map((r) => r.listenerId))] : [],
    claimNow !== null,
    claimNow ?? now,
  ]);
  const recordedKeys = new Set<string>();
  const batch: RecordedBatch = { recorded: [], disabled: new Map(), states: new Map(), due: [], promoted: 0 };
  const turnedOff = new Map<string, string>();
  const promotedIn = new Set<string>();
  for (const row of rows) {
    if (row.kind === 'recorded') recordedKeys.add(`${row.id}\n${row.number}`);
    else if (row.kind === 'disabled') turnedOff.set(row.id, row.data!);
    else if (row.kind === 'gate') {
      const state = toState(JSON.parse(row.data!) as GateRow);
      if (state) batch.states.set(row.id, state);
    }
    else if (row.kind === 'promoted') {
      batch.promoted++;
      if (claimNow !== null && now <= claimNow) promotedIn.add(row.data!);
    } else batch.due.push(row.id);
  }
  for (const project of promotedIn) if (!batch.due.includes(project)) batch.due.push(project);
  batch.due.sort();
  batch.recorded = results.filter((r) => recordedKeys.has(`${r.deliveryId}\n${r.attempt.number}`));
  for (const { listenerId } of off) if (turnedOff.has(listenerId)) batch.disabled.set(listenerId, turnedOff.get(listenerId)!);
  return batch;
}

/** Appends events as appendEvents does, inside the calling transaction. */
export type AppendIn = (c: Conn, project: string, events: NewEvent[], routing: ListenerRouting, now: number) => Promise<unknown>;

/**
 * The gate's judgement of the attempts just recorded: answers the listeners' changed states (to
 * write with the rollups) and the listeners it turned off; appends the relay's own events
 * (after the turning off, so they are routed by it), with one about each listener turned off,
 * by the judgement or by the 410s of `results` that turned off `gone` in recording, and names
 * the projects they went to.
 */
export async function judgeBatch(
  c: Conn,
  { results, recorded, gone }: { results: readonly AttemptResult[]; recorded: readonly AttemptResult[]; gone: readonly string[] },
  states: ReadonlyMap<string, ListenerGateState>,
  judge: RecordJudge,
  now: number,
  append: AppendIn,
): Promise<{ changed: ReadonlyMap<string, ListenerGateState>; disabled: Map<string, string>; appendedTo: string[] }> {
  const verdict = judgeRecorded(judge, recorded, () => states, now);
  // Those the statement turned off (not already off): why, and their projects, in the verdict's order.
  const judgedOff = new Map<string, string>();
  const disabled = new Map<string, string>();
  if (verdict.disable.size) {
    const list = [...verdict.disable];
    const rows = await c.rows<{ id: string; project: string }>(disableListeners, [list.map(([id]) => id), list.map(([, why]) => why), new Date(now).toISOString()]);
    const projectOf = new Map(rows.map((r) => [r.id, r.project]));
    for (const [id, why] of list) {
      const project = projectOf.get(id);
      if (project === undefined) continue;
      judgedOff.set(id, why);
      disabled.set(id, project);
    }
  }
  const byProject = new Map<string, NewEvent[]>();
  for (const { project, envelope } of [...verdict.events, ...turnedOffEvents(judge, results, gone, judgedOff, now)]) {
    // The relay makes the envelope and its unique id, which doubles as the body hash.
    byProject.set(project, [...(byProject.get(project) ?? []), { envelope, original: null, bodyHash: envelope.id }]);
  }
  for (const [project, list] of byProject) await append(c, project, list, judge.routing, now);
  return { changed: verdict.changed, disabled, appendedTo: [...byProject.keys()] };
}
