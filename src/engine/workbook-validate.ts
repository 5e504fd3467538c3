import { hasExpression, referencedTasks, validateExpressions } from './expressions.js';
import { checkActionInput, isActionName, KNOWN_ACTIONS } from './workbook-actions.js';
import { findCyclesWithoutExit, findStartTasks } from './workbook-graph.js';
import type { TaskSpec, WorkbookIssue, WorkbookSpec, WorkflowSpec } from './workbook.js';

export type PathSegment = string | number;
export type LineOf = (path: PathSegment[], at?: 'key' | 'value') => number | undefined;

const NAME = /^[A-Za-z0-9_.-]{1,100}$/;
// Input names must be readable as `$.name`, so no dots.
const INPUT_NAME = /^[A-Za-z0-9_-]{1,100}$/;
const WORKBOOK_KEYS = ['version', 'name', 'description', 'tags', 'workflows'];
const WORKFLOW_KEYS = ['description', 'input', 'tasks'];
const TASK_KEYS = ['action', 'input', 'on-success', 'on-error', 'on-complete', 'retry', 'description'];
const TRANSITIONS = [
  ['on-success', 'onSuccess'],
  ['on-error', 'onError'],
  ['on-complete', 'onComplete'],
] as const;

interface Scope {
  workflow: string;
  names: Set<string>;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && Object.getPrototypeOf(value) === Object.prototype;
}

class Issues {
  readonly list: WorkbookIssue[] = [];
  constructor(private readonly lineOf: LineOf) {}

  /** `linePath` points at the node to blame when it differs from the field (a list item). */
  add(path: PathSegment[], message: string, opts: { at?: 'key' | 'value'; linePath?: PathSegment[] } = {}): void {
    const line = this.lineOf(opts.linePath ?? path, opts.at);
    this.list.push({ field: path.length > 0 ? path.join('.') : '(body)', message, ...(line === undefined ? {} : { line }) });
  }

  unknownKeys(path: PathSegment[], value: Record<string, unknown>, allowed: string[]): void {
    for (const key of Object.keys(value)) {
      if (!allowed.includes(key)) this.add([...path, key], `unknown key ${key}; allowed: ${allowed.join(', ')}`, { at: 'key' });
    }
  }

  name(path: PathSegment[], value: unknown, what: string, at: 'key' | 'value' = 'value'): void {
    if (value === undefined || value === null) this.add(path, `${what} is required`, { at });
    else if (typeof value !== 'string' || !NAME.test(value)) this.add(path, `${what} must match ${NAME.source}`, { at });
  }
}

export function validateWorkbook(root: unknown, lineOf: LineOf): { spec: WorkbookSpec | null; issues: WorkbookIssue[] } {
  const issues = new Issues(lineOf);
  if (!isPlainObject(root)) {
    issues.add([], 'a workbook must be a mapping with version, name and workflows');
    return { spec: null, issues: issues.list };
  }
  issues.unknownKeys([], root, WORKBOOK_KEYS);
  if (root.version === undefined || root.version === null) issues.add(['version'], "version is required; use '2.0'", { at: 'key' });
  else if (root.version !== '2.0' && root.version !== 2) issues.add(['version'], "version must be '2.0'");
  issues.name(['name'], root.name, 'workbook name');
  // The name is a segment of its URL (/v1/workbooks/<name>), which clients resolve away.
  if (root.name === '.' || root.name === '..') issues.add(['name'], `workbook name cannot be ${root.name}: no URL path can name it`);

  const workflows: Array<[string, WorkflowSpec]> = [];
  if (!isPlainObject(root.workflows) || Object.keys(root.workflows).length === 0) {
    issues.add(['workflows'], 'at least one workflow is required', { at: 'key' });
  } else {
    for (const [name, raw] of Object.entries(root.workflows)) {
      issues.name(['workflows', name], name, 'workflow name', 'key');
      const workflow = validateWorkflow(name, raw, issues, lineOf);
      if (workflow) workflows.push([name, workflow]);
    }
  }
  issues.list.sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity));
  const spec = { name: String(root.name), version: '2.0' as const, workflows: Object.fromEntries(workflows) };
  return { spec: issues.list.length === 0 ? spec : null, issues: issues.list };
}

function validateWorkflow(name: string, raw: unknown, issues: Issues, lineOf: LineOf): WorkflowSpec | null {
  const path = ['workflows', name];
  if (!isPlainObject(raw)) {
    issues.add(path, 'a workflow must be a mapping with tasks');
    return null;
  }
  issues.unknownKeys(path, raw, WORKFLOW_KEYS);
  const input = validateInputs([...path, 'input'], raw.input, issues);
  if (!isPlainObject(raw.tasks) || Object.keys(raw.tasks).length === 0) {
    issues.add([...path, 'tasks'], 'at least one task is required', { at: 'key', linePath: raw.tasks === undefined ? path : undefined });
    return null;
  }
  const scope: Scope = { workflow: name, names: new Set(Object.keys(raw.tasks)) };
  const tasks = Object.fromEntries(
    Object.entries(raw.tasks).map(([taskName, task]) => [taskName, validateTask(path, taskName, task, scope, issues, lineOf)]),
  );

  const startTasks = findStartTasks(tasks);
  if (startTasks.length === 0) {
    issues.add([...path, 'tasks'], 'no start task: every task has an incoming transition', { at: 'key' });
  }
  for (const loop of findCyclesWithoutExit(tasks)) {
    issues.add([...path, 'tasks', loop[0]], `cycle ${loop.join(' → ')} has no exit`, { at: 'key' });
  }
  return { name, input, tasks, startTasks, line: lineOf(path, 'key') ?? 0 };
}

function validateInputs(path: PathSegment[], raw: unknown, issues: Issues): WorkflowSpec['input'] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) {
    issues.add(path, 'input must be a list of names or {name: default} mappings');
    return [];
  }
  const inputs: WorkflowSpec['input'] = [];
  raw.forEach((item, i) => {
    const linePath = [...path, i];
    let entry: WorkflowSpec['input'][number];
    if (typeof item === 'string') entry = { name: item, required: true };
    else if (isPlainObject(item) && Object.keys(item).length === 1) {
      const [[key, value]] = Object.entries(item);
      entry = { name: key, default: value, required: false };
    } else {
      issues.add(path, 'each input must be a name or a {name: default} mapping', { linePath });
      return;
    }
    if (!INPUT_NAME.test(entry.name)) issues.add(path, `input name ${entry.name} must match ${INPUT_NAME.source}`, { linePath });
    else if (inputs.some((other) => other.name === entry.name)) issues.add(path, `input ${entry.name} is declared twice`, { linePath });
    else inputs.push(entry);
  });
  return inputs;
}

function validateTask(
  workflowPath: PathSegment[],
  name: string,
  raw: unknown,
  scope: Scope,
  issues: Issues,
  lineOf: LineOf,
): TaskSpec {
  const path = [...workflowPath, 'tasks', name];
  issues.name(path, name, 'task name', 'key');
  const task: TaskSpec = { name, action: 'std.noop', input: {}, onSuccess: [], onError: [], onComplete: [], retry: null, line: lineOf(path, 'key') ?? 0 };
  if (!isPlainObject(raw)) {
    issues.add(path, 'a task must be a mapping with an action');
    return task;
  }
  issues.unknownKeys(path, raw, TASK_KEYS);

  if (raw.action === undefined || raw.action === null) issues.add([...path, 'action'], 'action is required', { at: 'key' });
  else if (!isActionName(raw.action)) {
    const shown = typeof raw.action === 'string' ? raw.action : JSON.stringify(raw.action);
    issues.add([...path, 'action'], `unknown action ${shown}; one of ${KNOWN_ACTIONS.join(', ')}`);
  } else task.action = raw.action;

  if (raw.input !== undefined && raw.input !== null && !isPlainObject(raw.input)) {
    issues.add([...path, 'input'], 'input must be a mapping');
  } else {
    const input = isPlainObject(raw.input) ? raw.input : {};
    task.input = input;
    checkInputValues([...path, 'input'], input, scope, issues);
    if (isActionName(raw.action)) {
      for (const [key, message] of checkActionInput(raw.action, input)) {
        // A missing parameter is blamed on the input mapping, or on the action when there is none.
        const linePath = Object.hasOwn(input, key) ? undefined : [...path, isPlainObject(raw.input) ? 'input' : 'action'];
        issues.add([...path, 'input', key], message, { linePath, at: linePath ? 'key' : 'value' });
      }
    }
  }

  for (const [key, field] of TRANSITIONS) task[field] = validateTransitions([...path, key], raw[key], scope, issues);
  if (raw.retry !== undefined && raw.retry !== null) task.retry = validateRetry([...path, 'retry'], raw.retry, issues);
  if (raw.description !== undefined && typeof raw.description !== 'string') {
    issues.add([...path, 'description'], 'description must be a string');
  }
  return task;
}

/** Every leaf must be JSON, and every string's expressions must parse and name tasks of this workflow. */
function checkInputValues(path: PathSegment[], value: unknown, scope: Scope, issues: Issues): void {
  if (typeof value === 'string') {
    if (!hasExpression(value)) return;
    for (const message of validateExpressions(value)) issues.add(path, message);
    for (const task of referencedTasks(value)) {
      if (!scope.names.has(task)) issues.add(path, `task('${task}') refers to no task of workflow ${scope.workflow}`);
    }
  } else if (Array.isArray(value)) value.forEach((item, i) => checkInputValues([...path, i], item, scope, issues));
  else if (isPlainObject(value)) for (const [k, v] of Object.entries(value)) checkInputValues([...path, k], v, scope, issues);
  else if (!(value === null || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value)))) {
    issues.add(path, 'must be a JSON value (string, finite number, boolean, null, list or mapping)');
  }
}

function validateTransitions(path: PathSegment[], raw: unknown, scope: Scope, issues: Issues): string[] {
  if (raw === undefined || raw === null) return [];
  const list = typeof raw === 'string' ? [raw] : raw;
  if (!Array.isArray(list)) {
    issues.add(path, 'a transition must be a task name or a list of task names');
    return [];
  }
  const targets: string[] = [];
  list.forEach((target, i) => {
    const linePath = typeof raw === 'string' ? path : [...path, i];
    if (typeof target !== 'string') issues.add(path, 'a transition must be a task name or a list of task names', { linePath });
    else if (!scope.names.has(target)) issues.add(path, `no task named ${target} in workflow ${scope.workflow}`, { linePath });
    else if (!targets.includes(target)) targets.push(target);
  });
  return targets;
}

function validateRetry(path: PathSegment[], raw: unknown, issues: Issues): TaskSpec['retry'] {
  if (!isPlainObject(raw)) {
    issues.add(path, 'retry must be a mapping {count, delay}');
    return null;
  }
  issues.unknownKeys(path, raw, ['count', 'delay']);
  const { count, delay = 0 } = raw;
  const countOk = typeof count === 'number' && Number.isInteger(count) && count >= 0 && count <= 100;
  const delayOk = typeof delay === 'number' && Number.isFinite(delay) && delay >= 0 && delay <= 86400;
  if (!countOk) issues.add([...path, 'count'], 'count must be an integer from 0 to 100', { at: count === undefined ? 'key' : 'value' });
  if (!delayOk) issues.add([...path, 'delay'], 'delay must be a number of seconds from 0 to 86400');
  return countOk && delayOk ? { count, delay } : null;
}
