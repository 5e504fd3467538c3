import { CLOSE, OPEN, splitExpressions } from '../expression-text.js';
import { jsonBytes } from '../json-size.js';
import { compileEnvelopePath, type PathReader } from './envelope-path.js';

/*
 * The `template` payload format (DESIGN.md, "Listener delivery options", Templates): a JSON
 * value whose strings may hold `<% $.path %>` expressions, the workbook language's input form,
 * reading the event envelope instead of an execution's input. The path after `$` is read with
 * the envelope path reader filters and exec arguments use (bracketed keys included), so a path
 * means the same thing everywhere in a listener. Nothing is eval'd: an expression is a path,
 * and rendering (src/dispatch/template.ts) walks the parsed template once.
 */

/** The largest template a listener may hold, as compact JSON (the same bound as a filter). */
export const MAX_TEMPLATE_BYTES = 16 * 1024;

// After `$`: dotted segments of the engine's characters, or bracketed JSON-string keys.
const PATH_FORM = /^(?:\.[A-Za-z0-9_-]+|\["(?:[^"\\]|\\.)*"\])*$/;
const TASK_FORM = /^task\s*\(/;

/** A template that does not parse; `at` is where in the template (`body.task`), empty at its top. */
export class TemplateError extends Error {
  readonly code = 'INVALID_TEMPLATE';
  constructor(
    message: string,
    readonly at: string,
  ) {
    super(at ? `at ${at}: ${message}` : message);
    this.name = 'TemplateError';
  }
}

export interface TemplateExpression {
  read: PathReader | null; // null: `$`, the whole envelope
}
type Piece = string | TemplateExpression;
export type TemplateNode =
  | { kind: 'literal'; value: unknown }
  | { kind: 'text'; pieces: Piece[] }
  | { kind: 'expression'; expression: TemplateExpression }
  | { kind: 'array'; items: TemplateNode[] }
  | { kind: 'object'; entries: Array<[string, TemplateNode]> };

function parseExpression(source: string, at: string): TemplateExpression {
  const text = source.trim();
  if (TASK_FORM.test(text)) {
    throw new TemplateError(`"${OPEN} ${text} ${CLOSE}" reads a workflow task's result; a callback template reads the event: ${OPEN} $.path ${CLOSE}`, at);
  }
  const rest = text.slice(1);
  if (text[0] !== '$' || !PATH_FORM.test(rest)) {
    throw new TemplateError(
      `unsupported expression "${OPEN} ${text} ${CLOSE}"; a template reads the event with ${OPEN} $.path ${CLOSE}, e.g. ${OPEN} $.execution_id ${CLOSE} or ${OPEN} $.data["a.b"] ${CLOSE}`,
      at,
    );
  }
  if (rest === '') return { read: null };
  try {
    return { read: compileEnvelopePath(rest.startsWith('.') ? rest.slice(1) : rest) };
  } catch (err) {
    throw new TemplateError(`"${OPEN} ${text} ${CLOSE}": ${(err as Error).message}`, at);
  }
}

/** Literal text and expressions, in order; throws TemplateError. */
function parseString(text: string, at: string): TemplateNode {
  if (!text.includes(OPEN)) return { kind: 'literal', value: text };
  const pieces: Piece[] = splitExpressions(
    text,
    (source) => parseExpression(source, at),
    (open) => new TemplateError(`unterminated expression "${text.slice(open, open + 40)}" (missing ${CLOSE})`, at),
  );
  // As in workbooks: a string that is exactly one expression keeps the value's own type.
  const solid = pieces.filter((p) => typeof p !== 'string' || p.trim() !== '');
  if (solid.length === 1 && typeof solid[0] !== 'string') return { kind: 'expression', expression: solid[0] };
  return { kind: 'text', pieces };
}

const join = (at: string, key: string | number) =>
  typeof key === 'number' ? `${at}[${key}]` : /^[A-Za-z0-9_-]+$/.test(key) ? (at ? `${at}.${key}` : key) : `${at}[${JSON.stringify(key)}]`;

function parseNode(value: unknown, at: string): TemplateNode {
  if (typeof value === 'string') return parseString(value, at);
  if (Array.isArray(value)) return { kind: 'array', items: value.map((item, i) => parseNode(item, join(at, i))) };
  if (value !== null && typeof value === 'object') {
    // Keys are sent as written: only values hold expressions.
    return { kind: 'object', entries: Object.entries(value).map(([k, v]) => [k, parseNode(v, join(at, k))]) };
  }
  return { kind: 'literal', value };
}

/** Parses a template once, into what rendering walks; throws TemplateError naming where it fails. */
export function parseTemplate(template: unknown): TemplateNode {
  return parseNode(template, '');
}

/** Why a listener's template cannot be stored, or null; used by the callback schema at create and on every change. */
export function templateProblem(template: unknown): string | null {
  const bytes = jsonBytes(template);
  if (bytes > MAX_TEMPLATE_BYTES) return `a template is at most ${MAX_TEMPLATE_BYTES} bytes of JSON, this one is ${bytes}`;
  try {
    parseTemplate(template);
    return null;
  } catch (err) {
    if (err instanceof TemplateError) return err.message;
    throw err;
  }
}
