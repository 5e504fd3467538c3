import type { ExecutionView, TaskView, WorkbookView } from '../../records/engine.js';
import type { Column, FieldPair } from '../output.js';
import { relativeTime, timeWithRelative } from '../relative-time.js';
import { truncate } from './delivery-view.js';

/** Tables and `key: value` lines for workbooks, executions and tasks. */

/** One execution as `execution-get -f json` prints it: the API's record and its tasks. */
export type ExecutionWithTasks = ExecutionView & { tasks: TaskView[] };

const compactJson = (value: unknown, max: number) => (value === null || value === undefined ? '-' : truncate(JSON.stringify(value), max));

export const WORKBOOK_COLUMNS: Array<Column<WorkbookView>> = [
  { header: 'NAME', field: 'name', cell: (w) => w.name },
  { header: 'WORKFLOWS', field: 'workflows', cell: (w) => w.workflows.join(',') || '-' },
  { header: 'CREATED AT', field: 'created_at', cell: (w, now) => relativeTime(w.created_at, now) },
  { header: 'UPDATED AT', field: 'updated_at', cell: (w, now) => relativeTime(w.updated_at, now) },
];

export function workbookFields(w: WorkbookView, now: number): FieldPair[] {
  return [
    ['name', w.name],
    ['workflows', w.workflows.join(', ') || '-', w.workflows],
    ['created_at', timeWithRelative(w.created_at, now), w.created_at],
    ['updated_at', timeWithRelative(w.updated_at, now), w.updated_at],
  ];
}

export const EXECUTION_COLUMNS: Array<Column<ExecutionView>> = [
  { header: 'ID', field: 'id', cell: (e) => e.id },
  { header: 'WORKBOOK', field: 'workbook', cell: (e) => e.workbook },
  { header: 'WORKFLOW', field: 'workflow', cell: (e) => e.workflow },
  { header: 'STATE', field: 'state', cell: (e) => e.state },
  { header: 'CREATED AT', field: 'created_at', cell: (e, now) => relativeTime(e.created_at, now) },
  { header: 'STATE INFO', field: 'state_info', cell: (e) => truncate(e.state_info, 60) },
  { header: 'UPDATED AT', field: 'updated_at', cell: (e, now) => relativeTime(e.updated_at, now), optional: true },
];

export function executionFields(e: ExecutionView, now: number): FieldPair[] {
  return [
    ['id', e.id],
    ['workbook', e.workbook],
    ['workflow', e.workflow],
    ['state', e.state],
    ['state_info', truncate(e.state_info, 300), e.state_info],
    ['input', compactJson(e.input, 400), e.input],
    ['created_at', timeWithRelative(e.created_at, now), e.created_at],
    ['updated_at', timeWithRelative(e.updated_at, now), e.updated_at],
  ];
}

export const TASK_COLUMNS: Array<Column<TaskView>> = [
  { header: 'ID', field: 'id', cell: (t) => t.id },
  { header: 'NAME', field: 'name', cell: (t) => t.name },
  { header: 'ACTION', field: 'action', cell: (t) => t.action },
  { header: 'STATE', field: 'state', cell: (t) => t.state },
  { header: 'TRIES', field: 'tries', cell: (t) => String(t.tries) },
  { header: 'NEXT RUN AT', field: 'next_run_at', cell: (t, now) => relativeTime(t.next_run_at, now) },
  { header: 'STATE INFO', field: 'state_info', cell: (t) => truncate(t.state_info, 60) },
  { header: 'RESULT', field: 'result', cell: (t) => compactJson(t.result, 60), optional: true },
  { header: 'CREATED AT', field: 'created_at', cell: (t, now) => relativeTime(t.created_at, now), optional: true },
  { header: 'UPDATED AT', field: 'updated_at', cell: (t, now) => relativeTime(t.updated_at, now), optional: true },
];

/** The compact task table under execution-get: what each task came to, its error or its result. */
export const COMPACT_TASK_COLUMNS = ['TASK', 'STATE', 'TRIES', 'ID', 'RESULT / STATE INFO'];

export function compactTaskRow(t: TaskView): string[] {
  const outcome = t.state_info ? truncate(t.state_info, 60) : compactJson(t.result, 60);
  return [t.name, t.state, String(t.tries), t.id, outcome];
}

export function taskFields(t: TaskView, now: number): FieldPair[] {
  return [
    ['id', t.id],
    ['execution_id', t.execution_id],
    ['name', t.name],
    ['action', t.action],
    ['state', t.state],
    ['state_info', truncate(t.state_info, 300), t.state_info],
    ['tries', String(t.tries), t.tries],
    ['next_run_at', timeWithRelative(t.next_run_at, now), t.next_run_at],
    ['result', compactJson(t.result, 400), t.result],
    ['created_at', timeWithRelative(t.created_at, now), t.created_at],
    ['updated_at', timeWithRelative(t.updated_at, now), t.updated_at],
  ];
}
