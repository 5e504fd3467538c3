import { LIST_ORDERS, type ListOrder } from '../store/store.js';
import { closestName } from '../closest-name.js';
import { NAME_MAX } from '../records/event.js';
import { invalidField } from './problem.js';

export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 1000;

/** The lists that page: a cursor names the one it was made for, and no other takes it. */
export type ListName = 'events' | 'deliveries' | 'executions' | 'tasks' | 'listeners' | 'workbooks';

// Cursors are `v3:<list>:<order>:<last id>`, base64url. Earlier ones are still read: `v1:<id>`
// (lists before they had an order: oldest first) and `v2:<order>:<id>` (before they named
// their list), neither of which says which list made it.
const CURSOR = /^v3:([a-z]+):(asc|desc):(.+)$/s;
const V1_PREFIX = 'v1:';
const V2 = /^v2:(asc|desc):(.+)$/s;

function encodeCursor(list: ListName, lastId: string, order: ListOrder): string {
  return Buffer.from(`v3:${list}:${order}:${lastId}`).toString('base64url');
}

const notOurs = () => invalidField('cursor', 'not a cursor this API returned');

const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;
/**
 * Whether `id` can be where a page of `list` ended: record ids are ULIDs, workbooks are named.
 * (An event cursor's position is read by the store, which refuses one it did not write.)
 */
function fitsList(id: string, list: ListName): boolean {
  if (list === 'events') return true;
  if (list === 'workbooks') return id.length <= NAME_MAX;
  return ULID.test(id);
}

function cursorText(cursor: string): string {
  return /^[A-Za-z0-9_-]+$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
}

/**
 * The last id of a cursor of `list`. `order`: the order asked for, on the lists that take one
 * (a cursor of the other order is a 400 naming `cursor`); null on those that page oldest first.
 */
function decodeCursor(cursor: string, list: ListName, order: ListOrder | null): string {
  const text = cursorText(cursor);
  const asked = order ?? 'asc';
  const made = madeFor(text, list, order !== null);
  if (made.order !== asked) throw orderMismatch(made.order, asked);
  return made.id;
}

/** The order and last id a cursor's text holds; `ordered`: the list takes `order` (v2 cursors were only theirs). */
function madeFor(text: string, list: ListName, ordered: boolean): { order: ListOrder; id: string } {
  const made = cursorOf(text, list, ordered);
  if (!fitsList(made.id, list)) throw notOurs();
  return made;
}

function cursorOf(text: string, list: ListName, ordered: boolean): { order: ListOrder; id: string } {
  const current = CURSOR.exec(text);
  if (current) {
    if (current[1] !== list) throw invalidField('cursor', `this cursor continues the list of ${current[1]}, not of ${list}: start again without a cursor`);
    return { order: current[2] as ListOrder, id: current[3] };
  }
  const v2 = ordered ? V2.exec(text) : null;
  if (v2) return { order: v2[1] as ListOrder, id: v2[2] };
  if (text.startsWith(V1_PREFIX) && text.length > V1_PREFIX.length) return { order: 'asc', id: text.slice(V1_PREFIX.length) };
  throw notOurs();
}

const orderMismatch = (cursorOrder: ListOrder, asked: ListOrder) =>
  invalidField('cursor', `this cursor continues a list in order=${cursorOrder}, not ${asked}: give order=${cursorOrder} with it, or start again without a cursor`);

function limitParam(query: Record<string, unknown>): number {
  if (query.limit === undefined) return DEFAULT_LIMIT;
  // Digits only: no sign, space, exponent or hexadecimal spelling of a number.
  const limit = typeof query.limit === 'string' && /^[0-9]{1,7}$/.test(query.limit) ? Number(query.limit) : NaN;
  if (!(limit >= 1 && limit <= MAX_LIMIT)) throw invalidField('limit', `must be a whole number from 1 to ${MAX_LIMIT}`);
  return limit;
}

function cursorParam(query: Record<string, unknown>): string | undefined {
  const cursor = query.cursor;
  if (cursor !== undefined && typeof cursor !== 'string') throw invalidField('cursor', 'give one cursor');
  return cursor || undefined;
}

/**
 * Refuses a query parameter the route does not take, as an unknown field of a body is: a
 * filter mistyped (`listenr_id`) would otherwise answer the whole list as if it matched.
 */
export function onlyKnownParams(query: Record<string, unknown>, known: readonly string[]): void {
  for (const name of Object.keys(query)) {
    if (known.includes(name)) continue;
    const meant = closestName(name, known);
    throw invalidField(name, `unknown query parameter${meant ? ` (did you mean ${meant}?)` : ''}; this route takes ${known.join(', ')}`);
  }
}

/**
 * Reads `limit` and `cursor` of `list` from a query, which may hold besides only the `filters`
 * named; fetch `limit + 1` rows to know whether a next page exists.
 */
export function pageParams(query: Record<string, unknown>, list: ListName, filters: readonly string[] = []): { limit: number; after: string | null } {
  onlyKnownParams(query, ['limit', 'cursor', ...filters]);
  const limit = limitParam(query);
  const cursor = cursorParam(query);
  return { limit, after: cursor ? decodeCursor(cursor, list, null) : null };
}

/** pageParams plus `order` (asc unless given), for the lists that can be walked newest first. */
export function orderedPageParams(
  query: Record<string, unknown>,
  list: ListName,
  filters: readonly string[] = [],
): { limit: number; after: string | null; order: ListOrder } {
  onlyKnownParams(query, ['limit', 'cursor', 'order', ...filters]);
  const limit = limitParam(query);
  const order = query.order ?? 'asc';
  if (typeof order !== 'string' || !LIST_ORDERS.includes(order as ListOrder)) {
    throw invalidField('order', `one of ${LIST_ORDERS.join(', ')}`);
  }
  const cursor = cursorParam(query);
  return { limit, order: order as ListOrder, after: cursor ? decodeCursor(cursor, list, order as ListOrder) : null };
}

/**
 * Builds the answer of `list` from `limit + 1` rows, in `order` (oldest first unless given).
 * `resume`: where the store's walk stopped looking (see ListPage), when it found no more than
 * `limit` rows before it; the next page starts there, so a page may hold fewer than `limit`
 * items, or none, and still have a next one.
 */
export function page<T, V>(
  list: ListName,
  rows: T[],
  limit: number,
  idOf: (row: T) => string,
  view: (row: T) => V,
  order: ListOrder = 'asc',
  resume: string | null = null,
) {
  const items = rows.slice(0, limit);
  const next = rows.length > limit ? idOf(items[items.length - 1]) : resume;
  return { items: items.map(view), next_cursor: next === null ? null : encodeCursor(list, next, order) };
}
