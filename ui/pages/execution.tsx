import { useState } from 'preact/hooks';
import { call, get, pathId, query } from '../api.js';
import { Code, ErrorNotice, Loading, PageTitle, StateText, StatusLine, Time } from '../components/common.js';
import { duration, json } from '../format.js';
import { useAction, usePoll, type Action } from '../hooks.js';
import { Link } from '../router.js';
import type { Execution, Page, Task } from '../types.js';

const FINAL_TASK_STATES = new Set(['SUCCESS', 'ERROR', 'CANCELLED', 'SKIPPED']);
const FINAL_EXECUTION_STATES = new Set(['SUCCESS', 'ERROR', 'CANCELLED']);

/** Every task record, in launch order (an execution holds at most RELAY_MAX_TASKS_PER_EXECUTION). */
async function allTasks(id: string): Promise<Task[]> {
  const tasks: Task[] = [];
  let cursor: string | null = null;
  do {
    const page: Page<Task> = await get<Page<Task>>(`/executions/${pathId(id)}/tasks${query({ limit: 1000, cursor })}`);
    tasks.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return tasks;
}

export function ExecutionPage({ id }: { id: string }) {
  const loaded = usePoll(`execution ${id}`, async () => {
    const [execution, tasks] = await Promise.all([get<Execution>(`/executions/${pathId(id)}`), allTasks(id)]);
    return { execution, tasks };
  });
  const action = useAction();
  const x = loaded.data?.execution;

  return (
    <>
      <PageTitle title={x ? `Execution of ${x.workbook}.${x.workflow}` : 'Execution'}>
        <p>
          <Code value={id} />
        </p>
      </PageTitle>
      <ErrorNotice error={loaded.error} />
      {!loaded.data || !x ? (
        !loaded.error && <Loading what="the execution" />
      ) : (
        <>
          <Controls execution={x} action={action} reload={loaded.reload} />
          <dl class="facts">
            <dt>State</dt>
            <dd>
              <StateText state={x.state} />
              {x.state_info ? ` — ${x.state_info}` : ''}
            </dd>
            <dt>Started</dt>
            <dd>
              <Time iso={x.created_at} />
            </dd>
            <dt>Last change</dt>
            <dd>
              <Time iso={x.updated_at} />
            </dd>
            <dt>Input</dt>
            <dd>
              <pre>{json(x.input)}</pre>
            </dd>
            <dt>Events</dt>
            <dd>
              <Link to={`/events${query({ execution_id: x.id })}`}>This execution's events</Link>
            </dd>
          </dl>
          <Timeline execution={x} tasks={loaded.data.tasks} action={action} reload={loaded.reload} />
        </>
      )}
    </>
  );
}

function Controls({ execution, action, reload }: { execution: Execution; action: Action; reload(): void }) {
  const [confirmCancel, setConfirmCancel] = useState(false);
  const move = (state: 'PAUSED' | 'RUNNING' | 'CANCELLED', done: string) =>
    action.run(async () => {
      await call('PUT', `/executions/${pathId(execution.id)}`, { body: { state } });
      setConfirmCancel(false);
      reload();
      return done;
    });
  const live = execution.state === 'RUNNING' || execution.state === 'PAUSED';

  return (
    <section aria-label="Actions">
      {live ? (
        <div class="toolbar">
          {execution.state === 'RUNNING' ? (
            <button type="button" disabled={action.busy} onClick={() => move('PAUSED', 'Paused: no task starts until it is resumed.')}>
              Pause
            </button>
          ) : (
            <button type="button" disabled={action.busy} onClick={() => move('RUNNING', 'Resumed.')}>
              Resume
            </button>
          )}
          <button type="button" disabled={action.busy} aria-expanded={confirmCancel} onClick={() => setConfirmCancel(!confirmCancel)}>
            Cancel execution…
          </button>
        </div>
      ) : (
        <p class="muted">
          The execution has finished{execution.state === 'ERROR' ? '; re-run a failed task below to carry on' : ''}.
        </p>
      )}
      {confirmCancel && live ? (
        <div class="panel" role="group" aria-label="Cancel the execution">
          <p>Cancelling stops every task that is not running an action now; it cannot be undone.</p>
          <button type="button" disabled={action.busy} onClick={() => move('CANCELLED', 'Cancelled.')}>
            Cancel it now
          </button>{' '}
          <button type="button" onClick={() => setConfirmCancel(false)}>
            Keep it running
          </button>
        </div>
      ) : null}
      <StatusLine message={action.message} error={action.error} />
    </section>
  );
}

const taskEnd = (t: Task, now: number) => (FINAL_TASK_STATES.has(t.state) ? Date.parse(t.updated_at) : now);

/**
 * The tasks in launch order, each with a bar from its launch to its end (or now) on the
 * execution's time axis; the text beside it says the same, so the bars are only a picture.
 */
function Timeline({ execution, tasks, action, reload }: { execution: Execution; tasks: Task[]; action: Action; reload(): void }) {
  const now = Date.now();
  const start = Date.parse(execution.created_at);
  const end = FINAL_EXECUTION_STATES.has(execution.state)
    ? Math.max(Date.parse(execution.updated_at), ...tasks.map((t) => taskEnd(t, now)))
    : now;
  const span = Math.max(end - start, 1);
  const rerunnable = execution.state !== 'SUCCESS' && execution.state !== 'CANCELLED';

  return (
    <section aria-labelledby="timeline">
      <h2 id="timeline">Tasks ({tasks.length})</h2>
      {tasks.length === 0 ? (
        <p class="muted">No task launched yet.</p>
      ) : (
        <ol class="timeline">
          {tasks.map((t) => {
            const from = Date.parse(t.created_at);
            const to = taskEnd(t, now);
            return (
              <li key={t.id} class="task">
                <div class="task-head">
                  <strong class="task-name">{t.name}</strong> <span class="muted">{t.action}</span> <StateText state={t.state} />{' '}
                  <span>
                    {t.tries} {t.tries === 1 ? 'try' : 'tries'}
                  </span>
                </div>
                <div class="track" aria-hidden="true">
                  <div
                    class={`bar bar-${t.state}`}
                    style={{ marginLeft: `${(((from - start) / span) * 100).toFixed(2)}%`, width: `${Math.max(((to - from) / span) * 100, 0.5).toFixed(2)}%` }}
                  />
                </div>
                <p class="task-meta">
                  Launched <Time iso={t.created_at} />, {FINAL_TASK_STATES.has(t.state) ? `took ${duration(to - from)}` : `running for ${duration(to - from)}`}
                  {t.next_run_at ? (
                    <>
                      ; next run <Time iso={t.next_run_at} />
                    </>
                  ) : null}
                  .
                </p>
                {t.state_info ? <p class="task-meta">{t.state_info}</p> : null}
                {t.result !== null && t.result !== undefined ? (
                  <details>
                    <summary>Result of {t.name}</summary>
                    <pre>{json(t.result)}</pre>
                  </details>
                ) : null}
                {t.state === 'ERROR' && rerunnable ? (
                  <button
                    type="button"
                    disabled={action.busy}
                    onClick={() =>
                      action.run(async () => {
                        await call('PUT', `/tasks/${pathId(t.id)}`, { body: { state: 'RUNNING' } });
                        reload();
                        return `Task ${t.name} runs again.`;
                      })
                    }
                  >
                    Re-run {t.name}
                  </button>
                ) : null}
              </li>
            );
          })}
        </ol>
      )}
    </section>
  );
}
