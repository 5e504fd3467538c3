/*
 * How many of one listener's deliveries this process may hold at once (part of the admission
 * gate's last step, the listener's own `max_in_flight`; see admission.ts).
 *
 * A process sends at most `max_in_flight` attempts to a listener at once; the rest of what it
 * claimed for that listener waits here for a slot, and waiting it takes room the project's
 * other listeners could use. A receiver that answers in a second, with a backlog in front of the
 * queue, would fill the project's whole share, and its project's other listeners would get a
 * delivery only as it finished one. So a process holds no more of a listener's deliveries than
 * it can start within HORIZON_MS at the pace its receiver has been answering (at least two
 * rounds of `max_in_flight`); a claim defers the rest, spread at that pace after what it
 * deferred before, to be claimed when they can be sent (an hour ahead at most, as a rate limit
 * puts them off: a receiver that has sped up meanwhile gets them at its new pace by then). A
 * fast receiver's limit is far above what a claim takes, whether it answers 200 or 500; one
 * that times out is paced at its timeout. Until a listener's receiver has answered here, its
 * limit is the two rounds and its surplus is looked at again shortly (a guess at its pace would
 * put a large backlog off by the guess).
 *
 * Each process keeps its own pace: two processes sending to one listener hold up to twice as
 * much, and have twice the slots.
 */

/** How far ahead a process holds a listener's deliveries, at the pace its receiver answers. */
export const HORIZON_MS = 1_000;
/** How soon a surplus is looked at again while the listener's receiver has not answered here yet. */
export const UNKNOWN_PACE_RECHECK_MS = 100;
/** Weight of the newest attempt in the listener's mean duration. */
const SMOOTHING = 0.2;

export interface ListenerCapacity {
  /** More deliveries of the listener this process may take now (0 or more). */
  room: number;
  /** A time the listener's surplus is put off to, from `now`; each further one adds `spacingMs`. */
  after: number;
  /** Milliseconds between deferred deliveries: the mean attempt's duration over `max_in_flight`. */
  spacingMs: number;
}

/** One per listener this process has held a delivery of (a few numbers each; kept while it runs). */
interface Pace {
  held: number;
  /** Mean duration of an attempt its receiver answered (or did not in time), ms; null until one did. */
  meanMs: number | null;
  /** The last time this process put a surplus delivery off to. */
  deferredUntil: number;
}

export interface ListenerPaces {
  /** What a claim may take of the listener now, and how to put the rest off. */
  capacity(listenerId: string, maxInFlight: number, now: number): ListenerCapacity;
  /** Whether one more of the listener's deliveries fits (a hand-over). */
  fits(listenerId: string, maxInFlight: number): boolean;
  /** The last time a claim put the listener's surplus off to. */
  deferred(listenerId: string, until: number): void;
  /** A delivery of the listener is held here (claimed or handed over). */
  held(listenerId: string): void;
  /** It is not any more; `durationMs` when it was sent (answered, or timed out). */
  done(listenerId: string, durationMs: number | null): void;
}

export function createListenerPaces(): ListenerPaces {
  const paces = new Map<string, Pace>();
  const paceOf = (id: string): Pace => {
    let p = paces.get(id);
    if (!p) paces.set(id, (p = { held: 0, meanMs: null, deferredUntil: 0 }));
    return p;
  };
  const limitOf = (p: Pace | undefined, maxInFlight: number) => {
    const rounds = 2 * maxInFlight;
    if (!p || p.meanMs === null) return rounds;
    return Math.max(rounds, Math.ceil((maxInFlight * HORIZON_MS) / Math.max(p.meanMs, 1)));
  };
  return {
    capacity(listenerId, maxInFlight, now) {
      const p = paces.get(listenerId);
      const room = Math.max(0, limitOf(p, maxInFlight) - (p?.held ?? 0));
      if (!p || p.meanMs === null) return { room, after: now + UNKNOWN_PACE_RECHECK_MS, spacingMs: 0 };
      return { room, after: Math.max(now, p.deferredUntil), spacingMs: p.meanMs / maxInFlight };
    },
    fits(listenerId, maxInFlight) {
      const p = paces.get(listenerId);
      return (p?.held ?? 0) < limitOf(p, maxInFlight);
    },
    deferred(listenerId, until) {
      const p = paceOf(listenerId);
      p.deferredUntil = Math.max(p.deferredUntil, until);
    },
    held(listenerId) {
      paceOf(listenerId).held++;
    },
    done(listenerId, durationMs) {
      const p = paces.get(listenerId);
      if (!p) return;
      p.held = Math.max(0, p.held - 1);
      if (durationMs !== null) p.meanMs = p.meanMs === null ? durationMs : p.meanMs + SMOOTHING * (durationMs - p.meanMs);
    },
  };
}
