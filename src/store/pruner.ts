import type { Logger } from 'pino';
import type { OperationsStore } from './store.js';

export interface PrunerOptions {
  store: Pick<OperationsStore, 'pruneFinished' | 'exclusively'>;
  log: Logger;
  retentionDays: number;
  intervalMs?: number;
  batch?: number;
}

/**
 * Deletes finished deliveries (with their attempts) and events older than the retention, in
 * small batches with a pause between them so delivery writes are never held up for long.
 */
export function startPruner({ store, log, retentionDays, intervalMs = 60_000, batch = 500 }: PrunerOptions) {
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> = Promise.resolve();

  async function pruneOnce(): Promise<{ deliveries: number; events: number }> {
    const before = Date.now() - retentionDays * 24 * 3600 * 1000;
    const total = { deliveries: 0, events: 0 };
    while (!stopped) {
      const n = await store.pruneFinished(before, batch);
      total.deliveries += n.deliveries;
      total.events += n.events;
      if (n.deliveries < batch && n.events < batch) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    if (total.deliveries || total.events) log.info({ ...total, retentionDays }, 'pruned finished records');
    return total;
  }

  function schedule() {
    if (stopped) return;
    timer = setTimeout(() => {
      // Once per database at a time: another process pruning now makes this round a no-op.
      running = store
        .exclusively('pruner', pruneOnce)
        .then(() => undefined)
        .catch((err) => log.error({ err }, 'pruning failed'))
        .finally(schedule);
    }, intervalMs);
    timer.unref();
  }
  schedule();

  return {
    pruneOnce,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
