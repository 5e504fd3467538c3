import { createHash } from 'node:crypto';
import { jsonShape, MAX_JSON_DEPTH } from '../json-depth.js';
import { parseStorableJson, UnstorableJsonError } from '../json-text.js';
import { EventInput, type DataSchema, type OriginalMessage } from '../records/event.js';

/*
 * An OpenStack notification as oslo.messaging puts it on RabbitMQ (INTEROP.md), mapped to an
 * event. Pure: the consumer stores the event and acknowledges or rejects the message.
 */

export const OSLO_EVENT_ID_PREFIX = 'oslo-';

/** The largest message taken: as much as one `POST /v1/events` may carry. */
export const MAX_NOTIFICATION_BYTES = 16 * 1024 * 1024;

/**
 * Why a message is not an event:
 * - `too_large`: over MAX_NOTIFICATION_BYTES;
 * - `not_json`: not UTF-8, not JSON, nested deeper than MAX_JSON_DEPTH, or not a JSON object;
 * - `bad_envelope`: a messagingv2 envelope of another version, or whose `oslo.message` is not
 *   a JSON object in a string;
 * - `no_event_type`: `event_type` missing, null or empty;
 * - `invalid_field`: a value an event cannot hold (a `message_id` that is no event id, an
 *   `event_type` or `publisher_id` over 200 characters, a `timestamp` that is no time, …).
 */
export const OSLO_REJECT_REASONS = ['too_large', 'not_json', 'bad_envelope', 'no_event_type', 'invalid_field'] as const;
export type OsloRejectReason = (typeof OSLO_REJECT_REASONS)[number];

export type OsloParseResult =
  | { kind: 'event'; input: EventInput & { id: string }; original: OriginalMessage & { format: 'oslo' } }
  | { kind: 'rejected'; reason: OsloRejectReason; detail: string };

const ENVELOPE_VERSION_KEY = 'oslo.version';
const ENVELOPE_MESSAGE_KEY = 'oslo.message';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

class Rejection extends Error {
  constructor(
    readonly reason: OsloRejectReason,
    readonly detail: string,
  ) {
    super(detail);
  }
}

/**
 * Maps one message body, messagingv2 envelope or bare v1 dict, whatever its content type.
 *
 * The original kept for the `oslo` payload format, which forwards it unchanged, is always a
 * messagingv2 envelope, so that an oslo notification listener reads the forwarded body as it
 * would the message itself: an envelope as received, a bare dict wrapped in one (its text,
 * unchanged, as `oslo.message`).
 */
export function parseOsloNotification(body: Buffer): OsloParseResult {
  try {
    return { kind: 'event', ...mapNotification(body) };
  } catch (err) {
    if (err instanceof Rejection) return { kind: 'rejected', reason: err.reason, detail: err.detail };
    throw err;
  }
}

function mapNotification(body: Buffer): { input: EventInput & { id: string }; original: OriginalMessage & { format: 'oslo' } } {
  if (body.length > MAX_NOTIFICATION_BYTES) {
    throw new Rejection('too_large', `the message has ${body.length} bytes, more than the ${MAX_NOTIFICATION_BYTES} taken`);
  }
  let text: string;
  try {
    // The decoder drops a leading byte order mark, which Python's json.loads would refuse.
    text = utf8.decode(body);
  } catch {
    throw new Rejection('not_json', 'the message is not valid UTF-8');
  }
  const outer = parseObject(text, 'not_json', 'the message');
  let message: Record<string, unknown>;
  let original: string;
  // oslo's own test for the envelope (oslo_messaging/_drivers/common.py deserialize_msg).
  if (ENVELOPE_VERSION_KEY in outer && ENVELOPE_MESSAGE_KEY in outer) {
    const version = outer[ENVELOPE_VERSION_KEY];
    if (typeof version !== 'string' || !/^2\.0(?:\.\d+)?$/.test(version)) {
      throw new Rejection('bad_envelope', `oslo.version ${JSON.stringify(version)} is not 2.0, the messagingv2 envelope`);
    }
    const inner = outer[ENVELOPE_MESSAGE_KEY];
    if (typeof inner !== 'string') throw new Rejection('bad_envelope', 'oslo.message must be the message as a JSON string');
    message = parseObject(inner, 'bad_envelope', 'oslo.message');
    original = text;
  } else {
    message = outer;
    original = JSON.stringify({ [ENVELOPE_VERSION_KEY]: '2.0', [ENVELOPE_MESSAGE_KEY]: text });
  }

  const eventType = message.event_type;
  if (eventType === undefined || eventType === null || eventType === '') {
    throw new Rejection('no_event_type', 'the notification has no event_type');
  }
  const payload = message.payload ?? {};
  if (typeof payload !== 'object' || Array.isArray(payload)) {
    throw new Rejection('invalid_field', 'payload: must be a JSON object');
  }
  const versioned = unwrapVersioned(payload as Record<string, unknown>);
  const candidate: Record<string, unknown> = {
    id: message.message_id ?? OSLO_EVENT_ID_PREFIX + createHash('sha256').update(body).digest('hex'),
    type: eventType,
    workbook: null,
    priority: typeof message.priority === 'string' ? message.priority.toUpperCase() : (message.priority ?? null),
    data_schema: versioned?.schema ?? null,
    data: versioned?.data ?? payload,
  };
  if (message.publisher_id !== undefined && message.publisher_id !== null) candidate.source = message.publisher_id;
  if (message.timestamp !== undefined && message.timestamp !== null) {
    const occurredAt = fromOsloTimestamp(message.timestamp);
    if (occurredAt === null) {
      throw new Rejection('invalid_field', `timestamp: ${JSON.stringify(message.timestamp)} is not a time such as 2017-01-01 00:00:00.000000`);
    }
    candidate.occurred_at = occurredAt;
  }

  const parsed = EventInput.safeParse(candidate);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Rejection('invalid_field', `${osloField(issue.path.map(String), versioned?.prefix)}: ${issue.message}`);
  }
  return { input: parsed.data as EventInput & { id: string }, original: { format: 'oslo', body: original } };
}

function parseObject(text: string, reason: OsloRejectReason, what: string): Record<string, unknown> {
  const shape = jsonShape(text, MAX_JSON_DEPTH);
  if (shape.depth > MAX_JSON_DEPTH) {
    throw new Rejection(reason, `${what} nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels`);
  }
  let value: unknown;
  try {
    value = parseStorableJson(text, shape);
  } catch (err) {
    if (err instanceof UnstorableJsonError) throw new Rejection('invalid_field', `${what}: ${err.message}`);
    throw new Rejection(reason, `${what} is not valid JSON (${(err as Error).message})`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Rejection(reason, `${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * A versioned payload (`<ns>_object.name`, `.namespace`, `.version`, `.data`, as
 * oslo.versionedobjects writes one) as its data and schema: one level only, nested objects
 * keep their shape. Anything else, a payload with keys of its own beside the object's say,
 * is not one and stays as it is.
 */
export function unwrapVersioned(payload: Record<string, unknown>): { data: Record<string, unknown>; schema: DataSchema; prefix: string } | null {
  const keys = Object.keys(payload);
  const dataKeys = keys.filter((k) => /^.+_object\.data$/.test(k));
  if (dataKeys.length !== 1) return null;
  const prefix = dataKeys[0].slice(0, -'data'.length);
  if (!keys.every((k) => k.startsWith(prefix))) return null;
  const { [`${prefix}name`]: name, [`${prefix}namespace`]: namespace, [`${prefix}version`]: version, [`${prefix}data`]: data } = payload;
  if (typeof name !== 'string' || typeof namespace !== 'string' || typeof version !== 'string' || !isObject(data)) return null;
  return { data, schema: { namespace, name, version }, prefix };
}

/** The notification's name for an event field, so a rejection names what the publisher sent. */
function osloField(path: string[], versionedPrefix: string | undefined): string {
  const [field, sub] = path;
  switch (field) {
    case 'id':
      return 'message_id';
    case 'type':
      return 'event_type';
    case 'source':
      return 'publisher_id';
    case 'occurred_at':
      return 'timestamp';
    case 'data_schema':
      return `payload.${versionedPrefix ?? ''}${sub ?? ''}`;
    case 'data':
      return 'payload';
    default:
      return field ?? '(message)';
  }
}

const OSLO_TIME = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})?$/i;

/**
 * `2017-01-01 00:00:00.000000` (UTC, as oslo writes `str(utcnow())`; without the fraction
 * when it is zero) → `2017-01-01T00:00:00.000Z`. A zone, when given, is honoured. Digits
 * past the millisecond are dropped, never rounded into the next second. null when no time.
 */
export function fromOsloTimestamp(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  const m = OSLO_TIME.exec(value);
  if (m === null) return null;
  const [, date, time, fraction = '', zone = 'Z'] = m;
  const ms = Date.parse(`${date}T${time}.${fraction.padEnd(3, '0').slice(0, 3)}${zone.toUpperCase()}`);
  if (Number.isNaN(ms)) return null;
  // Date.parse rolls 02-30 over to 03-02 and takes 24:00; the fields must come back as written.
  const local = new Date(ms + zoneOffsetMs(zone)).toISOString();
  if (local.slice(0, 10) !== date || local.slice(11, 19) !== time) return null;
  return new Date(ms).toISOString();
}

function zoneOffsetMs(zone: string): number {
  if (zone.toUpperCase() === 'Z') return 0;
  const sign = zone.startsWith('-') ? -1 : 1;
  return sign * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6))) * 60_000;
}
