import { z } from 'zod';
import { EVENT_CATEGORIES } from './event.js';
import { FilterSchema } from '../fanout/filter.js';
import { eventsOutsideCategories } from '../fanout/match.js';
import { eventPatternProblem } from '../fanout/event-pattern.js';
import { isValidSecret } from '../dispatch/signing.js';
import { DEFAULT_RETRY_SCHEDULE_MS } from '../dispatch/retry-policy.js';

export const HTTP_METHODS = ['POST', 'PUT', 'PATCH', 'GET', 'DELETE'] as const;
export const PAYLOAD_FORMATS = ['json', 'mistral', 'cloudevents'] as const;
export const MASKED = '***';

// RFC 9110 token characters.
const headerName = z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$/, 'not a valid HTTP header name');

// What undici puts on the wire: tab, space, visible ASCII and latin-1 bytes. Anything else
// (control characters such as CR, LF and NUL, DEL, characters above U+00FF) refuses every attempt.
const UNSENDABLE_CHAR = /[^\t\x20-\x7e\x80-\xff]/u;
const headerValue = z
  .string()
  .max(8192)
  .superRefine((v, ctx) => {
    const bad = UNSENDABLE_CHAR.exec(v);
    if (!bad) return;
    const code = `U+${bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
    ctx.addIssue({
      code: 'custom',
      message: `holds ${code} at position ${bad.index}: a header value may hold only tab, space, visible ASCII and latin-1 characters (up to U+00FF)`,
    });
  });

// Headers the relay sets itself: about the body it builds, the connection, its signature.
const RELAY_HEADERS = new Set([
  'content-length', 'content-type', 'content-encoding', 'host', 'transfer-encoding', 'connection', 'user-agent',
]);
// Headers HTTP/1.1 or undici will not let a request carry: every attempt would fail.
const UNSENDABLE_HEADERS: Record<string, string> = {
  'keep-alive': 'cannot be sent: the HTTP client manages its connections itself',
  upgrade: 'cannot be sent: a delivery never switches protocols',
  expect: 'cannot be sent: the HTTP client does not support Expect',
  te: 'cannot be sent: HTTP/1.1 requires a "Connection: TE" with it, and Connection belongs to the relay',
};

/** Why a listener may not set this request header, or undefined when it may. */
function headerNameRefusal(name: string): string | undefined {
  const lower = name.toLowerCase();
  if (RELAY_HEADERS.has(lower) || lower.startsWith('webhook-') || lower.startsWith('ce-')) return 'is set by the relay';
  if (lower.startsWith('proxy-')) return 'is meant for a proxy; deliveries go to the receiver directly, which would get it instead';
  return UNSENDABLE_HEADERS[lower];
}

const callbackUrl = z
  .string()
  .max(2048)
  .refine((v) => URL.canParse(v), 'not a valid absolute URL')
  .refine((v) => !URL.canParse(v) || ['http:', 'https:'].includes(new URL(v).protocol), 'only http and https URLs are allowed')
  .refine((v) => !URL.canParse(v) || (!new URL(v).username && !new URL(v).password), 'credentials in the URL are not allowed; use callback.headers');

export const CallbackSchema = z.strictObject({
  transport: z.literal('http').default('http'),
  url: callbackUrl,
  method: z.enum(HTTP_METHODS).default('POST'),
  headers: z
    .record(headerName, headerValue)
    .refine((h) => Object.keys(h).length <= 50, 'at most 50 headers')
    .superRefine((h, ctx) => {
      for (const name of Object.keys(h)) {
        const refusal = headerNameRefusal(name);
        if (refusal) ctx.addIssue({ code: 'custom', path: [name], message: `${name} ${refusal}` });
      }
    })
    .default({}),
  format: z.enum(PAYLOAD_FORMATS).default('json'),
  timeout_ms: z.number().int().min(100).max(120_000).default(15_000),
});

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
  workbook: z.string().min(1).max(200),
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
  secret: z.string().refine(isValidSecret, 'must be whsec_ followed by base64 of 24 to 64 bytes').optional(),
}).superRefine((l, ctx) => {
  // An event outside every listed category could never match: say so instead of storing it.
  for (const name of eventsOutsideCategories(l)) {
    const index = l.events!.indexOf(name);
    ctx.addIssue({
      code: 'custom',
      path: ['events', index],
      message: `${name} is not in any of event_types (${l.event_types.join(', ')}); add its category or remove it`,
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
  callback: z.object({
    transport: z.literal('http'),
    url: z.string(),
    method: z.enum(HTTP_METHODS),
    headers: z.record(z.string(), z.string()),
    format: z.enum(PAYLOAD_FORMATS),
    timeout_ms: z.number().int(),
  }),
  retry: z.object({ schedule_ms: z.array(z.number().int()) }),
  enabled: z.boolean(),
  disabled_reason: z.string().nullable(),
  description: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
});
export type ListenerView = z.infer<typeof ListenerView>;

export function toListenerView(l: StoredListener): ListenerView {
  const headers: Record<string, string> = {};
  for (const k of Object.keys(l.callback.headers)) headers[k] = MASKED;
  return {
    id: l.id,
    workbook: l.workbook,
    event_types: l.event_types,
    events: l.events,
    target: l.target,
    filter: l.filter,
    callback: { ...l.callback, headers },
    retry: l.retry,
    enabled: l.enabled,
    disabled_reason: l.disabled_reason,
    description: l.description,
    created_at: l.created_at,
    updated_at: l.updated_at,
  };
}

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
  };
}
