import { z } from 'zod';
import { EXECUTION_STATES, TASK_STATES, type ExecutionRecord, type TaskRecord, type WorkbookRecord } from './states.js';

const iso = (ms: number) => new Date(ms).toISOString();

export const ExecutionInput = z.strictObject({
  workbook: z.string().min(1).max(200),
  workflow: z.string().min(1).max(200),
  input: z.record(z.string(), z.unknown()).default({}),
});
export type ExecutionInput = z.infer<typeof ExecutionInput>;

export const ExecutionStateInput = z.strictObject({
  state: z.enum(['PAUSED', 'RUNNING', 'CANCELLED']),
});

export const TaskStateInput = z.strictObject({
  state: z.literal('RUNNING', { error: 'only "RUNNING" (re-run a failed task) can be set' }),
});

export const ExecutionView = z.object({
  id: z.string(),
  workbook: z.string(),
  workflow: z.string(),
  input: z.record(z.string(), z.unknown()),
  state: z.enum(EXECUTION_STATES),
  state_info: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
});
export type ExecutionView = z.infer<typeof ExecutionView>;

export const TaskView = z.object({
  id: z.string(),
  execution_id: z.string(),
  name: z.string(),
  action: z.string(),
  state: z.enum(TASK_STATES),
  state_info: z.string().nullable(),
  result: z.unknown(),
  tries: z.number().int(),
  next_run_at: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
});
export type TaskView = z.infer<typeof TaskView>;

export const WorkbookView = z.object({
  name: z.string(),
  definition: z.string(),
  workflows: z.array(z.string()),
  created_at: z.string(),
  updated_at: z.string(),
});
export type WorkbookView = z.infer<typeof WorkbookView>;

export function toExecutionView(e: ExecutionRecord): ExecutionView {
  return {
    id: e.id,
    workbook: e.workbook,
    workflow: e.workflow,
    input: e.input,
    state: e.state,
    state_info: e.state_info,
    created_at: iso(e.created_at),
    updated_at: iso(e.updated_at),
  };
}

export function toTaskView(t: TaskRecord): TaskView {
  return {
    id: t.id,
    execution_id: t.execution_id,
    name: t.name,
    action: t.action,
    state: t.state,
    state_info: t.state_info,
    result: t.result ?? null,
    tries: t.tries,
    // Only a RUNNING task waits for anything: its start, its next try, or the end of a sleep.
    next_run_at: t.state === 'RUNNING' && t.next_run_at !== null ? iso(t.next_run_at) : null,
    created_at: iso(t.created_at),
    updated_at: iso(t.updated_at),
  };
}

export function toWorkbookView(w: WorkbookRecord): WorkbookView {
  const spec = w.spec as { workflows?: Record<string, unknown> };
  return {
    name: w.name,
    definition: w.source,
    workflows: Object.keys(spec.workflows ?? {}),
    created_at: iso(w.created_at),
    updated_at: iso(w.updated_at),
  };
}
