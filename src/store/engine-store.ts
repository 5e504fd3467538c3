import type { EventEnvelope } from '../records/event.js';
import type { FanOut, OrderedPageQuery, PageQuery } from './store.js';

/** States of an execution (Mistral's, as far as this engine reaches them). */
export const EXECUTION_STATES = ['IDLE', 'RUNNING', 'PAUSED', 'SUCCESS', 'ERROR', 'CANCELLED'] as const;
export type ExecutionState = (typeof EXECUTION_STATES)[number];

export const TASK_STATES = ['IDLE', 'WAITING', 'RUNNING', 'DELAYED', 'PAUSED', 'SUCCESS', 'ERROR', 'CANCELLED', 'SKIPPED'] as const;
export type TaskState = (typeof TASK_STATES)[number];

/** Times are unix ms throughout. Parsed specs are opaque here: the store neither reads nor checks them. */
export interface WorkbookRecord {
  project: string;
  name: string;
  source: string;
  spec: unknown;
  created_at: number;
  updated_at: number;
}

export interface ExecutionRecord {
  id: string;
  project: string;
  workbook: string;
  workflow: string;
  /** The workflow spec as it was at launch. */
  spec: unknown;
  input: Record<string, unknown>;
  state: ExecutionState;
  state_info: string | null;
  /** A cancel or pause that waits for actions in flight to finish before it is complete. */
  pending_operation: ExecutionOperation | null;
  created_at: number;
  updated_at: number;
}

/** Operations on an execution that can wait for actions in flight. */
export type ExecutionOperation = 'cancel' | 'pause';

export interface TaskRecord {
  id: string;
  project: string;
  execution_id: string;
  name: string;
  action: string;
  state: TaskState;
  state_info: string | null;
  result: unknown;
  /** Action attempts started so far. */
  tries: number;
  /** When the runner next looks at this RUNNING task (start, retry, or end of a wait); null while its action is in flight. */
  next_run_at: number | null;
  /** When the current attempt's action started; null before it starts. */
  action_started_at: number | null;
  /** Re-run by a client and not yet ended: its end completes the task.rerun operation. */
  rerun: boolean;
  created_at: number;
  updated_at: number;
}

/** A task without its result: what deciding about a whole execution reads, cheap for every task. */
export type TaskSummary = Omit<TaskRecord, 'result'>;

/** A task the runner claimed, with what running it needs from its execution. */
export interface ClaimedTask extends TaskRecord {
  execution: Pick<ExecutionRecord, 'workbook' | 'workflow' | 'spec' | 'input' | 'state'>;
}

export interface ExecutionQuery extends OrderedPageQuery {
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
  listWorkbooks(project: string, query: PageQuery): Promise<WorkbookRecord[]>;
  updateWorkbook(project: string, name: string, source: string, spec: unknown, updatedAt: number): Promise<WorkbookRecord | null>;
  /** Refuses while an execution of the workbook is RUNNING or PAUSED (checked in the same transaction). */
  deleteWorkbook(project: string, name: string): Promise<WorkbookDeletion>;

  getExecution(project: string, id: string): Promise<ExecutionRecord | null>;
  listExecutions(project: string, query: ExecutionQuery): Promise<ExecutionRecord[]>;
  getTask(project: string, id: string): Promise<TaskRecord | null>;
  listTasks(project: string, executionId: string, query: PageQuery): Promise<TaskRecord[]>;
  /** The result of the latest instance of each named task that succeeded; names with none are absent. */
  latestResults(project: string, executionId: string, names: string[]): Promise<Map<string, unknown>>;

  /** Runs one engine state change in one transaction (group-committed); resolves after commit. */
  engineTransaction<T>(project: string, fanOut: FanOut, fn: (tx: EngineTx) => T): Promise<{ value: T; events: number; deliveries: number }>;
  /**
   * Claims due RUNNING tasks of RUNNING executions and commits, before any action runs, that
   * their action started: `action_started_at` is set (kept for a wait that ends), `tries` counts
   * a new attempt, and `next_run_at` becomes null so no one claims them again.
   */
  claimRunnableTasks(now: number, limit: number): Promise<ClaimedTask[]>;
  /** The earliest next_run_at of a task of a RUNNING execution. */
  nextTaskDueAt(): Promise<number | null>;
  /** RUNNING tasks whose action started and never committed an outcome (for recovery at start). */
  listInFlightTasks(): Promise<TaskRecord[]>;
}
