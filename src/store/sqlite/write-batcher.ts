import type { Database } from 'better-sqlite3';

interface Job {
  fn: () => unknown;
  resolve: (value: any) => void;
  reject: (err: unknown) => void;
  ok?: boolean;
  value?: unknown;
  error?: unknown;
}

/**
 * Group commit. Writes that arrive in the same turn of the event loop share one transaction
 * and so one fsync; each runs in its own savepoint, so one failing write rolls back only
 * itself. Callers are answered after the commit, never before: an acknowledged write is on disk.
 */
export function createWriteBatcher(db: Database, wrapError: (err: unknown) => unknown, maxBatch = 512) {
  const begin = db.prepare('BEGIN IMMEDIATE');
  const commit = db.prepare('COMMIT');
  const rollback = db.prepare('ROLLBACK');
  const savepoint = db.prepare('SAVEPOINT w');
  const release = db.prepare('RELEASE w');
  const rollbackTo = db.prepare('ROLLBACK TO w');
  let queue: Job[] = [];
  let scheduled = false;

  function flush() {
    scheduled = false;
    const jobs = queue.splice(0, maxBatch);
    if (queue.length) schedule();
    try {
      begin.run();
    } catch (err) {
      for (const job of jobs) job.reject(wrapError(err));
      return;
    }
    for (const job of jobs) {
      savepoint.run();
      try {
        job.value = job.fn();
        job.ok = true;
        release.run();
      } catch (err) {
        job.error = wrapError(err);
        rollbackTo.run();
        release.run();
      }
    }
    try {
      commit.run();
    } catch (err) {
      if (db.inTransaction) rollback.run();
      const wrapped = wrapError(err);
      for (const job of jobs) job.reject(job.ok ? wrapped : job.error);
      return;
    }
    for (const job of jobs) {
      if (job.ok) job.resolve(job.value);
      else job.reject(job.error);
    }
  }

  function schedule() {
    scheduled = true;
    setImmediate(flush);
  }

  return {
    run<T>(fn: () => T): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        queue.push({ fn, resolve, reject });
        if (!scheduled) schedule();
      });
    },
  };
}
