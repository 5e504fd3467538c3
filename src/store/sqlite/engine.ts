import type { Database, Statement } from 'better-sqlite3';
import type { EventEnvelope } from '../../records/event.js';
import type {
  ClaimedTask,
  EngineStore,
  TaskSummary,
  EngineTx,
  ExecutionRecord,
  InFlightTask,
  TaskRecord,
  WorkbookRecord,
} from '../engine-store.js';
import { takeWithinBytes } from '../page-bytes.js';
import { DEFAULT_LIST_SCAN_LIMIT, StoreConflictError, type FanOut, type ListenerRouting } from '../store.js';
import { executionSieve, walkMayGoOn } from '../rows.js';
import { snapshotOf, statementCache } from './filtered-page.js';
import type { eventQueries } from './events.js';
import type { createWriteBatcher } from './write-batcher.js';

interface WorkbookRow { project: string; name: string; source: string; spec: string; created_at: number; updated_at: number }
type ExecutionRow = Omit<ExecutionRecord, 'spec' | 'input'> & { spec: string; input: string };
type TaskRow = Omit<TaskRecord, 'result' | 'rerun'> & { result: string | null; rerun: number };
type InFlightRow = TaskRow & { owner: string | null; lease_until: number | null };
type ClaimRow = TaskRow & { e_workbook: string; e_workflow: string; e_state: ExecutionRecord['state'] };
type ExecutionHead = Omit<ExecutionRecord, 'spec' | 'input'>;
type Bodies = Pick<ExecutionRecord, 'spec' | 'input'>;

/** Parsed specs and inputs the engine's transactions keep, of the executions they read last. */
const BODIES_KEPT = 16;

const TASK_COLUMNS = `id, project, execution_id, name, action, state, state_info, result, tries, next_run_at,
  action_started_at, rerun, created_at, updated_at`;
const CLAIM_COLUMNS = TASK_COLUMNS.split(',').map((c) => `t.${c.trim()}`).join(', ');
const SUMMARY_COLUMNS = `id, project, execution_id, name, action, state, state_info, tries, next_run_at,
  action_started_at, rerun, created_at, updated_at`;

const toWorkbook = (r: WorkbookRow): WorkbookRecord => ({ ...r, spec: JSON.parse(r.spec) });
const toExecution = (r: ExecutionRow): ExecutionRecord => ({ ...r, spec: JSON.parse(r.spec), input: JSON.parse(r.input) });
const toTask = (r: TaskRow): TaskRecord => ({ ...r, rerun: r.rerun === 1, result: r.result === null ? null : JSON.parse(r.result) });
const toSummary = (r: Omit<TaskRow, 'result'>): TaskSummary => ({ ...r, rerun: r.rerun === 1 });
const taskParams = (t: TaskRecord) => ({
  ...t,
  rerun: t.rerun ? 1 : 0,
  result: t.result === null || t.result === undefined ? null : JSON.stringify(t.result),
});

/**
 * Executions in id (creation) order along executions_project_id, from after the cursor's id;
 * `desc` walks newest first. workbook, workflow and state are checked on at most scanLimit rows
 * of the walk. One statement per order, cursor and filters checked, made on first use.
 */
function executionPages(db: Database) {
  return statementCache((key) => {
    const [order, after, ...sieve] = key.split(',');
    const dir = order === 'desc' ? 'DESC' : 'ASC';
    const walk = `FROM executions INDEXED BY executions_project_id
      WHERE project = @project ${after ? `AND id ${order === 'desc' ? '<' : '>'} @after` : ''} ORDER BY id ${dir}`;
    if (sieve[0] === 'probe') return db.prepare(`SELECT id ${walk} LIMIT 1 OFFSET @scan - 1`).pluck();
    if (!sieve.length) return db.prepare(`SELECT * ${walk} LIMIT @limit`);
    return db.prepare(`SELECT x.* FROM (SELECT id, workbook, workflow, state ${walk} LIMIT @scan) w JOIN executions x ON x.id = w.id
      WHERE ${sieve.map((k) => `w.${k} = @${k}`).join(' AND ')} ORDER BY w.id ${dir} LIMIT @limit`);
  });
}

export interface EngineQueryDeps {
  events: ReturnType<typeof eventQueries>;
  batcher: ReturnType<typeof createWriteBatcher>;
  /** Runs a read, turning "cannot read now" failures into StoreUnavailableError. */
  guard: <T>(fn: () => T) => T;
  /** The project's matcher at its listener version, read in the calling transaction. */
  fanOut: (project: string, routing: ListenerRouting) => FanOut;
}

/** Every engine statement of the SQLite backend, prepared once, as the EngineStore half of the store. */
export function engineStore(db: Database, { events, batcher, guard, fanOut }: EngineQueryDeps): EngineStore {
  const wb = {
    get: db.prepare('SELECT * FROM workbooks WHERE project = ? AND name = ?') as Statement<[string, string], WorkbookRow>,
    page: db.prepare('SELECT * FROM workbooks WHERE project = ? AND name > ? ORDER BY name LIMIT ?') as Statement<[string, string, number], WorkbookRow>,
    insert: db.prepare(`INSERT INTO workbooks (project, name, source, spec, created_at, updated_at)
      VALUES (@project, @name, @source, @spec, @created_at, @updated_at)`),
    update: db.prepare('UPDATE workbooks SET source = ?, spec = ?, updated_at = ? WHERE project = ? AND name = ?'),
    remove: db.prepare('DELETE FROM workbooks WHERE project = ? AND name = ?'),
    running: db
      .prepare(`SELECT 1 FROM executions WHERE project = ? AND workbook = ? AND state IN ('RUNNING', 'PAUSED') LIMIT 1`)
      .pluck() as Statement<[string, string], number>,
  };
  const inSnapshot = snapshotOf(db);
  const ex = {
    get: db.prepare('SELECT * FROM executions WHERE project = ? AND id = ?') as Statement<[string, string], ExecutionRow>,
    // An engine transaction reads the execution's state (each of its tasks' finishes does) apart
    // from its spec and input, which never change: those are parsed once and kept (bodiesOf).
    head: db.prepare(`SELECT id, project, workbook, workflow, state, state_info, pending_operation, created_at, updated_at
      FROM executions WHERE project = ? AND id = ?`) as Statement<[string, string], ExecutionHead>,
    bodies: db.prepare('SELECT spec, input FROM executions WHERE id = ?') as Statement<[string], { spec: string; input: string }>,
    page: executionPages(db),
    insert: db.prepare(`INSERT INTO executions (id, project, workbook, workflow, spec, input, state, state_info, pending_operation,
        created_at, updated_at)
      VALUES (@id, @project, @workbook, @workflow, @spec, @input, @state, @state_info, @pending_operation, @created_at, @updated_at)`),
    save: db.prepare(`UPDATE executions SET state = @state, state_info = @state_info, pending_operation = @pending_operation,
      updated_at = @updated_at WHERE id = @id`),
  };
  const tk = {
    get: db.prepare(`SELECT ${TASK_COLUMNS} FROM task_executions WHERE project = ? AND id = ?`) as Statement<[string, string], TaskRow>,
    summaries: db.prepare(`SELECT ${SUMMARY_COLUMNS} FROM task_executions WHERE project = ? AND execution_id = ? ORDER BY id`) as Statement<[string, string], Omit<TaskRow, 'result'>>,
    count: db.prepare('SELECT COUNT(*) FROM task_executions WHERE project = ? AND execution_id = ?').pluck() as Statement<[string, string], number>,
    running: db.prepare(`SELECT 1 FROM task_executions WHERE project = ? AND execution_id = ? AND state = 'RUNNING' LIMIT 1`).pluck() as Statement<[string, string], number>,
    latestResult: db.prepare(`SELECT result FROM task_executions WHERE project = ? AND execution_id = ? AND name = ? AND state = 'SUCCESS'
      ORDER BY id DESC LIMIT 1`) as Statement<[string, string, string], { result: string | null }>,
    page: db.prepare(`SELECT ${TASK_COLUMNS} FROM task_executions WHERE project = ? AND execution_id = ? AND id > ?
      ORDER BY id LIMIT ?`) as Statement<[string, string, string, number], TaskRow>,
    insert: db.prepare(`INSERT INTO task_executions (${TASK_COLUMNS}) VALUES (@id, @project, @execution_id, @name, @action,
      @state, @state_info, @result, @tries, @next_run_at, @action_started_at, @rerun, @created_at, @updated_at)`),
    save: db.prepare(`UPDATE task_executions SET state = @state, state_info = @state_info, result = @result, tries = @tries,
      next_run_at = @next_run_at, action_started_at = @action_started_at, rerun = @rerun, updated_at = @updated_at WHERE id = @id`),
    due: db.prepare(`SELECT ${CLAIM_COLUMNS}, e.workbook AS e_workbook, e.workflow AS e_workflow, e.state AS e_state
      FROM task_executions t JOIN executions e ON e.id = t.execution_id
      WHERE t.state = 'RUNNING' AND t.next_run_at <= ? AND e.state = 'RUNNING'
      ORDER BY t.next_run_at LIMIT ?`) as Statement<[number, number], ClaimRow>,
    // A new attempt counts a try; a wait that ends (std.sleep) keeps its start and its try.
    // The claim is the task's lease: `owner` runs it while lease_until is ahead (renewTaskLeases).
    claim: db.prepare(`UPDATE task_executions SET tries = tries + (action_started_at IS NULL),
        action_started_at = COALESCE(action_started_at, @now), next_run_at = NULL, updated_at = @now,
        owner = @owner, lease_until = @lease_until
      WHERE id = @id RETURNING tries, action_started_at`) as Statement<Record<string, unknown>, { tries: number; action_started_at: number }>,
    nextDue: db.prepare(`SELECT MIN(t.next_run_at) FROM task_executions t JOIN executions e ON e.id = t.execution_id
      WHERE t.state = 'RUNNING' AND t.next_run_at IS NOT NULL AND e.state = 'RUNNING'`).pluck() as Statement<[], number | null>,
    // Both read only in-flight rows, through task_executions_runnable at next_run_at IS NULL;
    // they are few, so the owner is a filter and the order a small sort.
    inFlight: db.prepare(`SELECT ${TASK_COLUMNS}, owner, lease_until FROM task_executions
      WHERE state = 'RUNNING' AND next_run_at IS NULL AND action_started_at IS NOT NULL
      ORDER BY action_started_at`) as Statement<[], InFlightRow>,
    renew: db.prepare(`UPDATE task_executions SET lease_until = max(coalesce(lease_until, 0), @until)
      WHERE state = 'RUNNING' AND next_run_at IS NULL AND action_started_at IS NOT NULL AND owner = @owner`),
  };

  const kept = new Map<string, Bodies>();
  /** The execution's spec and input, parsed, from those kept when there (most recently used last). */
  function bodiesOf(id: string): Bodies {
    let bodies = kept.get(id);
    if (bodies) kept.delete(id);
    else {
      const row = ex.bodies.get(id)!;
      bodies = { spec: JSON.parse(row.spec), input: JSON.parse(row.input) as Record<string, unknown> };
      if (kept.size >= BODIES_KEPT) kept.delete(kept.keys().next().value!);
    }
    kept.set(id, bodies);
    return bodies;
  }

  function transactionFor(project: string, routing: ListenerRouting, now: number, count: { events: number; deliveries: number }): EngineTx {
    // Read at the first event, still inside this transaction: a change that appends none
    // neither reads the listener version nor compiles.
    let route: FanOut | null = null;
    return {
      now,
      execution: (id) => {
        const head = ex.head.get(project, id);
        return head ? { ...head, ...bodiesOf(id) } : null;
      },
      task: (id) => {
        const row = tk.get.get(project, id);
        return row ? toTask(row) : null;
      },
      taskSummaries: (executionId) => tk.summaries.all(project, executionId).map(toSummary),
      hasRunningTask: (executionId) => tk.running.get(project, executionId) !== undefined,
      countTasks: (executionId) => tk.count.get(project, executionId) ?? 0,
      insertExecution: (e) => {
        ex.insert.run({ ...e, project, spec: JSON.stringify(e.spec), input: JSON.stringify(e.input) });
      },
      saveExecution: (e) => {
        ex.save.run({ id: e.id, state: e.state, state_info: e.state_info, pending_operation: e.pending_operation, updated_at: now });
      },
      insertTask: (t) => {
        tk.insert.run(taskParams({ ...t, project }));
      },
      saveTask: (t) => {
        tk.save.run({ ...taskParams(t), updated_at: now });
      },
      appendEvent: (envelope: EventEnvelope) => {
        // The envelope id is relay-made and unique, so it doubles as the body hash.
        route ??= fanOut(project, routing);
        const appended = events.append(project, { envelope, original: null, bodyHash: envelope.id }, route, now);
        count.events++;
        count.deliveries += appended.deliveries;
      },
    };
  }

  return {
    createWorkbook(w) {
      return batcher.run(() => {
        if (wb.get.get(w.project, w.name)) throw new StoreConflictError(`workbook ${w.name} already exists`);
        wb.insert.run({ ...w, spec: JSON.stringify(w.spec) });
      });
    },
    async getWorkbook(project, name) {
      const row = guard(() => wb.get.get(project, name));
      return row ? toWorkbook(row) : null;
    },
    async listWorkbooks(project, q) {
      const found = guard(() => takeWithinBytes(wb.page.iterate(project, q.after ?? '', q.limit), (row) => row.source.length + row.spec.length));
      const rows = found.rows.map(toWorkbook);
      return { rows, resume: found.cut ? rows[rows.length - 1].name : null };
    },
    updateWorkbook(project, name, source, spec, updatedAt) {
      return batcher.run(() => {
        if (wb.update.run(source, JSON.stringify(spec), updatedAt, project, name).changes === 0) return null;
        return toWorkbook(wb.get.get(project, name)!);
      });
    },
    deleteWorkbook(project, name) {
      return batcher.run(() => {
        if (!wb.get.get(project, name)) return 'not_found' as const;
        if (wb.running.get(project, name)) return 'executions_running' as const;
        wb.remove.run(project, name);
        return 'deleted' as const;
      });
    },

    async getExecution(project, id) {
      const row = guard(() => ex.get.get(project, id));
      return row ? toExecution(row) : null;
    },
    async listExecutions(project, q) {
      const sieve = executionSieve(q);
      const head = [q.order ?? 'asc', q.after ? 'after' : ''];
      const walked = { project, ...(q.after && { after: q.after }) };
      const scan = q.scanLimit ?? DEFAULT_LIST_SCAN_LIMIT;
      const checked = Object.fromEntries(sieve.map((k) => [k, q[k]]));
      return guard(() =>
        inSnapshot(() => {
          const walk = ex.page([...head, ...sieve].join(',')).iterate({ ...walked, ...checked, limit: q.limit, ...(sieve.length && { scan }) });
          const found = takeWithinBytes(walk as Iterable<ExecutionRow>, (row) => row.spec.length + row.input.length);
          const rows = found.rows.map(toExecution);
          if (found.cut) return { rows, resume: rows[rows.length - 1].id };
          if (!walkMayGoOn(rows.length, q, sieve.length > 0)) return { rows, resume: null };
          return { rows, resume: (ex.page([...head, 'probe'].join(',')).get({ ...walked, scan }) as string | undefined) ?? null };
        }),
      );
    },
    async getTask(project, id) {
      const row = guard(() => tk.get.get(project, id));
      return row ? toTask(row) : null;
    },
    async listTasks(project, executionId, q) {
      const found = guard(() => takeWithinBytes(tk.page.iterate(project, executionId, q.after ?? '', q.limit), (row) => row.result?.length ?? 0));
      const rows = found.rows.map(toTask);
      return { rows, resume: found.cut ? rows[rows.length - 1].id : null };
    },
    async latestResults(project, executionId, names) {
      const results = new Map<string, unknown>();
      for (const name of names) {
        const row = guard(() => tk.latestResult.get(project, executionId, name));
        if (row) results.set(name, row.result === null ? null : JSON.parse(row.result));
      }
      return results;
    },

    // `scope` tells a backend that cannot read synchronously what to load and lock before `fn`
    // runs. Here `fn` reads through the one connection inside the write transaction, which no
    // other writer can enter, so nothing needs loading or locking first: the scope is unused.
    engineTransaction(project, _scope, routing, fn) {
      return batcher.run(() => {
        const count = { events: 0, deliveries: 0 };
        const value = fn(transactionFor(project, routing, Date.now(), count));
        return { value, ...count };
      });
    },
    claimRunnableTasks({ owner, now, limit, leaseMs }) {
      return batcher.run(() =>
        tk.due.all(now, limit).map((row): ClaimedTask => {
          const { e_workbook, e_workflow, e_state, ...task } = row;
          const claimed = tk.claim.get({ id: task.id, now, owner, lease_until: now + leaseMs })!;
          return {
            ...toTask(task),
            ...claimed,
            next_run_at: null,
            updated_at: now,
            execution: { workbook: e_workbook, workflow: e_workflow, ...bodiesOf(task.execution_id), state: e_state },
          };
        }),
      );
    },
    async nextTaskDueAt() {
      return guard(() => tk.nextDue.get() ?? null);
    },
    renewTaskLeases(owner, until) {
      return batcher.run(() => tk.renew.run({ owner, until }).changes);
    },
    async listInFlightTasks() {
      return guard(() => tk.inFlight.all()).map(({ owner, lease_until, ...row }): InFlightTask => ({ ...toTask(row), owner, lease_until }));
    },
  };
}
