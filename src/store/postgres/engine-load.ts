import type { ExecutionRecord, TaskRecord } from '../../records/states.js';
import type { EngineScope } from '../engine-store.js';
import { statement, type Conn } from './database.js';

type ExecutionRow = Omit<ExecutionRecord, 'spec' | 'input'> & { spec: string; input: string };
type TaskRow = Omit<TaskRecord, 'result'> & { result: string | null };

export const TASK_COLUMNS = `id, project, execution_id, name, action, state, state_info, result, tries, next_run_at,
  action_started_at, rerun, created_at, updated_at`;
export const EXECUTION_COLUMNS = 'id, project, workbook, workflow, spec, input, state, state_info, pending_operation, created_at, updated_at';

export const toExecution = (r: ExecutionRow): ExecutionRecord => ({ ...r, spec: JSON.parse(r.spec), input: JSON.parse(r.input) });
export const toTask = (r: TaskRow): TaskRecord => ({ ...r, result: r.result === null ? null : JSON.parse(r.result) });
export type { ExecutionRow, TaskRow };

/*
 * An engine transaction's reads, in one statement: the execution (by its id or a task's)
 * locked FOR UPDATE, the sequence counters of the executions whose events it may append
 * locked after it (as an append locks them), its tasks, and the project's listener version.
 *
 * The tasks are read in the statement's snapshot, taken before the lock was granted. Every
 * transaction that changes an execution or its tasks holds its row locked (engine transactions
 * FOR UPDATE, the runner's claim FOR NO KEY UPDATE) and adds one to its `changes`; so when the
 * locked row, which is the latest version whatever the snapshot, has the `changes` the snapshot
 * saw, no such transaction committed after the snapshot, and the tasks read are the tasks as
 * they stay until commit. Otherwise (the lock was waited for) they are read again.
 */
const loadScope = statement(`WITH locked AS (
    SELECT ${EXECUTION_COLUMNS}, changes FROM executions
    WHERE project = $1 AND id = coalesce($2::text, (SELECT execution_id FROM task_executions WHERE project = $1 AND id = $3::text))
    FOR UPDATE
  ), counters AS (
    SELECT execution_id, last_sequence FROM execution_sequences
    WHERE project = $1 AND (execution_id = ANY($4::text[]) OR execution_id IN (SELECT id FROM locked))
    ORDER BY execution_id FOR UPDATE
  )
  SELECT l.*,
    (SELECT e.changes FROM executions e WHERE e.id = l.id) AS seen_changes,
    (SELECT coalesce(json_agg(t ORDER BY t.id), '[]')::text
      FROM (SELECT ${TASK_COLUMNS} FROM task_executions WHERE project = $1 AND execution_id = l.id) t) AS tasks,
    coalesce((SELECT version FROM listener_versions WHERE project = $1), 0) AS listener_version,
    (SELECT coalesce(array_agg(execution_id), '{}') FROM counters) AS counter_ids,
    (SELECT coalesce(array_agg(last_sequence), '{}') FROM counters) AS counter_values
  FROM (SELECT 1) one LEFT JOIN locked l ON true`);

const tasksOf = statement(`SELECT ${TASK_COLUMNS} FROM task_executions WHERE project = $1 AND execution_id = $2 ORDER BY id`);

export interface Loaded {
  executions: Map<string, ExecutionRecord>;
  tasks: Map<string, TaskRecord>;
  /** Last sequence per execution, as locked; executions absent here start at 0. */
  counters: Map<string, number>;
  listenerVersion: number;
}

type ScopeRow = Partial<ExecutionRow> & {
  changes: number | null;
  seen_changes: number | null;
  tasks: string;
  listener_version: number;
  counter_ids: string[];
  counter_values: number[];
};

/** Loads what `scope` names (see EngineScope), locked; `counterIds` are more counters to lock. */
export async function loadEngineScope(c: Conn, project: string, scope: EngineScope, counterIds: ReadonlySet<string>): Promise<Loaded> {
  const [row] = await c.rows<ScopeRow>(loadScope, [
    project,
    'executionId' in scope ? scope.executionId : null,
    'taskId' in scope ? scope.taskId : null,
    [...counterIds],
  ]);
  const { changes, seen_changes, tasks, listener_version, counter_ids, counter_values, ...execution } = row;
  const loaded: Loaded = { executions: new Map(), tasks: new Map(), counters: new Map(), listenerVersion: listener_version };
  counter_ids.forEach((id, i) => loaded.counters.set(id, counter_values[i]));
  if (execution.id == null) return loaded;
  loaded.executions.set(execution.id, toExecution(execution as ExecutionRow));
  const taskRows = changes === seen_changes ? (JSON.parse(tasks) as TaskRow[]) : await c.rows<TaskRow>(tasksOf, [project, execution.id]);
  for (const t of taskRows) loaded.tasks.set(t.id, toTask(t));
  return loaded;
}
