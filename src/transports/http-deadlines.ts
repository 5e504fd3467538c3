import { performance } from 'node:perf_hooks';

/** Something with a deadline (`performance.now()` ms) that must be told once it has passed. */
export interface Expiring {
  readonly deadline: number;
  expire(now: number): void;
}

export interface DeadlineSweep {
  watch(item: Expiring): void;
  unwatch(item: Expiring): void;
}

/**
 * One timer for every attempt in flight instead of a timer each: every `periodMs` it expires
 * what is past its deadline, so a deadline is kept to within `periodMs` (plus the event loop's
 * lag). The timer runs only while something is watched and never keeps the process alive.
 */
export function createDeadlineSweep(periodMs: number): DeadlineSweep {
  const watched = new Set<Expiring>();
  let timer: NodeJS.Timeout | null = null;

  function sweep(): void {
    if (watched.size === 0) {
      clearInterval(timer!);
      timer = null;
      return;
    }
    const now = performance.now();
    for (const item of watched) {
      if (item.deadline > now) continue;
      watched.delete(item);
      item.expire(now);
    }
  }

  return {
    watch(item) {
      watched.add(item);
      if (timer === null) {
        timer = setInterval(sweep, periodMs);
        timer.unref();
      }
    },
    unwatch(item) {
      watched.delete(item);
    },
  };
}
