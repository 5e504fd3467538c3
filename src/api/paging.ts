import { z } from 'zod';
import { invalidField } from './problem.js';

export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 1000;

const CURSOR_PREFIX = 'v1:';

export function encodeCursor(lastId: string): string {
  return Buffer.from(CURSOR_PREFIX + lastId).toString('base64url');
}

export function decodeCursor(cursor: string): string {
  const text = /^[A-Za-z0-9_-]+$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
  if (!text.startsWith(CURSOR_PREFIX) || text.length === CURSOR_PREFIX.length) {
    throw invalidField('cursor', 'not a cursor this API returned');
  }
  return text.slice(CURSOR_PREFIX.length);
}

const limitSchema = z.coerce.number().int().min(1).max(MAX_LIMIT);

/** Reads `limit` and `cursor` from a query; fetch `limit + 1` rows to know whether a next page exists. */
export function pageParams(query: Record<string, unknown>): { limit: number; after: string | null } {
  let limit = DEFAULT_LIMIT;
  if (query.limit !== undefined) {
    const parsed = limitSchema.safeParse(query.limit);
    if (!parsed.success || typeof query.limit !== 'string') {
      throw invalidField('limit', `must be a whole number from 1 to ${MAX_LIMIT}`);
    }
    limit = parsed.data;
  }
  const cursor = query.cursor;
  if (cursor !== undefined && typeof cursor !== 'string') throw invalidField('cursor', 'give one cursor');
  return { limit, after: cursor ? decodeCursor(cursor) : null };
}

/** Builds the list answer from `limit + 1` rows. */
export function page<T, V>(rows: T[], limit: number, idOf: (row: T) => string, view: (row: T) => V) {
  const items = rows.slice(0, limit);
  const more = rows.length > limit;
  return { items: items.map(view), next_cursor: more ? encodeCursor(idOf(items[items.length - 1])) : null };
}
