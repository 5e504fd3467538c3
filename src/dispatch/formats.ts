import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { EventEnvelope, OriginalMessage } from '../records/event.js';
import { envelopeQuery, withEnvelopeQuery } from '../transports/http-query.js';
import { cloudEventSource, CLOUDEVENTS_STRUCTURED_CONTENT_TYPE, renderCloudEventStructured } from './cloudevents-structured.js';
import { renderOslo } from './oslo-format.js';
import { renderLimitBytes, renderTemplateBody, templateQuery } from './template.js';

export const CALLBACK_FORMATS = ['json', 'cloudevents', 'mistral', 'oslo', 'template'] as const;
export type CallbackFormat = (typeof CALLBACK_FORMATS)[number];

// Both src/dispatch/ (tests) and dist/dispatch/ (built) sit two levels below the root.
const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};
export const USER_AGENT = `callback-relay/${version}`;
export function userAgent(): string {
  return USER_AGENT;
}

export const JSON_CONTENT_TYPE = 'application/json';

/** The query a GET or DELETE delivery carries: the envelope's scalar fields, or the rendered template's. */
function bodylessQuery(input: PayloadRenderInput): string {
  if (input.format !== 'template') return envelopeQuery(input.envelope);
  return templateQuery(input.template, input.envelope, renderLimitBytes(envelopeBytes(input))).toString();
}

const envelopeBytes = ({ envelope, envelopeJson }: { envelope: EventEnvelope; envelopeJson?: string }) =>
  Buffer.byteLength(envelopeJson ?? JSON.stringify(envelope), 'utf8');

export interface PayloadRenderInput {
  envelope: EventEnvelope;
  /** JSON.stringify(envelope), when the caller already has it. */
  envelopeJson?: string;
  format: CallbackFormat;
  /** The transport that carries it: HTTP carries CloudEvents in binary mode, others structured. */
  transport: string;
  /** An HTTP GET or DELETE: no body at all (the signature covers the empty body). */
  bodyless?: boolean;
  original?: OriginalMessage | null;
  project: string;
  /** The delivery's id: an oslo notification's `message_id` is made from it. */
  deliveryId: string;
  /** This machine's name, for an oslo notification's `publisher_id`. */
  hostname?: string;
  /** The listener's `callback.template`, for the `template` format. */
  template?: unknown;
}

export interface RenderedPayload {
  body: string;
  /** For a bodyless HTTP delivery (GET, DELETE): the payload as a query string; null otherwise. */
  query: string | null;
  contentType: string;
  /** Headers the format itself sets (content-type, CloudEvents binary-mode attributes). */
  headers: Record<string, string>;
}

/** The body of a delivery in its listener's format, whatever transport carries it. */
export function renderPayload(input: PayloadRenderInput): RenderedPayload {
  const payload = renderPayloadBody(input);
  return { ...payload, query: input.bodyless ? bodylessQuery(input) : null };
}

function renderPayloadBody(input: PayloadRenderInput): Omit<RenderedPayload, 'query'> {
  const { envelope, format, transport } = input;
  if (format === 'cloudevents' && transport !== 'http') {
    const contentType = CLOUDEVENTS_STRUCTURED_CONTENT_TYPE;
    return { body: renderCloudEventStructured(envelope), contentType, headers: { 'content-type': contentType } };
  }
  if (format === 'template') return renderTemplatePayload(input);
  const headers: Record<string, string> = format === 'cloudevents' ? cloudEventHeaders(envelope) : {};
  if (input.bodyless) return { body: '', contentType: JSON_CONTENT_TYPE, headers };
  headers['content-type'] = JSON_CONTENT_TYPE;
  return { body: renderBody(input), contentType: JSON_CONTENT_TYPE, headers };
}

function renderBody({ envelope, envelopeJson, format, original, project, deliveryId, hostname }: PayloadRenderInput): string {
  switch (format) {
    case 'json':
    case 'cloudevents':
      return envelopeJson ?? JSON.stringify(envelope);
    case 'oslo':
      return renderOslo(envelope, {
        deliveryId,
        hostname: hostname ?? os.hostname(),
        original: original?.format === 'oslo' ? original.body : null,
      });
    case 'mistral':
      if (original?.format === 'mistral') return original.body;
      return JSON.stringify(
        envelope.category === 'TASK' ? mistralTaskBody(envelope, project) : mistralWorkflowBody(envelope, project),
      );
    default:
      throw new TypeError(`unknown callback format ${String(format)}`);
  }
}

/**
 * The `template` format: the rendered template as the body (text for a string, else JSON). A
 * GET or DELETE sends it in the query instead (bodylessQuery); it is rendered here all the same,
 * so one that cannot be rendered fails before anything is sent, and the signature covers the
 * empty body.
 */
function renderTemplatePayload(input: PayloadRenderInput): Omit<RenderedPayload, 'query'> {
  // The callback schema requires one with this format: a caller that leaves it out is a defect.
  if (input.template === undefined) throw new TypeError('the template format needs the listener\'s callback.template');
  const { body, contentType } = renderTemplateBody(input.template, input.envelope, renderLimitBytes(envelopeBytes(input)));
  if (input.bodyless) return { body: '', contentType, headers: {} };
  return { body, contentType, headers: { 'content-type': contentType } };
}

export { withEnvelopeQuery };

// ---- CloudEvents 1.0, binary mode ----

export { cloudEventSource };

export function cloudEventHeaders(envelope: EventEnvelope): Record<string, string> {
  const headers: Record<string, string> = {
    'ce-specversion': '1.0',
    'ce-id': headerValue(envelope.id),
    'ce-type': headerValue(envelope.type),
    'ce-source': cloudEventSource(envelope.workbook),
    'ce-time': headerValue(envelope.occurred_at),
  };
  if (envelope.execution_id != null) headers['ce-subject'] = headerValue(envelope.execution_id);
  return headers;
}

// The HTTP binding percent-encodes space, '"', '%' and anything outside printable ASCII;
// it also keeps control characters from making the header invalid.
const NEEDS_ENCODING = /[^\x21\x23\x24\x26-\x7e]/;
function headerValue(value: string): string {
  if (!NEEDS_ENCODING.test(value)) return value;
  let out = '';
  for (const ch of value) {
    if (!NEEDS_ENCODING.test(ch)) out += ch;
    else for (const byte of Buffer.from(ch, 'utf8')) out += '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

// ---- Mistral notifier bodies ----

const MISTRAL_TIME = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/;
const FINISHED_TASK_STATES = new Set(['SUCCESS', 'ERROR', 'CANCELLED', 'SKIPPED']);

/** `2026-11-23T10:00:00.123Z` → `2026-11-23 10:00:00` (UTC, whole seconds), as Mistral writes times. */
export function toMistralTime(value: string): string | null {
  if (MISTRAL_TIME.test(value)) return value;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) return null;
  const iso = new Date(ms).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}`;
}

function dataString(data: Record<string, unknown>, key: string): string | null {
  const value = data[key];
  return typeof value === 'string' ? value : null;
}

function dataTime(data: Record<string, unknown>, key: string, fallback: string | null): string | null {
  const value = dataString(data, key);
  return (value !== null ? toMistralTime(value) : null) ?? fallback;
}

export function mistralWorkflowBody(envelope: EventEnvelope, project: string): Record<string, unknown> {
  const { data } = envelope;
  const at = toMistralTime(envelope.occurred_at);
  return {
    id: envelope.execution_id ?? envelope.id,
    name: envelope.workflow,
    workflow_name: envelope.workflow,
    workflow_namespace: dataString(data, 'workflow_namespace') ?? '',
    workflow_id: dataString(data, 'workflow_id'),
    state: envelope.state,
    state_info: envelope.state_info,
    project_id: project,
    task_execution_id: dataString(data, 'task_execution_id'),
    root_execution_id: dataString(data, 'root_execution_id'),
    created_at: dataTime(data, 'created_at', at),
    updated_at: dataTime(data, 'updated_at', at),
    event: envelope.type,
  };
}

export function mistralTaskBody(envelope: EventEnvelope, project: string): Record<string, unknown> {
  const { data } = envelope;
  const at = toMistralTime(envelope.occurred_at);
  const type = data.type === 'WORKFLOW' ? 'WORKFLOW' : 'ACTION';
  // Mistral leaves finished_at empty until the task has ended.
  const finished = envelope.state !== null && FINISHED_TASK_STATES.has(envelope.state) ? at : null;
  return {
    id: envelope.task_id ?? envelope.id,
    name: envelope.task_name,
    workflow_execution_id: envelope.execution_id,
    workflow_name: envelope.workflow,
    workflow_namespace: dataString(data, 'workflow_namespace') ?? '',
    workflow_id: dataString(data, 'workflow_id'),
    state: envelope.state,
    state_info: envelope.state_info,
    type,
    project_id: project,
    created_at: dataTime(data, 'created_at', at),
    updated_at: dataTime(data, 'updated_at', at),
    started_at: dataTime(data, 'started_at', at),
    finished_at: dataTime(data, 'finished_at', finished),
    event: envelope.type,
  };
}
