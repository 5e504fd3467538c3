import { newId } from '../ids.js';
import { toEnvelope } from '../records/event.js';
import type { ExecutionRecord, ExecutionState, TaskRecord, TaskState } from '../records/states.js';
import type { EngineTx } from '../store/engine-store.js';
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
import { taskRunLimitMessage } from './limits.js';
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

/** Appends one event of the execution (and of `task`, when given) to the transaction. */
function appendEngineEvent(
  tx: EngineTx,
  e: ExecutionRecord,
  task: TaskRecord | null,
  type: string,
  fields: { previous_state?: string | null; data?: Record<string, unknown> } = {},
) {
  const envelope = toEnvelope(
    {
      type,
      workbook: e.workbook,
      workflow: e.workflow,
      execution_id: e.id,
      task_id: task?.id ?? null,
      task_name: task?.name ?? null,
      state: task ? task.state : e.state,
      previous_state: fields.previous_state ?? null,
      state_info: task ? task.state_info : e.state_info,
      data: fields.data ?? {},
    },
    tx.now,
    'engine',
  );
  tx.appendEvent(envelope);
}

/**
 * The Mistral event of a state change (none for moves that have no event). A move to ERROR
 * (TASK_FAILED, WORKFLOW_FAILED) carries its reason as `data.fault` too, as every failure's
 * details do (DESIGN.md, "Event envelope additions"): the oslo format sends it as the
 * ExceptionPayload.
 */
function emit(tx: EngineTx, e: ExecutionRecord, task: TaskRecord | null, previous: string | null, data: Record<string, unknown> = {}) {
  const state = task ? task.state : e.state;
  const type = eventName(task ? 'TASK' : 'WORKFLOW', previous, state);
  if (!type) return;
  if (state === 'ERROR' && !('fault' in data)) {
    const fault: Fault = { exception: task ? 'TaskFailed' : 'WorkflowFailed', exception_message: (task ? task.state_info : e.state_info) ?? state };
    data = { ...data, fault };
  }
  appendEngineEvent(tx, e, task, type, { previous_state: previous, data });
}

/**
 * An operation notification (Watcher-style triad): `start` with the accepted request, before
 * its state events; `end` or `error` when the operation is complete, after them.
 */
function emitOperation(tx: EngineTx, e: ExecutionRecord, type: string, task: TaskRecord | null, fault?: Fault) {
  appendEngineEvent(tx, e, task, type, { data: fault ? { fault } : {} });
}

/** A failure's details, as `data.fault` carries them (DESIGN.md, "Event envelope additions"). */
export interface Fault {
  exception: string;
  exception_message: string;
}

/** Actions of the execution that started and have not committed their outcome. */
function actionsInFlight(tx: EngineTx, executionId: string): number {
  let n = 0;
  for (const s of tx.taskSummaries(executionId)) {
    if (s.state === 'RUNNING' && s.next_run_at === null && s.action_started_at !== null) n++;
  }
  return n;
}

/** Completes a cancel or pause that waited for actions in flight, once none is left. */
function completePendingOperation(tx: EngineTx, e: ExecutionRecord): void {
  if (e.pending_operation === null || actionsInFlight(tx, e.id) > 0) return;
  const op = e.pending_operation;
  e.pending_operation = null;
  tx.saveExecution(e);
  emitOperation(tx, e, `execution.${op}.end`, null);
}

/** A re-run task that ended: `task.rerun.end` on SUCCESS, `task.rerun.error` (with the fault) otherwise. */
function completeRerun(tx: EngineTx, e: ExecutionRecord, t: TaskRecord): void {
  if (!t.rerun || t.state === 'RUNNING') return;
  t.rerun = false;
  tx.saveTask(t);
  if (t.state === 'SUCCESS') emitOperation(tx, e, 'task.rerun.end', t);
  else emitOperation(tx, e, 'task.rerun.error', t, { exception: `Task${t.state === 'CANCELLED' ? 'Cancelled' : 'Failed'}`, exception_message: t.state_info ?? t.state });
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

/**
 * Tasks not yet started (due, waiting for a retry or a sleep, or a sleep whose wait is being set
 * up: it has no side effect) end CANCELLED; an action in flight finishes and records its
 * outcome, but launches nothing after it since the execution is no longer live.
 */
function cancelWaitingTasks(tx: EngineTx, e: ExecutionRecord, info: string): void {
  for (const s of tx.taskSummaries(e.id)) {
    if (s.state !== 'RUNNING' || (s.next_run_at === null && s.action !== 'std.sleep')) continue;
    const t = tx.task(s.id)!;
    t.next_run_at = null;
    moveTask(tx, e, t, 'CANCELLED', info);
    completeRerun(tx, e, t);
  }
}

/**
 * New task instances, RUNNING and due now (a paused execution holds them until it resumes).
 * Every instance counts toward the execution's task run limit: when these would pass it, none
 * is created and the execution fails, so a loop in a workbook ends.
 */
function launchTasks(tx: EngineTx, e: ExecutionRecord, names: string[], maxTasks: number): number {
  if (names.length === 0) return 0;
  const runs = tx.countTasks(e.id) + names.length;
  if (runs > maxTasks) {
    const info = taskRunLimitMessage(names, runs, maxTasks);
    cancelWaitingTasks(tx, e, `the execution failed: ${info}`);
    moveExecution(tx, e, 'ERROR', info);
    return 0;
  }
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
      rerun: false,
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
  if (tx.hasRunningTask(e.id)) return;
  const verdict = workflowVerdict(specOf(e), tx.taskSummaries(e.id));
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
export function launchExecution(tx: EngineTx, n: NewExecution, maxTasks: number): ExecutionRecord {
  const e: ExecutionRecord = {
    id: newId(tx.now),
    project: n.project,
    workbook: n.workbook,
    workflow: n.workflow,
    spec: n.spec,
    input: n.input,
    state: 'RUNNING',
    state_info: null,
    pending_operation: null,
    created_at: tx.now,
    updated_at: tx.now,
  };
  tx.insertExecution(e);
  emit(tx, e, null, null, { input: n.input });
  launchTasks(tx, e, n.spec.startTasks, maxTasks);
  settleWorkflow(tx, e);
  return e;
}

export type TaskEnd = 'stale' | 'retrying' | 'finished';

/**
 * Whether the attempt that started at `startedAt` is still the task's action in flight: the task
 * is RUNNING with no wait or retry due, under that same start. Once it moved on (ended,
 * cancelled, recovered, or started again) whatever that attempt came to is stale.
 */
export function isAttemptInFlight(t: TaskRecord | null, startedAt: number | null): t is TaskRecord {
  return !!t && t.state === 'RUNNING' && t.next_run_at === null && t.action_started_at === startedAt;
}

/**
 * Commits what an attempt came to. `startedAt` is the claim the attempt ran under: a task that
 * moved on meanwhile (cancelled, recovered) is left alone. A failure with tries left keeps the
 * task RUNNING and due after its delay, with no event; otherwise the task ends with its event,
 * its successors are launched (not after a cancel), and the workflow settles.
 */
export function finishTask(
  tx: EngineTx,
  taskId: string,
  startedAt: number,
  outcome: Outcome,
  maxTasks: number,
): { end: TaskEnd; launched: number } {
  const t = tx.task(taskId);
  if (!isAttemptInFlight(t, startedAt)) return { end: 'stale', launched: 0 };
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
      // A pause waiting for this action is complete: the retry waits, it is not in flight.
      completePendingOperation(tx, e);
      return { end: 'retrying', launched: 0 };
    }
  }
  t.next_run_at = null;
  t.result = outcome.ok ? outcome.result : null;
  const to = outcome.ok ? 'SUCCESS' : 'ERROR';
  moveTask(tx, e, t, to, outcome.ok ? null : outcome.error, outcome.ok ? { result: t.result, tries: t.tries } : { tries: t.tries });
  const launched = live ? launchTasks(tx, e, successorsOf(spec, to), maxTasks) : 0;
  settleWorkflow(tx, e);
  completeRerun(tx, e, t);
  completePendingOperation(tx, e);
  return { end: 'finished', launched };
}

/** A std.sleep that started waits until `due`: the wait is the task's next_run_at, a row that outlives the process. */
export function scheduleWake(tx: EngineTx, taskId: string, startedAt: number, due: number): boolean {
  const t = tx.task(taskId);
  if (!isAttemptInFlight(t, startedAt)) return false;
  const e = tx.execution(t.execution_id)!;
  if (e.state !== 'RUNNING' && e.state !== 'PAUSED') {
    // Cancelled while this wait was being set up: a wait has not started anything, so it is cancelled too.
    moveTask(tx, e, t, 'CANCELLED', 'the execution was cancelled');
    completeRerun(tx, e, t);
    completePendingOperation(tx, e);
    return false;
  }
  t.next_run_at = due;
  tx.saveTask(t);
  completePendingOperation(tx, e);
  return true;
}

/** A client's PUT of an execution's state: pause, resume or cancel. */
export function changeExecutionState(tx: EngineTx, id: string, to: ClientExecutionState): ExecutionRecord | Refusal {
  const e = tx.execution(id);
  if (!e) return { refused: 404, detail: `execution ${id}` };
  const refusal = executionMoveRefusal(e.state, to);
  if (refusal) return { refused: 409, detail: refusal };
  const op = to === 'CANCELLED' ? 'cancel' : to === 'PAUSED' ? 'pause' : 'resume';
  if (e.pending_operation !== null) {
    // A pause still waiting for its actions in flight is overtaken by this request: it ends
    // here, before this one starts, in an error (it never took full effect).
    const earlier = e.pending_operation;
    e.pending_operation = null;
    emitOperation(tx, e, `execution.${earlier}.error`, null, {
      exception: 'Superseded',
      exception_message: `the execution was ${op === 'cancel' ? 'cancelled' : 'resumed'} before the ${earlier} was complete`,
    });
  }
  emitOperation(tx, e, `execution.${op}.start`, null);
  if (to === 'CANCELLED') cancelWaitingTasks(tx, e, 'the execution was cancelled');
  moveExecution(tx, e, to, null);
  // Resuming is complete at once; a cancel or pause is complete when the actions already in
  // flight have ended (nothing new starts meanwhile).
  if (op === 'resume' || actionsInFlight(tx, e.id) === 0) {
    e.pending_operation = null;
    emitOperation(tx, e, `execution.${op}.end`, null);
  } else {
    e.pending_operation = op;
  }
  tx.saveExecution(e);
  return e;
}

/** Re-runs a failed task: it goes ERROR → RUNNING (and its execution ERROR → RUNNING); finished tasks stay as they are. */
export function rerunTask(tx: EngineTx, id: string): TaskRecord | Refusal {
  const t = tx.task(id);
  if (!t) return { refused: 404, detail: `task ${id}` };
  const e = tx.execution(t.execution_id)!;
  const refusal = rerunRefusal(t.state, e.state);
  if (refusal) return { refused: 409, detail: `task ${id} cannot be re-run: ${refusal}` };
  emitOperation(tx, e, 'task.rerun.start', t);
  if (e.state === 'ERROR') moveExecution(tx, e, 'RUNNING', null);
  t.tries = 0;
  t.result = null;
  t.next_run_at = tx.now;
  t.action_started_at = null;
  t.rerun = true;
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

/**
 * After a restart, for an execution whose cancel or pause waited for actions that were in
 * flight: the operation ends in `execution.<op>.error` (interrupted by restart), once recovery
 * has recorded those actions.
 */
export function failPendingOperation(tx: EngineTx, executionId: string, message: string): void {
  const e = tx.execution(executionId);
  if (!e || e.pending_operation === null) return;
  const op = e.pending_operation;
  e.pending_operation = null;
  tx.saveExecution(e);
  emitOperation(tx, e, `execution.${op}.error`, null, { exception: 'Interrupted', exception_message: message });
}
