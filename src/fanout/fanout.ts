import type { EventEnvelope } from '../records/event.js';
import type { FanOut, Store } from '../store/store.js';
import { compileListenerRule, type ListenerMatcher } from './match.js';

interface CompiledListener {
  id: string;
  matches: ListenerMatcher;
}

/**
 * Fan-out: which of a project's listeners an event goes to. Compiled matchers are cached per
 * project and dropped whenever a listener of that project changes, so the ingest hot path
 * neither reads listeners nor recompiles filters.
 */
export function createFanOut(store: Store, maxAgeMs = 5_000) {
  const cache = new Map<string, { loadedAt: number; listeners: Promise<CompiledListener[]> }>();

  // Changes made through this process drop the entry at once; the age limit bounds how long a
  // change made by another process (a dispatcher turning a listener off) goes unseen.
  async function compiled(project: string): Promise<CompiledListener[]> {
    let entry = cache.get(project);
    if (!entry || Date.now() - entry.loadedAt > maxAgeMs) {
      const listeners = store
        .listEnabledListeners(project)
        .then((ls) => ls.map((l) => ({ id: l.id, matches: compileListenerRule(l) })));
      entry = { loadedAt: Date.now(), listeners };
      cache.set(project, entry);
      listeners.catch(() => cache.delete(project));
    }
    return entry.listeners;
  }

  return {
    /** A synchronous FanOut for one project, safe to call inside a write transaction. */
    async forProject(project: string): Promise<FanOut> {
      const listeners = await compiled(project);
      return (envelope: EventEnvelope) => {
        const ids: string[] = [];
        for (const l of listeners) if (l.matches(envelope)) ids.push(l.id);
        return ids;
      };
    },
    /** Drops one project's matchers, or every project's. */
    invalidate(project?: string): void {
      if (project === undefined) cache.clear();
      else cache.delete(project);
    },
  };
}

export type FanOutCache = ReturnType<typeof createFanOut>;
