import { z } from 'zod';

/**
 * How a listener's endpoint is doing: `disabled` (turned off), `no_transport` (its transport is
 * not enabled in this relay), the circuit breaker's `open` and `half_open`, otherwise `ok`;
 * with the last 24 hours of its attempts and its last outcomes. Read-only: the relay computes it.
 */
export const HEALTH_STATES = ['ok', 'open', 'half_open', 'disabled', 'no_transport'] as const;
export type HealthState = (typeof HEALTH_STATES)[number];

export const ListenerHealth = z.object({
  state: z.enum(HEALTH_STATES),
  /** succeeded attempts / all attempts of the last 24 h; null without attempts */
  success_rate_24h: z.number().min(0).max(1).nullable(),
  p95_ms_24h: z.number().int().nullable(),
  last_success_at: z.string().nullable(),
  last_failure: z
    .object({ at: z.string(), error: z.string().nullable(), status_code: z.number().int().nullable() })
    .nullable(),
});
export type ListenerHealth = z.infer<typeof ListenerHealth>;
