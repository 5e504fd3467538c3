import type { Database } from 'better-sqlite3';
import { backoffDelay } from '../../backoff.js';
import { isBusy } from './busy.js';

interface Job {
  fn: () => unknown;
  resolve: (value: any) => void;
  reject: (err: unknown) => void;
  /** performance.now() when the write was asked for; a busy database is waited out from here. */
  queuedAt: number;
  ok?: boolean;
  value?: unknown;
  error?: unknown;
}

export interface WriteBatcherOptions {
  maxBatch?: number;
  minCommitIntervalMs?: number;
  /** How long a write may wait for another process's lock before it is refused (503). */
  busyTimeoutMs?: number;
}

/**
 * Group commit. Writes that arrive in the same turn of the event loop share one transaction
 * and so one fsync; each runs in its own savepoint, so one failing write rolls back only
 * itself. Callers are answered after the commit, never before: an acknowledged write is on disk.
 *
 * Nothing here throws from a timer: a batch that fails in any way answers every caller.
 */
export function createWriteBatcher(
  db: Database,
  wrapError: (err: unknown) => unknown,
  { maxBatch = 512, minCommitIntervalMs = 10, busyTimeoutMs = 5_000 }: WriteBatcherOptions = {},
) {
  const begin = db.prepare('BEGIN IMMEDIATE');
  const commit = db.prepare('COMMIT');
  const rollback = db.prepare('ROLLBACK');
  const savepoint = db.prepare('SAVEPOINT w');
  const release = db.prepare('RELEASE w');
  const rollbackTo = db.prepare('ROLLBACK TO w');
  let queue: Job[] = [];
  let scheduled = false;
  let lastCommitAt = -Infinity;
  let busyFailures = 0;

  function settle(jobs: Job[]) {
    for (const job of jobs) {
      if (job.ok) job.resolve(job.value);
      else job.reject(job.error);
    }
  }

  function abandon(jobs: Job[], err: unknown) {
    if (db.inTransaction) {
      try {
        rollback.run();
      } catch {
        /* the transaction is gone already */
      }
    }
    const wrapped = wrapError(err);
    for (const job of jobs) job.reject(wrapped);
  }

  /** Runs one batch; returns the jobs that never ran (the transaction ended under them). */
  function runBatch(jobs: Job[]): Job[] {
    for (let i = 0; i < jobs.length; i++) {
      const job = jobs[i];
      savepoint.run();
      try {
        job.value = job.fn();
        job.ok = true;
        release.run();
      } catch (err) {
        job.ok = false;
        job.error = wrapError(err);
        if (!db.inTransaction) {
          // SQLite rolled the whole transaction back (disk full, I/O error): the writes before
          // this one are gone too, and the savepoint with them.
          for (const done of jobs.slice(0, i)) {
            done.ok = false;
            done.error = job.error;
          }
          return jobs.slice(i + 1);
        }
        rollbackTo.run();
        release.run();
      }
    }
    return [];
  }

  function flush() {
    scheduled = false;
    const jobs = queue.splice(0, maxBatch);
    if (jobs.length === 0) return;
    try {
      begin.run();
    } catch (err) {
      // Another process holds the write lock: wait for it without blocking the event loop,
      // until the oldest write has waited its limit.
      if (isBusy(err) && performance.now() - jobs[0].queuedAt < busyTimeoutMs) {
        queue = [...jobs, ...queue];
        busyFailures++;
        scheduled = true;
        setTimeout(flush, backoffDelay(busyFailures, { baseMs: 4, maxMs: 100 }));
        return;
      }
      abandon(jobs, err);
      if (queue.length) schedule();
      return;
    }
    busyFailures = 0;
    lastCommitAt = performance.now();
    let notRun: Job[] = [];
    try {
      notRun = runBatch(jobs);
      if (db.inTransaction) commit.run();
    } catch (err) {
      abandon(jobs.filter((j) => !notRun.includes(j)), err);
      queue = [...notRun, ...queue];
      if (queue.length) schedule();
      return;
    }
    // Writes the failed transaction never reached go first in the next one.
    queue = [...notRun, ...queue];
    if (queue.length) schedule();
    settle(notRun.length ? jobs.filter((j) => !notRun.includes(j)) : jobs);
  }

  // Each commit costs an fsync that blocks the process. A write arriving right after a commit
  // waits out the rest of a short interval, so that under a stream of small writes several
  // share one commit; a write after a quiet spell is committed at once.
  function schedule() {
    if (scheduled) return;
    scheduled = true;
    const wait = lastCommitAt + minCommitIntervalMs - performance.now();
    if (wait > 0) setTimeout(flush, wait);
    else setImmediate(flush);
  }

  return {
    run<T>(fn: () => T): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        queue.push({ fn, resolve, reject, queuedAt: performance.now() });
        schedule();
      });
    },
  };
}
