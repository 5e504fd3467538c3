import type { EventEnvelope } from '../records/event.js';
import type { StoredListener } from '../records/listener.js';
import type { FanOut, Store } from '../store/store.js';
import { compileListenerRule, type ListenerMatcher, type ListenerRule } from './match.js';

interface CompiledListener {
  id: string;
  /** The rule as it was compiled, to tell whether a listener read again has changed. */
  rule: string;
  matches: ListenerMatcher;
}

export interface FanOutOptions {
  /** How long a project's listener list is used before it is read again. */
  maxAgeMs?: number;
  /** Compiles one listener's rule; the default is the matcher the relay routes with. */
  compile?: (rule: ListenerRule) => ListenerMatcher;
  /**
   * Told about a stored listener whose rule no longer compiles (a `$regex` accepted by an older
   * version that the linear-time engine cannot run). Such a listener receives nothing; the
   * project's other listeners go on receiving their events.
   */
  onUncompilable?: (listener: StoredListener, error: Error) => void;
}

const NEVER: ListenerMatcher = () => false;

/** Everything the matcher reads, as one string: equal strings compile to the same matcher. */
function ruleKey(l: StoredListener): string {
  return JSON.stringify([l.workbook, l.event_types, l.events, l.target, l.filter, l.enabled]);
}

/**
 * Fan-out: which of a project's listeners an event goes to. A project's listener list is read
 * once and kept, so the ingest hot path neither reads listeners nor compiles filters. A change
 * drops the list; reading it again compiles only the listeners whose rule changed and reuses
 * every other listener's matcher, so one change costs one compile, not one per listener.
 */
export function createFanOut(store: Pick<Store, 'listEnabledListeners'>, options: FanOutOptions = {}) {
  const maxAgeMs = options.maxAgeMs ?? 5_000;
  const compile = options.compile ?? compileListenerRule;
  const lists = new Map<string, { loadedAt: number; listeners: Promise<CompiledListener[]> }>();
  // Per project, the matchers of the list read last, by listener id.
  const matchers = new Map<string, Map<string, CompiledListener>>();

  /*
   * The key is the rule itself rather than updated_at: updated_at has millisecond resolution,
   * so two changes within one millisecond would keep it, and a secret rotation bumps it without
   * changing what the listener matches. Reads that overlap (a change during a reload) cannot
   * put a stale matcher in place either: a matcher is reused only for the very rule it compiled.
   */
  function compileChanged(project: string, rows: StoredListener[]): CompiledListener[] {
    const previous = matchers.get(project);
    const next = new Map<string, CompiledListener>();
    for (const row of rows) {
      const rule = ruleKey(row);
      const kept = previous?.get(row.id);
      next.set(row.id, kept && kept.rule === rule ? kept : { id: row.id, rule, matches: compileOne(row) });
    }
    matchers.set(project, next);
    return [...next.values()];
  }

  function compileOne(listener: StoredListener): ListenerMatcher {
    try {
      return compile(listener);
    } catch (err) {
      options.onUncompilable?.(listener, err as Error);
      return NEVER;
    }
  }

  // Changes made through this process drop the list at once; the age limit bounds how long a
  // change made by another process (a dispatcher turning a listener off) goes unseen.
  function compiled(project: string): Promise<CompiledListener[]> {
    let entry = lists.get(project);
    if (!entry || Date.now() - entry.loadedAt > maxAgeMs) {
      const listeners = store.listEnabledListeners(project).then((rows) => compileChanged(project, rows));
      const loading = { loadedAt: Date.now(), listeners };
      entry = loading;
      lists.set(project, loading);
      listeners.catch(() => {
        if (lists.get(project) === loading) lists.delete(project);
      });
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
    /**
     * Makes the next event of one project, or of every project, read its listeners again.
     * Compiled matchers are kept: only listeners whose rule changed are compiled again.
     */
    invalidate(project?: string): void {
      if (project === undefined) lists.clear();
      else lists.delete(project);
    },
  };
}

export type FanOutCache = ReturnType<typeof createFanOut>;
