/*
 * The admission gate (DESIGN.md, "Dispatching: one admission gate"). Every delivery about to
 * be sent passes it, in this order:
 * 1. the process's limit on attempts in flight (RELAY_MAX_IN_FLIGHT);
 * 2. a fair share per project: while two or more projects have work, none takes more than
 *    its share of the limit; a project alone may use all but a small reserve, so that another
 *    project's first delivery never waits for a slow receiver to give a slot back;
 * 3. per-origin slots: at most `slotsPerOrigin` attempts to one receiver at once; the rest
 *    wait their turn here, and an attempt's timeout starts only when it gets its slot;
 * 4. the listener's own: its rate limit and circuit breaker (listener-gate.ts, decided in the
 *    claim's transaction on state the database keeps, so every process shares them), the
 *    head of its execution for an ordered listener (the store holds the others back), and its
 *    `max_in_flight` slots here; a claim takes no more of a listener's deliveries than this
 *    process can start soon at the pace its receiver answers, and puts the rest off
 *    (listener-pace.ts), so a slow receiver's backlog does not fill its project's share.
 *
 * Steps 1 and 2 decide how many deliveries of each project a claim may take (`allot`); the
 * claim runs inside the store's transaction and calls `allot` with the projects that have
 * due work, so what is claimed is already admitted.
 */

export interface AdmissionOptions {
  maxInFlight: number;
  slotsPerOrigin: number;
}

export interface AdmissionGate {
  /** How many deliveries each project with due work may claim now (projects given 0 are left out). */
  allot(dueProjects: readonly string[]): Map<string, number>;
  /** Counts a claimed delivery as in flight for its project. */
  admit(project: string): void;
  /** Gives back a delivery's place (its attempt was recorded, or it was released). */
  release(project: string): void;
  /** Waits for a slot at the delivery's origin; resolves with its release, or null once closed. */
  originSlot(origin: string): Promise<(() => void) | null>;
  /** Waits for one of the listener's own `max_in_flight` slots; its release, or null once closed. */
  listenerSlot(listenerId: string, maxInFlight: number): Promise<(() => void) | null>;
  readonly inFlight: number;
  /** Attempts in flight by project (for tests and metrics). */
  heldBy(project: string): number;
  /** Turns away attempts still waiting for an origin slot. */
  close(): void;
}

/** The slots a lone project leaves free for another project's first delivery. */
export function reserveFor(maxInFlight: number): number {
  return maxInFlight < 2 ? 0 : Math.max(1, Math.floor(maxInFlight / 8));
}

/**
 * The pure allotment: `held` is what each project has in flight, `due` the projects with work
 * waiting. Projects are served in the order given; the caller rotates it between calls.
 */
export function allotSlots(maxInFlight: number, held: ReadonlyMap<string, number>, due: readonly string[]): Map<string, number> {
  const out = new Map<string, number>();
  let total = 0;
  for (const n of held.values()) total += n;
  let free = maxInFlight - total;
  if (free <= 0 || due.length === 0) return out;
  const active = new Set(due);
  for (const [project, n] of held) if (n > 0) active.add(project);
  const share = active.size <= 1 ? maxInFlight - reserveFor(maxInFlight) : Math.max(1, Math.floor(maxInFlight / active.size));
  for (const project of due) {
    if (free === 0) break;
    const room = Math.min(free, share - (held.get(project) ?? 0));
    if (room <= 0 || out.has(project)) continue;
    out.set(project, room);
    free -= room;
  }
  return out;
}

export function createAdmissionGate({ maxInFlight, slotsPerOrigin }: AdmissionOptions): AdmissionGate {
  const held = new Map<string, number>();
  let inFlight = 0;
  let turn = 0;
  const origins = createSlots();
  const listeners = createSlots();

  return {
    allot(dueProjects) {
      // Rotating who is served first keeps a project that always has work from always
      // taking the last free slot.
      const order = dueProjects.length > 1 ? [...dueProjects.slice(turn % dueProjects.length), ...dueProjects.slice(0, turn % dueProjects.length)] : dueProjects;
      turn++;
      return allotSlots(maxInFlight, held, order);
    },
    admit(project) {
      held.set(project, (held.get(project) ?? 0) + 1);
      inFlight++;
    },
    release(project) {
      const n = (held.get(project) ?? 0) - 1;
      if (n > 0) held.set(project, n);
      else held.delete(project);
      inFlight = Math.max(0, inFlight - 1);
    },
    originSlot: (origin) => origins.take(origin, slotsPerOrigin),
    listenerSlot: (listenerId, max) => listeners.take(listenerId, max),
    get inFlight() {
      return inFlight;
    },
    heldBy(project) {
      return held.get(project) ?? 0;
    },
    close() {
      origins.close();
      listeners.close();
    },
  };
}

/** Counting slots by key: at most `limit` held per key, the rest wait in arrival order. */
function createSlots() {
  const keys = new Map<string, { active: number; waiting: Array<(release: (() => void) | null) => void> }>();
  let closed = false;

  function releaseFor(key: string) {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const k = keys.get(key)!;
      const next = k.waiting.shift();
      if (next) next(releaseFor(key));
      else if (--k.active === 0) keys.delete(key);
    };
  }

  return {
    take(key: string, limit: number): Promise<(() => void) | null> {
      if (closed) return Promise.resolve(null);
      let k = keys.get(key);
      if (!k) keys.set(key, (k = { active: 0, waiting: [] }));
      if (k.active < limit) {
        k.active++;
        return Promise.resolve(releaseFor(key));
      }
      return new Promise((resolve) => k.waiting.push(resolve));
    },
    close() {
      closed = true;
      for (const k of keys.values()) for (const w of k.waiting.splice(0)) w(null);
    },
  };
}
