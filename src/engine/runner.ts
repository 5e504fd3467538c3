import { setTimeout as pause } from 'node:timers/promises';
import type { Logger } from 'pino';
import { backoffDelay, type BackoffOptions } from '../backoff.js';
import { FilterBudgetError } from '../fanout/filter-budget.js';
import type { ClaimedTask, EngineScope, EngineStore, EngineTx } from '../store/engine-store.js';
import { runAction, type ActionDeps } from './actions.js';
import { evaluate, referencedTasks } from './expressions.js';
import { assertWithinLimit, boundedOutcome, DEFAULT_ENGINE_LIMITS, type EngineLimits } from './limits.js';
import { finishTask, scheduleWake } from './state-changes.js';
import type { Outcome } from './transitions.js';
import type { TaskSpec, WorkflowSpec } from './workbook.js';
import { MAX_SLEEP_S, secondsProblem } from './workbook-actions.js';
import { createWakeSignal } from '../wake-signal.js';

/**
 * Runs one state change of a project, on what `scope` names, in one transaction; resolves after
 * commit. `metered`: the matching of its events against the project's listeners is bounded
 * (fanout/filter-budget.ts), and past the budget nothing is committed: FilterBudgetError, whose
 * message ends with `advice`, what the client can do about it.
 */
export type Commit = <T>(project: string, scope: EngineScope, fn: (tx: EngineTx) => T, options?: { metered?: boolean; advice?: string }) => Promise<T>;

export interface RunnerHooks {
  /** Called before each try to commit an action's outcome; a throw counts as a failed commit (tests). */
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
  limits?: EngineLimits;
  /** Pauses between tries of a database step that failed (a claim, a commit). */
  storeBackoff?: BackoffOptions;
  /** This runner's owner id (src/owner.ts): claimed tasks carry it. */
  owner: string;
  /** How long a claimed task's lease lasts; renewed every third of it while the runner lives. */
  taskLeaseMs?: number;
}

/** The database failed to take a step now; anything else is a fault of the step itself. */
const isStoreUnavailable = (err: unknown) => (err as { code?: unknown } | null)?.code === 'STORE_UNAVAILABLE';
/**
 * A commit that keeps failing for a reason other than the database being unavailable is most
 * likely refused for what it holds: after this many tries the task's failure is committed instead.
 */
const UNRECORDABLE_AFTER = 3;
const STOPPED = Symbol('stopped');

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
  const limits = o.limits ?? DEFAULT_ENGINE_LIMITS;
  const storeBackoff = o.storeBackoff ?? { baseMs: 100, maxMs: 10_000 };
  const leaseMs = o.taskLeaseMs ?? 30_000;
  let running = false;
  let accepting = true;
  let renewal: NodeJS.Timeout | undefined;
  // Aborted once outcomes are no longer committed: ends the pauses between commit tries.
  const stopping = new AbortController();
  let loopDone: Promise<void> = Promise.resolve();
  const active = new Set<Promise<void>>();
  const signal = createWakeSignal();
  const { wake, sleep } = signal;

  async function loop() {
    let claimFailures = 0;
    while (running) {
      const room = maxInFlight - active.size;
      let claimed: ClaimedTask[] = [];
      signal.clear();
      try {
        if (room > 0) {
          claimed = await store.claimRunnableTasks({ owner: o.owner, now: Date.now(), limit: room, leaseMs });
          if (claimFailures > 0) log.info({ failures: claimFailures }, 'the store answers again; the engine claims tasks again');
          claimFailures = 0;
        }
      } catch (err) {
        claimFailures++;
        const retryInMs = backoffDelay(claimFailures, storeBackoff);
        log.error({ err, failures: claimFailures, retry_in_ms: retryInMs }, 'could not claim runnable tasks');
        await sleep(retryInMs);
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

  /**
   * Runs a database step until it succeeds, pausing between tries by the store backoff policy.
   * Gives up only when the runner stops committing: a task left in flight then is recorded as
   * interrupted by recovery at the next start, as after a crash. A read (`readOnly`) is tried
   * again only while the database is unavailable; its other errors are thrown.
   */
  async function persistently<T>(what: string, task: ClaimedTask, step: () => Promise<T>, readOnly = false): Promise<T | typeof STOPPED> {
    for (let failures = 1; ; failures++) {
      try {
        return await step();
      } catch (err) {
        if (readOnly && !isStoreUnavailable(err)) throw err;
        if (accepting) {
          const retryInMs = backoffDelay(failures, storeBackoff);
          log.error({ err, task: task.id, failures, retry_in_ms: retryInMs }, `could not ${what}; trying again`);
          await pause(retryInMs, undefined, { signal: stopping.signal }).catch(() => {});
        }
        if (!accepting) {
          log.warn({ err, task: task.id }, `could not ${what} before the engine stopped; the next start records the task as interrupted`);
          return STOPPED;
        }
      }
    }
  }

  async function runTask(task: ClaimedTask) {
    const startedAt = task.action_started_at!;
    const spec = (task.execution.spec as WorkflowSpec).tasks[task.name];
    let outcome: Outcome;
    try {
      const input = await inputOf(task, spec);
      if (input === STOPPED) return;
      if (task.action === 'std.sleep') {
        const problem = secondsProblem(input.seconds, 'zero', MAX_SLEEP_S);
        if (problem) throw new Error(`input.seconds ${problem}`);
        const seconds = input.seconds as number;
        // Measured from the attempt's start, so a restart neither shortens nor repeats the wait.
        const due = startedAt + Math.round(seconds * 1000);
        if (due > Date.now()) {
          const wait = (tx: EngineTx) => scheduleWake(tx, task.id, startedAt, due);
          if (accepting) await persistently('commit a wait', task, () => commit(task.project, { executionId: task.execution_id }, wait));
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
    await commitOutcome(task, startedAt, boundedOutcome(outcome, limits.maxResultBytes));
  }

  /**
   * Commits what an attempt came to, trying again while the database cannot take it, so the task
   * never stays RUNNING while the process lives. The action is not run again: only its outcome
   * is written, and a try that did commit before failing to answer makes the next one a no-op.
   */
  async function commitOutcome(task: ClaimedTask, startedAt: number, outcome: Outcome) {
    let current = outcome;
    let refusals = 0;
    // A result is the action's (a response, an echo of the client's input): its TASK_SUCCEEDED
    // carries it, so its matching is metered as a request's is. A failure's event carries a
    // short message only.
    const commitCurrent = async () =>
      (
        await commit(task.project, { executionId: task.execution_id }, (tx) => finishTask(tx, task.id, startedAt, current, limits.maxTasksPerExecution), {
          metered: current.ok,
          advice: 'return a shorter result where the filters test it',
        })
      ).end;
    const end = await persistently('commit a task outcome', task, async () => {
      try {
        o.hooks?.beforeCommitOutcome?.(task, current);
        return await commitCurrent();
      } catch (err) {
        if (err instanceof FilterBudgetError && current.ok) {
          // Matching the result would hold the relay: the task fails instead, saying why.
          current = { ok: false, error: `its result was not kept: ${err.message}`, retryable: false };
          return await commitCurrent();
        }
        if (!isStoreUnavailable(err) && ++refusals >= UNRECORDABLE_AFTER && current === outcome) {
          current = { ok: false, error: `the outcome could not be recorded: ${(err as Error).message}`, retryable: false };
        }
        throw err;
      }
    });
    if (end !== STOPPED) log.debug({ task: task.id, name: task.name, end, ok: current.ok }, 'task outcome committed');
  }

  /**
   * The task's input with its expressions evaluated against the execution input and earlier
   * results; more than RELAY_MAX_RESULT_BYTES of it fails the task.
   */
  async function inputOf(task: ClaimedTask, spec: TaskSpec): Promise<Record<string, unknown> | typeof STOPPED> {
    const names = referencedTasks(spec.input);
    // The latest instance that succeeded answers task('name').result.
    const results =
      names.length === 0
        ? new Map<string, unknown>()
        : await persistently('read earlier results', task, () => store.latestResults(task.project, task.execution_id, names), true);
    if (results === STOPPED) return STOPPED;
    const context = { input: task.execution.input, taskResult: (name: string) => results.get(name) ?? null };
    const value = evaluate(spec.input, context, { maxBytes: limits.maxResultBytes, what: 'input' });
    assertWithinLimit('input', value, limits.maxResultBytes);
    return (value ?? {}) as Record<string, unknown>;
  }

  return {
    start() {
      if (running) return;
      running = true;
      loopDone = loop();
      // While this runner lives, its tasks' leases do: recovery elsewhere waits for them to end.
      renewal = setInterval(() => {
        if (active.size === 0) return;
        store.renewTaskLeases(o.owner, Date.now() + leaseMs).catch((err) => log.error({ err }, 'could not renew task leases'));
      }, Math.max(100, Math.floor(leaseMs / 3)));
      renewal.unref();
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
      clearInterval(renewal);
      accepting = false;
      stopping.abort();
    },
  };
}
