import type { ListenerView } from '../../records/listener.js';
import type { CommandContext } from '../context.js';
import { formatDuration, type Column, type FieldPair } from '../output.js';
import { relativeTime, timeWithRelative } from '../relative-time.js';
import { healthSummary } from './health-view.js';

/** A listener as the API answers create and rotate-secret: the view plus the secret. */
export type ListenerWithSecret = ListenerView & { secret?: string; previous_secret_expires_at?: string | null };

const targetText = (l: ListenerView) => (l.target ? `${l.target.kind}:${l.target.id}` : '-');

type CallbackFields = Record<string, unknown>;

/** Where deliveries go, in one cell: the URL (a broker's with its password masked), or the script. */
export function destinationText(callback: ListenerView['callback']): string {
  const c = callback as CallbackFields;
  if (typeof c.url === 'string') return c.transport === 'http' ? c.url : `${c.transport} ${c.url}`;
  if (typeof c.command === 'string') return `exec ${c.command}`;
  return String(c.transport);
}

// The callback's fields in the order a reader looks for them; anything else (an operator
// transport's own fields) follows.
const CALLBACK_ORDER = ['transport', 'url', 'command', 'args', 'method', 'exchange', 'topic', 'routing_key', 'headers', 'format', 'timeout_ms'];

function callbackFields(callback: ListenerView['callback']): FieldPair[] {
  const c = callback as CallbackFields;
  const keys = [...CALLBACK_ORDER.filter((k) => k in c), ...Object.keys(c).filter((k) => !CALLBACK_ORDER.includes(k))];
  return keys.map((key): FieldPair => {
    const value = c[key] ?? null;
    if (key === 'headers' && value && typeof value === 'object') {
      const entries = Object.entries(value as Record<string, string>).map(([k, v]) => `${k}: ${v}`);
      return ['callback.headers', entries.length ? entries.join(', ') : '-', value];
    }
    if (Array.isArray(value)) return [`callback.${key}`, value.length ? value.join(' ') : '-', value];
    return [`callback.${key}`, value === null ? '-' : typeof value === 'object' ? JSON.stringify(value) : String(value), value];
  });
}

export const LISTENER_COLUMNS: Array<Column<ListenerView>> = [
  { header: 'ID', field: 'id', cell: (l) => l.id },
  { header: 'WORKBOOK', field: 'workbook', cell: (l) => l.workbook },
  { header: 'EVENT TYPES', field: 'event_types', cell: (l) => l.event_types.join(',') },
  { header: 'TARGET', field: 'target', cell: targetText },
  // value and csv print where deliveries go, as the table does, not the callback's whole record.
  { header: 'URL', field: 'callback', cell: (l) => destinationText(l.callback), value: (l) => destinationText(l.callback) },
  { header: 'FORMAT', field: 'callback.format', cell: (l) => l.callback.format },
  { header: 'ENABLED', field: 'enabled', cell: (l) => (l.enabled ? 'yes' : 'no') },
  { header: 'EVENTS', field: 'events', cell: (l) => l.events?.join(',') ?? '*', optional: true },
  { header: 'TRANSPORT', field: 'callback.transport', cell: (l) => String((l.callback as CallbackFields).transport), optional: true },
  { header: 'DISABLED REASON', field: 'disabled_reason', cell: (l) => l.disabled_reason ?? '-', optional: true },
  { header: 'DESCRIPTION', field: 'description', cell: (l) => l.description ?? '-', optional: true },
  { header: 'HEALTH', field: 'health.state', cell: (l) => l.health.state, optional: true },
  { header: 'ORDERING', field: 'ordering', cell: (l) => l.ordering, optional: true },
  { header: 'MAX IN FLIGHT', field: 'max_in_flight', cell: (l) => String(l.max_in_flight), optional: true },
  { header: 'RATE LIMIT', field: 'rate_limit_per_s', cell: (l) => (l.rate_limit_per_s === null ? '-' : `${l.rate_limit_per_s}/s`), optional: true },
  { header: 'FILTER', field: 'filter', cell: (l) => (l.filter ? JSON.stringify(l.filter) : '-'), optional: true },
  { header: 'CREATED AT', field: 'created_at', cell: (l, now) => relativeTime(l.created_at, now), optional: true },
  { header: 'UPDATED AT', field: 'updated_at', cell: (l, now) => relativeTime(l.updated_at, now), optional: true },
];

export function listenerFields(l: ListenerWithSecret, now: number): FieldPair[] {
  const fields: FieldPair[] = [
    ['id', l.id],
    ['workbook', l.workbook],
    ['event_types', l.event_types.join(', '), l.event_types],
    ['events', l.events?.join(', ') ?? '(all of the event types)', l.events ?? null],
    ['target', l.target ? `${l.target.kind} ${l.target.id}` : '-', l.target ?? null],
    ['filter', l.filter ? JSON.stringify(l.filter) : '-', l.filter ?? null],
    ...callbackFields(l.callback),
    ['retry.schedule', l.retry.schedule_ms.map(formatDuration).join(' ') || '(no retries)', l.retry.schedule_ms],
    ['enabled', l.enabled ? 'yes' : 'no', l.enabled],
    ['ordering', l.ordering, l.ordering],
    ['max_in_flight', String(l.max_in_flight), l.max_in_flight],
    ['rate_limit_per_s', l.rate_limit_per_s === null ? '(no limit)' : `${l.rate_limit_per_s}/s`, l.rate_limit_per_s],
  ];
  if (l.disabled_reason) fields.push(['disabled_reason', l.disabled_reason]);
  fields.push(
    ['description', l.description ?? '-', l.description ?? null],
    ['created_at', timeWithRelative(l.created_at, now), l.created_at],
    ['updated_at', timeWithRelative(l.updated_at, now), l.updated_at],
    ['health', healthSummary(l.health, now), l.health],
  );
  if (l.secret) fields.push(['secret', l.secret]);
  if (l.previous_secret_expires_at) fields.push(['previous_secret_expires_at', l.previous_secret_expires_at]);
  return fields;
}

export const SECRET_NOTE = 'Store the secret now: it is not shown again (listener-rotate-secret makes a new one).';

/** One listener: `key: value` lines, or the API's JSON as is. */
export function showListener(ctx: CommandContext, listener: ListenerWithSecret, note?: string, made?: string): void {
  if (ctx.print.show(listener, listenerFields(listener, ctx.now), made) && note) ctx.print.line(`\n${note}`);
}
