import { claimedExecutions, type ClaimedTask, type EngineStore, type ExecutionRecord, type InFlightTask, type WorkbookRecord } from '../engine-store.js';
import { pageOfSql, withinBytesSql, type PageColumns } from '../page-bytes.js';
import { DEFAULT_LIST_SCAN_LIMIT, StoreConflictError } from '../store.js';
import { executionSieve, walkMayGoOn } from '../rows.js';
import { statement, type Database } from './database.js';
import { EXECUTION_COLUMNS, TASK_COLUMNS, toExecution, toTask, type ExecutionRow, type TaskRow } from './engine-load.js';
import { engineTransactions } from './engine-tx.js';
import { namedStatements } from './filtered-page.js';
import type { DueNotice } from './notify.js';

interface WorkbookRow { project: string; name: string; source: string; spec: string; created_at: number; updated_at: number }
type ClaimRow = TaskRow & { e_workbook: string; e_workflow: string; e_spec: string; e_input: string; e_state: ExecutionRecord['state']; due_at: number };

const toWorkbook = (r: WorkbookRow): WorkbookRecord => ({ ...r, spec: JSON.parse(r.spec) });
const EXECUTION_COLUMNS_OF_X = EXECUTION_COLUMNS.split(',').map((c) => `x.${c.trim()}`).join(', ');
const TASK_COLUMNS_OF_T = TASK_COLUMNS.split(',').map((c) => `t.${c.trim()}`).join(', ');

const wb = {
  get: statement('SELECT * FROM workbooks WHERE project = $1 AND name = $2'),
  lock: statement('SELECT 1 FROM workbooks WHERE project = $1 AND name = $2 FOR UPDATE'),
  page: statement(withinBytesSql('SELECT * FROM workbooks WHERE project = $1 AND name > $2 ORDER BY name LIMIT $3', 'octet_length(source) + octet_length(spec)', 'name')),
  insert: statement(`INSERT INTO workbooks (project, name, source, spec, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (project, name) DO NOTHING`),
  update: statement('UPDATE workbooks SET source = $3, spec = $4, updated_at = $5 WHERE project = $1 AND name = $2 RETURNING *'),
  remove: statement('DELETE FROM workbooks WHERE project = $1 AND name = $2'),
  running: statement(`SELECT 1 FROM executions WHERE project = $1 AND workbook = $2 AND state IN ('RUNNING', 'PAUSED') LIMIT 1`),
};

// Executions in id (creation) order along executions_project_id (sorts off around it, so the
// planner walks the index rather than sort what it finds); workbook, workflow and state are
// checked on at most scanLimit rows of the walk. One statement per order, cursor and filters
// checked, made on first use.
const executionPage = namedStatements((key) => {
  const [order, after, ...sieve] = key.split(',');
  const dir = order === 'desc' ? 'DESC' : 'ASC';
  const walk = `FROM executions WHERE project = @project ${after ? `AND id ${order === 'desc' ? '<' : '>'} @after` : ''} ORDER BY id ${dir}`;
  const walked = ['project', ...(after ? ['after'] : [])];
  if (sieve[0] === 'probe') return { text: `SELECT id ${walk} LIMIT 1 OFFSET @scan - 1`, names: [...walked, 'scan'] };
  // The page's rows, as many as fit in PAGE_BYTES of specs and inputs (see withinBytesSql).
  const within = (page: string) => withinBytesSql(page, 'octet_length(spec) + octet_length(input)', `id ${dir}`);
  if (!sieve.length) return { text: within(`SELECT ${EXECUTION_COLUMNS} ${walk} LIMIT @limit`), names: [...walked, 'limit'] };
  return {
    text: within(`SELECT ${EXECUTION_COLUMNS_OF_X} FROM (SELECT id, workbook, workflow, state ${walk} LIMIT @scan) w JOIN executions x ON x.id = w.id
      WHERE ${sieve.map((k) => `w.${k} = @${k}`).join(' AND ')} ORDER BY w.id ${dir} LIMIT @limit`),
    names: [...walked, 'scan', ...sieve, 'limit'],
  };
});
/** A list's reads, its page and its probe, in one snapshot, and the index's order rather than a sort. */
const listSettings = 'SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET LOCAL enable_sort = off';

const ex = {
  get: statement(`SELECT ${EXECUTION_COLUMNS} FROM executions WHERE project = $1 AND id = $2`),
};

const tk = {
  get: statement(`SELECT ${TASK_COLUMNS} FROM task_executions WHERE project = $1 AND id = $2`),
  page: statement(withinBytesSql(`SELECT ${TASK_COLUMNS} FROM task_executions WHERE project = $1 AND execution_id = $2 AND id > $3
    ORDER BY id LIMIT $4`, 'coalesce(octet_length(result), 0)', 'id')),
  latestResults: statement(`SELECT DISTINCT ON (name) name, result FROM task_executions
    WHERE project = $1 AND execution_id = $2 AND name = ANY($3::text[]) AND state = 'SUCCESS'
    ORDER BY name, id DESC`),
  /*
   * Due RUNNING tasks of RUNNING executions, each taken by one runner: a task another runner is
   * claiming is skipped, and so is one whose execution an engine transaction holds (it may be
   * cancelling it). The claim holds the execution's row and counts a change on it (see
   * engine-load.ts), so no engine transaction reads its tasks as they were before the claim. A
   * new attempt counts a try; a wait that ends (std.sleep) keeps its start and its try. The
   * claim is the task's lease: `owner` runs it while lease_until is ahead (renewTaskLeases).
   */
  claim: statement(`WITH due AS (
      SELECT t.id, t.execution_id, t.next_run_at FROM task_executions t JOIN executions e ON e.id = t.execution_id
      WHERE t.state = 'RUNNING' AND t.next_run_at <= $1 AND e.state = 'RUNNING'
      ORDER BY t.next_run_at LIMIT $2
      FOR UPDATE OF t SKIP LOCKED FOR NO KEY UPDATE OF e SKIP LOCKED
    ), touched AS (
      UPDATE executions SET changes = changes + 1 WHERE id IN (SELECT execution_id FROM due)
    )
    UPDATE task_executions t SET tries = t.tries + (t.action_started_at IS NULL)::int,
      action_started_at = coalesce(t.action_started_at, $1), next_run_at = NULL, updated_at = $1,
      owner = $3, lease_until = $1 + $4
    FROM due d JOIN executions e ON e.id = d.execution_id
    WHERE t.id = d.id
    RETURNING ${TASK_COLUMNS_OF_T}, e.workbook AS e_workbook, e.workflow AS e_workflow, e.spec AS e_spec, e.input AS e_input,
      e.state AS e_state, d.next_run_at AS due_at`),
  nextDue: statement(`SELECT min(t.next_run_at) AS at FROM task_executions t JOIN executions e ON e.id = t.execution_id
    WHERE t.state = 'RUNNING' AND t.next_run_at IS NOT NULL AND e.state = 'RUNNING'`),
  // Both read only in-flight rows, through task_executions_in_flight; they are few, so the
  // owner is a filter.
  inFlight: statement(`SELECT ${TASK_COLUMNS}, owner, lease_until FROM task_executions
    WHERE state = 'RUNNING' AND next_run_at IS NULL AND action_started_at IS NOT NULL
    ORDER BY action_started_at`),
  // Rows are locked in id order, as an engine transaction writes its tasks, so the two never
  // wait for each other in a circle.
  renew: statement(`UPDATE task_executions t SET lease_until = greatest(coalesce(t.lease_until, 0), $2)
    FROM (SELECT id FROM task_executions
      WHERE state = 'RUNNING' AND next_run_at IS NULL AND action_started_at IS NOT NULL AND owner = $1
      ORDER BY id FOR UPDATE) mine
    WHERE t.id = mine.id`),
};

/** Every engine statement of the PostgreSQL backend, as the EngineStore half of the store. */
export function engineStore(db: Database, notice: DueNotice): EngineStore {
  return {
    async createWorkbook(w) {
      const inserted = await db.count(wb.insert, [w.project, w.name, w.source, JSON.stringify(w.spec), w.created_at, w.updated_at]);
      if (inserted === 0) throw new StoreConflictError(`workbook ${w.name} already exists`);
    },
    async getWorkbook(project, name) {
      const [row] = await db.rows<WorkbookRow>(wb.get, [project, name]);
      return row ? toWorkbook(row) : null;
    },
    async listWorkbooks(project, q) {
      const found = pageOfSql(await db.rows<WorkbookRow & PageColumns>(wb.page, [project, q.after ?? '', q.limit]));
      const rows = found.rows.map(toWorkbook);
      return { rows, resume: found.cut ? rows[rows.length - 1].name : null };
    },
    async updateWorkbook(project, name, source, spec, updatedAt) {
      const [row] = await db.rows<WorkbookRow>(wb.update, [project, name, source, JSON.stringify(spec), updatedAt]);
      return row ? toWorkbook(row) : null;
    },
    deleteWorkbook(project, name) {
      return db.transaction(async (c) => {
        if ((await c.rows(wb.lock, [project, name])).length === 0) return 'not_found' as const;
        if ((await c.rows(wb.running, [project, name])).length > 0) return 'executions_running' as const;
        await c.count(wb.remove, [project, name]);
        return 'deleted' as const;
      });
    },

    async getExecution(project, id) {
      const [row] = await db.rows<ExecutionRow>(ex.get, [project, id]);
      return row ? toExecution(row) : null;
    },
    async listExecutions(project, q) {
      const sieve = executionSieve(q);
      const head = [q.order ?? 'asc', q.after ? 'after' : ''];
      const params = { ...q, project, scan: q.scanLimit ?? DEFAULT_LIST_SCAN_LIMIT };
      return db.transaction(async (c) => {
        await c.count(listSettings, []);
        const page = executionPage([...head, ...sieve].join(','), params);
        const found = pageOfSql(await c.rows<ExecutionRow & PageColumns>(page.statement, page.values));
        const rows = found.rows.map(toExecution);
        if (found.cut) return { rows, resume: rows[rows.length - 1].id };
        if (!walkMayGoOn(rows.length, q, sieve.length > 0)) return { rows, resume: null };
        const probe = executionPage([...head, 'probe'].join(','), params);
        const [end] = await c.rows<{ id: string }>(probe.statement, probe.values);
        return { rows, resume: end?.id ?? null };
      });
    },
    async getTask(project, id) {
      const [row] = await db.rows<TaskRow>(tk.get, [project, id]);
      return row ? toTask(row) : null;
    },
    async listTasks(project, executionId, q) {
      const found = pageOfSql(await db.rows<TaskRow & PageColumns>(tk.page, [project, executionId, q.after ?? '', q.limit]));
      const rows = found.rows.map(toTask);
      return { rows, resume: found.cut ? rows[rows.length - 1].id : null };
    },
    async latestResults(project, executionId, names) {
      const results = new Map<string, unknown>();
      if (names.length === 0) return results;
      for (const row of await db.rows<{ name: string; result: string | null }>(tk.latestResults, [project, executionId, names])) {
        results.set(row.name, row.result === null ? null : JSON.parse(row.result));
      }
      return results;
    },

    engineTransaction: engineTransactions(db, notice),

    // One statement, so one transaction of its own.
    async claimRunnableTasks({ owner, now, limit, leaseMs }) {
      const rows = await db.rows<ClaimRow>(tk.claim, [now, limit, owner, leaseMs]);
      rows.sort((a, b) => a.due_at - b.due_at || (a.id < b.id ? -1 : 1));
      const bodiesOf = claimedExecutions();
      return rows.map(({ e_workbook, e_workflow, e_spec, e_input, e_state, due_at: _d, ...task }): ClaimedTask => ({
        ...toTask(task),
        execution: { workbook: e_workbook, workflow: e_workflow, ...bodiesOf(task.execution_id, e_spec, e_input), state: e_state },
      }));
    },
    async renewTaskLeases(owner, until) {
      return db.count(tk.renew, [owner, until]);
    },
    async nextTaskDueAt() {
      const [row] = await db.rows<{ at: number | null }>(tk.nextDue);
      return row?.at ?? null;
    },
    async listInFlightTasks() {
      const rows = await db.rows<TaskRow & { owner: string | null; lease_until: number | null }>(tk.inFlight);
      return rows.map(({ owner, lease_until, ...row }): InFlightTask => ({ ...toTask(row), owner, lease_until }));
    },
  };
}
