import { createHash } from 'node:crypto';
import { jsonShape, MAX_JSON_DEPTH } from '../json-depth.js';
import { parseStorableJson, UnstorableJsonError } from '../json-text.js';
import { NAME_MAX, type EventInput } from '../records/event.js';

export const MISTRAL_SOURCE = 'mistral';
export const MISTRAL_EVENT_ID_PREFIX = 'mistral-';

export interface MistralParseOptions {
  /** The route's `?workbook=`; wins over the workflow name. Empty means absent. */
  workbook?: string | null;
}

export type MistralEvent = EventInput & { id: string };

export type MistralParseResult =
  | { kind: 'ignored'; reason: string }
  | { kind: 'event'; event: MistralEvent; originalBody: string };

/** A body that is not a Mistral notification; `field` names the body key ("(body)" for the whole). */
export class MistralBodyError extends Error {
  readonly code = 'INVALID_MISTRAL_BODY';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'MistralBodyError';
  }
}

// Limits of the matching EventInput fields, so a mapped event always passes EventInput: names
// as long as Mistral's own columns take, ids and event names as EventInput's.
const ID_MAX = 200;
const STATE_MAX = 64;
const STATE_INFO_MAX = 65536;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Maps what Mistral's webhook notifier posts to an event. Pure: the caller stores the event
 * (deduplicating on its id) and keeps `originalBody` for the `mistral` payload format.
 */
export function parseMistralNotification(raw: string | Buffer, opts: MistralParseOptions = {}): MistralParseResult {
  const originalBody = typeof raw === 'string' ? raw : decodeUtf8(raw);
  const body = parseBody(originalBody);

  if (body.event === undefined || body.event === null) {
    return { kind: 'ignored', reason: 'notification has no event' };
  }
  const type = requiredText(body, 'event', ID_MAX);
  const id = requiredText(body, 'id', ID_MAX);
  const state = requiredText(body, 'state', STATE_MAX);
  const stateInfo = optionalText(body, 'state_info', STATE_INFO_MAX);
  const name = optionalText(body, 'name', NAME_MAX);
  const workflowName = optionalText(body, 'workflow_name', NAME_MAX);
  const workflowExecutionId = optionalText(body, 'workflow_execution_id', ID_MAX);
  const workbookOverride = opts.workbook || null;
  if (workbookOverride !== null && workbookOverride.length > NAME_MAX) {
    throw new MistralBodyError('workbook', `must be at most ${NAME_MAX} characters`);
  }

  const isTask = workflowExecutionId !== null;
  const workflow = isTask ? workflowName : (workflowName ?? name);
  const event: MistralEvent = {
    id: mistralEventId(body, workbookOverride),
    type,
    workbook: workbookOverride ?? workflow,
    workflow,
    execution_id: isTask ? workflowExecutionId : id,
    task_id: isTask ? id : null,
    task_name: isTask ? name : null,
    state,
    previous_state: null,
    state_info: stateInfo,
    source: MISTRAL_SOURCE,
    data: body,
  };
  const occurredAt = fromMistralTime(body.updated_at) ?? fromMistralTime(body.created_at);
  if (occurredAt !== null) event.occurred_at = occurredAt;
  return { kind: 'event', event, originalBody };
}

/**
 * What counts as the same notification: the same JSON value posted again to the same route
 * (same `?workbook=`), whatever its key order or whitespace. Mistral's RUNNING→RUNNING
 * repeat of TASK_LAUNCHED is one only when its body is otherwise identical; a repeat with a
 * new `updated_at` (or any other changed value) is a new event, since nothing in the body
 * tells it apart from a real relaunch. The workbook is part of the identity so two
 * subscriptions labelled differently each keep their own event instead of colliding.
 */
export function mistralEventId(body: Record<string, unknown>, workbook: string | null = null): string {
  let canonical: string;
  try {
    canonical = canonicalJson(body);
  } catch (err) {
    if (err instanceof RangeError) throw new MistralBodyError('(body)', 'is nested too deeply');
    throw err;
  }
  const hash = createHash('sha256').update(canonical);
  if (workbook !== null) hash.update(`\nworkbook=${workbook}`);
  return MISTRAL_EVENT_ID_PREFIX + hash.digest('hex').slice(0, 32);
}

/** JSON with object keys sorted at every level; array order is kept. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const members = Object.keys(obj)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`);
    return `{${members.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

const MISTRAL_TIME = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$/;

/** `2026-11-23 01:43:39` (UTC, as Mistral writes it) → `2026-11-23T01:43:39.000Z`; null when malformed. */
export function fromMistralTime(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  const m = MISTRAL_TIME.exec(value);
  if (!m) return null;
  const [, year, month, day, hour, minute, second, fraction = ''] = m;
  const wholeSeconds = `${year}-${month}-${day}T${hour}:${minute}:${second}`;
  const ms = Date.parse(`${wholeSeconds}.${fraction.padEnd(3, '0').slice(0, 3)}Z`);
  if (Number.isNaN(ms)) return null;
  const iso = new Date(ms).toISOString();
  // Date.parse rolls 02-30 over to 03-02 and takes 24:00; a round trip catches both.
  return iso.slice(0, 19) === wholeSeconds ? iso : null;
}

function decodeUtf8(raw: Buffer): string {
  try {
    return utf8.decode(raw);
  } catch {
    throw new MistralBodyError('(body)', 'is not valid UTF-8');
  }
}

function parseBody(text: string): Record<string, unknown> {
  const shape = jsonShape(text, MAX_JSON_DEPTH);
  if (shape.depth > MAX_JSON_DEPTH) {
    throw new MistralBodyError('(body)', `nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels`);
  }
  let value: unknown;
  try {
    value = parseStorableJson(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text, shape);
  } catch (err) {
    if (err instanceof UnstorableJsonError) throw new MistralBodyError('(body)', err.message);
    throw new MistralBodyError('(body)', 'is not valid JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new MistralBodyError('(body)', 'must be a JSON object');
  }
  return value as Record<string, unknown>;
}

function requiredText(body: Record<string, unknown>, key: string, max: number): string {
  const value = body[key];
  if (value === undefined || value === null) throw new MistralBodyError(key, 'is required');
  if (typeof value !== 'string' || value.length === 0) throw new MistralBodyError(key, 'must be a non-empty string');
  if (value.length > max) throw new MistralBodyError(key, `must be at most ${max} characters`);
  return value;
}

function optionalText(body: Record<string, unknown>, key: string, max: number): string | null {
  const value = body[key];
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string') throw new MistralBodyError(key, 'must be a string or null');
  if (value.length > max) throw new MistralBodyError(key, `must be at most ${max} characters`);
  return value;
}
