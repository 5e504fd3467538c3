import type { ListenerView } from '../../records/listener.js';
import type { CommandContext } from '../context.js';
import { formatDuration } from '../output.js';

/** A listener as the API answers create and rotate-secret: the view plus the secret. */
export type ListenerWithSecret = ListenerView & { secret?: string; previous_secret_expires_at?: string | null };

export const LISTENER_COLUMNS = ['ID', 'WORKBOOK', 'EVENT TYPES', 'TARGET', 'URL', 'FORMAT', 'ENABLED'];

const targetText = (l: ListenerView) => (l.target ? `${l.target.kind}:${l.target.id}` : '-');

export function listenerRow(l: ListenerView): string[] {
  return [l.id, l.workbook, l.event_types.join(','), targetText(l), l.callback.url, l.callback.format, l.enabled ? 'yes' : 'no'];
}

export function listenerFields(l: ListenerWithSecret): Array<[string, string]> {
  const headers = Object.entries(l.callback.headers).map(([k, v]) => `${k}: ${v}`);
  const fields: Array<[string, string]> = [
    ['id', l.id],
    ['workbook', l.workbook],
    ['event_types', l.event_types.join(', ')],
    ['events', l.events?.join(', ') ?? '(all of the event types)'],
    ['target', l.target ? `${l.target.kind} ${l.target.id}` : '-'],
    ['filter', l.filter ? JSON.stringify(l.filter) : '-'],
    ['callback.url', l.callback.url],
    ['callback.method', l.callback.method],
    ['callback.headers', headers.length ? headers.join(', ') : '-'],
    ['callback.format', l.callback.format],
    ['callback.timeout_ms', String(l.callback.timeout_ms)],
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
