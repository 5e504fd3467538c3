import type { ListenerView } from '../../records/listener.js';
import type { CommandContext } from '../context.js';
import { formatDuration } from '../output.js';

/** A listener as the API answers create and rotate-secret: the view plus the secret. */
export type ListenerWithSecret = ListenerView & { secret?: string; previous_secret_expires_at?: string | null };

export const LISTENER_COLUMNS = ['ID', 'WORKBOOK', 'EVENT TYPES', 'TARGET', 'URL', 'FORMAT', 'ENABLED'];

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

function callbackFields(callback: ListenerView['callback']): Array<[string, string]> {
  const c = callback as CallbackFields;
  const keys = [...CALLBACK_ORDER.filter((k) => k in c), ...Object.keys(c).filter((k) => !CALLBACK_ORDER.includes(k))];
  return keys.map((key): [string, string] => {
    const value = c[key];
    if (key === 'headers' && value && typeof value === 'object') {
      const entries = Object.entries(value as Record<string, string>).map(([k, v]) => `${k}: ${v}`);
      return ['callback.headers', entries.length ? entries.join(', ') : '-'];
    }
    if (Array.isArray(value)) return [`callback.${key}`, value.length ? value.join(' ') : '-'];
    return [`callback.${key}`, value === null || value === undefined ? '-' : typeof value === 'object' ? JSON.stringify(value) : String(value)];
  });
}

export function listenerRow(l: ListenerView): string[] {
  return [l.id, l.workbook, l.event_types.join(','), targetText(l), destinationText(l.callback), l.callback.format, l.enabled ? 'yes' : 'no'];
}

export function listenerFields(l: ListenerWithSecret): Array<[string, string]> {
  const fields: Array<[string, string]> = [
    ['id', l.id],
    ['workbook', l.workbook],
    ['event_types', l.event_types.join(', ')],
    ['events', l.events?.join(', ') ?? '(all of the event types)'],
    ['target', l.target ? `${l.target.kind} ${l.target.id}` : '-'],
    ['filter', l.filter ? JSON.stringify(l.filter) : '-'],
    ...callbackFields(l.callback),
    ['retry.schedule', l.retry.schedule_ms.map(formatDuration).join(' ') || '(no retries)'],
    ['enabled', l.enabled ? 'yes' : 'no'],
  ];
  if (l.disabled_reason) fields.push(['disabled_reason', l.disabled_reason]);
  fields.push(['description', l.description ?? '-'], ['created_at', l.created_at], ['updated_at', l.updated_at]);
  if (l.secret) fields.push(['secret', l.secret]);
  if (l.previous_secret_expires_at) fields.push(['previous_secret_expires_at', l.previous_secret_expires_at]);
  return fields;
}

export const SECRET_NOTE = 'Store the secret now: it is not shown again (listener-rotate-secret makes a new one).';

/** One listener: `key: value` lines, or the API's JSON as is. */
export function showListener(ctx: CommandContext, listener: ListenerWithSecret, note?: string): void {
  if (ctx.output === 'json') return ctx.print.json(listener);
  ctx.print.fields(listenerFields(listener));
  if (note) ctx.print.line(`\n${note}`);
}
