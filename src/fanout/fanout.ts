import type { EventEnvelope } from '../records/event.js';
import type { StoredListener } from '../records/listener.js';
import type { ClaimedDelivery, FanOut, ListenerRouting } from '../store/store.js';
import { matchCharged } from './filter-budget.js';
import { compileListenerRule, type ListenerMatcher, type ListenerRule } from './match.js';

interface CompiledListener {
  id: string;
  /** The rule as it was compiled, to tell whether a listener read again has changed. */
  rule: string;
  matches: ListenerMatcher;
}

export interface FanOutOptions {
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
 * The listeners whose fresh deliveries may go straight to this process's dispatcher at commit:
 * those whose admission needs no state of the database (no execution order to keep, no rate
 * limit), with what sending needs of them.
 */
function handOffListeners(enabled: readonly StoredListener[]): ReadonlyMap<string, ClaimedDelivery['listener']> {
  const out = new Map<string, ClaimedDelivery['listener']>();
  for (const l of enabled) {
    if (l.ordering === 'execution' || l.rate_limit_per_s != null) continue;
    out.set(l.id, {
      callback: l.callback,
      retry: l.retry,
      secret: l.secret,
      previous_secret: l.previous_secret,
      previous_secret_expires_at: l.previous_secret_expires_at,
      updated_at: l.updated_at,
      max_in_flight: l.max_in_flight,
      ordering: l.ordering,
    });
  }
  return out;
}

/**
 * Fan-out: which of a project's listeners an event goes to, as the store's ListenerRouting.
 * The store reads the project's listener version inside each write transaction; while it is
 * the version compiled here, the kept matcher routes with no read and no compile. When another
 * change (made by any process) moved it on, the store hands over the project's enabled
 * listeners, read in that same transaction, and only the listeners whose rule changed are
 * compiled again: one change costs one compile, not one per listener.
 */
export function createFanOut(options: FanOutOptions = {}): FanOutCache {
  const compile = options.compile ?? compileListenerRule;
  const projects = new Map<string, { version: number; route: FanOut; matchers: Map<string, CompiledListener> }>();

  function compileOne(listener: StoredListener): ListenerMatcher {
    try {
      return compile(listener);
    } catch (err) {
      options.onUncompilable?.(listener, err as Error);
      return NEVER;
    }
  }

  /*
   * The key is the rule itself rather than updated_at: updated_at has millisecond resolution,
   * so two changes within one millisecond would keep it, and a secret rotation bumps it without
   * changing what the listener matches. A matcher is reused only for the very rule it compiled.
   */
  return {
    at(project, version) {
      const entry = projects.get(project);
      return entry && entry.version === version ? entry.route : null;
    },
    compile(project, version, enabled) {
      const previous = projects.get(project)?.matchers;
      const matchers = new Map<string, CompiledListener>();
      for (const row of enabled) {
        const rule = ruleKey(row);
        const kept = previous?.get(row.id);
        matchers.set(row.id, kept && kept.rule === rule ? kept : { id: row.id, rule, matches: compileOne(row) });
      }
      const listeners = [...matchers.values()];
      const ordered: ReadonlySet<string> = new Set(enabled.filter((l) => l.ordering === 'execution').map((l) => l.id));
      const route: FanOut = Object.assign(
        (envelope: EventEnvelope) => {
          const ids: string[] = [];
          // A client's request is metered: each listener's match is charged to its budget.
          for (const l of listeners) if (matchCharged(l.matches, envelope)) ids.push(l.id);
          return ids;
        },
        { ordered, handOff: handOffListeners(enabled) },
      );
      projects.set(project, { version, route, matchers });
      return route;
    },
  };
}

export type FanOutCache = ListenerRouting;
