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
export function createWriteBatcher(
  db: Database,
  wrapError: (err: unknown) => unknown,
  { maxBatch = 512, minCommitIntervalMs = 10 }: { maxBatch?: number; minCommitIntervalMs?: number } = {},
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

  function flush() {
    scheduled = false;
    lastCommitAt = performance.now();
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

  // Each commit costs an fsync that blocks the process. A write arriving right after a commit
  // waits out the rest of a short interval, so that under a stream of small writes several
  // share one commit; a write after a quiet spell is committed at once.
  function schedule() {
    scheduled = true;
    const wait = lastCommitAt + minCommitIntervalMs - performance.now();
    if (wait > 0) setTimeout(flush, wait);
    else setImmediate(flush);
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
