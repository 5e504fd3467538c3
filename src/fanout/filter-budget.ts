import type { FanOut, ListenerRouting } from '../store/store.js';

/*
 * The time a client's request may spend matching its events against listeners. `$regex` runs
 * on a linear-time engine, event patterns never backtrack (event-pattern.ts), and filters,
 * patterns and the strings they test are bounded, but nothing bounds how many listeners of a
 * project test how many events of a request: a 1000-event request against a project of many
 * costly filters or long patterns could hold the thread that serves every request (and the
 * write lock the fan-out runs under) for minutes. So a request's fan-out runs under a meter,
 * charged listener by listener: past its budget the request is refused (and stores nothing)
 * instead.
 *
 * The meter is the fan-out's: a route wrapped by `meteredRouting` charges it while it runs.
 * Routes are synchronous, so the active meter is simply the one of the route running now.
 */

/** Matching time one ingest request may take, in milliseconds. */
export const FILTER_BUDGET_MS = 500;
/**
 * Matching time one replay call may take: it looks at up to RELAY_REPLAY_SCAN_LIMIT events, and
 * an ordinary pattern over a few KiB of a value takes about 10 µs an event. A call that runs past
 * it stops there and says where to go on (store/rows.ts, replayPage).
 */
export const REPLAY_FILTER_BUDGET_MS = 2_000;

/**
 * Deliveries one request's events may make: one per event for each listener that matches it,
 * each a row written in the request's transaction. However cheap the matching, 1,000 events
 * of a project whose 1,000 listeners all match them would be a million rows, written while the
 * thread that serves every request waits. Past it the request is refused as past the budget.
 */
export const MAX_DELIVERIES_PER_REQUEST = 20_000;

/** What a client can do about a request of events that ran past the budget. */
export const REQUEST_ADVICE = 'send fewer events at a time, or shorter values where the filters test them';

export class FilterBudgetError extends Error {
  readonly code = 'FILTER_BUDGET';
  constructor(
    readonly budgetMs: number,
    advice = REQUEST_ADVICE,
    /** Set when it was the deliveries, not the time, that ran past the budget. */
    maxDeliveries?: number,
  ) {
    super(
      maxDeliveries === undefined
        ? `matching these events against the project's listeners (their $regex filters and event patterns) took more than ${budgetMs} ms; ${advice}`
        : `these events would make more than ${maxDeliveries} deliveries (one per event for each of the project's listeners that matches it), more than one request may make; send fewer events at a time, or match them with fewer listeners`,
    );
    this.name = 'FilterBudgetError';
  }
}

export interface FilterMeter {
  readonly budgetMs: number;
  /** What the refusal tells the client to do. */
  readonly advice: string;
  spentMs: number;
  /** Deliveries the routes charged to this meter made, and how many they may make. */
  deliveries: number;
  readonly maxDeliveries: number;
}

export const newFilterMeter = (budgetMs = FILTER_BUDGET_MS, advice = REQUEST_ADVICE, maxDeliveries = MAX_DELIVERIES_PER_REQUEST): FilterMeter => ({
  budgetMs,
  advice,
  spentMs: 0,
  deliveries: 0,
  maxDeliveries,
});

let active: FilterMeter | null = null;

/**
 * `matches(event)`, one listener's match, charged to the route's meter when one runs (its
 * patterns and its filter alike); throws FilterBudgetError once the meter is spent.
 */
export function matchCharged<E>(matches: (event: E) => boolean, event: E): boolean {
  const meter = active;
  if (meter === null) return matches(event);
  const started = performance.now();
  const matched = matches(event);
  meter.spentMs += performance.now() - started;
  if (meter.spentMs > meter.budgetMs) throw new FilterBudgetError(meter.budgetMs, meter.advice);
  return matched;
}

/** `route`, charging its matching and the deliveries it makes to `meter`. */
export function meteredRoute(route: FanOut, meter: FilterMeter): FanOut {
  const charged = (envelope: Parameters<FanOut>[0]) => {
    const outer = active;
    active = meter;
    let ids: readonly string[];
    try {
      ids = route(envelope);
    } finally {
      active = outer;
    }
    meter.deliveries += ids.length;
    if (meter.deliveries > meter.maxDeliveries) throw new FilterBudgetError(meter.budgetMs, meter.advice, meter.maxDeliveries);
    return ids;
  };
  return Object.assign(charged, { ordered: route.ordered, handOff: route.handOff });
}

/**
 * `routing`, whose routes charge their matching to `meter`: one meter for one request's
 * events. A store takes the route once for each transaction it runs the request's events in,
 * so the meter starts again then: a transaction that runs again does not pay twice.
 */
export function meteredRouting(routing: ListenerRouting, meter: FilterMeter): ListenerRouting {
  return {
    at(project, version) {
      const route = routing.at(project, version);
      if (route === null) return null;
      meter.spentMs = 0;
      meter.deliveries = 0;
      return meteredRoute(route, meter);
    },
    kept: (project) => routing.kept(project),
    compile(project, version, enabled, kept) {
      meter.spentMs = 0;
      meter.deliveries = 0;
      return meteredRoute(routing.compile(project, version, enabled, kept), meter);
    },
  };
}
