import type { AttemptView, DeliveryView } from '../../records/delivery.js';
import type { EventEnvelope } from '../../records/event.js';

/** Tables and `key: value` lines for events, deliveries and attempts. */

/** An event as GET /v1/events lists it. */
export type EventItem = EventEnvelope & { received_at: string };
/** One event as GET /v1/events/{id} answers it. */
export type EventWithDeliveries = EventItem & { deliveries: DeliveryView[] };
/** One delivery as GET /v1/deliveries/{id} answers it. */
export type DeliveryWithAttempts = DeliveryView & { attempts: AttemptView[] };

const dash = (v: string | number | null | undefined) => (v === null || v === undefined || v === '' ? '-' : String(v));

/** One line, at most `max` characters: newlines and runs of spaces become one space. */
export function truncate(text: string | null | undefined, max: number): string {
  if (text === null || text === undefined) return '-';
  const flat = text.replace(/\s+/g, ' ').trim();
  if (!flat) return '-';
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

export const EVENT_COLUMNS = ['ID', 'TYPE', 'WORKBOOK', 'EXECUTION', 'TASK', 'SEQ', 'OCCURRED AT'];

export function eventRow(e: EventItem): string[] {
  return [e.id, e.type, dash(e.workbook), dash(e.execution_id), dash(e.task_name ?? e.task_id), dash(e.sequence), e.occurred_at];
}

export function eventFields(e: EventItem): Array<[string, string]> {
  return [
    ['id', e.id],
    ['type', e.type],
    ['category', e.category],
    ['workbook', dash(e.workbook)],
    ['workflow', dash(e.workflow)],
    ['execution_id', dash(e.execution_id)],
    ['task_id', dash(e.task_id)],
    ['task_name', dash(e.task_name)],
    ['state', e.state ? `${e.previous_state ? `${e.previous_state} -> ` : ''}${e.state}` : '-'],
    ['state_info', truncate(e.state_info, 200)],
    ['sequence', dash(e.sequence)],
    ['source', e.source],
    ['occurred_at', e.occurred_at],
    ['received_at', e.received_at],
    ['data', truncate(JSON.stringify(e.data ?? {}), 400)],
  ];
}

/** The columns of a delivery list; `without` leaves one out (the event's own id under event-show). */
export function deliveryTable(deliveries: DeliveryView[], without?: 'event'): { headers: string[]; rows: string[][] } {
  const headers = ['ID', 'EVENT', 'LISTENER', 'STATUS', 'ATTEMPTS', 'NEXT ATTEMPT', 'LAST ERROR'];
  const rows = deliveries.map((d) => [
    d.id,
    d.event_id,
    d.listener_id,
    d.in_flight ? `${d.status} (sending)` : d.status,
    String(d.attempt_count),
    dash(d.next_attempt_at),
    truncate(d.last_error, 60),
  ]);
  if (without !== 'event') return { headers, rows };
  return { headers: headers.filter((_, i) => i !== 1), rows: rows.map((r) => r.filter((_, i) => i !== 1)) };
}

export function deliveryFields(d: DeliveryView): Array<[string, string]> {
  return [
    ['id', d.id],
    ['event_id', d.event_id],
    ['listener_id', d.listener_id],
    ['status', d.in_flight ? `${d.status} (an attempt is being sent)` : d.status],
    ['attempt_count', String(d.attempt_count)],
    ['next_attempt_at', dash(d.next_attempt_at)],
    ['last_error', dash(d.last_error)],
    ['created_at', d.created_at],
    ['updated_at', d.updated_at],
  ];
}

export const ATTEMPT_COLUMNS = ['#', 'STARTED AT', 'DURATION MS', 'STATUS CODE', 'ERROR', 'RESPONSE EXCERPT'];

export function attemptRow(a: AttemptView): string[] {
  return [String(a.number), a.started_at, String(a.duration_ms), dash(a.status_code), dash(a.error), truncate(a.response_excerpt, 60)];
}
