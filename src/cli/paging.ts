import { Option, type Command } from 'commander';
import { addListViewOptions, type CommandContext } from './context.js';
import { cursorText, intInRange } from './options.js';

/** What every list endpoint answers (DESIGN: REST API). */
export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface PageOptions {
  limit?: number;
  cursor?: string;
  all?: boolean;
}

export interface OrderedPageOptions extends PageOptions {
  order: 'asc' | 'desc';
}

/** The largest page the API gives; `--all` without `--limit` asks for pages this big. */
export const MAX_PAGE = 1000;

/** `--limit`, `--cursor` and `--all`, as every list command takes them, and -c and the sort options. */
export function addPageOptions(cmd: Command, noun: string): Command {
  return addListViewOptions(cmd)
    .option('--limit <n>', `${noun} per page, 1 to ${MAX_PAGE} (default: 50; with --all: ${MAX_PAGE})`, intInRange(1, MAX_PAGE))
    .option('--cursor <cursor>', 'continue from the next_cursor of an earlier page', cursorText)
    .option('--all', `follow next_cursor to the end and print all ${noun}`);
}

/** addPageOptions and `--order`: newest first unless `--order asc` (the API's default is the other way). */
export function addOrderedPageOptions(cmd: Command, noun: string): Command {
  return addPageOptions(cmd, noun).addOption(
    new Option('--order <order>', `desc: newest ${noun} first; asc: oldest first`).choices(['desc', 'asc']).default('desc'),
  );
}

/** The API's page size when a request names none. */
const DEFAULT_PAGE = 50;

/**
 * One page, or with `all` every page from `cursor` on (next_cursor is then null). The relay
 * may answer a page of fewer items than asked, even none, with a next_cursor (a filtered list
 * looks at a bounded stretch per request): one page follows those until it holds `limit`.
 */
export async function fetchPages<T>(
  ctx: CommandContext,
  pathname: string,
  query: Record<string, string | number | undefined>,
  o: PageOptions,
): Promise<Page<T>> {
  const items: T[] = [];
  let cursor = o.cursor;
  const want = o.limit ?? DEFAULT_PAGE;
  for (let limit = o.limit ?? (o.all ? MAX_PAGE : undefined); ; limit = o.all ? limit : want - items.length) {
    const page = await ctx.client.request<Page<T>>('GET', pathname, { query: { ...query, limit, cursor } });
    items.push(...page.items);
    // A cursor that does not move would loop forever; stop rather than trust it.
    const full = !o.all && items.length >= want;
    if (full || !page.next_cursor || page.next_cursor === cursor) return { items, next_cursor: o.all ? null : page.next_cursor };
    cursor = page.next_cursor;
  }
}

/** The command line of the next page: the same command and filters with the next cursor. */
export function moreLine(command: string, options: Array<[flag: string, value: string | number | undefined]>, next: string): string {
  const quote = (v: string) => (/^[\w.:+@/-]+$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`);
  const kept = options.filter(([, v]) => v !== undefined).map(([flag, v]) => `${flag} ${quote(String(v))}`);
  return `callback-relay ${[command, ...kept, `--cursor ${next}`].join(' ')}`;
}

/** `--order asc` for a next-page line when it was asked for: the cursor only continues that order. */
export const orderFlag = (o: OrderedPageOptions): [string, string | undefined] => ['--order', o.order === 'asc' ? 'asc' : undefined];
