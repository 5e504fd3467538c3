import { z } from 'zod';
import { LIST_ORDERS, type ListOrder } from '../store/store.js';
import { invalidField } from './problem.js';

export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 1000;

const CURSOR_PREFIX = 'v1:';
// Lists that take `order` carry it in the cursor, so that a page cannot continue in the other
// direction from where one ended (it would skip or repeat rows).
const ORDERED_PREFIX = 'v2:';

export function encodeCursor(lastId: string, order?: ListOrder): string {
  return Buffer.from(order ? `${ORDERED_PREFIX}${order}:${lastId}` : CURSOR_PREFIX + lastId).toString('base64url');
}

const notOurs = () => invalidField('cursor', 'not a cursor this API returned');

function cursorText(cursor: string): string {
  return /^[A-Za-z0-9_-]+$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
}

export function decodeCursor(cursor: string): string {
  const text = cursorText(cursor);
  if (!text.startsWith(CURSOR_PREFIX) || text.length === CURSOR_PREFIX.length) throw notOurs();
  return text.slice(CURSOR_PREFIX.length);
}

/** The last id of an ordered list's cursor; a cursor of the other order is a 400 naming `cursor`. */
export function decodeOrderedCursor(cursor: string, order: ListOrder): string {
  const text = cursorText(cursor);
  // A cursor from before lists had an order pages oldest first.
  if (text.startsWith(CURSOR_PREFIX)) {
    if (order !== 'asc') throw orderMismatch('asc', order);
    return decodeCursor(cursor);
  }
  const match = /^v2:(asc|desc):(.+)$/s.exec(text);
  if (!match) throw notOurs();
  if (match[1] !== order) throw orderMismatch(match[1] as ListOrder, order);
  return match[2];
}

const orderMismatch = (cursorOrder: ListOrder, asked: ListOrder) =>
  invalidField('cursor', `this cursor continues a list in order=${cursorOrder}, not ${asked}: give order=${cursorOrder} with it, or start again without a cursor`);

const limitSchema = z.coerce.number().int().min(1).max(MAX_LIMIT);

function limitParam(query: Record<string, unknown>): number {
  if (query.limit === undefined) return DEFAULT_LIMIT;
  const parsed = limitSchema.safeParse(query.limit);
  if (!parsed.success || typeof query.limit !== 'string') {
    throw invalidField('limit', `must be a whole number from 1 to ${MAX_LIMIT}`);
  }
  return parsed.data;
}

function cursorParam(query: Record<string, unknown>): string | undefined {
  const cursor = query.cursor;
  if (cursor !== undefined && typeof cursor !== 'string') throw invalidField('cursor', 'give one cursor');
  return cursor || undefined;
}

/** Reads `limit` and `cursor` from a query; fetch `limit + 1` rows to know whether a next page exists. */
export function pageParams(query: Record<string, unknown>): { limit: number; after: string | null } {
  const limit = limitParam(query);
  const cursor = cursorParam(query);
  return { limit, after: cursor ? decodeCursor(cursor) : null };
}

/** pageParams plus `order` (asc unless given), for the lists that can be walked newest first. */
export function orderedPageParams(query: Record<string, unknown>): { limit: number; after: string | null; order: ListOrder } {
  const limit = limitParam(query);
  const order = query.order ?? 'asc';
  if (typeof order !== 'string' || !LIST_ORDERS.includes(order as ListOrder)) {
    throw invalidField('order', `one of ${LIST_ORDERS.join(', ')}`);
  }
  const cursor = cursorParam(query);
  return { limit, order: order as ListOrder, after: cursor ? decodeOrderedCursor(cursor, order as ListOrder) : null };
}

/** Builds the list answer from `limit + 1` rows; `order` for a list that takes one. */
export function page<T, V>(rows: T[], limit: number, idOf: (row: T) => string, view: (row: T) => V, order?: ListOrder) {
  const items = rows.slice(0, limit);
  const more = rows.length > limit;
  return { items: items.map(view), next_cursor: more ? encodeCursor(idOf(items[items.length - 1]), order) : null };
}
