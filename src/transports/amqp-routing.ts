import type { EventEnvelope } from '../records/event.js';

/*
 * Where an event goes on the broker, as oslo.messaging's notifier routes it: to the topic
 * exchange under `<topic>.<priority in lower case>` (INTEROP.md).
 */

/** The envelope as far as routing reads it; `priority` is there when an oslo publisher sent one. */
export type PrioritisedEnvelope = Pick<EventEnvelope, 'type'> & Partial<Pick<EventEnvelope, 'priority'>>;

/**
 * The notification priority of an event, upper case as oslo writes it: the event's own
 * `priority` when it has one, else ERROR for failures (`*_FAILED`, `*.error`), else INFO.
 */
export function osloPriority(envelope: PrioritisedEnvelope): string {
  const own: unknown = envelope.priority;
  if (typeof own === 'string' && own.trim() !== '') return own.trim().toUpperCase();
  const { type } = envelope;
  return type.endsWith('_FAILED') || type.endsWith('.error') ? 'ERROR' : 'INFO';
}

/** `notifications` + `ERROR` → `notifications.error`. */
export function osloRoutingKey(topic: string, priority: string): string {
  return `${topic}.${priority.toLowerCase()}`;
}

/** The listener's own routing key, or the oslo one for this event. */
export function routingKeyFor(callback: { topic: string; routing_key?: string | null }, envelope: PrioritisedEnvelope): string {
  return callback.routing_key ?? osloRoutingKey(callback.topic, osloPriority(envelope));
}
