import type { EventEnvelope } from '../../records/event.js';
import type { ExecutionRecord, TaskRecord, TaskSummary } from '../../records/states.js';
import type { EngineScope, EngineTx } from '../engine-store.js';
import type { ListenerRouting } from '../store.js';
import type { Database } from './database.js';
import { loadEngineScope } from './engine-load.js';
import { writeAndCommit } from './engine-write.js';
import { fanOutAt } from './listeners.js';
import type { DueNotice } from './notify.js';
import type { OutboxEvent } from './outbox.js';

const copy = <T extends object>(record: T): T => ({ ...record });

/**
 * An engine transaction on PostgreSQL, where reads cannot be synchronous: what the scope names
 * is loaded and locked first, `fn` runs against that snapshot (its reads see its own changes,
 * which are buffered), and then the changes, events and deliveries are written and committed.
 * A counter created meanwhile by another transaction makes the whole of it run again, with
 * that counter loaded and locked this time; `fn` is pure, so running it again is safe.
 */
export function engineTransactions(db: Database, notice: DueNotice) {
  return async function engineTransaction<T>(
    project: string,
    scope: EngineScope,
    routing: ListenerRouting,
    fn: (tx: EngineTx) => T,
  ): Promise<{ value: T; events: number; deliveries: number }> {
    // Executions whose counters turned out to be needed, kept across runs of this transaction.
    const counterIds = new Set<string>();
    return db.transaction(async (c) => {
      const now = Date.now();
      const snapshot = await loadEngineScope(c, project, scope, counterIds);
      const route = await fanOutAt(c, project, snapshot.listenerVersion, routing);

      const newExecutions = new Map<string, ExecutionRecord>();
      const savedExecutions = new Map<string, ExecutionRecord>();
      const newTasks = new Map<string, TaskRecord>();
      const savedTasks = new Map<string, TaskRecord>();
      const outbox: OutboxEvent[] = [];
      const added = new Map<string, number>();
      let inOrder: TaskRecord[] | null = null;
      const tasksInOrder = () => (inOrder ??= [...snapshot.tasks.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)));

      const tx: EngineTx = {
        now,
        execution: (id) => {
          const e = snapshot.executions.get(id);
          return e ? copy(e) : null;
        },
        task: (id) => {
          const t = snapshot.tasks.get(id);
          return t ? copy(t) : null;
        },
        taskSummaries: (executionId) =>
          tasksInOrder()
            .filter((t) => t.execution_id === executionId)
            .map(({ result: _r, ...summary }): TaskSummary => summary),
        hasRunningTask: (executionId) => tasksInOrder().some((t) => t.execution_id === executionId && t.state === 'RUNNING'),
        countTasks: (executionId) => tasksInOrder().filter((t) => t.execution_id === executionId).length,
        insertExecution: (e) => {
          const row = { ...e, project };
          snapshot.executions.set(e.id, row);
          newExecutions.set(e.id, row);
        },
        saveExecution: (e) => {
          const change = { state: e.state, state_info: e.state_info, pending_operation: e.pending_operation, updated_at: now };
          const kept = snapshot.executions.get(e.id);
          if (kept) snapshot.executions.set(e.id, { ...kept, ...change });
          if (newExecutions.has(e.id)) newExecutions.set(e.id, { ...newExecutions.get(e.id)!, ...change });
          else savedExecutions.set(e.id, { ...e, ...change });
        },
        insertTask: (t) => {
          const row = { ...t, project };
          snapshot.tasks.set(t.id, row);
          newTasks.set(t.id, row);
          inOrder = null;
        },
        saveTask: (t) => {
          const change = {
            state: t.state,
            state_info: t.state_info,
            result: t.result,
            tries: t.tries,
            next_run_at: t.next_run_at,
            action_started_at: t.action_started_at,
            rerun: t.rerun,
            updated_at: now,
          };
          const kept = snapshot.tasks.get(t.id);
          if (kept) snapshot.tasks.set(t.id, { ...kept, ...change });
          if (newTasks.has(t.id)) newTasks.set(t.id, { ...newTasks.get(t.id)!, ...change });
          else savedTasks.set(t.id, { ...t, ...change });
          inOrder = null;
        },
        appendEvent: (envelope: EventEnvelope) => {
          const x = envelope.execution_id;
          let sequence: number | null = null;
          if (x) {
            sequence = (snapshot.counters.get(x) ?? 0) + 1;
            snapshot.counters.set(x, sequence);
            added.set(x, (added.get(x) ?? 0) + 1);
          }
          const stored = { ...envelope, sequence };
          // The envelope id is relay-made and unique, so it doubles as the body hash.
          outbox.push({ envelope: stored, original: null, bodyHash: envelope.id, listenerIds: route(stored), fanOut: route });
        },
      };

      const value = fn(tx);

      const changes = {
        newExecutions: [...newExecutions.values()],
        savedExecutions: [...savedExecutions.values()],
        newTasks: [...newTasks.values()],
        savedTasks: [...savedTasks.values()],
        counters: [...added].map(([executionId, n]) => ({ executionId, added: n, last: snapshot.counters.get(executionId)! })),
        outbox,
      };
      if (changes.newExecutions.length + changes.savedExecutions.length + changes.newTasks.length + changes.savedTasks.length + outbox.length === 0) {
        return { value, events: 0, deliveries: 0 };
      }
      // Should this run fail with raise_retry, the next one loads and locks these counters.
      for (const x of added.keys()) counterIds.add(x);
      const deliveries = await writeAndCommit(c, project, now, changes, notice);
      return { value, events: outbox.length, deliveries };
    });
  };
}
