import { z } from 'zod';

export const EXECUTION_EVENT_TYPES = [
  'WORKFLOW_LAUNCHED',
  'WORKFLOW_SUCCEEDED',
  'WORKFLOW_FAILED',
  'WORKFLOW_CANCELLED',
  'WORKFLOW_PAUSED',
  'WORKFLOW_RESUMED',
  'WORKFLOW_RERUN',
] as const;

export const TASK_EVENT_TYPES = [
  'TASK_LAUNCHED',
  'TASK_SUCCEEDED',
  'TASK_FAILED',
  'TASK_CANCELLED',
  'TASK_PAUSED',
  'TASK_RESUMED',
  'TASK_RERUN',
  'TASK_SKIPPED',
] as const;

export const EVENT_CATEGORIES = ['EXECUTION', 'TASK', 'NOTIFICATION'] as const;
export type EventCategory = (typeof EVENT_CATEGORIES)[number];

export const PING_EVENT_TYPE = 'PING';

const executionTypes = new Set<string>(EXECUTION_EVENT_TYPES);
const taskTypes = new Set<string>(TASK_EVENT_TYPES);

/** The category an event type belongs to; anything that is not a Mistral workflow or task event is a NOTIFICATION. */
export function categoryOf(type: string): EventCategory {
  if (executionTypes.has(type)) return 'EXECUTION';
  if (taskTypes.has(type)) return 'TASK';
  return 'NOTIFICATION';
}

/** The event envelope as every receiver sees it (format `json`). */
export const EventEnvelope = z.object({
  id: z.string(),
  type: z.string(),
  category: z.enum(EVENT_CATEGORIES),
  workbook: z.string().nullable(),
  workflow: z.string().nullable(),
  execution_id: z.string().nullable(),
  task_id: z.string().nullable(),
  task_name: z.string().nullable(),
  state: z.string().nullable(),
  previous_state: z.string().nullable(),
  state_info: z.string().nullable(),
  sequence: z.number().int().nullable(),
  occurred_at: z.string(),
  source: z.string(),
  data: z.record(z.string(), z.unknown()),
});
export type EventEnvelope = z.infer<typeof EventEnvelope>;

const nullableText = (max: number) => z.string().max(max).nullable().optional();

/**
 * An event as a client posts it to `POST /v1/events`. The relay fills `id` and `occurred_at`
 * when absent and always assigns `sequence` itself; a client's `sequence` is ignored.
 */
export const EventInput = z
  .strictObject({
    // URL path characters without '/', so every id can stand in /v1/events/{id} unescaped.
    id: z.string().min(1).max(200).regex(/^[A-Za-z0-9._~:@!$&'()*+,;=-]+$/, "letters, digits and ._~:@!$&'()*+,;=- only").optional(),
    type: z.string().min(1).max(200),
    category: z.enum(EVENT_CATEGORIES).optional(),
    workbook: nullableText(200),
    workflow: nullableText(200),
    execution_id: nullableText(200),
    task_id: nullableText(200),
    task_name: nullableText(200),
    state: nullableText(64),
    previous_state: nullableText(64),
    state_info: nullableText(65536),
    sequence: z.unknown().optional(),
    occurred_at: z.iso.datetime({ offset: true }).optional(),
    source: z.string().min(1).max(200).optional(),
    data: z.record(z.string(), z.unknown()).optional(),
  })
  .superRefine((e, ctx) => {
    if (e.category && e.category !== categoryOf(e.type)) {
      ctx.addIssue({
        code: 'custom',
        path: ['category'],
        message: `${e.type} is in category ${categoryOf(e.type)}, not ${e.category}`,
      });
    }
  });
export type EventInput = z.infer<typeof EventInput>;
