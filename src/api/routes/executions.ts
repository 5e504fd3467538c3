import { Router } from 'express';
import { closestName } from '../../closest-name.js';
import { isRefusal, type Engine } from '../../engine/engine.js';
import { tooLargeMessage } from '../../engine/limits.js';
import { jsonBytes } from '../../json-size.js';
import type { WorkflowSpec } from '../../engine/workbook.js';
import { ExecutionInput, ExecutionStateInput, toExecutionView, toTaskView } from '../../records/engine.js';
import { EXECUTION_STATES, type ExecutionState } from '../../records/states.js';
import type { EngineStore } from '../../store/engine-store.js';
import { bodyOrEmpty } from '../json-body.js';
import { conflict, fieldProblems, invalidField, notFound, validationProblem, type FieldError } from '../problem.js';
import { orderedPageParams, page, pageParams } from '../paging.js';

/** The execution input with defaults applied; missing required and unknown names, and too much of it, are 400s. */
function checkInput(spec: WorkflowSpec, input: Record<string, unknown>, maxBytes: number): Record<string, unknown> {
  const errors: FieldError[] = [];
  const declared = new Set(spec.input.map((i) => i.name));
  for (const name of Object.keys(input)) {
    if (!declared.has(name)) errors.push({ field: `input.${name}`, message: `workflow ${spec.name} has no input ${name}` });
  }
  const value: Record<string, unknown> = {};
  for (const i of spec.input) {
    if (Object.hasOwn(input, i.name)) value[i.name] = input[i.name];
    else if (!i.required) value[i.name] = i.default ?? null;
    else errors.push({ field: `input.${i.name}`, message: 'required' });
  }
  if (errors.length) throw fieldProblems(errors);
  // The input is stored with the execution, sent in its first event and read by every task.
  const bytes = jsonBytes(value);
  if (bytes > maxBytes) throw invalidField('input', tooLargeMessage('the execution input', bytes, maxBytes));
  return value;
}

function unknownWorkflowMessage(workbook: string, workflow: string, names: string[]): string {
  const meant = closestName(workflow, names);
  const shown = names.length > 20 ? `${names.slice(0, 20).join(', ')} and ${names.length - 20} more` : names.join(', ');
  return `workbook ${workbook} has no workflow ${workflow}${meant ? `; did you mean ${meant}?` : ''} (its workflows: ${shown})`;
}

const oneValue = (value: unknown, field: string): string | undefined => {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '') throw invalidField(field, 'give one non-empty value');
  return value;
};

/** `listScanLimit`: executions a page looks at when it filters them (RELAY_LIST_SCAN_LIMIT). */
export function executionRoutes({ store, engine, listScanLimit }: { store: EngineStore; engine: Engine; listScanLimit?: number }): Router {
  const router = Router();

  async function load(project: string, id: string) {
    const execution = await store.getExecution(project, id);
    if (!execution) throw notFound(`execution ${id}`);
    return execution;
  }

  router.post('/', async (req, res) => {
    const parsed = ExecutionInput.safeParse(bodyOrEmpty(req));
    if (!parsed.success) throw validationProblem(parsed.error);
    const { workbook: name, workflow, input } = parsed.data;
    const workbook = await store.getWorkbook(res.locals.project, name);
    if (!workbook) throw invalidField('workbook', `no workbook named ${name}`);
    const workflows = (workbook.spec as { workflows: Record<string, WorkflowSpec> }).workflows;
    const spec = Object.hasOwn(workflows, workflow) ? workflows[workflow] : undefined;
    if (!spec) throw invalidField('workflow', unknownWorkflowMessage(name, workflow, Object.keys(workflows)));
    const checked = checkInput(spec, input, engine.limits.maxResultBytes);
    const execution = await engine.launch({ project: res.locals.project, workbook: name, workflow, spec, input: checked });
    res.status(201).location(`/v1/executions/${execution.id}`).json(toExecutionView(execution));
  });

  router.get('/', async (req, res) => {
    const { limit, after, order } = orderedPageParams(req.query, 'executions', ['workbook', 'workflow', 'state']);
    const state = oneValue(req.query.state, 'state');
    if (state !== undefined && !EXECUTION_STATES.includes(state as ExecutionState)) {
      throw invalidField('state', `one of ${EXECUTION_STATES.join(', ')}`);
    }
    const found = await store.listExecutions(res.locals.project, {
      after,
      order,
      limit: limit + 1,
      scanLimit: listScanLimit,
      workbook: oneValue(req.query.workbook, 'workbook'),
      workflow: oneValue(req.query.workflow, 'workflow'),
      state: state as ExecutionState | undefined,
    });
    res.json(page('executions', found.rows, limit, (e) => e.id, toExecutionView, order, found.resume));
  });

  router.get('/:id', async (req, res) => {
    res.json(toExecutionView(await load(res.locals.project, req.params.id)));
  });

  router.put('/:id', async (req, res) => {
    const parsed = ExecutionStateInput.safeParse(bodyOrEmpty(req));
    if (!parsed.success) throw validationProblem(parsed.error);
    const outcome = await engine.changeExecutionState(res.locals.project, req.params.id, parsed.data.state);
    if (isRefusal(outcome)) throw outcome.refused === 404 ? notFound(outcome.detail) : conflict(outcome.detail);
    res.json(toExecutionView(outcome));
  });

  router.get('/:id/tasks', async (req, res) => {
    const { limit, after } = pageParams(req.query, 'tasks');
    const execution = await load(res.locals.project, req.params.id);
    const { rows, resume } = await store.listTasks(res.locals.project, execution.id, { after, limit: limit + 1 });
    res.json(page('tasks', rows, limit, (t) => t.id, toTaskView, 'asc', resume));
  });

  return router;
}
