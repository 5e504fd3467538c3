import type { EventEnvelope } from '../records/event.js';
import type { ExecutionRecord, ExecutionState, TaskRecord, TaskSummary, WorkbookRecord } from '../records/states.js';
import type { ListenerRouting, ListPage, PageQuery, ScannedPageQuery } from './store.js';

export type { ExecutionOperation, ExecutionRecord, ExecutionState, TaskRecord, TaskState, TaskSummary, WorkbookRecord } from '../records/states.js';
export { EXECUTION_STATES, TASK_STATES } from '../records/states.js';

/** A task the runner claimed, with what running it needs from its execution. */
export interface ClaimedTask extends TaskRecord {
  /** Tasks of one execution claimed together share its spec and input (read them, never change them). */
  execution: Pick<ExecutionRecord, 'workbook' | 'workflow' | 'spec' | 'input' | 'state'>;
}

/**
 * An execution's spec and input, parsed once per execution however many of its tasks one claim
 * takes (a workflow of a thousand parallel tasks would parse them a thousand times).
 */
export function claimedExecutions(): (id: string, spec: string, input: string) => Pick<ExecutionRecord, 'spec' | 'input'> {
  const parsed = new Map<string, Pick<ExecutionRecord, 'spec' | 'input'>>();
  return (id, spec, input) => {
    let bodies = parsed.get(id);
    if (!bodies) parsed.set(id, (bodies = { spec: JSON.parse(spec), input: JSON.parse(input) as Record<string, unknown> }));
    return bodies;
  };
}

/** A RUNNING task whose action started and has not committed an outcome, with who runs it. */
export interface InFlightTask extends TaskRecord {
  /** The runner that claimed it (`place:pid:random`, see src/owner.ts); null for rows from before owners. */
  owner: string | null;
  /** unix ms until which its owner is known to be alive; null for rows from before owners. */
  lease_until: number | null;
}

export interface TaskClaim {
  /** This runner's owner id. */
  owner: string;
  now: number;
  limit: number;
  /** The claimed tasks' lease ends at now + leaseMs; the runner renews it while it runs them. */
  leaseMs: number;
}

/**
 * What one engine transaction works on, so a backend that cannot read synchronously (PostgreSQL)
 * loads it first, row-locked: an execution (with all its tasks), the execution of one task, or
 * nothing (a launch, which only inserts).
 */
export type EngineScope = { executionId: string } | { taskId: string } | { launch: true };

/** Executions walk the project's in id order; workbook, workflow and state are checked row by row (see ScannedPageQuery). */
export interface ExecutionQuery extends ScannedPageQuery {
  workbook?: string;
  workflow?: string;
  state?: ExecutionState;
}

/**
 * One engine state change, run synchronously inside one write transaction of one project:
 * the new states and the event rows (with their sequence numbers and deliveries) commit
 * together or not at all. No I/O other than the database may happen in here.
 */
export interface EngineTx {
  readonly now: number;
  execution(id: string): ExecutionRecord | null;
  task(id: string): TaskRecord | null;
  /** Every task of the execution, oldest first, without results (they may be large). */
  taskSummaries(executionId: string): TaskSummary[];
  /** Whether a task of the execution is RUNNING: most finishes leave one, and then nothing is read further. */
  hasRunningTask(executionId: string): boolean;
  /** How many task records (task runs) the execution has. */
  countTasks(executionId: string): number;
  insertExecution(execution: ExecutionRecord): void;
  /** Writes state, state_info and updated_at (= now). */
  saveExecution(execution: ExecutionRecord): void;
  insertTask(task: TaskRecord): void;
  /** Writes every mutable column and updated_at (= now). */
  saveTask(task: TaskRecord): void;
  /** Appends one event to the outbox with its per-execution sequence and its deliveries. */
  appendEvent(envelope: EventEnvelope): void;
}

export type WorkbookDeletion = 'deleted' | 'not_found' | 'executions_running';

export interface EngineStore {
  createWorkbook(workbook: WorkbookRecord): Promise<void>;
  getWorkbook(project: string, name: string): Promise<WorkbookRecord | null>;
  /** Pages by name. */
  listWorkbooks(project: string, query: PageQuery): Promise<ListPage<WorkbookRecord>>;
  updateWorkbook(project: string, name: string, source: string, spec: unknown, updatedAt: number): Promise<WorkbookRecord | null>;
  /** Refuses while an execution of the workbook is RUNNING or PAUSED (checked in the same transaction). */
  deleteWorkbook(project: string, name: string): Promise<WorkbookDeletion>;

  getExecution(project: string, id: string): Promise<ExecutionRecord | null>;
  /** `resume` is an execution id. */
  listExecutions(project: string, query: ExecutionQuery): Promise<ListPage<ExecutionRecord>>;
  getTask(project: string, id: string): Promise<TaskRecord | null>;
  listTasks(project: string, executionId: string, query: PageQuery): Promise<ListPage<TaskRecord>>;
  /** The result of the latest instance of each named task that succeeded; names with none are absent. */
  latestResults(project: string, executionId: string, names: string[]): Promise<Map<string, unknown>>;

  /**
   * Runs one engine state change in one transaction; resolves after commit. `fn` is synchronous
   * and pure: it reads and changes only what `scope` names (the execution and its tasks, loaded
   * and locked first where the backend needs it), and its events are routed by `routing` at the
   * project's listener version read inside the same transaction. A scope whose execution or
   * task does not exist runs `fn` with nothing loaded (it sees null).
   */
  engineTransaction<T>(
    project: string,
    scope: EngineScope,
    routing: ListenerRouting,
    fn: (tx: EngineTx) => T,
  ): Promise<{ value: T; events: number; deliveries: number }>;
  /**
   * Claims due RUNNING tasks of RUNNING executions and commits, before any action runs, that
   * their action started: `action_started_at` is set (kept for a wait that ends), `tries` counts
   * a new attempt, `next_run_at` becomes null so no one claims them again, and the task gets
   * `claim.owner` with a lease until now + leaseMs. Several processes may claim at once: each
   * task goes to one of them.
   */
  claimRunnableTasks(claim: TaskClaim): Promise<ClaimedTask[]>;
  /** Extends to `until` the lease of every in-flight task `owner` holds; answers how many. */
  renewTaskLeases(owner: string, until: number): Promise<number>;
  /** The earliest next_run_at of a task of a RUNNING execution. */
  nextTaskDueAt(): Promise<number | null>;
  /** RUNNING tasks whose action started and never committed an outcome, with their owner and lease (recovery decides which are orphans). */
  listInFlightTasks(): Promise<InFlightTask[]>;
}
