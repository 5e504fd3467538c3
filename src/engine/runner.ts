import type { Logger } from 'pino';
import type { ClaimedTask, EngineStore, EngineTx, TaskRecord } from '../store/engine-store.js';
import { runAction, type ActionDeps } from './actions.js';
import { evaluate, referencedTasks } from './expressions.js';
import { finishTask, scheduleWake } from './state-changes.js';
import type { Outcome } from './transitions.js';
import type { TaskSpec, WorkflowSpec } from './workbook.js';
import { createWakeSignal } from '../wake-signal.js';

/** Runs one state change of a project in one transaction; resolves after commit. */
export type Commit = <T>(project: string, fn: (tx: EngineTx) => T) => Promise<T>;

export interface RunnerHooks {
  /** Called after an action's outcome is known and before it commits; a throw leaves the outcome uncommitted (tests). */
  beforeCommitOutcome?: (task: ClaimedTask, outcome: Outcome) => void;
}

export interface RunnerOptions {
  store: EngineStore;
  commit: Commit;
  actions: ActionDeps;
  log: Logger;
  hooks?: RunnerHooks;
  /** Actions running at once in this process. */
  maxInFlight?: number;
  /** Longest sleep between looks at the table when nothing woke the runner. */
  idlePollMs?: number;
  /** How long actions in flight may finish on stop; after that their outcomes are dropped (recovery marks them on restart). */
  shutdownGraceMs?: number;
}

export interface Runner {
  start(): void;
  /** Look for runnable tasks now (something was launched, resumed or re-run). */
  wake(): void;
  stop(): Promise<void>;
}

/**
 * The engine's loop: claim runnable tasks (committing that their actions started), run each
 * action with no transaction open, then commit its outcome, the events and the tasks launched
 * after it in one transaction.
 */
export function createRunner(o: RunnerOptions): Runner {
  const { store, commit, log } = o;
  const maxInFlight = o.maxInFlight ?? 256;
  const idlePollMs = o.idlePollMs ?? 1_000;
  let running = false;
  let accepting = true;
  let loopDone: Promise<void> = Promise.resolve();
  const active = new Set<Promise<void>>();
  const signal = createWakeSignal();
  const { wake, sleep } = signal;

  async function loop() {
    while (running) {
      const room = maxInFlight - active.size;
      let claimed: ClaimedTask[] = [];
      signal.clear();
      try {
        if (room > 0) claimed = await store.claimRunnableTasks(Date.now(), room);
      } catch (err) {
        log.error({ err }, 'could not claim runnable tasks');
        await sleep(idlePollMs);
        continue;
      }
      for (const task of claimed) {
        const p = runTask(task).finally(() => {
          active.delete(p);
          wake();
        });
        active.add(p);
      }
      if (claimed.length > 0 && claimed.length === room) continue;
      let wait = idlePollMs;
      if (room > 0 && claimed.length === 0) {
        const due = await store.nextTaskDueAt().catch(() => null);
        if (due !== null) wait = Math.min(wait, due - Date.now());
      }
      await sleep(wait);
    }
  }

  async function runTask(task: ClaimedTask) {
    const startedAt = task.action_started_at!;
    const spec = (task.execution.spec as WorkflowSpec).tasks[task.name];
    let outcome: Outcome;
    try {
      const input = await inputOf(task, spec);
      if (task.action === 'std.sleep') {
        const seconds = Number(input.seconds);
        if (!Number.isFinite(seconds) || seconds < 0) throw new Error('input.seconds must be a number of seconds ≥ 0');
        // Measured from the attempt's start, so a restart neither shortens nor repeats the wait.
        const due = startedAt + Math.round(seconds * 1000);
        if (due > Date.now()) {
          if (accepting) await commit(task.project, (tx) => scheduleWake(tx, task.id, startedAt, due));
          return;
        }
        outcome = { ok: true, result: null };
      } else {
        outcome = await runAction(task.action as Exclude<TaskSpec['action'], 'std.sleep'>, input, o.actions);
      }
    } catch (err) {
      outcome = { ok: false, error: (err as Error).message, retryable: false };
    }
    if (!accepting) return;
    try {
      o.hooks?.beforeCommitOutcome?.(task, outcome);
    } catch (err) {
      log.warn({ err, task: task.id }, 'outcome not committed (hook)');
      return;
    }
    try {
      const { end } = await commit(task.project, (tx) => finishTask(tx, task.id, startedAt, outcome));
      log.debug({ task: task.id, name: task.name, end, ok: outcome.ok }, 'task outcome committed');
    } catch (err) {
      // The task stays marked as started: a restart records it as interrupted, never re-runs it silently.
      log.error({ err, task: task.id }, 'could not commit a task outcome');
    }
  }

  /** The task's input with its expressions evaluated against the execution input and earlier results. */
  async function inputOf(task: ClaimedTask, spec: TaskSpec): Promise<Record<string, unknown>> {
    const results = new Map<string, unknown>();
    if (referencedTasks(spec.input).length > 0) {
      const tasks: TaskRecord[] = await store.listTasks(task.project, task.execution_id, { limit: 100_000 });
      // The latest instance that succeeded answers task('name').result.
      for (const t of tasks) if (t.state === 'SUCCESS') results.set(t.name, t.result);
    }
    const value = evaluate(spec.input, { input: task.execution.input, taskResult: (name) => results.get(name) ?? null });
    return (value ?? {}) as Record<string, unknown>;
  }

  return {
    start() {
      if (running) return;
      running = true;
      loopDone = loop();
    },
    wake,
    async stop() {
      running = false;
      wake();
      await loopDone;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...active]),
        new Promise((resolve) => (timer = setTimeout(resolve, o.shutdownGraceMs ?? 10_000))),
      ]);
      clearTimeout(timer);
      accepting = false;
    },
  };
}
