import { describe, expect, it } from 'vitest';
import {
  eventName,
  executionMoveRefusal,
  rerunRefusal,
  retryDelayMs,
  successorsOf,
  workflowVerdict,
} from '../src/engine/transitions.js';
import type { TaskSpec, WorkflowSpec } from '../src/engine/workbook.js';
import type { TaskState } from '../src/store/engine-store.js';

const task = (name: string, edges: Partial<TaskSpec> = {}): TaskSpec => ({
  name,
  action: 'std.noop',
  input: {},
  onSuccess: [],
  onError: [],
  onComplete: [],
  retry: null,
  line: 1,
  ...edges,
});

const flow = (...tasks: TaskSpec[]): WorkflowSpec => ({
  name: 'main',
  input: [],
  tasks: Object.fromEntries(tasks.map((t) => [t.name, t])),
  startTasks: [tasks[0].name],
  line: 1,
});

describe('eventName (INTEROP.md mapping)', () => {
  it.each([
    ['TASK', null, 'RUNNING', 'TASK_LAUNCHED'],
    ['TASK', 'ERROR', 'RUNNING', 'TASK_RERUN'],
    ['TASK', 'IDLE', 'RUNNING', 'TASK_RESUMED'],
    ['TASK', 'PAUSED', 'RUNNING', 'TASK_RESUMED'],
    ['TASK', 'WAITING', 'RUNNING', 'TASK_RESUMED'],
    ['TASK', 'DELAYED', 'RUNNING', 'TASK_LAUNCHED'],
    ['TASK', 'RUNNING', 'SUCCESS', 'TASK_SUCCEEDED'],
    ['TASK', 'RUNNING', 'ERROR', 'TASK_FAILED'],
    ['TASK', 'RUNNING', 'CANCELLED', 'TASK_CANCELLED'],
    ['TASK', 'RUNNING', 'PAUSED', 'TASK_PAUSED'],
    ['TASK', 'IDLE', 'SKIPPED', 'TASK_SKIPPED'],
    ['WORKFLOW', null, 'RUNNING', 'WORKFLOW_LAUNCHED'],
    ['WORKFLOW', 'IDLE', 'RUNNING', 'WORKFLOW_LAUNCHED'],
    ['WORKFLOW', 'PAUSED', 'RUNNING', 'WORKFLOW_RESUMED'],
    ['WORKFLOW', 'ERROR', 'RUNNING', 'WORKFLOW_RERUN'],
    ['WORKFLOW', 'RUNNING', 'SUCCESS', 'WORKFLOW_SUCCEEDED'],
    ['WORKFLOW', 'RUNNING', 'ERROR', 'WORKFLOW_FAILED'],
    ['WORKFLOW', 'PAUSED', 'CANCELLED', 'WORKFLOW_CANCELLED'],
    ['WORKFLOW', 'RUNNING', 'PAUSED', 'WORKFLOW_PAUSED'],
  ] as const)('%s %s → %s is %s', (kind, from, to, expected) => {
    expect(eventName(kind, from, to)).toBe(expected);
  });

  it.each(['IDLE', 'WAITING', 'DELAYED'])('a move to %s has no event', (to) => {
    expect(eventName('TASK', 'RUNNING', to)).toBeNull();
    expect(eventName('WORKFLOW', 'RUNNING', to)).toBeNull();
  });

  it('RUNNING → RUNNING (a retry) has no event', () => {
    expect(eventName('TASK', 'RUNNING', 'RUNNING')).toBeNull();
  });
});

describe('where a workflow goes', () => {
  it('launches on-success or on-error transitions, then on-complete, each once', () => {
    const t = task('a', { onSuccess: ['b', 'c'], onError: ['e'], onComplete: ['c', 'z'] });
    expect(successorsOf(t, 'SUCCESS')).toEqual(['b', 'c', 'z']);
    expect(successorsOf(t, 'ERROR')).toEqual(['e', 'c', 'z']);
  });

  it('is running while any task runs; failed by an unhandled ERROR; else succeeded', () => {
    const spec = flow(task('a', { onError: ['h'] }), task('b'), task('h'), task('c', { onComplete: ['h'] }));
    const of = (...states: Array<[string, TaskState]>) => states.map(([name, state]) => ({ name, state, state_info: 'x' }));
    expect(workflowVerdict(spec, of(['a', 'ERROR'], ['b', 'RUNNING']))).toEqual({ done: false });
    expect(workflowVerdict(spec, of(['a', 'ERROR'], ['h', 'SUCCESS'], ['c', 'ERROR']))).toEqual({ done: true, state: 'SUCCESS', info: null });
    expect(workflowVerdict(spec, of(['a', 'SUCCESS'], ['b', 'ERROR']))).toEqual({ done: true, state: 'ERROR', info: 'task b failed: x' });
    expect(workflowVerdict(spec, [])).toEqual({ done: true, state: 'SUCCESS', info: null });
  });

  it('retries while tries are left (count retries after the first try)', () => {
    const t = task('a', { retry: { count: 2, delay: 0.05 } });
    expect(retryDelayMs(t, 1)).toBe(50);
    expect(retryDelayMs(t, 2)).toBe(50);
    expect(retryDelayMs(t, 3)).toBeNull();
    expect(retryDelayMs(task('b'), 1)).toBeNull();
  });
});

describe('what a client may ask', () => {
  it('pauses and cancels a running execution, resumes and cancels a paused one, and nothing else', () => {
    expect(executionMoveRefusal('RUNNING', 'PAUSED')).toBeNull();
    expect(executionMoveRefusal('RUNNING', 'CANCELLED')).toBeNull();
    expect(executionMoveRefusal('PAUSED', 'RUNNING')).toBeNull();
    expect(executionMoveRefusal('PAUSED', 'CANCELLED')).toBeNull();
    expect(executionMoveRefusal('RUNNING', 'RUNNING')).toMatch(/already RUNNING/);
    for (const from of ['SUCCESS', 'ERROR', 'CANCELLED'] as const) {
      for (const to of ['PAUSED', 'RUNNING', 'CANCELLED'] as const) expect(executionMoveRefusal(from, to)).toMatch(/finished/);
    }
  });

  it('re-runs only a failed task of an execution that is not finished for good', () => {
    expect(rerunRefusal('ERROR', 'ERROR')).toBeNull();
    expect(rerunRefusal('ERROR', 'RUNNING')).toBeNull();
    expect(rerunRefusal('SUCCESS', 'ERROR')).toMatch(/only a failed task/);
    expect(rerunRefusal('RUNNING', 'RUNNING')).toMatch(/running/);
    expect(rerunRefusal('ERROR', 'SUCCESS')).toMatch(/finished/);
    expect(rerunRefusal('ERROR', 'CANCELLED')).toMatch(/finished/);
  });
});
