import type { AttemptView, DeliveryView } from '../../records/delivery.js';
import type { EventEnvelope } from '../../records/event.js';
import { dash, optionalField, type Column, type FieldPair } from '../output.js';
import { nextAttemptText, relativeTime, timeWithRelative } from '../relative-time.js';

/** Tables and `key: value` lines for events, deliveries and attempts. */

/** An event as GET /v1/events lists it. */
export type EventItem = EventEnvelope & { received_at: string };
/** One event as GET /v1/events/{id} answers it. */
export type EventWithDeliveries = EventItem & { deliveries: DeliveryView[]; deliveries_next_cursor: string | null };
/** One delivery as GET /v1/deliveries/{id} answers it. */
export type DeliveryWithAttempts = DeliveryView & { attempts: AttemptView[] };


/** One line, at most `max` characters: newlines and runs of spaces become one space. */
export function truncate(text: string | null | undefined, max: number): string {
  if (text === null || text === undefined) return '-';
  const flat = text.replace(/\s+/g, ' ').trim();
  if (!flat) return '-';
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

export const EVENT_COLUMNS: Array<Column<EventItem>> = [
  { header: 'ID', field: 'id', cell: (e) => e.id },
  { header: 'TYPE', field: 'type', cell: (e) => e.type },
  { header: 'WORKBOOK', field: 'workbook', cell: (e) => dash(e.workbook) },
  { header: 'EXECUTION', field: 'execution_id', cell: (e) => dash(e.execution_id) },
  { header: 'TASK', field: 'task_name', cell: (e) => dash(e.task_name ?? e.task_id) },
  { header: 'SEQ', field: 'sequence', cell: (e) => dash(e.sequence) },
  { header: 'OCCURRED AT', field: 'occurred_at', cell: (e, now) => relativeTime(e.occurred_at, now) },
  { header: 'RECEIVED AT', field: 'received_at', cell: (e, now) => relativeTime(e.received_at, now), optional: true },
  { header: 'CATEGORY', field: 'category', cell: (e) => e.category, optional: true },
  { header: 'STATE', field: 'state', cell: (e) => dash(e.state), optional: true },
  { header: 'SOURCE', field: 'source', cell: (e) => e.source, optional: true },
];

export function eventFields(e: EventItem, now: number): FieldPair[] {
  return [
    ['id', e.id],
    ['type', e.type],
    ['category', e.category],
    optionalField('workbook', e.workbook),
    optionalField('workflow', e.workflow),
    optionalField('execution_id', e.execution_id),
    optionalField('task_id', e.task_id),
    optionalField('task_name', e.task_name),
    ['state', e.state ? `${e.previous_state ? `${e.previous_state} -> ` : ''}${e.state}` : '-', e.state],
    ['state_info', truncate(e.state_info, 200), e.state_info],
    optionalField('sequence', e.sequence),
    ['source', e.source],
    ['occurred_at', timeWithRelative(e.occurred_at, now), e.occurred_at],
    ['received_at', timeWithRelative(e.received_at, now), e.received_at],
    ['data', truncate(JSON.stringify(e.data ?? {}), 400), e.data ?? {}],
  ];
}

const statusText = (d: DeliveryView) => (d.in_flight ? `${d.status} (sending)` : d.status);

export const DELIVERY_COLUMNS: Array<Column<DeliveryView>> = [
  { header: 'ID', field: 'id', cell: (d) => d.id },
  { header: 'EVENT', field: 'event_id', cell: (d) => d.event_id },
  { header: 'EVENT TYPE', field: 'event_type', cell: (d) => d.event_type },
  { header: 'WORKBOOK', field: 'workbook', cell: (d) => dash(d.workbook) },
  { header: 'LISTENER', field: 'listener_id', cell: (d) => d.listener_id },
  { header: 'STATUS', field: 'status', cell: statusText },
  { header: 'ATTEMPTS', field: 'attempt_count', cell: (d) => String(d.attempt_count) },
  { header: 'NEXT ATTEMPT', field: 'next_attempt_at', cell: (d, now) => nextAttemptText(d.next_attempt_at, now) },
  { header: 'UPDATED AT', field: 'updated_at', cell: (d, now) => relativeTime(d.updated_at, now) },
  { header: 'LAST ERROR', field: 'last_error', cell: (d) => truncate(d.last_error, 60) },
  { header: 'CREATED AT', field: 'created_at', cell: (d, now) => relativeTime(d.created_at, now), optional: true },
  { header: 'IN FLIGHT', field: 'in_flight', cell: (d) => (d.in_flight ? 'yes' : 'no'), optional: true },
];

/** The delivery table under event-show: what the event itself already says is left out. */
export const EVENT_DELIVERY_COLUMNS = DELIVERY_COLUMNS.filter((c) => !['event_id', 'event_type', 'workbook'].includes(c.field));

export function deliveryFields(d: DeliveryView, now: number): FieldPair[] {
  return [
    ['id', d.id],
    ['event_id', d.event_id],
    ['event_type', d.event_type],
    optionalField('workbook', d.workbook),
    ['listener_id', d.listener_id],
    ['status', d.in_flight ? `${d.status} (an attempt is being sent)` : d.status, d.status],
    ['attempt_count', String(d.attempt_count), d.attempt_count],
    ['next_attempt_at', d.next_attempt_at ? `${d.next_attempt_at} (${nextAttemptText(d.next_attempt_at, now)})` : '-', d.next_attempt_at],
    optionalField('last_error', d.last_error),
    ['created_at', timeWithRelative(d.created_at, now), d.created_at],
    ['updated_at', timeWithRelative(d.updated_at, now), d.updated_at],
  ];
}

/** The attempts under delivery-show and listener-ping --wait, oldest first, with absolute times. */
export const ATTEMPT_COLUMNS = ['#', 'STARTED AT', 'DURATION MS', 'STATUS CODE', 'ERROR', 'RESPONSE EXCERPT'];

export function attemptRow(a: AttemptView): string[] {
  return [String(a.number), a.started_at, String(a.duration_ms), dash(a.status_code), dash(a.error), truncate(a.response_excerpt, 60)];
}
