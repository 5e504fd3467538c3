import { hasExpression } from './expressions.js';
import type { ActionName } from './workbook.js';

/** A check answers an error message or null; it only sees literal values, never expressions. */
type Check = (value: unknown) => string | null;
interface Parameter {
  required?: boolean;
  check?: Check;
}

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

const isString: Check = (v) => (typeof v === 'string' ? null : 'must be a string');
/** The longest `std.sleep`: a year. */
export const MAX_SLEEP_S = 365 * 24 * 3600;
/** The longest `std.http` timeout: a day (timers of Node run at most about 24.8 days). */
export const MAX_HTTP_TIMEOUT_S = 24 * 3600;

/** Why `v` is not a number of seconds from `min` (inclusive for zero) up to `max`, or null. */
export function secondsProblem(v: unknown, min: 'zero' | 'positive', max: number): string | null {
  return typeof v === 'number' && Number.isFinite(v) && (min === 'zero' ? v >= 0 : v > 0) && v <= max
    ? null
    : `must be a number of seconds ${min === 'zero' ? '≥ 0' : '> 0'} and at most ${max}`;
}

const isSeconds =
  (min: 'zero' | 'positive', max: number): Check =>
  (v) =>
    secondsProblem(v, min, max);

const checkUrl: Check = (v) => {
  if (typeof v !== 'string') return 'must be a string';
  try {
    const url = new URL(v);
    return url.protocol === 'http:' || url.protocol === 'https:' ? null : 'must be an http or https URL';
  } catch {
    return 'must be an absolute http or https URL';
  }
};

const checkMethod: Check = (v) =>
  typeof v === 'string' && HTTP_METHODS.includes(v.toUpperCase()) ? null : `must be one of ${HTTP_METHODS.join(', ')}`;

const checkHeaders: Check = (v) => {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return 'must be a mapping of header names to strings';
  return Object.values(v).every((h) => typeof h === 'string') ? null : 'header values must be strings';
};

// Typed by ActionName, so adding an action to ACTIONS without describing its input fails to compile.
const ACTION_INPUTS: Record<ActionName, Record<string, Parameter>> = {
  'std.noop': {},
  'std.echo': { output: {} },
  'std.fail': { error_message: { check: isString } },
  'std.sleep': { seconds: { required: true, check: isSeconds('zero', MAX_SLEEP_S) } },
  'std.http': {
    url: { required: true, check: checkUrl },
    method: { check: checkMethod },
    headers: { check: checkHeaders },
    body: {},
    timeout: { check: isSeconds('positive', MAX_HTTP_TIMEOUT_S) },
  },
};

export const KNOWN_ACTIONS = Object.keys(ACTION_INPUTS) as ActionName[];

export function isActionName(value: unknown): value is ActionName {
  return typeof value === 'string' && Object.hasOwn(ACTION_INPUTS, value);
}

/** [input key, message] for each parameter that is missing, unknown, or has a literal value of the wrong kind. */
export function checkActionInput(action: ActionName, input: Record<string, unknown>): Array<[string, string]> {
  const parameters = ACTION_INPUTS[action];
  const problems: Array<[string, string]> = [];
  for (const [key, parameter] of Object.entries(parameters)) {
    const value = input[key];
    if (!Object.hasOwn(input, key) || value === null) {
      if (parameter.required) problems.push([key, `${action} needs input ${key}`]);
      continue;
    }
    // A value holding an expression is only known when the task runs.
    if (typeof value === 'string' && hasExpression(value)) continue;
    const message = parameter.check?.(value);
    if (message) problems.push([key, `${key} ${message}`]);
  }
  for (const key of Object.keys(input)) {
    if (!Object.hasOwn(parameters, key)) {
      const known = Object.keys(parameters);
      problems.push([key, `${action} takes no input ${key}${known.length > 0 ? `; it takes ${known.join(', ')}` : ''}`]);
    }
  }
  return problems;
}
