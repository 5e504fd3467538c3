import { Router } from 'express';
import { HOUR_MS, resolveStatsRange, seriesStart, toStatsView, type StatsRange } from '../../records/health.js';
import type { ListenerStore } from '../../store/store.js';
import { onlyKnownParams } from '../paging.js';
import { invalidField, notFound } from '../problem.js';

/** `window` and `bucket` from a query; a bad one is a 400 naming it. */
function statsRange(query: Record<string, unknown>): StatsRange {
  onlyKnownParams(query, ['window', 'bucket']);
  for (const field of ['window', 'bucket'] as const) {
    const value = query[field];
    if (value !== undefined && (typeof value !== 'string' || value === '')) throw invalidField(field, 'give one value, such as 24h');
  }
  const result = resolveStatsRange(query.window as string | undefined, query.bucket as string | undefined);
  if (!result.ok) throw invalidField(result.field, result.message);
  return result.range;
}

/** The rollups a series reads: from `since` on, by the hour when its buckets are whole hours. */
const rollupQuery = (range: StatsRange, now: number) => ({ since: seriesStart(range, now), hours: range.bucketMs % HOUR_MS === 0 });

/** Delivery statistics from the rollups: the whole project's, or one listener's. */
export function statsRoutes({ store }: { store: Pick<ListenerStore, 'getListener' | 'rollups'> }): Router {
  const router = Router();

  router.get('/stats', async (req, res) => {
    const range = statsRange(req.query);
    const now = Date.now();
    const minutes = await store.rollups(res.locals.project, rollupQuery(range, now));
    res.json(toStatsView(range, minutes, now));
  });

  router.get('/listeners/:id/stats', async (req, res) => {
    const range = statsRange(req.query);
    const listener = await store.getListener(res.locals.project, req.params.id);
    if (!listener) throw notFound(`listener ${req.params.id}`);
    const now = Date.now();
    const minutes = await store.rollups(listener.project, { listenerId: listener.id, ...rollupQuery(range, now) });
    res.json(toStatsView(range, minutes, now));
  });

  return router;
}
