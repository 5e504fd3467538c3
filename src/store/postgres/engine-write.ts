import type { ExecutionRecord, TaskRecord } from '../../records/states.js';
import { statement, type Conn } from './database.js';
import { EXECUTION_COLUMNS, TASK_COLUMNS } from './engine-load.js';
import type { DueNotice } from './notify.js';
import { outboxCtes, outboxResult, outboxValues, type OutboxCounts, type OutboxEvent } from './outbox.js';

/*
 * What an engine transaction changed, written by its last statement (sent with its COMMIT):
 * new executions and tasks, saved ones (each row once, with its final values), `changes` of
 * every execution whose row or tasks changed (see engine-load.ts), the sequence counters moved
 * on, the events and their deliveries. A counter that no one had when it was loaded may have
 * been created meanwhile: one that does not end where the transaction's own count did fails
 * the statement with raise_retry, and the transaction runs again with it loaded and locked.
 * Updated rows are named by primary key as well as joined (`id = ANY(…)`; see record.ts).
 */
const writeChanges = statement(`WITH new_executions AS (
    INSERT INTO executions (${EXECUTION_COLUMNS})
    SELECT x.id, $1, x.workbook, x.workflow, x.spec, x.input, x.state, x.state_info, x.pending_operation, x.created_at, x.updated_at
    FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[], $12::bigint[])
      AS x(id, workbook, workflow, spec, input, state, state_info, pending_operation, created_at, updated_at)
  ), changed_executions AS (
    UPDATE executions e SET changes = e.changes + 1,
      state = CASE WHEN x.saved THEN x.state ELSE e.state END,
      state_info = CASE WHEN x.saved THEN x.state_info ELSE e.state_info END,
      pending_operation = CASE WHEN x.saved THEN x.pending_operation ELSE e.pending_operation END,
      updated_at = CASE WHEN x.saved THEN $2 ELSE e.updated_at END
    FROM unnest($13::text[], $14::boolean[], $15::text[], $16::text[], $17::text[]) AS x(id, saved, state, state_info, pending_operation)
    WHERE e.id = x.id AND e.id = ANY($13::text[])
  ), new_tasks AS (
    INSERT INTO task_executions (${TASK_COLUMNS})
    SELECT x.id, $1, x.execution_id, x.name, x.action, x.state, x.state_info, x.result, x.tries, x.next_run_at,
      x.action_started_at, x.rerun, x.created_at, x.updated_at
    FROM unnest($18::text[], $19::text[], $20::text[], $21::text[], $22::text[], $23::text[], $24::text[], $25::int[],
        $26::bigint[], $27::bigint[], $28::boolean[], $29::bigint[], $30::bigint[])
      AS x(id, execution_id, name, action, state, state_info, result, tries, next_run_at, action_started_at, rerun, created_at, updated_at)
  ), saved_tasks AS (
    UPDATE task_executions t SET state = x.state, state_info = x.state_info, result = x.result, tries = x.tries,
      next_run_at = x.next_run_at, action_started_at = x.action_started_at, rerun = x.rerun, updated_at = $2
    FROM unnest($31::text[], $32::text[], $33::text[], $34::text[], $35::int[], $36::bigint[], $37::bigint[], $38::boolean[])
      AS x(id, state, state_info, result, tries, next_run_at, action_started_at, rerun)
    WHERE t.id = x.id AND t.id = ANY($31::text[])
  ), counters AS (
    INSERT INTO execution_sequences AS s (project, execution_id, last_sequence)
    SELECT $1, x.execution_id, x.added FROM unnest($39::text[], $40::bigint[]) AS x(execution_id, added) ORDER BY x.execution_id
    ON CONFLICT (project, execution_id) DO UPDATE SET last_sequence = s.last_sequence + excluded.last_sequence
    RETURNING execution_id, last_sequence
  ), ${outboxCtes(42)}
  SELECT ${outboxResult},
    CASE WHEN EXISTS (SELECT 1 FROM counters c JOIN unnest($39::text[], $41::bigint[]) AS x(execution_id, last_sequence)
        ON x.execution_id = c.execution_id WHERE c.last_sequence <> x.last_sequence)
      THEN raise_retry('a sequence counter was created by a concurrent transaction') END AS counted`);

/** An engine transaction's buffered changes. */
export interface EngineChanges {
  newExecutions: ExecutionRecord[];
  savedExecutions: ExecutionRecord[];
  newTasks: TaskRecord[];
  savedTasks: TaskRecord[];
  /** Events appended per execution, and the last sequence each execution's counter must reach. */
  counters: Array<{ executionId: string; added: number; last: number }>;
  outbox: OutboxEvent[];
}

const resultColumn = (result: unknown) => (result === null || result === undefined ? null : JSON.stringify(result));
const byId = <T extends { id: string }>(a: T, b: T) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** Writes the changes and commits; answers how many deliveries were made. */
export async function writeAndCommit(c: Conn, project: string, now: number, w: EngineChanges, notice: DueNotice): Promise<number> {
  const fresh = new Set(w.newExecutions.map((e) => e.id));
  const saved = new Map(w.savedExecutions.map((e) => [e.id, e]));
  // Every execution (other than a new one) whose row or tasks change.
  const touched = new Set([...saved.keys(), ...w.newTasks.map((t) => t.execution_id), ...w.savedTasks.map((t) => t.execution_id)]);
  const changed = [...touched].filter((id) => !fresh.has(id)).sort();
  const ce = changed.map((id) => saved.get(id) ?? null);
  const ne = w.newExecutions;
  const nt = w.newTasks;
  // In id order, as lease renewals lock them.
  const st = [...w.savedTasks].sort(byId);
  const [{ deliveries, due }] = await c.commitWith<OutboxCounts>(writeChanges, [
    project, now,
    ne.map((e) => e.id), ne.map((e) => e.workbook), ne.map((e) => e.workflow), ne.map((e) => JSON.stringify(e.spec)),
    ne.map((e) => JSON.stringify(e.input)), ne.map((e) => e.state), ne.map((e) => e.state_info), ne.map((e) => e.pending_operation),
    ne.map((e) => e.created_at), ne.map((e) => e.updated_at),
    changed, ce.map((e) => e !== null), ce.map((e) => e?.state ?? null), ce.map((e) => e?.state_info ?? null),
    ce.map((e) => e?.pending_operation ?? null),
    nt.map((t) => t.id), nt.map((t) => t.execution_id), nt.map((t) => t.name), nt.map((t) => t.action), nt.map((t) => t.state),
    nt.map((t) => t.state_info), nt.map((t) => resultColumn(t.result)), nt.map((t) => t.tries), nt.map((t) => t.next_run_at),
    nt.map((t) => t.action_started_at), nt.map((t) => t.rerun), nt.map((t) => t.created_at), nt.map((t) => t.updated_at),
    st.map((t) => t.id), st.map((t) => t.state), st.map((t) => t.state_info), st.map((t) => resultColumn(t.result)),
    st.map((t) => t.tries), st.map((t) => t.next_run_at), st.map((t) => t.action_started_at), st.map((t) => t.rerun),
    w.counters.map((x) => x.executionId), w.counters.map((x) => x.added), w.counters.map((x) => x.last),
    ...(await outboxValues(c, project, w.outbox, now)),
  ]);
  if (due > 0) notice.afterCommit(c);
  return deliveries;
}
