import { z } from 'zod';
import type { AttemptRecord, DeliveryRecord } from './states.js';

const iso = (ms: number) => new Date(ms).toISOString();
const isoOrNull = (ms: number | null) => (ms === null ? null : iso(ms));

export const DeliveryView = z.object({
  id: z.string(),
  event_id: z.string(),
  event_type: z.string(),
  workbook: z.string().nullable(),
  listener_id: z.string(),
  status: z.enum(['pending', 'succeeded', 'failed', 'cancelled']),
  attempt_count: z.number().int(),
  next_attempt_at: z.string().nullable(),
  in_flight: z.boolean(),
  last_error: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
});
export type DeliveryView = z.infer<typeof DeliveryView>;

export const AttemptView = z.object({
  number: z.number().int(),
  started_at: z.string(),
  duration_ms: z.number().int(),
  status_code: z.number().int().nullable(),
  error: z.string().nullable(),
  response_excerpt: z.string().nullable(),
});
export type AttemptView = z.infer<typeof AttemptView>;

export function toDeliveryView(d: DeliveryRecord): DeliveryView {
  return {
    id: d.id,
    event_id: d.event_id,
    event_type: d.event_type,
    workbook: d.workbook,
    listener_id: d.listener_id,
    status: d.status,
    attempt_count: d.attempt_count,
    // A finished delivery has no next try; a held one (listener disabled) has none scheduled.
    next_attempt_at: d.status === 'pending' ? isoOrNull(d.next_attempt_at) : null,
    in_flight: d.in_flight,
    last_error: d.last_error,
    created_at: iso(d.created_at),
    updated_at: iso(d.updated_at),
  };
}

export function toAttemptView(a: AttemptRecord): AttemptView {
  return { ...a, started_at: iso(a.started_at) };
}
