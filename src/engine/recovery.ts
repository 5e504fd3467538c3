import type { Logger } from 'pino';
import type { EngineStore, InFlightTask } from '../store/engine-store.js';
import { ownerIsDeadHere } from '../owner.js';
import type { Commit } from './runner.js';
import { failPendingOperation, finishTask, isAttemptInFlight, rearmWait } from './state-changes.js';

export const INTERRUPTED = 'interrupted by restart';

/**
 * Whether a task in flight has lost its runner: its lease ran out, or its owner is a process of
 * this host that is gone (a restarted relay recovers its own tasks at once). A task of a live
 * runner, on this host or another, is never touched.
 */
export function isOrphan(task: InFlightTask, now: number, self: string): boolean {
  if (task.owner === self) return false;
  if (task.owner === null || task.lease_until === null) return true;
  return task.lease_until < now || ownerIsDeadHere(task.owner);
}

/**
 * Every task whose action started and never committed an outcome, and whose runner is gone
 * (isOrphan). Its side effects may have happened, so it is not run again silently: it ends in
 * ERROR "interrupted by restart" and its workflow follows its on-error path or fails, each task
 * in its own transaction with its events. A std.sleep has no side effects: its wait is simply
 * due again. Runs at start, before the runner, and then periodically (a runner of another
 * process may die at any time); once per database at a time (the caller holds the lock).
 */
export async function recoverInterruptedTasks({
  store,
  commit,
  log,
  maxTasks,
  self,
}: {
  store: EngineStore;
  commit: Commit;
  log: Logger;
  /** RELAY_MAX_TASKS_PER_EXECUTION: an on-error path followed now counts toward it. */
  maxTasks: number;
  /** This process's runner, whose tasks are alive. */
  self: string;
}) {
  const now = Date.now();
  const tasks = (await store.listInFlightTasks()).filter((t) => isOrphan(t, now, self));
  if (tasks.length === 0) return { interrupted: 0, waits: 0 };
  let interrupted = 0;
  let waits = 0;
  await Promise.all(
    tasks.map(async (t) => {
      const end = await commit(t.project, { executionId: t.execution_id }, (tx) => {
        // A task whose outcome committed meanwhile (its runner was slow, not dead) is left as it is.
        if (!isAttemptInFlight(tx.task(t.id), t.action_started_at)) return 'stale';
        // An operation that waited for this action is reported failed first; recovery then
        // completes the state change as it would have.
        failPendingOperation(tx, t.execution_id, INTERRUPTED);
        if (t.action === 'std.sleep') {
          rearmWait(tx, t.id);
          return 'wait';
        }
        return finishTask(tx, t.id, t.action_started_at!, { ok: false, error: INTERRUPTED, retryable: false }, maxTasks).end;
      });
      if (end === 'wait') waits++;
      else if (end === 'finished') interrupted++;
    }),
  );
  if (interrupted || waits) log.warn({ interrupted, waits }, 'tasks whose runner stopped with their actions in flight were recovered');
  return { interrupted, waits };
}
