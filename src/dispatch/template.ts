import { appendQuery } from '../transports/http-query.js';
import { describeBytes, jsonBytes, jsonBytesWithin } from '../json-size.js';
import { parseTemplate, type TemplateExpression, type TemplateNode } from '../records/template.js';

/*
 * Rendering the `template` payload format: a template parsed by src/records/template.ts
 * (which also checks it when a listener is stored) walked once per event, bounded in bytes.
 */

/**
 * A rendering may be at most this large, or as large as the event itself when that is larger:
 * a template reshapes an event, and each expression may copy a large part of it, so without a
 * bound a 16 KiB template repeating `<% $.data %>` would build gigabytes.
 */
export const MIN_RENDERED_LIMIT_BYTES = 1024 * 1024;

const TEXT_CONTENT_TYPE = 'text/plain; charset=utf-8';
const JSON_CONTENT_TYPE = 'application/json';

/** A rendering past its limit: the same template and event would exceed it again. */
export class TemplateTooLargeError extends Error {
  readonly code = 'TEMPLATE_TOO_LARGE';
  constructor(limitBytes: number) {
    super(`the rendered template is larger than ${describeBytes(limitBytes)} (the larger of ${describeBytes(MIN_RENDERED_LIMIT_BYTES)} and the event's own size)`);
    this.name = 'TemplateTooLargeError';
  }
}

export interface CompiledTemplate {
  /** The template's value for one event; throws TemplateTooLargeError past `limitBytes` of JSON. */
  render(envelope: unknown, limitBytes: number): unknown;
}

/** Parses a template once; throws TemplateError naming where it fails. */
export function compileTemplate(template: unknown): CompiledTemplate {
  const root = parseTemplate(template);
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
      const read = (e: TemplateExpression) => {
        const value = e.read === null ? envelope : e.read(envelope);
        return value === undefined ? null : value;
      };
      const walk = (node: TemplateNode): unknown => {
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
