import { z } from 'zod';
import type { FieldProblem } from './contract.js';

/*
 * The `callback` of an amqp listener (DESIGN.md, "AMQP transport"): its one shape, the field
 * problems the API reports for it, and how its broker URL is shown.
 */

export const AMQP_FORMATS = ['oslo', 'json', 'cloudevents'] as const;
export const DEFAULT_AMQP_EXCHANGE = 'openstack';
export const AMQP_MASK = '***';

const DEFAULT_PORTS: Record<string, number> = { 'amqp:': 5672, 'amqps:': 5671 };

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
  if (!(new URL(url).protocol in DEFAULT_PORTS)) return 'only amqp and amqps URLs are allowed';
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
  headers: z
    .record(
      z.string().min(1).max(255).refine((k) => !/[\0-\x1f\x7f]/.test(k), 'header names may not contain control characters'),
      z.string().max(8192).refine((v) => !/[\r\n\0]/.test(v), 'header values may not contain CR, LF or NUL'),
    )
    .refine((h) => Object.keys(h).length <= 50, 'at most 50 headers')
    .refine((h) => !Object.keys(h).some(isReservedHeader), 'webhook-* and content-type are set by the relay')
    .default({}),
  timeout_ms: z.number().int().min(100).max(120_000).default(15_000),
});
export type AmqpCallbackInput = z.input<typeof AmqpCallbackSchema>;
export type AmqpCallback = z.output<typeof AmqpCallbackSchema>;

// The relay itself checks these shared fields for every transport.
const SHARED_FIELDS = new Set(['transport', 'timeout_ms', 'headers']);

/** Problems with an amqp callback's own fields, named `callback.<field>`. */
export function validateAmqpCallback(callback: Record<string, unknown>): FieldProblem[] {
  const parsed = AmqpCallbackSchema.safeParse({ ...callback, transport: 'amqp' });
  if (parsed.success) return [];
  return parsed.error.issues.flatMap((issue): FieldProblem[] => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ field: `callback.${key}`, message: `not a field of an amqp callback` }));
    }
    const path = issue.path.map(String);
    if (SHARED_FIELDS.has(path[0])) return [];
    const message =
      path[0] === 'format' ? `must be one of ${AMQP_FORMATS.join(', ')} for the amqp transport` : issue.message;
    return [{ field: ['callback', ...path].join('.'), message }];
  });
}

/** The broker URL with its password shown as `***` (`amqp://user:***@host/vhost`); never throws. */
export function maskAmqpUrl(url: string): string {
  if (URL.canParse(url)) {
    const parsed = new URL(url);
    if (parsed.password === '') return url;
    parsed.password = AMQP_MASK;
    return parsed.href;
  }
  // Not a URL at all: still never let what looks like `user:password@` through.
  return url.replace(/\/\/([^/@:]*):[^/]*@/, `//$1:${AMQP_MASK}@`);
}

/** Where the transport connects: the broker URL taken apart, the host as the network guard sees it. */
export interface BrokerAddress {
  protocol: 'amqp' | 'amqps';
  /** Normalised as an http URL would be (`0x7f.1` → `127.0.0.1`), without IPv6 brackets. */
  hostname: string;
  port: number;
  /** undefined when the URL has no credentials (the broker default guest/guest applies). */
  username?: string;
  password?: string;
  /** The vhost as written in the URL path, still percent-encoded; '' means `/`. */
  vhost: string;
  heartbeat?: number;
  frameMax?: number;
  channelMax?: number;
  /** `http://<host>:<port>/`: what the network guard's URL checks take. */
  guardUrl: string;
}

function intParam(params: URLSearchParams, name: string): number | undefined {
  const value = params.get(name);
  return value !== null && /^\d+$/.test(value) ? Number(value) : undefined;
}

/** Throws a TypeError for anything but an amqp or amqps URL with a host. */
export function parseBrokerUrl(url: string): BrokerAddress {
  const parsed = new URL(url);
  const defaultPort = DEFAULT_PORTS[parsed.protocol];
  if (defaultPort === undefined) throw new TypeError(`not an amqp or amqps URL: ${parsed.protocol}`);
  if (parsed.hostname === '') throw new TypeError('the URL names no broker host');
  const port = parsed.port === '' ? defaultPort : Number(parsed.port);
  // amqp: is not a special scheme, so its host stays opaque text; an http URL parses it as a browser would.
  const httpText = `http://${parsed.hostname}:${port}/`;
  if (!URL.canParse(httpText)) throw new TypeError(`${parsed.hostname} is not a valid host name`);
  const asHttp = new URL(httpText);
  const hostname = asHttp.hostname.replace(/^\[(.*)\]$/, '$1');
  const hasCredentials = parsed.username !== '' || parsed.password !== '';
  const decode = (text: string) => {
    try {
      return decodeURIComponent(text);
    } catch {
      throw new TypeError('the user name or password has a malformed %-escape');
    }
  };
  return {
    protocol: parsed.protocol === 'amqps:' ? 'amqps' : 'amqp',
    hostname,
    port,
    username: hasCredentials ? decode(parsed.username) : undefined,
    password: hasCredentials ? decode(parsed.password) : undefined,
    vhost: parsed.pathname.replace(/^\//, ''),
    heartbeat: intParam(parsed.searchParams, 'heartbeat'),
    frameMax: intParam(parsed.searchParams, 'frameMax'),
    channelMax: intParam(parsed.searchParams, 'channelMax'),
    guardUrl: asHttp.toString(),
  };
}
