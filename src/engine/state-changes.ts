import { newId } from '../ids.js';
import { toEnvelope } from '../ingest/ingest.js';
import type { EngineTx, ExecutionRecord, ExecutionState, TaskRecord, TaskState } from '../store/engine-store.js';
import {
  eventName,
  executionMoveRefusal,
  rerunRefusal,
  retryDelayMs,
  successorsOf,
  workflowVerdict,
  type ClientExecutionState,
  type Outcome,
} from './transitions.js';
import type { WorkflowSpec } from './workbook.js';

/*
 * Every state change of the engine, each applied inside one EngineTx: the new states and the
 * events they emit commit together. These functions only read and write through the tx, so
 * whatever they decide is either all on disk with its events or not at all.
 */

const MAX_STATE_INFO = 4096;

export type Refusal = { refused: 404 | 409; detail: string };

const clip = (info: string | null) => (info && info.length > MAX_STATE_INFO ? `${info.slice(0, MAX_STATE_INFO - 1)}…` : info);
const specOf = (e: ExecutionRecord) => e.spec as WorkflowSpec;

function emit(tx: EngineTx, e: ExecutionRecord, task: TaskRecord | null, previous: string | null, data: Record<string, unknown> = {}) {
  const state = task ? task.state : e.state;
  const type = eventName(task ? 'TASK' : 'WORKFLOW', previous, state);
  if (!type) return;
  const envelope = toEnvelope(
    {
      type,
      workbook: e.workbook,
      workflow: e.workflow,
      execution_id: e.id,
      task_id: task?.id ?? null,
      task_name: task?.name ?? null,
      state,
      previous_state: previous,
      state_info: task ? task.state_info : e.state_info,
      data,
    },
    tx.now,
    'engine',
  );
  tx.appendEvent(envelope);
}

function moveExecution(tx: EngineTx, e: ExecutionRecord, to: ExecutionState, info: string | null, data?: Record<string, unknown>) {
  const previous = e.state;
  e.state = to;
  e.state_info = clip(info);
  tx.saveExecution(e);
  emit(tx, e, null, previous, data);
}

function moveTask(tx: EngineTx, e: ExecutionRecord, t: TaskRecord, to: TaskState, info: string | null, data?: Record<string, unknown>) {
  const previous = t.state;
  t.state = to;
  t.state_info = clip(info);
  tx.saveTask(t);
  emit(tx, e, t, previous, data);
}

/** New task instances, RUNNING and due now (a paused execution holds them until it resumes). */
function launchTasks(tx: EngineTx, e: ExecutionRecord, names: string[]): number {
  const spec = specOf(e);
  for (const name of names) {
    const task: TaskRecord = {
      id: newId(tx.now),
      project: e.project,
      execution_id: e.id,
      name,
      action: spec.tasks[name].action,
      state: 'RUNNING',
      state_info: null,
      result: null,
      tries: 0,
      next_run_at: tx.now,
      action_started_at: null,
      created_at: tx.now,
      updated_at: tx.now,
    };
    tx.insertTask(task);
    emit(tx, e, task, null);
  }
  return names.length;
}

/** Ends the workflow when no task is left running. */
function settleWorkflow(tx: EngineTx, e: ExecutionRecord): void {
  if (e.state !== 'RUNNING' && e.state !== 'PAUSED') return;
  const verdict = workflowVerdict(specOf(e), tx.tasksOf(e.id));
  if (verdict.done) moveExecution(tx, e, verdict.state, verdict.info);
}

export interface NewExecution {
  project: string;
  workbook: string;
  workflow: string;
  spec: WorkflowSpec;
  input: Record<string, unknown>;
}

/** Creates an execution RUNNING with its start tasks: WORKFLOW_LAUNCHED, then TASK_LAUNCHED for each. */
export function launchExecution(tx: EngineTx, n: NewExecution): ExecutionRecord {
  const e: ExecutionRecord = {
    id: newId(tx.now),
    project: n.project,
    workbook: n.workbook,
    workflow: n.workflow,
    spec: n.spec,
    input: n.input,
    state: 'RUNNING',
    state_info: null,
    created_at: tx.now,
    updated_at: tx.now,
  };
  tx.insertExecution(e);
  emit(tx, e, null, null, { input: n.input });
  launchTasks(tx, e, n.spec.startTasks);
  settleWorkflow(tx, e);
  return e;
}

export type TaskEnd = 'stale' | 'retrying' | 'finished';

/**
 * Commits what an attempt came to. `startedAt` is the claim the attempt ran under: a task that
 * moved on meanwhile (cancelled, recovered) is left alone. A failure with tries left keeps the
 * task RUNNING and due after its delay, with no event; otherwise the task ends with its event,
 * its successors are launched (not after a cancel), and the workflow settles.
 */
export function finishTask(tx: EngineTx, taskId: string, startedAt: number, outcome: Outcome): { end: TaskEnd; launched: number } {
  const t = tx.task(taskId);
  if (!t || t.state !== 'RUNNING' || t.next_run_at !== null || t.action_started_at !== startedAt) return { end: 'stale', launched: 0 };
  const e = tx.execution(t.execution_id)!;
  const spec = specOf(e).tasks[t.name];
  const live = e.state === 'RUNNING' || e.state === 'PAUSED';
  if (!outcome.ok) {
    const delay = outcome.retryable && live ? retryDelayMs(spec, t.tries) : null;
    if (delay !== null) {
      // A retry is a wait row: it survives a restart, and it is no state change (no event).
      t.state_info = clip(`try ${t.tries} failed: ${outcome.error}`);
      t.next_run_at = tx.now + delay;
      t.action_started_at = null;
      tx.saveTask(t);
      return { end: 'retrying', launched: 0 };
    }
  }
  t.next_run_at = null;
  t.result = outcome.ok ? outcome.result : null;
  const to = outcome.ok ? 'SUCCESS' : 'ERROR';
  moveTask(tx, e, t, to, outcome.ok ? null : outcome.error, outcome.ok ? { result: t.result, tries: t.tries } : { tries: t.tries });
  const launched = live ? launchTasks(tx, e, successorsOf(spec, to)) : 0;
  settleWorkflow(tx, e);
  return { end: 'finished', launched };
}

/** A std.sleep that started waits until `due`: the wait is the task's next_run_at, a row that outlives the process. */
export function scheduleWake(tx: EngineTx, taskId: string, startedAt: number, due: number): boolean {
  const t = tx.task(taskId);
  if (!t || t.state !== 'RUNNING' || t.next_run_at !== null || t.action_started_at !== startedAt) return false;
  const e = tx.execution(t.execution_id)!;
  if (e.state !== 'RUNNING' && e.state !== 'PAUSED') {
    // Cancelled while this wait was being set up: a wait has not started anything, so it is cancelled too.
    moveTask(tx, e, t, 'CANCELLED', 'the execution was cancelled');
    return false;
  }
  t.next_run_at = due;
  tx.saveTask(t);
  return true;
}

/** A client's PUT of an execution's state: pause, resume or cancel. */
export function changeExecutionState(tx: EngineTx, id: string, to: ClientExecutionState): ExecutionRecord | Refusal {
  const e = tx.execution(id);
  if (!e) return { refused: 404, detail: `execution ${id}` };
  const refusal = executionMoveRefusal(e.state, to);
  if (refusal) return { refused: 409, detail: refusal };
  if (to === 'CANCELLED') {
    // Tasks whose action has not started (due, waiting for a retry or a sleep, or a sleep
    // whose wait is being set up: it has no side effect) end now; an action in flight finishes
    // and records its outcome, but launches nothing after it.
    for (const t of tx.tasksOf(e.id)) {
      if (t.state !== 'RUNNING' || (t.next_run_at === null && t.action !== 'std.sleep')) continue;
      t.next_run_at = null;
      moveTask(tx, e, t, 'CANCELLED', 'the execution was cancelled');
    }
  }
  moveExecution(tx, e, to, null);
  return e;
}

/** Re-runs a failed task: it goes ERROR → RUNNING (and its execution ERROR → RUNNING); finished tasks stay as they are. */
export function rerunTask(tx: EngineTx, id: string): TaskRecord | Refusal {
  const t = tx.task(id);
  if (!t) return { refused: 404, detail: `task ${id}` };
  const e = tx.execution(t.execution_id)!;
  const refusal = rerunRefusal(t.state, e.state);
  if (refusal) return { refused: 409, detail: `task ${id} cannot be re-run: ${refusal}` };
  if (e.state === 'ERROR') moveExecution(tx, e, 'RUNNING', null);
  t.tries = 0;
  t.result = null;
  t.next_run_at = tx.now;
  t.action_started_at = null;
  moveTask(tx, e, t, 'RUNNING', null);
  return t;
}

/** After a restart: a std.sleep that was being looked at is due again (its wait is measured from its start). */
export function rearmWait(tx: EngineTx, taskId: string): void {
  const t = tx.task(taskId);
  if (!t || t.state !== 'RUNNING' || t.next_run_at !== null) return;
  t.next_run_at = tx.now;
  tx.saveTask(t);
}
