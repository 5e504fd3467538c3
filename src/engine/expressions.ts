import { CLOSE, OPEN, splitExpressions } from '../expression-text.js';
import { jsonBytes } from '../json-size.js';
import { ResultTooLargeError } from './limits.js';

/**
 * The two expression forms a workbook may use: `<% $.path %>` (execution input) and
 * `<% task('name').result.path %>` (an earlier task's result). Parsed by hand, never eval'd.
 */
export interface ExpressionContext {
  input: Record<string, unknown>;
  taskResult: (name: string) => unknown;
}

type Expression = { kind: 'input'; path: string[] } | { kind: 'task'; task: string; path: string[] };
type Piece = string | Expression;

const INPUT_FORM = /^\$((?:\.[A-Za-z0-9_-]+)+)$/;
const TASK_FORM = /^task\(\s*(?:'([A-Za-z0-9_.-]{1,100})'|"([A-Za-z0-9_.-]{1,100})")\s*\)\.result((?:\.[A-Za-z0-9_-]+)*)$/;

export class ExpressionError extends Error {
  readonly code = 'INVALID_EXPRESSION';
  constructor(message: string) {
    super(message);
    this.name = 'ExpressionError';
  }
}

function parseExpression(body: string): Expression {
  const text = body.trim();
  const input = INPUT_FORM.exec(text);
  if (input) return { kind: 'input', path: input[1].slice(1).split('.') };
  const task = TASK_FORM.exec(text);
  if (task) {
    return { kind: 'task', task: task[1] ?? task[2], path: task[3] ? task[3].slice(1).split('.') : [] };
  }
  throw new ExpressionError(
    `unsupported expression "${OPEN} ${text} ${CLOSE}"; use ${OPEN} $.name ${CLOSE} or ${OPEN} task('name').result ${CLOSE}`,
  );
}

/** Splits a string into literal text and expressions; throws ExpressionError. */
function parseTemplate(text: string): Piece[] {
  return splitExpressions(text, parseExpression, (open) => new ExpressionError(`unterminated expression "${text.slice(open)}" (missing ${CLOSE})`));
}

function readPath(root: unknown, path: string[]): unknown {
  let current = root;
  for (const segment of path) {
    if (Array.isArray(current) && /^\d+$/.test(segment)) current = current[Number(segment)];
    else if (current !== null && typeof current === 'object' && !Array.isArray(current) && Object.hasOwn(current, segment)) {
      current = (current as Record<string, unknown>)[segment];
    } else return null;
  }
  return current === undefined ? null : current;
}

function evaluateExpression(expr: Expression, ctx: ExpressionContext): unknown {
  return expr.kind === 'input' ? readPath(ctx.input, expr.path) : readPath(ctx.taskResult(expr.task), expr.path);
}

/**
 * Bytes of JSON the evaluation may still produce. Charged as the output is built, before a
 * large string is joined, so an input that would expand past the limit (one big value read many
 * times) is refused without being built. The count is a lower bound of the output's JSON size.
 */
interface Budget {
  left: number;
  maxBytes: number;
  what: string;
}

function charge(budget: Budget | undefined, bytes: () => number): void {
  if (!budget) return;
  budget.left -= bytes();
  if (budget.left < 0) throw new ResultTooLargeError(budget.what, null, budget.maxBytes);
}

const textBytes = (text: string) => Buffer.byteLength(text, 'utf8');

function evaluateString(text: string, ctx: ExpressionContext, budget?: Budget): unknown {
  if (!text.includes(OPEN)) {
    charge(budget, () => textBytes(text) + 2);
    return text;
  }
  const pieces = parseTemplate(text.trim());
  // A string that is exactly one expression keeps the value's own type (number, object, ...).
  if (pieces.length === 1 && typeof pieces[0] !== 'string') {
    const value = evaluateExpression(pieces[0], ctx);
    charge(budget, () => jsonBytes(value));
    return value;
  }
  charge(budget, () => 2);
  return parseTemplate(text)
    .map((piece) => {
      let part: string;
      if (typeof piece === 'string') part = piece;
      else {
        const value = evaluateExpression(piece, ctx);
        part = typeof value === 'string' ? value : JSON.stringify(value ?? null);
      }
      charge(budget, () => textBytes(part));
      return part;
    })
    .join('');
}

function evaluateWithin(value: unknown, ctx: ExpressionContext, budget?: Budget): unknown {
  if (typeof value === 'string') return evaluateString(value, ctx, budget);
  if (Array.isArray(value)) {
    charge(budget, () => 1 + value.length);
    return value.map((item) => evaluateWithin(item, ctx, budget));
  }
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value);
    charge(budget, () => 1 + entries.length);
    return Object.fromEntries(
      entries.map(([k, v]) => {
        charge(budget, () => textBytes(k) + 3);
        return [k, evaluateWithin(v, ctx, budget)];
      }),
    );
  }
  charge(budget, () => jsonBytes(value));
  return value;
}

/**
 * Evaluates every expression in strings found anywhere in `value`; object keys are left as
 * written. With `maxBytes`, an output of more than that many bytes of JSON throws
 * ResultTooLargeError naming it `what` before it is built in full.
 */
export function evaluate(value: unknown, ctx: ExpressionContext, limit?: { maxBytes: number; what: string }): unknown {
  return evaluateWithin(value, ctx, limit && { left: limit.maxBytes, maxBytes: limit.maxBytes, what: limit.what });
}

function strings(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const item of value) strings(item, out);
  else if (value !== null && typeof value === 'object') for (const item of Object.values(value)) strings(item, out);
  return out;
}

/** One message per string in `value` whose expressions do not parse. */
export function validateExpressions(value: unknown): string[] {
  const errors: string[] = [];
  for (const text of strings(value)) {
    try {
      parseTemplate(text);
    } catch (err) {
      if (!(err instanceof ExpressionError)) throw err;
      errors.push(err.message);
    }
  }
  return errors;
}

/** Names of the tasks whose results `value` reads, in order of first use; strings that do not parse are skipped. */
export function referencedTasks(value: unknown): string[] {
  const names = new Set<string>();
  for (const text of strings(value)) {
    try {
      for (const piece of parseTemplate(text)) if (typeof piece !== 'string' && piece.kind === 'task') names.add(piece.task);
    } catch (err) {
      if (!(err instanceof ExpressionError)) throw err;
    }
  }
  return [...names];
}

/** True when `text` holds at least one expression, so its value is only known at run time. */
export function hasExpression(text: string): boolean {
  return text.includes(OPEN);
}
