import type { DeliveryView } from '../../records/delivery.js';
import type { CommandContext } from '../context.js';
import { MAX_PAGE, type Page } from '../paging.js';

/*
 * Following the deliveries a replay made until they finish. A replay answers only with a count,
 * so the deliveries are recognised by what the listener had before it: each call of a replay of
 * the window makes new deliveries, whose ids (ULIDs, in creation order) come after the newest
 * one before that call and before any made later in one transaction; a re-queue of failed ones
 * (--only-failed) makes pending again some of the deliveries that were failed before.
 */

export interface BeforeReplay {
  listenerId: string;
  /** The listener's newest delivery before a replay of the window (null: it had none). */
  newestId: string | null;
  /** Before a re-queue: the listener's failed deliveries and when each last changed. */
  failed: Map<string, string> | null;
}

export interface ReplayOutcome {
  finished: number;
  failed: number;
}

const POLL_MS = 250;
const PROGRESS_EVERY_MS = 1000;

/** The listener's deliveries newest first, page by page, until one is at or below `stopAt`. */
async function* newestFirst(ctx: CommandContext, query: Record<string, string>, stopAt: string | null = null): AsyncGenerator<DeliveryView> {
  let cursor: string | undefined;
  for (;;) {
    const page = await ctx.client.request<Page<DeliveryView>>('GET', '/v1/deliveries', {
      query: { ...query, order: 'desc', limit: MAX_PAGE, cursor },
    });
    for (const d of page.items) {
      if (stopAt !== null && d.id <= stopAt) return;
      yield d;
    }
    if (!page.next_cursor || page.next_cursor === cursor) return;
    cursor = page.next_cursor;
  }
}

export async function beforeReplay(ctx: CommandContext, listenerId: string, onlyFailed: boolean): Promise<BeforeReplay> {
  if (onlyFailed) {
    const failed = new Map<string, string>();
    for await (const d of newestFirst(ctx, { listener_id: listenerId, status: 'failed' })) failed.set(d.id, d.updated_at);
    return { listenerId, newestId: null, failed };
  }
  const page = await ctx.client.request<Page<DeliveryView>>('GET', '/v1/deliveries', {
    query: { listener_id: listenerId, order: 'desc', limit: 1 },
  });
  return { listenerId, newestId: page.items[0]?.id ?? null, failed: null };
}

/** "3 of 10 finished" lines at most once a second, the last one always. */
export function progressReporter(write: (line: string) => void, total: number, clock: () => number = Date.now) {
  let last: { finished: number; at: number } | null = null;
  return (finished: number) => {
    const now = clock();
    const done = finished >= total;
    if (last && (finished === last.finished || (!done && now - last.at < PROGRESS_EVERY_MS))) return;
    write(`${finished} of ${total} finished\n`);
    last = { finished, at: now };
  };
}

/** Polls until none of the replay's `count` deliveries is pending; reports progress as it goes. */
export async function waitForReplay(
  ctx: CommandContext,
  calls: ReadonlyArray<{ before: BeforeReplay; count: number }>,
  report: (finished: number) => void,
): Promise<ReplayOutcome> {
  const [{ before }] = calls;
  const { listenerId } = before;
  const count = calls.reduce((n, c) => n + c.count, 0);
  // The replay's own deliveries: of each call, the `count` oldest made after the newest one
  // before it (deliveries of live events may come between the calls).
  let replayed: Set<string>;
  if (before.failed) replayed = new Set(before.failed.keys());
  else {
    const made: string[] = [];
    for await (const d of newestFirst(ctx, { listener_id: listenerId }, before.newestId)) made.push(d.id);
    made.sort();
    replayed = new Set();
    for (const call of calls) {
      const after = call.before.newestId;
      for (const id of made.filter((m) => after === null || m > after).slice(0, call.count)) replayed.add(id);
    }
  }
  for (;;) {
    let pending = 0;
    for await (const d of newestFirst(ctx, { listener_id: listenerId, status: 'pending' }, before.newestId)) {
      if (replayed.has(d.id)) pending++;
    }
    const finished = count - Math.min(pending, count);
    report(finished);
    if (finished === count) break;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  let failed = 0;
  if (before.failed) {
    // Re-queued ones that failed again changed since; the others of the window were not re-queued.
    for await (const d of newestFirst(ctx, { listener_id: listenerId, status: 'failed' })) {
      if (before.failed.has(d.id) && before.failed.get(d.id) !== d.updated_at) failed++;
    }
  } else {
    for await (const d of newestFirst(ctx, { listener_id: listenerId }, before.newestId)) {
      if (replayed.has(d.id) && d.status !== 'succeeded') failed++;
    }
  }
  return { finished: count, failed };
}
