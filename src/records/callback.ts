import { z } from 'zod';
import { AMQP_DEFAULT_PORTS, AMQP_MASK, maskAmqpUrl, parseBrokerUrl } from './amqp-url.js';
import { templateProblem } from './template.js';

export { maskAmqpUrl };

/*
 * A listener's `callback`: one shape per transport (DESIGN.md, "Transports"). The relay checks
 * the shared fields (transport, format, timeout_ms, headers) for every transport; each
 * built-in's own fields are here; an operator's module checks its own through `validate`.
 */

export const HTTP_METHODS = ['POST', 'PUT', 'PATCH', 'GET', 'DELETE'] as const;
export const PAYLOAD_FORMATS = ['json', 'mistral', 'cloudevents', 'template'] as const;
export const MASKED = '***';

// ---- templates (http and amqp) ----

/**
 * `callback.template`: any JSON value, checked as a whole by the callback's own refinement
 * (templateRules). null, as a merge patch writes it, means none.
 */
const template = z
  .unknown()
  .transform((v) => (v === null ? undefined : v))
  .optional();

const TEMPLATE_ONLY = 'only the http and amqp transports send a template';

/** A template goes with format "template" and nothing else; it parses; a GET or DELETE sends it as the query string. */
function templateRules(callback: { format: string; template?: unknown; method?: string }, ctx: z.RefinementCtx): void {
  const { format, template: value } = callback;
  if (format !== 'template') {
    if (value !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['template'], message: `is used only with format "template" (this callback's format is ${format}); set format to "template", or remove the template (null in a PATCH)` });
    }
    return;
  }
  if (value === undefined) {
    ctx.addIssue({ code: 'custom', path: ['template'], message: 'is required with format "template": the JSON value to send, whose strings may read the event with <% $.path %>' });
    return;
  }
  const problem = templateProblem(value);
  if (problem) {
    ctx.addIssue({ code: 'custom', path: ['template'], message: problem });
    return;
  }
  const bodyless = callback.method === 'GET' || callback.method === 'DELETE';
  if (bodyless && (typeof value !== 'object' || Array.isArray(value))) {
    ctx.addIssue({ code: 'custom', path: ['template'], message: `must be an object with method ${callback.method}: its fields become the query string` });
  }
}

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

export const HttpCallbackSchema = z.strictObject({
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
  template,
  timeout_ms: z.number().int().min(100).max(120_000).default(15_000),
}).superRefine(templateRules);


// ---- amqp ----

export const AMQP_FORMATS = ['oslo', 'json', 'cloudevents', 'template'] as const;
export const DEFAULT_AMQP_EXCHANGE = 'openstack';

// AMQP 0-9-1 exchange names; topics and routing keys use the same characters, and no `*` or
// `#`, which would make the queue's binding a pattern rather than the key itself.
const NAME = /^[A-Za-z0-9_.:-]+$/;
const NAME_MESSAGE = 'letters, digits and _.:- only';
// RabbitMQ refuses to declare exchanges and queues whose names start with `amq.`.
const notReserved = (v: string) => !v.startsWith('amq.');

// Headers the relay sets itself: the Standard Webhooks set and the message's content type.
const isReservedHeader = (name: string) => {
  const lower = name.toLowerCase();
  return lower.startsWith('webhook-') || lower === 'content-type';
};

const brokerUrl = z
  .string()
  .max(2048)
  .superRefine((v, ctx) => {
    const problem = brokerUrlProblem(v);
    if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
  });

function brokerUrlProblem(url: string): string | null {
  if (!URL.canParse(url)) return 'not a valid absolute URL';
  if (!(new URL(url).protocol in AMQP_DEFAULT_PORTS)) return 'only amqp and amqps URLs are allowed';
  try {
    parseBrokerUrl(url);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

export const AmqpCallbackSchema = z.strictObject({
  transport: z.literal('amqp'),
  url: brokerUrl,
  exchange: z.string().min(1).max(255).regex(NAME, NAME_MESSAGE).default(DEFAULT_AMQP_EXCHANGE),
  topic: z.string().min(1).max(200).regex(NAME, NAME_MESSAGE).refine(notReserved, 'names starting with amq. are reserved by the broker'),
  routing_key: z
    .string()
    .min(1)
    .max(255)
    .regex(NAME, NAME_MESSAGE)
    .refine(notReserved, 'names starting with amq. are reserved by the broker')
    .nullable()
    .default(null),
  format: z.enum(AMQP_FORMATS).default('oslo'),
  template,
  headers: z
    .record(
      z.string().min(1).max(255).refine((k) => !/[\0-\x1f\x7f]/.test(k), 'header names may not contain control characters'),
      z.string().max(8192).refine((v) => !/[\r\n\0]/.test(v), 'header values may not contain CR, LF or NUL'),
    )
    .refine((h) => Object.keys(h).length <= 50, 'at most 50 headers')
    .refine((h) => !Object.keys(h).some(isReservedHeader), 'webhook-* and content-type are set by the relay')
    .default({}),
  timeout_ms: z.number().int().min(100).max(120_000).default(15_000),
}).superRefine(templateRules);
export type AmqpCallbackInput = z.input<typeof AmqpCallbackSchema>;
export type AmqpCallback = z.output<typeof AmqpCallbackSchema>;


// ---- exec ----

/** The longest an exec attempt may run (DESIGN.md: 3 600 000 ms for exec, 120 000 for the others). */
export const MAX_EXEC_TIMEOUT_MS = 3_600_000;

// A bare file name directly inside RELAY_EXEC_DIR: no path separators, no `..`, no leading dot.
const COMMAND = /^[A-Za-z0-9_][A-Za-z0-9._+-]{0,199}$/;

export const ExecCallbackSchema = z.strictObject({
  transport: z.literal('exec'),
  command: z
    .string()
    .regex(COMMAND, 'a file name directly inside RELAY_EXEC_DIR (letters, digits, . _ + -; no path separators, no ..)')
    .refine((v) => !v.includes('..'), 'a file name directly inside RELAY_EXEC_DIR, without ..'),
  args: z
    .array(z.string().min(1).max(256))
    .max(32, 'at most 32 arguments')
    .default([]),
  format: z
    .literal('json', { error: (issue) => (issue.input === 'template' ? `${TEMPLATE_ONLY}; exec passes the envelope on stdin and picks arguments with args` : undefined) })
    .default('json'),
  timeout_ms: z.number().int().min(100).max(MAX_EXEC_TIMEOUT_MS).default(60_000),
});

// ---- an operator's module ----

/** The formats every transport can carry; a module decides what it does with the body. */
export const MODULE_FORMATS = ['json', 'cloudevents', 'mistral', 'oslo'] as const;
const TRANSPORT_NAME = /^[a-z][a-z0-9_-]{0,31}$/;

/** The shared fields of a module's callback; its own fields pass through to its `validate`. */
export const ModuleCallbackSchema = z.looseObject({
  transport: z.string().regex(TRANSPORT_NAME, 'a transport name: 1-32 of a-z 0-9 _ - starting with a letter'),
  format: z
    .enum(MODULE_FORMATS, { error: (issue) => (issue.input === 'template' ? `${TEMPLATE_ONLY}; an operator's transport gets ${MODULE_FORMATS.join(', ')}` : undefined) })
    .default('json'),
  headers: z
    .record(z.string().min(1).max(256), z.string().max(8192))
    .refine((h) => Object.keys(h).length <= 50, 'at most 50 headers')
    .refine((h) => !Object.keys(h).some((k) => k.toLowerCase().startsWith('webhook-')), 'webhook-* headers are set by the relay')
    .default({}),
  timeout_ms: z.number().int().min(100).max(120_000).default(15_000),
});

export type HttpCallback = z.output<typeof HttpCallbackSchema>;
export type ExecCallback = z.output<typeof ExecCallbackSchema>;
export type ModuleCallback = z.output<typeof ModuleCallbackSchema>;
export type Callback = HttpCallback | AmqpCallback | ExecCallback | ModuleCallback;
/** Callbacks that carry request headers (all but exec). */
export type CallbackWithHeaders = Exclude<Callback, ExecCallback>;

/** Every built-in transport's callback schema, by name. */
export const BUILT_IN_CALLBACKS = { http: HttpCallbackSchema, amqp: AmqpCallbackSchema, exec: ExecCallbackSchema } as const;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The callback schema: the shape its `transport` names (`http` when absent), with field paths
 * as the API reports them. Whether the transport is enabled is the API's check, not the shape's.
 */
export const CallbackSchema = z.unknown().transform((value, ctx): Callback => {
  if (!isObject(value)) {
    ctx.addIssue({ code: 'custom', message: 'must be an object with the callback\'s transport and address' });
    return z.NEVER;
  }
  const transport = value.transport ?? 'http';
  const schema: z.ZodType = Object.hasOwn(BUILT_IN_CALLBACKS, transport as string)
    ? BUILT_IN_CALLBACKS[transport as keyof typeof BUILT_IN_CALLBACKS]
    : ModuleCallbackSchema;
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) ctx.addIssue({ ...issue } as never);
    return z.NEVER;
  }
  return parsed.data as Callback;
});

/** For documents and tests: every shape a callback may have, as one union. */
export const CallbackShapes = z.union([HttpCallbackSchema, AmqpCallbackSchema, ExecCallbackSchema, ModuleCallbackSchema]);

// ---- reads ----

/** The callback as reads show it: header values and a broker password masked. */
export function maskCallback(callback: Callback): Callback {
  const masked: Record<string, unknown> = { ...callback };
  const headers = (callback as { headers?: unknown }).headers;
  if (isObject(headers)) masked.headers = Object.fromEntries(Object.keys(headers).map((k) => [k, MASKED]));
  if (callback.transport === 'amqp') masked.url = maskAmqpUrl((callback as AmqpCallback).url);
  return masked as Callback;
}

/** Where a callback's URL points, for the rule that stored secrets never follow it elsewhere. */
export function callbackOrigin(callback: Callback): string | null {
  const url = (callback as { url?: unknown }).url;
  if (typeof url !== 'string' || !URL.canParse(url)) return null;
  const u = new URL(url);
  const port = u.port || String(AMQP_DEFAULT_PORTS[u.protocol] ?? (u.protocol === 'https:' ? 443 : 80));
  return `${u.protocol}//${u.hostname}:${port}`;
}

const headersView = z.record(z.string(), z.string());

/** How reads show each transport's callback (header values `"***"`, a broker password `***`). */
export const CallbackView = z.union([
  z.object({
    transport: z.literal('http'),
    url: z.string(),
    method: z.enum(HTTP_METHODS),
    headers: headersView,
    format: z.enum(PAYLOAD_FORMATS),
    template: z.unknown().optional(),
    timeout_ms: z.number().int(),
  }),
  z.object({
    transport: z.literal('amqp'),
    url: z.string(),
    exchange: z.string(),
    topic: z.string(),
    routing_key: z.string().nullable(),
    format: z.enum(AMQP_FORMATS),
    template: z.unknown().optional(),
    headers: headersView,
    timeout_ms: z.number().int(),
  }),
  z.object({
    transport: z.literal('exec'),
    command: z.string(),
    args: z.array(z.string()),
    format: z.literal('json'),
    timeout_ms: z.number().int(),
  }),
  z.looseObject({
    transport: z.string(),
    format: z.enum(MODULE_FORMATS),
    headers: headersView,
    timeout_ms: z.number().int(),
  }),
]);

/**
 * Whether a broker URL sent back masked (`amqp://user:***@host/vhost`) may keep the stored
 * password: only when scheme, user, host, port and vhost are unchanged.
 */
export function unmaskBrokerUrl(sent: string, stored: string): string | null {
  if (!URL.canParse(sent) || !URL.canParse(stored)) return null;
  const a = new URL(sent);
  const b = new URL(stored);
  if (a.password !== AMQP_MASK) return sent;
  const port = (u: URL) => u.port || String(AMQP_DEFAULT_PORTS[u.protocol] ?? '');
  const same = a.protocol === b.protocol && a.username === b.username && a.hostname === b.hostname && port(a) === port(b) && a.pathname === b.pathname;
  if (!same) return null;
  a.password = b.password;
  return a.href;
}
