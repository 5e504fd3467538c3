import { backoffDelay, delay } from '../../backoff.js';

/**
 * How long one statement may block the event loop waiting for another process's lock. Longer
 * waits happen between statements, asynchronously (`retryWhileBusy`, the write batcher), so
 * the process keeps answering while a database is busy.
 */
export const SYNC_BUSY_TIMEOUT_MS = 5;

/** SQLITE_BUSY and its extended codes: another connection holds the lock. */
export function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_BUSY');
}

/**
 * Runs a synchronous database call; while it fails because the database is busy, tries again
 * after a short, growing pause (the event loop stays free) until `timeoutMs` has passed, then
 * throws what `wrapError` makes of the last error.
 */
export async function retryWhileBusy<T>(fn: () => T, timeoutMs: number, wrapError: (err: unknown) => unknown): Promise<T> {
  const started = performance.now();
  for (let failures = 1; ; failures++) {
    try {
      return fn();
    } catch (err) {
      const left = timeoutMs - (performance.now() - started);
      if (!isBusy(err) || left <= 0) throw wrapError(err);
      await delay(Math.min(left, backoffDelay(failures, { baseMs: 4, maxMs: 100 })));
    }
  }
}
