import type { ExecutionView, TaskView, WorkbookView } from '../../records/engine.js';
import { truncate } from './delivery-view.js';

/** Tables and `key: value` lines for workbooks, executions and tasks. */

/** One execution as `execution-get -f json` prints it: the API's record and its tasks. */
export type ExecutionWithTasks = ExecutionView & { tasks: TaskView[] };

const dash = (v: string | number | null | undefined) => (v === null || v === undefined || v === '' ? '-' : String(v));
const compactJson = (value: unknown, max: number) => (value === null || value === undefined ? '-' : truncate(JSON.stringify(value), max));

export const WORKBOOK_COLUMNS = ['NAME', 'WORKFLOWS', 'CREATED AT', 'UPDATED AT'];

export function workbookRow(w: WorkbookView): string[] {
  return [w.name, w.workflows.join(',') || '-', w.created_at, w.updated_at];
}

export function workbookFields(w: WorkbookView): Array<[string, string]> {
  return [
    ['name', w.name],
    ['workflows', w.workflows.join(', ') || '-'],
    ['created_at', w.created_at],
    ['updated_at', w.updated_at],
  ];
}

export const EXECUTION_COLUMNS = ['ID', 'WORKBOOK', 'WORKFLOW', 'STATE', 'CREATED AT', 'STATE INFO'];

export function executionRow(e: ExecutionView): string[] {
  return [e.id, e.workbook, e.workflow, e.state, e.created_at, truncate(e.state_info, 60)];
}

export function executionFields(e: ExecutionView): Array<[string, string]> {
  return [
    ['id', e.id],
    ['workbook', e.workbook],
    ['workflow', e.workflow],
    ['state', e.state],
    ['state_info', truncate(e.state_info, 300)],
    ['input', compactJson(e.input, 400)],
    ['created_at', e.created_at],
    ['updated_at', e.updated_at],
  ];
}

export const TASK_COLUMNS = ['ID', 'NAME', 'ACTION', 'STATE', 'TRIES', 'NEXT RUN AT', 'STATE INFO'];

export function taskRow(t: TaskView): string[] {
  return [t.id, t.name, t.action, t.state, String(t.tries), dash(t.next_run_at), truncate(t.state_info, 60)];
}

/** The compact task table under execution-get: what each task came to, its error or its result. */
export const COMPACT_TASK_COLUMNS = ['TASK', 'STATE', 'TRIES', 'ID', 'RESULT / STATE INFO'];

export function compactTaskRow(t: TaskView): string[] {
  const outcome = t.state_info ? truncate(t.state_info, 60) : compactJson(t.result, 60);
  return [t.name, t.state, String(t.tries), t.id, outcome];
}

export function taskFields(t: TaskView): Array<[string, string]> {
  return [
    ['id', t.id],
    ['execution_id', t.execution_id],
    ['name', t.name],
    ['action', t.action],
    ['state', t.state],
    ['state_info', truncate(t.state_info, 300)],
    ['tries', String(t.tries)],
    ['next_run_at', dash(t.next_run_at)],
    ['result', compactJson(t.result, 400)],
    ['created_at', t.created_at],
    ['updated_at', t.updated_at],
  ];
}
