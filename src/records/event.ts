import { z } from 'zod';
import { newId } from '../ids.js';

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

/** Watcher-style operation triads: announced at the request, completed or failed later. */
export const EXECUTION_OPERATION_EVENT_TYPES = ['cancel', 'pause', 'resume'].flatMap((op) =>
  ['start', 'end', 'error'].map((phase) => `execution.${op}.${phase}`),
);
export const TASK_OPERATION_EVENT_TYPES = ['start', 'end', 'error'].map((phase) => `task.rerun.${phase}`);

const executionTypes = new Set<string>([...EXECUTION_EVENT_TYPES, ...EXECUTION_OPERATION_EVENT_TYPES]);
const taskTypes = new Set<string>([...TASK_EVENT_TYPES, ...TASK_OPERATION_EVENT_TYPES]);

/** Every type whose category is fixed to EXECUTION or TASK, wherever the event comes from. */
export const FIXED_CATEGORY_TYPES: Readonly<Record<'EXECUTION' | 'TASK', readonly string[]>> = {
  EXECUTION: [...executionTypes],
  TASK: [...taskTypes],
};

/**
 * The category an event type belongs to: the Mistral names and the operation triads have fixed
 * categories; anything else (PING, relay.*, oslo notifications) is a NOTIFICATION.
 */
export function categoryOf(type: string): EventCategory {
  if (executionTypes.has(type)) return 'EXECUTION';
  if (taskTypes.has(type)) return 'TASK';
  return 'NOTIFICATION';
}

/** Which original message an event keeps: a Mistral notifier body or an oslo.messaging notification. */
export const SOURCE_FORMATS = ['mistral', 'oslo'] as const;
export type SourceFormat = (typeof SOURCE_FORMATS)[number];

/** The message an event was made from, kept apart from the envelope, byte for byte. */
export interface OriginalMessage {
  format: SourceFormat;
  body: string;
}

/** `{namespace, name, version}` of a versioned payload (oslo `<ns>_object.*`). */
export const DataSchema = z.strictObject({
  namespace: z.string().max(200),
  name: z.string().max(200),
  version: z.string().max(32),
});
export type DataSchema = z.infer<typeof DataSchema>;

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
  /** As an oslo publisher sent it (INFO, WARN, ERROR, …); null otherwise. */
  priority: z.string().nullable(),
  data_schema: DataSchema.nullable(),
  /** Which original message the event keeps, if any. */
  source_format: z.enum(SOURCE_FORMATS).nullable(),
  data: z.record(z.string(), z.unknown()),
});
export type EventEnvelope = z.infer<typeof EventEnvelope>;

const nullableText = (max: number) => z.string().max(max).nullable().optional();

/** The longest workbook, workflow or task name: Mistral keeps its names in String(255) columns. */
export const NAME_MAX = 255;

/**
 * An event as a client posts it to `POST /v1/events`. The relay fills `id` and `occurred_at`
 * when absent and always assigns `sequence` and `source_format` itself; a client's values of
 * those two are ignored (they are what a received envelope carries).
 */
export const EventInput = z
  .strictObject({
    // URL path characters without '/', so every id can stand in /v1/events/{id} unescaped.
    id: z.string().min(1).max(200).regex(/^[A-Za-z0-9._~:@!$&'()*+,;=-]+$/, "letters, digits and ._~:@!$&'()*+,;=- only").optional(),
    type: z.string().min(1).max(200),
    category: z.enum(EVENT_CATEGORIES).optional(),
    workbook: nullableText(NAME_MAX),
    workflow: nullableText(NAME_MAX),
    execution_id: nullableText(200),
    task_id: nullableText(200),
    task_name: nullableText(NAME_MAX),
    state: nullableText(64),
    previous_state: nullableText(64),
    state_info: nullableText(65536),
    sequence: z.unknown().optional(),
    occurred_at: z.iso.datetime({ offset: true }).optional(),
    source: z.string().min(1).max(200).optional(),
    priority: z.string().regex(/^[A-Z]{1,16}$/, 'upper-case letters, such as INFO, WARN or ERROR').nullable().optional(),
    data_schema: DataSchema.nullable().optional(),
    // Which original message the relay keeps: none for an event posted here, whatever the
    // client says (a received envelope posted back unchanged carries one).
    source_format: z.enum(SOURCE_FORMATS).nullable().optional(),
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

/** The envelope for an event's input: relay-assigned id and time when absent; `sequence` comes from the store. */
export function toEnvelope(input: EventInput, now: number, defaultSource: string, sourceFormat: SourceFormat | null = null): EventEnvelope {
  return {
    id: input.id ?? newId(now),
    type: input.type,
    category: categoryOf(input.type),
    workbook: input.workbook ?? null,
    workflow: input.workflow ?? null,
    execution_id: input.execution_id ?? null,
    task_id: input.task_id ?? null,
    task_name: input.task_name ?? null,
    state: input.state ?? null,
    previous_state: input.previous_state ?? null,
    state_info: input.state_info ?? null,
    sequence: null,
    occurred_at: input.occurred_at ?? new Date(now).toISOString(),
    source: input.source ?? defaultSource,
    priority: input.priority ?? null,
    data_schema: input.data_schema ?? null,
    source_format: sourceFormat,
    data: input.data ?? {},
  };
}
