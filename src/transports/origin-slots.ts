/**
 * At most `limit` requests per origin at once; the rest wait their turn here. An attempt's
 * timeout starts only when it gets a slot, so a burst queued behind a slow receiver is not
 * charged for time it spent waiting in the relay.
 */
export function createOriginSlots(limit: number) {
  const origins = new Map<string, { active: number; waiting: Array<(release: (() => void) | null) => void> }>();
  let closed = false;

  function releaseFor(origin: string) {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const o = origins.get(origin)!;
      const next = o.waiting.shift();
      if (next) next(releaseFor(origin));
      else if (--o.active === 0) origins.delete(origin);
    };
  }

  return {
    /** Resolves with a release function, or null once the slots are closed. */
    acquire(origin: string): Promise<(() => void) | null> {
      if (closed) return Promise.resolve(null);
      let o = origins.get(origin);
      if (!o) origins.set(origin, (o = { active: 0, waiting: [] }));
      if (o.active < limit) {
        o.active++;
        return Promise.resolve(releaseFor(origin));
      }
      return new Promise((resolve) => o.waiting.push(resolve));
    },
    /** Turns away everything still waiting. */
    close() {
      closed = true;
      for (const o of origins.values()) for (const w of o.waiting.splice(0)) w(null);
    },
  };
}
