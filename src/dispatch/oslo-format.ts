import { createHash } from 'node:crypto';
import type { EventEnvelope, OriginalMessage } from '../records/event.js';
import { osloPriority, osloRoutingKey } from '../transports/amqp-routing.js';

/*
 * The `oslo` format: an event as an OpenStack service notifies it through oslo.messaging's
 * `messagingv2` driver (INTEROP.md), so an unmodified oslo notification listener reads it.
 *
 * The payload is a versioned object in the relay's own namespace, shaped as Watcher shapes its
 * notifications: the envelope's fields as the object's data; for a task event its execution
 * as a terse ExecutionPayload (id, workbook, workflow, state); `fault` an ExceptionPayload
 * made from the envelope's `data.fault`, or null. A task event does not carry the state of
 * its execution, so that `state` is null there (the execution's own events carry it); the
 * field stays so that every ExecutionPayload 1.0 has the same fields.
 */

export { osloPriority, osloRoutingKey };

export const OSLO_NAMESPACE = 'callback_relay';
export const OSLO_OBJECT_VERSION = '1.0';
export const OSLO_PUBLISHER = 'callback-relay';

export type PayloadName = 'TaskPayload' | 'ExecutionPayload' | 'EventPayload' | 'ExceptionPayload';

export interface VersionedObject {
  'callback_relay_object.name': PayloadName;
  'callback_relay_object.namespace': typeof OSLO_NAMESPACE;
  'callback_relay_object.version': typeof OSLO_OBJECT_VERSION;
  'callback_relay_object.data': Record<string, unknown>;
}

/** The message inside the messagingv2 envelope. */
export interface OsloMessage {
  message_id: string;
  publisher_id: string;
  event_type: string;
  priority: string;
  payload: VersionedObject;
  timestamp: string;
}

export interface OsloRenderOptions {
  /** This relay's host name: the publisher is `callback-relay:<hostname>`. */
  hostname: string;
  /** The delivery's id: `message_id` is made from it (osloMessageId), the same on every retry. */
  deliveryId: string;
  /**
   * The message an event arrived as: an oslo one is forwarded unchanged; any other kind (a
   * Mistral body) is not an oslo message, so the notification is built from the envelope.
   */
  original?: OriginalMessage | string | null;
}

export function versionedObject(name: PayloadName, data: Record<string, unknown>): VersionedObject {
  return {
    'callback_relay_object.name': name,
    'callback_relay_object.namespace': OSLO_NAMESPACE,
    'callback_relay_object.version': OSLO_OBJECT_VERSION,
    'callback_relay_object.data': data,
  };
}

const MISTRAL_STYLE = /^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$/;

/** `WORKFLOW_SUCCEEDED` → `workflow.succeeded`; dotted and other types stay as they are. */
export function osloEventType(type: string): string {
  return MISTRAL_STYLE.test(type) ? type.toLowerCase().replaceAll('_', '.') : type;
}

const ISO_TIME = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:[.,](\d+))?(Z|[+-]\d{2}:?\d{2})?$/i;

/**
 * `2026-11-23T10:00:00.123+01:00` → `2026-11-23 09:00:00.123000`: UTC, microseconds, no zone,
 * as oslo writes `timestamp`. A time without a zone is read as UTC; digits past the
 * microsecond are dropped, never rounded into the next second. Text that is no time at all
 * is passed through.
 */
export function osloTimestamp(occurredAt: string): string {
  const m = ISO_TIME.exec(occurredAt);
  if (m === null) return occurredAt;
  const [, date, time, fraction = '', zone] = m;
  const micros = fraction.slice(0, 6).padEnd(6, '0');
  if (zone === undefined || zone.toUpperCase() === 'Z') return `${date} ${time}.${micros}`;
  const ms = Date.parse(`${date}T${time}${zone.includes(':') ? zone : `${zone.slice(0, 3)}:${zone.slice(3)}`}`);
  if (Number.isNaN(ms)) return occurredAt;
  const utc = new Date(ms).toISOString();
  return `${utc.slice(0, 10)} ${utc.slice(11, 19)}.${micros}`;
}

function text(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** `data.fault` (`{exception, exception_message}`, or a bare message) as an ExceptionPayload; null without one. */
export function exceptionPayload(fault: unknown): VersionedObject | null {
  if (typeof fault === 'string') return versionedObject('ExceptionPayload', { exception: null, exception_message: fault });
  if (fault === null || typeof fault !== 'object' || Array.isArray(fault)) return null;
  const f = fault as Record<string, unknown>;
  return versionedObject('ExceptionPayload', { exception: text(f.exception), exception_message: text(f.exception_message) });
}

function payloadName(envelope: EventEnvelope): PayloadName {
  if (envelope.category === 'TASK') return 'TaskPayload';
  if (envelope.category === 'EXECUTION') return 'ExecutionPayload';
  return 'EventPayload';
}

/** The notification's payload: the envelope as a versioned object. */
export function osloPayload(envelope: EventEnvelope): VersionedObject {
  const data: Record<string, unknown> = { ...envelope, fault: exceptionPayload(envelope.data?.fault) };
  if (envelope.category === 'TASK') {
    data.execution =
      envelope.execution_id == null
        ? null
        : versionedObject('ExecutionPayload', {
            id: envelope.execution_id,
            workbook: envelope.workbook,
            workflow: envelope.workflow,
            state: null,
          });
  }
  return versionedObject(payloadName(envelope), data);
}

/**
 * An oslo message's `message_id` for a delivery: a UUID in version 4 form, as oslo.messaging
 * makes them (`uuid.uuid4()`), taken from the SHA-256 of the delivery's id rather than drawn at
 * random, so every retry of a delivery carries the same one and a consumer can drop a repeat.
 * (The AMQP `message_id` property and the `webhook-id` header carry the delivery's id itself.)
 */
export function osloMessageId(deliveryId: string): string {
  const b = createHash('sha256').update(deliveryId).digest().subarray(0, 16);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = b.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function osloMessage(envelope: EventEnvelope, { hostname, deliveryId }: OsloRenderOptions): OsloMessage {
  return {
    message_id: osloMessageId(deliveryId),
    publisher_id: `${OSLO_PUBLISHER}:${hostname}`,
    event_type: osloEventType(envelope.type),
    priority: osloPriority(envelope),
    payload: osloPayload(envelope),
    timestamp: osloTimestamp(envelope.occurred_at),
  };
}

/** The body of an `oslo` delivery: the messagingv2 envelope, or the original oslo message unchanged. */
export function renderOslo(envelope: EventEnvelope, options: OsloRenderOptions): string {
  const { original } = options;
  if (typeof original === 'string') return original;
  if (original != null && original.format === 'oslo') return original.body;
  return JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(osloMessage(envelope, options)) });
}
