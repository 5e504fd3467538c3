import { appendQuery } from '../transports/http-query.js';
import { jsonBytes, jsonBytesWithin, describeBytes } from '../engine/limits.js';
import { compileEnvelopePath, type PathReader } from '../records/envelope-path.js';

/*
 * The `template` payload format (DESIGN.md, "Listener delivery options", Templates): a JSON
 * value whose strings may hold `<% $.path %>` expressions, the workbook language's input form,
 * reading the event envelope instead of an execution's input. The path after `$` is read with
 * the envelope path reader filters and exec arguments use (bracketed keys included), so a path
 * means the same thing everywhere in a listener. Nothing is eval'd: an expression is a path,
 * and rendering walks the template once.
 */

/** The largest template a listener may hold, as compact JSON (the same bound as a filter). */
export const MAX_TEMPLATE_BYTES = 16 * 1024;

/**
 * A rendering may be at most this large, or as large as the event itself when that is larger:
 * a template reshapes an event, and each expression may copy a large part of it, so without a
 * bound a 16 KiB template repeating `<% $.data %>` would build gigabytes.
 */
export const MIN_RENDERED_LIMIT_BYTES = 1024 * 1024;

const TEXT_CONTENT_TYPE = 'text/plain; charset=utf-8';
const JSON_CONTENT_TYPE = 'application/json';

const OPEN = '<%';
const CLOSE = '%>';
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

/** A rendering past its limit: the same template and event would exceed it again. */
export class TemplateTooLargeError extends Error {
  readonly code = 'TEMPLATE_TOO_LARGE';
  constructor(limitBytes: number) {
    super(`the rendered template is larger than ${describeBytes(limitBytes)} (the larger of ${describeBytes(MIN_RENDERED_LIMIT_BYTES)} and the event's own size)`);
    this.name = 'TemplateTooLargeError';
  }
}

interface Expression {
  read: PathReader | null; // null: `$`, the whole envelope
}
type Piece = string | Expression;
type Node =
  | { kind: 'literal'; value: unknown }
  | { kind: 'text'; pieces: Piece[] }
  | { kind: 'expression'; expression: Expression }
  | { kind: 'array'; items: Node[] }
  | { kind: 'object'; entries: Array<[string, Node]> };

function parseExpression(source: string, at: string): Expression {
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
function parseString(text: string, at: string): Node {
  if (!text.includes(OPEN)) return { kind: 'literal', value: text };
  const pieces: Piece[] = [];
  let from = 0;
  while (from < text.length) {
    const open = text.indexOf(OPEN, from);
    if (open === -1) {
      pieces.push(text.slice(from));
      break;
    }
    if (open > from) pieces.push(text.slice(from, open));
    const close = text.indexOf(CLOSE, open + OPEN.length);
    if (close === -1) throw new TemplateError(`unterminated expression "${text.slice(open, open + 40)}" (missing ${CLOSE})`, at);
    pieces.push(parseExpression(text.slice(open + OPEN.length, close), at));
    from = close + CLOSE.length;
  }
  // As in workbooks: a string that is exactly one expression keeps the value's own type.
  const solid = pieces.filter((p) => typeof p !== 'string' || p.trim() !== '');
  if (solid.length === 1 && typeof solid[0] !== 'string') return { kind: 'expression', expression: solid[0] };
  return { kind: 'text', pieces };
}

const join = (at: string, key: string | number) =>
  typeof key === 'number' ? `${at}[${key}]` : /^[A-Za-z0-9_-]+$/.test(key) ? (at ? `${at}.${key}` : key) : `${at}[${JSON.stringify(key)}]`;

function parseNode(value: unknown, at: string): Node {
  if (typeof value === 'string') return parseString(value, at);
  if (Array.isArray(value)) return { kind: 'array', items: value.map((item, i) => parseNode(item, join(at, i))) };
  if (value !== null && typeof value === 'object') {
    // Keys are sent as written: only values hold expressions.
    return { kind: 'object', entries: Object.entries(value).map(([k, v]) => [k, parseNode(v, join(at, k))]) };
  }
  return { kind: 'literal', value };
}

export interface CompiledTemplate {
  /** The template's value for one event; throws TemplateTooLargeError past `limitBytes` of JSON. */
  render(envelope: unknown, limitBytes: number): unknown;
}

/** Parses a template once; throws TemplateError naming where it fails. */
export function compileTemplate(template: unknown): CompiledTemplate {
  const root = parseNode(template, '');
  return {
    render(envelope, limitBytes) {
      const budget = { left: limitBytes };
      // Charged as the value is built, before a long string is joined, so an output past the
      // limit is refused without being built; the count is a lower bound of its JSON size.
      const charge = (bytes: number) => {
        budget.left -= bytes;
        if (budget.left < 0) throw new TemplateTooLargeError(limitBytes);
      };
      // Measuring stops at the budget, however large the value read from the event.
      const chargeValue = (value: unknown) => charge(jsonBytesWithin(value, Math.max(0, budget.left)) ?? budget.left + 1);
      const read = (e: Expression) => {
        const value = e.read === null ? envelope : e.read(envelope);
        return value === undefined ? null : value;
      };
      const walk = (node: Node): unknown => {
        switch (node.kind) {
          case 'literal':
            charge(jsonBytes(node.value));
            return node.value;
          case 'expression': {
            const value = read(node.expression);
            chargeValue(value);
            return value;
          }
          case 'text': {
            charge(2);
            const parts = node.pieces.map((piece) => {
              const value = typeof piece === 'string' ? piece : read(piece);
              if (typeof value === 'string') {
                charge(Buffer.byteLength(value, 'utf8'));
                return value;
              }
              // Interpolated into text as JSON (null → "null"), measured before it is written out.
              chargeValue(value);
              return JSON.stringify(value);
            });
            return parts.join('');
          }
          case 'array':
            charge(1 + node.items.length);
            return node.items.map(walk);
          case 'object':
            charge(1 + node.entries.length);
            return Object.fromEntries(
              node.entries.map(([k, v]) => {
                charge(Buffer.byteLength(k, 'utf8') + 3);
                return [k, walk(v)];
              }),
            );
        }
      };
      return walk(root);
    },
  };
}

/** Why a listener's template cannot be stored, or null; used by the callback schema at create and on every change. */
export function templateProblem(template: unknown): string | null {
  const bytes = jsonBytes(template);
  if (bytes > MAX_TEMPLATE_BYTES) return `a template is at most ${MAX_TEMPLATE_BYTES} bytes of JSON, this one is ${bytes}`;
  try {
    compileTemplate(template);
    return null;
  } catch (err) {
    if (err instanceof TemplateError) return err.message;
    throw err;
  }
}

/** How large one event's rendering may grow: the larger of 1 MiB and the event's own JSON. */
export function renderLimitBytes(envelopeJsonBytes: number): number {
  return Math.max(MIN_RENDERED_LIMIT_BYTES, envelopeJsonBytes);
}

/**
 * A body from a template: a value that renders to a string is sent as text, anything else as
 * JSON, so `"<% $.data %>"` sends the payload as JSON and `"Task <% $.task_name %> done"` a line
 * of text.
 */
export function renderTemplateBody(template: unknown, envelope: unknown, limitBytes: number): { body: string; contentType: string } {
  const value = compileTemplate(template).render(envelope, limitBytes);
  if (typeof value === 'string') return { body: value, contentType: TEXT_CONTENT_TYPE };
  return { body: JSON.stringify(value), contentType: JSON_CONTENT_TYPE };
}

/**
 * The query of a GET or DELETE delivery from an object template: one parameter per field, in
 * the template's order; strings as they are, numbers and booleans as text, objects and arrays
 * as JSON; a null (or missing) value leaves its parameter out, as the envelope's query does.
 */
export function templateQuery(template: unknown, envelope: unknown, limitBytes: number): URLSearchParams {
  const value = compileTemplate(template).render(envelope, limitBytes);
  const params = new URLSearchParams();
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    // The callback schema allows only object templates with GET and DELETE.
    throw new TypeError('a GET or DELETE template must render an object');
  }
  for (const [key, v] of Object.entries(value)) {
    if (v === null || v === undefined) continue;
    params.append(key, typeof v === 'string' ? v : typeof v === 'object' ? JSON.stringify(v) : String(v));
  }
  return params;
}

/** `url` with the template's query appended after the receiver's own parameters, whose encoding stays as it was. */
export function withTemplateQuery(url: string, template: unknown, envelope: unknown, limitBytes: number): string {
  return appendQuery(url, templateQuery(template, envelope, limitBytes).toString());
}
