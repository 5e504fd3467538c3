import { z } from 'zod';
import { CallbackSchema, CallbackView, HTTP_METHODS, maskCallback, MASKED, PAYLOAD_FORMATS } from './callback.js';
import { EVENT_CATEGORIES, NAME_MAX } from './event.js';
import { ListenerHealth } from './listener-health.js';
import { FilterSchema } from '../fanout/filter.js';
import { eventsOutsideCategories, likelyEventName } from '../fanout/match.js';
import { eventPatternProblem } from '../fanout/event-pattern.js';
import { isValidSecret } from '../dispatch/signing.js';
import { DEFAULT_RETRY_SCHEDULE_MS } from '../dispatch/retry-policy.js';

export const LISTENER_ORDERINGS = ['none', 'execution'] as const;

/**
 * The bounds of `rate_limit_per_s`. The lowest is one attempt in 1,000 seconds: a pace, not a
 * hold (the gate looks at a delivery it holds back at least hourly, RATE_WAIT_MAX_MS).
 */
export const RATE_LIMIT_MIN = 0.001;
export const RATE_LIMIT_MAX = 100_000;

export const RetrySchema = z.strictObject({
  schedule_ms: z
    .array(z.number().int().min(0).max(7 * 24 * 3600 * 1000))
    .max(20, 'at most 20 retries'),
});

export const TargetSchema = z.strictObject({
  kind: z.enum(['execution', 'task']),
  id: z.string().min(1).max(200),
});

/** What a client sends to create a listener (and what a merge patch must produce). */
export const ListenerInput = z.strictObject({
  workbook: z.string().min(1).max(NAME_MAX),
  event_types: z.array(z.enum(EVENT_CATEGORIES)).min(1, 'at least one of EXECUTION, TASK, NOTIFICATION'),
  events: z
    .array(
      z.string().min(1).max(200).superRefine((entry, ctx) => {
        const problem = eventPatternProblem(entry);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      }),
    )
    .max(100)
    .nullable()
    .default(null),
  target: TargetSchema.nullable().default(null),
  filter: FilterSchema.nullable().default(null),
  callback: CallbackSchema,
  retry: RetrySchema.default({ schedule_ms: DEFAULT_RETRY_SCHEDULE_MS }),
  enabled: z.boolean().default(true),
  description: z.string().max(1000).nullable().default(null),
  /** `execution`: one execution's events reach this listener strictly in `sequence` order. */
  ordering: z.enum(LISTENER_ORDERINGS).default('none'),
  /** Attempts in flight at once to this listener. */
  max_in_flight: z.number().int().min(1).max(10_000).default(32),
  /** Attempts per second at most, over every relay process; null: no limit. */
  rate_limit_per_s: z
    .number()
    .min(RATE_LIMIT_MIN, `must be at least ${RATE_LIMIT_MIN} (one attempt in ${1 / RATE_LIMIT_MIN} seconds)`)
    .max(RATE_LIMIT_MAX)
    .nullable()
    .default(null),
  secret: z.string().refine(isValidSecret, 'must be whsec_ followed by base64 of 24 to 64 bytes').optional(),
}).superRefine((l, ctx) => {
  // An event outside every listed category could never match: say so instead of storing it.
  // A typo of a known name is a NOTIFICATION type, so it lands here unless NOTIFICATION is
  // listed, where it is a valid notification name and stays accepted.
  for (const name of eventsOutsideCategories(l)) {
    const index = l.events!.indexOf(name);
    const meant = likelyEventName(name);
    ctx.addIssue({
      code: 'custom',
      path: ['events', index],
      message: meant
        ? `${name} is not a known event name, and as a NOTIFICATION type it is not in event_types (${l.event_types.join(', ')}); did you mean ${meant}?`
        : `${name} is not in any of event_types (${l.event_types.join(', ')}); add its category or remove it`,
    });
  }
});
export type ListenerInput = z.input<typeof ListenerInput>;
export type ListenerSpec = Omit<z.output<typeof ListenerInput>, 'secret'>;

/** A listener as the store keeps it (secrets included, headers unmasked). */
export interface StoredListener extends ListenerSpec {
  id: string;
  project: string;
  secret: string;
  previous_secret: string | null;
  previous_secret_expires_at: string | null;
  disabled_reason: string | null;
  created_at: string;
  updated_at: string;
}

/** The listener as the API shows it: no secret, header values masked. */
export const ListenerView = z.object({
  id: z.string(),
  workbook: z.string(),
  event_types: z.array(z.enum(EVENT_CATEGORIES)),
  events: z.array(z.string()).nullable(),
  target: TargetSchema.nullable(),
  filter: z.record(z.string(), z.unknown()).nullable(),
  callback: CallbackView,
  retry: z.object({ schedule_ms: z.array(z.number().int()) }),
  enabled: z.boolean(),
  disabled_reason: z.string().nullable(),
  description: z.string().nullable(),
  ordering: z.enum(LISTENER_ORDERINGS),
  max_in_flight: z.number().int(),
  rate_limit_per_s: z.number().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
  health: ListenerHealth,
});
export type ListenerView = z.infer<typeof ListenerView>;

export function toListenerView(l: StoredListener, health: ListenerHealth): ListenerView {
  return {
    id: l.id,
    workbook: l.workbook,
    event_types: l.event_types,
    events: l.events,
    target: l.target,
    filter: l.filter,
    callback: maskCallback(l.callback) as ListenerView['callback'],
    retry: l.retry,
    enabled: l.enabled,
    disabled_reason: l.disabled_reason,
    description: l.description,
    ordering: l.ordering,
    max_in_flight: l.max_in_flight,
    rate_limit_per_s: l.rate_limit_per_s,
    created_at: l.created_at,
    updated_at: l.updated_at,
    health,
  };
}

/** Delivery options of listeners stored before they existed. */
export const LISTENER_OPTION_DEFAULTS = { ordering: 'none', max_in_flight: 32, rate_limit_per_s: null } as const satisfies Partial<ListenerSpec>;

/** The spec part of a stored listener, unmasked, as the base a merge patch applies to. */
export function specOf(l: StoredListener): ListenerSpec {
  return {
    workbook: l.workbook,
    event_types: l.event_types,
    events: l.events,
    target: l.target,
    filter: l.filter,
    callback: l.callback,
    retry: l.retry,
    enabled: l.enabled,
    description: l.description,
    ordering: l.ordering,
    max_in_flight: l.max_in_flight,
    rate_limit_per_s: l.rate_limit_per_s,
  };
}

export { HTTP_METHODS, MASKED, PAYLOAD_FORMATS };
