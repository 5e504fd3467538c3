import type { EventEnvelope } from '../records/event.js';
import type { StoredListener } from '../records/listener.js';
import type { ClaimedDelivery, EnabledListener, FanOut, KeptListeners, ListenerRouting } from '../store/store.js';
import { matchCharged } from './filter-budget.js';
import { compileListenerRule, type ListenerMatcher, type ListenerRule } from './match.js';

/** What routing keeps of one listener at one revision: never its rule or filter text. */
interface CompiledListener {
  id: string;
  revision: number;
  matches: ListenerMatcher;
  ordered: boolean;
  handOff: ClaimedDelivery['listener'] | null;
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

/**
 * Sending's part of a listener whose fresh deliveries may go straight to this process's
 * dispatcher at commit: one whose admission needs no state of the database (no execution order
 * to keep, no rate limit). Null for the others.
 */
function handOffOf(l: StoredListener): ClaimedDelivery['listener'] | null {
  if (l.ordering === 'execution' || l.rate_limit_per_s != null) return null;
  return {
    callback: l.callback,
    retry: l.retry,
    secret: l.secret,
    previous_secret: l.previous_secret,
    previous_secret_expires_at: l.previous_secret_expires_at,
    updated_at: l.updated_at,
    max_in_flight: l.max_in_flight,
    ordering: l.ordering,
  };
}

/**
 * Fan-out: which of a project's listeners an event goes to, as the store's ListenerRouting.
 * The store reads the project's listener version inside each write transaction; while it is
 * the version compiled here, the kept matcher routes with no read and no compile. When another
 * change (made by any process) moved it on, the store reads the project's enabled listeners in
 * that same transaction, but the rows only of those not kept here at their revision: one
 * change costs one row read, parsed and compiled, not one per listener.
 */
export function createFanOut(options: FanOutOptions = {}): FanOutCache {
  const compile = options.compile ?? compileListenerRule;
  const projects = new Map<string, { version: number; route: FanOut; listeners: Map<string, CompiledListener> }>();
  const NONE: ReadonlyMap<string, CompiledListener> = new Map();

  function compileOne(listener: StoredListener, revision: number): CompiledListener {
    let matches = NEVER;
    try {
      matches = compile(listener);
    } catch (err) {
      options.onUncompilable?.(listener, err as Error);
    }
    return { id: listener.id, revision, matches, ordered: listener.ordering === 'execution', handOff: handOffOf(listener) };
  }

  /*
   * The key is a revision the store bumps with every write of the row rather than updated_at:
   * updated_at has millisecond resolution, so two changes within one millisecond would keep it.
   * A secret rotation moves the revision too, and the one listener is compiled again.
   */
  return {
    at(project, version) {
      const entry = projects.get(project);
      return entry && entry.version === version ? entry.route : null;
    },
    kept(project) {
      return projects.get(project)?.listeners ?? NONE;
    },
    compile(project, version, enabled: EnabledListener[], before: KeptListeners) {
      const kept = new Map<string, CompiledListener>();
      for (const e of enabled) {
        // The snapshot `kept` answered: another transaction may have compiled since.
        const known = before.get(e.id) as CompiledListener | undefined;
        if (known && known.revision === e.revision) kept.set(e.id, known);
        else if (e.row) kept.set(e.id, compileOne(e.row, e.revision));
        else throw new Error(`listener ${e.id} came without its row, at revision ${e.revision}, which is not the one kept`);
      }
      const listeners = [...kept.values()];
      const ordered: ReadonlySet<string> = new Set(listeners.filter((l) => l.ordered).map((l) => l.id));
      const handOff = new Map<string, ClaimedDelivery['listener']>();
      for (const l of listeners) if (l.handOff) handOff.set(l.id, l.handOff);
      const route: FanOut = Object.assign(
        (envelope: EventEnvelope) => {
          const ids: string[] = [];
          // A client's request is metered: each listener's match is charged to its budget.
          for (const l of listeners) if (matchCharged(l.matches, envelope)) ids.push(l.id);
          return ids;
        },
        { ordered, handOff },
      );
      // Transactions of one project may compile out of order (PostgreSQL): keep the newest.
      const current = projects.get(project);
      if (!current || current.version <= version) projects.set(project, { version, route, listeners: kept });
      return route;
    },
  };
}

export type FanOutCache = ListenerRouting;
