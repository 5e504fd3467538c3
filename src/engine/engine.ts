import type { Logger } from 'pino';
import type { FanOutCache } from '../fanout/fanout.js';
import { FILTER_BUDGET_MS, meteredRouting, newFilterMeter } from '../fanout/filter-budget.js';
import type { NetworkGuard } from '../net/network-guard.js';
import type { EngineScope, EngineStore, EngineTx, ExecutionRecord, TaskRecord } from '../store/engine-store.js';
import { newOwner, ownerStopped } from '../owner.js';
import { createActionAgent } from './actions.js';
import { DEFAULT_ENGINE_LIMITS, type EngineLimits } from './limits.js';
import { recoverInterruptedTasks } from './recovery.js';
import { createRunner, type Commit, type Runner, type RunnerHooks } from './runner.js';
import { changeExecutionState, launchExecution, rerunTask, type NewExecution, type Refusal } from './state-changes.js';
import type { ClientExecutionState } from './transitions.js';

export interface EngineOptions {
  store: EngineStore;
  fanOut: FanOutCache;
  /** Told after every commit that created deliveries. */
  wakeDispatcher: () => void;
  /** Told after commit how many engine events were stored (metrics). */
  onEventsStored?: (source: string) => void;
  guard: NetworkGuard;
  log: Logger;
  hooks?: RunnerHooks;
  maxInFlight?: number;
  shutdownGraceMs?: number;
  /** RELAY_MAX_RESULT_BYTES: a task's result, its evaluated input, an execution's input, in bytes of JSON. */
  maxResultBytes?: number;
  /** RELAY_MAX_TASKS_PER_EXECUTION: task runs one execution may create before it fails. */
  maxTasksPerExecution?: number;
  /** RELAY_TASK_LEASE_MS: how long a task stays its runner's without a renewal. */
  taskLeaseMs?: number;
  /** Runs once-per-database work unless another process runs it now (the store's advisory lock). */
  exclusively: <T>(name: string, fn: () => Promise<T>) => Promise<T | undefined>;
}

/** The embedded engine: the state changes clients ask for, and the runner that moves executions on. */
export function createEngine(o: EngineOptions) {
  const limits: EngineLimits = {
    maxResultBytes: o.maxResultBytes ?? DEFAULT_ENGINE_LIMITS.maxResultBytes,
    maxTasksPerExecution: o.maxTasksPerExecution ?? DEFAULT_ENGINE_LIMITS.maxTasksPerExecution,
  };
  const commit: Commit = async (project, scope, fn, options) => {
    const routing = options?.metered ? meteredRouting(o.fanOut, newFilterMeter(FILTER_BUDGET_MS, options.advice)) : o.fanOut;
    const { value, events, deliveries } = await o.store.engineTransaction(project, scope, routing, fn);
    for (let i = 0; i < events; i++) o.onEventsStored?.('engine');
    if (deliveries > 0) o.wakeDispatcher();
    return value;
  };
  const owner = newOwner();
  const taskLeaseMs = o.taskLeaseMs ?? 30_000;
  // The runner and its HTTP agent exist only where the engine runs (roles all and engine); a
  // process of role api commits state changes and leaves running them to the engine processes.
  let running: { runner: Runner; agent: ReturnType<typeof createActionAgent> } | null = null;

  /**
   * Commits a change a client asked for (a launch carries the client's input), then wakes the
   * runner. Its events' matching is metered as an ingest request's is (fanout/filter-budget.ts):
   * past the budget the change is refused and nothing is stored.
   */
  async function change<T>(project: string, scope: EngineScope, fn: (tx: EngineTx) => T): Promise<T> {
    const value = await commit(project, scope, fn, { metered: true, advice: 'send shorter input values where the filters test them' });
    running?.runner.wake();
    return value;
  }

  let recovery: NodeJS.Timeout | undefined;
  let recovering: Promise<unknown> | null = null;
  const recover = () =>
    o.exclusively('engine-recovery', () =>
      recoverInterruptedTasks({ store: o.store, commit, log: o.log, maxTasks: limits.maxTasksPerExecution, self: owner }),
    );

  return {
    limits,
    /** Recovers what a crash left in flight, then starts the runner. */
    async start(): Promise<void> {
      if (running) return;
      await recover();
      const agent = createActionAgent(o.guard);
      const runner = createRunner({
        owner,
        taskLeaseMs,
        store: o.store,
        commit,
        actions: { guard: o.guard, agent, maxResultBytes: limits.maxResultBytes },
        limits,
        log: o.log,
        hooks: o.hooks,
        maxInFlight: o.maxInFlight,
        shutdownGraceMs: o.shutdownGraceMs,
      });
      running = { runner, agent };
      runner.start();
      // Runners of other processes may die at any time: their tasks are recovered once their
      // leases end, by whichever process looks first.
      recovery = setInterval(() => {
        recovering ??= recover()
          .catch((err) => o.log.error({ err }, 'could not recover interrupted tasks'))
          .finally(() => (recovering = null));
      }, Math.max(500, Math.floor(taskLeaseMs / 2)));
      recovery.unref();
    },
    async stop(): Promise<void> {
      clearInterval(recovery);
      await recovering;
      if (running) {
        await running.runner.stop();
        await running.agent.destroy().catch(() => {});
      }
      ownerStopped(owner);
    },
    launch(n: NewExecution): Promise<ExecutionRecord> {
      return change(n.project, { launch: true }, (tx) => launchExecution(tx, n, limits.maxTasksPerExecution));
    },
    // Both answer the record read back inside their transaction: what it wrote (updated_at is
    // set by the store, not on the object the change worked on), before the runner moves it on.
    changeExecutionState(project: string, id: string, to: ClientExecutionState): Promise<ExecutionRecord | Refusal> {
      return change(project, { executionId: id }, (tx) => {
        const outcome = changeExecutionState(tx, id, to);
        return isRefusal(outcome) ? outcome : (tx.execution(id) ?? outcome);
      });
    },
    rerunTask(project: string, id: string): Promise<TaskRecord | Refusal> {
      return change(project, { taskId: id }, (tx) => {
        const outcome = rerunTask(tx, id);
        return isRefusal(outcome) ? outcome : (tx.task(id) ?? outcome);
      });
    },
  };
}

export type Engine = ReturnType<typeof createEngine>;
export const isRefusal = (v: object): v is Refusal => 'refused' in v;
