import type { ExecutionState, TaskState } from '../records/states.js';
import type { TaskSpec, WorkflowSpec } from './workbook.js';

/*
 * The engine's decisions, as pure functions: which event a state change emits, where a
 * workflow goes after a task ends, whether a failed try is tried again, and which changes a
 * client may ask for. No I/O; the state-change functions apply these inside a transaction.
 */

export type Outcome = { ok: true; result: unknown } | { ok: false; error: string; retryable: boolean };

const FINISHED_EVENT: Partial<Record<string, string>> = {
  SUCCESS: 'SUCCEEDED',
  ERROR: 'FAILED',
  CANCELLED: 'CANCELLED',
  PAUSED: 'PAUSED',
  SKIPPED: 'SKIPPED',
};

/**
 * The Mistral event of a state change, or null when it has none (moves to IDLE, WAITING or
 * DELAYED, and RUNNING → RUNNING). `from` is null for a record that is being created.
 */
export function eventName(kind: 'WORKFLOW' | 'TASK', from: string | null, to: string): string | null {
  if (to === 'RUNNING') {
    if (from === 'RUNNING') return null;
    if (from === 'ERROR') return `${kind}_RERUN`;
    const resumedFrom = kind === 'TASK' ? ['IDLE', 'PAUSED', 'WAITING'] : ['PAUSED'];
    if (from !== null && resumedFrom.includes(from)) return `${kind}_RESUMED`;
    return `${kind}_LAUNCHED`;
  }
  const suffix = FINISHED_EVENT[to];
  return suffix ? `${kind}_${suffix}` : null;
}

const unique = (names: string[]) => [...new Set(names)];

/** The tasks a finished task launches: its on-success (or on-error) transitions, then on-complete. */
export function successorsOf(task: TaskSpec, state: 'SUCCESS' | 'ERROR'): string[] {
  return unique([...(state === 'SUCCESS' ? task.onSuccess : task.onError), ...task.onComplete]);
}

/** A failure is handled when the task has a path to follow after it (on-error or on-complete). */
export function isHandledFailure(task: TaskSpec): boolean {
  return task.onError.length > 0 || task.onComplete.length > 0;
}

/** Whether a failed try is tried again: the task has a retry policy with tries left. `tries` counts the tries made. */
export function retryDelayMs(task: TaskSpec, tries: number): number | null {
  if (!task.retry || tries > task.retry.count) return null;
  return Math.round(task.retry.delay * 1000);
}

export type WorkflowVerdict =
  | { done: false }
  | { done: true; state: 'SUCCESS'; info: null }
  | { done: true; state: 'ERROR'; info: string };

/**
 * Where a workflow stands once a task of it ended: still running while any task is RUNNING;
 * otherwise failed if a task ended in an ERROR with no path after it, else succeeded.
 */
export function workflowVerdict(
  spec: WorkflowSpec,
  tasks: ReadonlyArray<{ name: string; state: TaskState; state_info: string | null }>,
): WorkflowVerdict {
  if (tasks.some((t) => t.state === 'RUNNING')) return { done: false };
  const failed = tasks.find((t) => t.state === 'ERROR' && !(spec.tasks[t.name] && isHandledFailure(spec.tasks[t.name])));
  if (failed) return { done: true, state: 'ERROR', info: `task ${failed.name} failed: ${failed.state_info ?? 'no details'}` };
  return { done: true, state: 'SUCCESS', info: null };
}

/** The states a client may move an execution to with PUT, from each state it may be in. */
const CLIENT_MOVES: Partial<Record<ExecutionState, ExecutionState[]>> = {
  RUNNING: ['PAUSED', 'CANCELLED'],
  PAUSED: ['RUNNING', 'CANCELLED'],
};

export const CLIENT_EXECUTION_STATES = ['PAUSED', 'RUNNING', 'CANCELLED'] as const;
export type ClientExecutionState = (typeof CLIENT_EXECUTION_STATES)[number];

/** Null when the move is allowed; otherwise why it is not (a 409). */
export function executionMoveRefusal(from: ExecutionState, to: ClientExecutionState): string | null {
  if (CLIENT_MOVES[from]?.includes(to)) return null;
  if (from === 'SUCCESS' || from === 'ERROR' || from === 'CANCELLED') {
    const hint = from === 'ERROR' && to === 'RUNNING' ? '; re-run a failed task with PUT /v1/tasks/{id} {"state": "RUNNING"}' : '';
    return `the execution is finished (${from}) and cannot move to ${to}${hint}`;
  }
  if (from === to) return `the execution is already ${from}`;
  return `an execution in state ${from} cannot move to ${to}`;
}

/** Null when the task may be re-run now; otherwise why not (a 409). */
export function rerunRefusal(task: TaskState, execution: ExecutionState): string | null {
  if (task !== 'ERROR') {
    return task === 'RUNNING' ? 'the task is running' : `only a failed task (ERROR) can be re-run; this one is ${task}`;
  }
  if (execution === 'SUCCESS' || execution === 'CANCELLED') return `its execution is finished (${execution})`;
  return null;
}
