import type { Logger } from 'pino';
import type { FanOutCache } from '../fanout/fanout.js';
import type { NetworkGuard } from '../net/network-guard.js';
import type { EngineStore, EngineTx, ExecutionRecord, TaskRecord } from '../store/engine-store.js';
import { createActionAgent } from './actions.js';
import { DEFAULT_ENGINE_LIMITS, type EngineLimits } from './limits.js';
import { recoverInterruptedTasks } from './recovery.js';
import { createRunner, type Commit, type RunnerHooks } from './runner.js';
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
}

/** The embedded engine: the state changes clients ask for, and the runner that moves executions on. */
export function createEngine(o: EngineOptions) {
  const limits: EngineLimits = {
    maxResultBytes: o.maxResultBytes ?? DEFAULT_ENGINE_LIMITS.maxResultBytes,
    maxTasksPerExecution: o.maxTasksPerExecution ?? DEFAULT_ENGINE_LIMITS.maxTasksPerExecution,
  };
  // The fan-out matcher is fetched before the transaction (it may read listeners); inside, it is a pure function.
  const commit: Commit = async (project, fn) => {
    const route = await o.fanOut.forProject(project);
    const { value, events, deliveries } = await o.store.engineTransaction(project, route, fn);
    for (let i = 0; i < events; i++) o.onEventsStored?.('engine');
    if (deliveries > 0) o.wakeDispatcher();
    return value;
  };
  const agent = createActionAgent(o.guard);
  const runner = createRunner({
    store: o.store,
    commit,
    actions: { guard: o.guard, agent, maxResultBytes: limits.maxResultBytes },
    limits,
    log: o.log,
    hooks: o.hooks,
    maxInFlight: o.maxInFlight,
    shutdownGraceMs: o.shutdownGraceMs,
  });

  /** Commits a change that may have made tasks runnable, then wakes the runner. */
  async function change<T>(project: string, fn: (tx: EngineTx) => T): Promise<T> {
    const value = await commit(project, fn);
    runner.wake();
    return value;
  }

  return {
    limits,
    /** Recovers what a crash left in flight, then starts the runner. */
    async start(): Promise<void> {
      await recoverInterruptedTasks({ store: o.store, commit, log: o.log, maxTasks: limits.maxTasksPerExecution });
      runner.start();
    },
    async stop(): Promise<void> {
      await runner.stop();
      await agent.destroy().catch(() => {});
    },
    launch(n: NewExecution): Promise<ExecutionRecord> {
      return change(n.project, (tx) => launchExecution(tx, n, limits.maxTasksPerExecution));
    },
    // Both answer the record read back inside their transaction: what it wrote (updated_at is
    // set by the store, not on the object the change worked on), before the runner moves it on.
    changeExecutionState(project: string, id: string, to: ClientExecutionState): Promise<ExecutionRecord | Refusal> {
      return change(project, (tx) => {
        const outcome = changeExecutionState(tx, id, to);
        return isRefusal(outcome) ? outcome : (tx.execution(id) ?? outcome);
      });
    },
    rerunTask(project: string, id: string): Promise<TaskRecord | Refusal> {
      return change(project, (tx) => {
        const outcome = rerunTask(tx, id);
        return isRefusal(outcome) ? outcome : (tx.task(id) ?? outcome);
      });
    },
  };
}

export type Engine = ReturnType<typeof createEngine>;
export const isRefusal = (v: object): v is Refusal => 'refused' in v;
