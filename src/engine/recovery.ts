import type { Logger } from 'pino';
import type { EngineStore } from '../store/engine-store.js';
import type { Commit } from './runner.js';
import { failPendingOperation, finishTask, rearmWait } from './state-changes.js';

export const INTERRUPTED = 'interrupted by restart';

/**
 * Runs once at start, before the runner: every task whose action started and never committed an
 * outcome. Its side effects may have happened, so it is not run again silently: it ends in ERROR
 * "interrupted by restart" and its workflow follows its on-error path or fails, each task in its
 * own transaction with its events. A std.sleep has no side effects: its wait is simply due again.
 */
export async function recoverInterruptedTasks({
  store,
  commit,
  log,
  maxTasks,
}: {
  store: EngineStore;
  commit: Commit;
  log: Logger;
  /** RELAY_MAX_TASKS_PER_EXECUTION: an on-error path followed now counts toward it. */
  maxTasks: number;
}) {
  const tasks = await store.listInFlightTasks();
  if (tasks.length === 0) return { interrupted: 0, waits: 0 };
  let interrupted = 0;
  let waits = 0;
  await Promise.all(
    tasks.map(async (t) => {
      if (t.action === 'std.sleep') {
        // A cancel or pause that waited for this wait to be set up ends in error, as for any action.
        await commit(t.project, (tx) => {
          failPendingOperation(tx, t.execution_id, INTERRUPTED);
          rearmWait(tx, t.id);
        });
        waits++;
        return;
      }
      // An operation that waited for this action is reported failed first; recovery then
      // completes the state change as it would have.
      const { end } = await commit(t.project, (tx) => {
        failPendingOperation(tx, t.execution_id, INTERRUPTED);
        return finishTask(tx, t.id, t.action_started_at!, { ok: false, error: INTERRUPTED, retryable: false }, maxTasks);
      });
      if (end === 'finished') interrupted++;
    }),
  );
  log.warn({ interrupted, waits }, 'tasks whose actions were in flight at the last stop were recovered');
  return { interrupted, waits };
}
