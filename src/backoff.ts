/**
 * The one backoff policy for work that failed for a reason outside the request (the database
 * busy or gone, a broker down): exponential from `baseMs`, capped at `maxMs`, with "full
 * jitter" in the upper half so that processes that failed together do not retry together.
 * `failures` counts consecutive failures, 1 for the first.
 */
export interface BackoffOptions {
  baseMs?: number;
  maxMs?: number;
  random?: () => number;
}

export function backoffDelay(failures: number, { baseMs = 100, maxMs = 30_000, random = Math.random }: BackoffOptions = {}): number {
  const n = Math.max(1, Math.floor(failures));
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(n - 1, 30));
  return Math.round(ceiling / 2 + (ceiling / 2) * random());
}

/** Resolves after `ms`; the timer does not keep the process alive. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
