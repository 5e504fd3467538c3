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
export function createFanOut(store: Store) {
  const cache = new Map<string, Promise<CompiledListener[]>>();

  async function compiled(project: string): Promise<CompiledListener[]> {
    let entry = cache.get(project);
    if (!entry) {
      entry = store
        .listEnabledListeners(project)
        .then((ls) => ls.map((l) => ({ id: l.id, matches: compileListenerRule(l) })));
      cache.set(project, entry);
      entry.catch(() => cache.delete(project));
    }
    return entry;
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
