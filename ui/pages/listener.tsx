import type { ComponentChildren } from 'preact';
import { useId, useState } from 'preact/hooks';
import { call, get, pathId, query } from '../api.js';
import { DeliveryChart } from '../components/chart.js';
import { Code, ErrorNotice, Loading, PageTitle, StatusLine, Time } from '../components/common.js';
import { DeliveriesTable } from '../components/deliveries.js';
import { duration, fromLocalInput, json, percent, toLocalInput } from '../format.js';
import { useAction, usePoll, type Action } from '../hooks.js';
import { Link } from '../router.js';
import type { Delivery, DeliveryStatus, Listener, ListenerRotated, Page } from '../types.js';
import { callbackSummary, eventSummary, LastFailure, ListenerState } from './listeners.js';

const RECENT = 20;
/** "Retry failed" re-queues every failed delivery of the listener: a window from the start of time. */
const ALL_TIME = '1970-01-01T00:00:00.000Z';
const STATUSES: DeliveryStatus[] = ['pending', 'succeeded', 'failed', 'cancelled'];

const REQUEUED = ['failed delivery re-queued', 'failed deliveries re-queued'] as const;
const CREATED = ['new delivery created', 'new deliveries created'] as const;

interface ReplayAnswer {
  count: number;
  truncated: boolean;
  next?: Record<string, unknown>;
}

const replayed = (count: number, [one, many]: readonly [string, string]) => `${count} ${count === 1 ? one : many}.`;

/** A replay to its end: each call the relay cut short goes on from where it stopped (its `next`); the deliveries made or re-queued. */
async function replayAll(listenerId: string, body: Record<string, unknown>): Promise<number> {
  let count = 0;
  for (let next: Record<string, unknown> | undefined = body; next !== undefined; ) {
    const answer: ReplayAnswer = await call('POST', `/listeners/${pathId(listenerId)}/replay`, { body: next });
    count += answer.count;
    next = answer.truncated ? answer.next : undefined;
  }
  return count;
}

export function ListenerPage({ id }: { id: string }) {
  const listener = usePoll(`listener ${id}`, () => get<Listener>(`/listeners/${pathId(id)}`));
  const action = useAction();
  const l = listener.data;

  return (
    <>
      <PageTitle title={l?.description ? `Listener ${l.description}` : 'Listener'}>
        <p>
          <Code value={id} />
        </p>
      </PageTitle>
      <ErrorNotice error={listener.error} />
      {!l ? (
        !listener.error && <Loading what="the listener" />
      ) : (
        <>
          <Actions listener={l} action={action} reload={listener.reload} />
          <Health listener={l} />
          <DeliveryChart path={`/listeners/${pathId(id)}/stats`} title="Deliveries per minute to this listener" />
          <Record listener={l} />
          <ReplayForm listener={l} />
          <RecentDeliveries listenerId={l.id} />
        </>
      )}
    </>
  );
}

function Actions({ listener, action, reload }: { listener: Listener; action: Action; reload(): void }) {
  const [confirmRotate, setConfirmRotate] = useState(false);
  const [rotated, setRotated] = useState<ListenerRotated | null>(null);
  const base = `/listeners/${pathId(listener.id)}`;
  const run = (work: () => Promise<ComponentChildren>) =>
    action.run(async () => {
      const message = await work();
      reload();
      return message;
    });

  return (
    <section aria-label="Actions">
      <div class="toolbar">
        <button
          type="button"
          disabled={action.busy}
          onClick={() =>
            run(async () => {
              const { event_id } = await call<{ event_id: string }>('POST', `${base}/ping`);
              return (
                <>
                  PING sent as event <Link to={`/events/${encodeURIComponent(event_id)}`}>{event_id}</Link>.
                </>
              );
            })
          }
        >
          Ping
        </button>
        <button
          type="button"
          disabled={action.busy}
          onClick={() =>
            run(async () => {
              const after = await call<Listener>('PATCH', base, { body: { enabled: !listener.enabled }, contentType: 'application/merge-patch+json' });
              return after.enabled ? 'Listener enabled: it receives new deliveries again.' : 'Listener disabled: its deliveries wait until it is enabled.';
            })
          }
        >
          {listener.enabled ? 'Disable' : 'Enable'}
        </button>
        <button type="button" disabled={action.busy} aria-expanded={confirmRotate} onClick={() => setConfirmRotate(!confirmRotate)}>
          Rotate secret…
        </button>
        <button
          type="button"
          disabled={action.busy}
          onClick={() =>
            run(async () => {
              const count = await replayAll(listener.id, { since: ALL_TIME, only_failed: true });
              // "Failed" is the end of the schedule: deliveries that fail and are still pending are not it.
              return `${replayed(count, REQUEUED)}${count === 0 ? ' A delivery is failed once its last try failed; those still pending go on being tried on their schedule.' : ''}`;
            })
          }
        >
          Retry failed deliveries
        </button>
      </div>
      {confirmRotate ? (
        <div class="panel" role="group" aria-label="Rotate the signing secret">
          <p>A new secret signs every delivery from now on; the current one keeps signing too for 24 hours, so receivers can switch over.</p>
          <button
            type="button"
            disabled={action.busy}
            onClick={() =>
              run(async () => {
                setRotated(await call<ListenerRotated>('POST', `${base}/rotate-secret`));
                setConfirmRotate(false);
                return 'Secret rotated.';
              })
            }
          >
            Rotate now
          </button>{' '}
          <button type="button" onClick={() => setConfirmRotate(false)}>
            Keep the current secret
          </button>
        </div>
      ) : null}
      {rotated ? (
        <div class="panel secret" role="group" aria-label="New signing secret">
          <p>
            <strong>The new secret, shown only now.</strong> Store it where your receiver reads it. The previous secret signs until{' '}
            <Time iso={rotated.previous_secret_expires_at} />.
          </p>
          <p>
            <output>
              <code class="secret-value">{rotated.secret}</code>
            </output>
          </p>
          <button type="button" onClick={() => setRotated(null)}>
            I have stored it; hide it
          </button>
        </div>
      ) : null}
      <StatusLine message={action.message} error={action.error} />
    </section>
  );
}

function Health({ listener }: { listener: Listener }) {
  const h = listener.health;
  return (
    <section aria-labelledby="health">
      <h2 id="health">Health</h2>
      <dl class="facts">
        <dt>State</dt>
        <dd>
          <ListenerState listener={listener} />
          {listener.disabled_reason ? ` — ${listener.disabled_reason}` : ''}
        </dd>
        <dt>Success rate, 24 h</dt>
        <dd>{h ? percent(h.success_rate_24h) : '—'}</dd>
        <dt>p95 duration, 24 h</dt>
        {/* The rollups keep a histogram: a percentile is the upper bound of its bucket. */}
        <dd>{h && h.p95_ms_24h !== null ? `≤ ${duration(h.p95_ms_24h)}` : '—'}</dd>
        <dt>Last success</dt>
        <dd>{h?.last_success_at ? <Time iso={h.last_success_at} /> : <span class="muted">none</span>}</dd>
        <dt>Last failure</dt>
        <dd>
          <LastFailure listener={listener} />
        </dd>
      </dl>
    </section>
  );
}

function Record({ listener: l }: { listener: Listener }) {
  const headers = Object.entries(l.callback.headers ?? {});
  return (
    <section aria-labelledby="record">
      <h2 id="record">Record</h2>
      <dl class="facts">
        <dt>Workbook</dt>
        <dd>{l.workbook === '*' ? 'all (*)' : l.workbook}</dd>
        <dt>Events</dt>
        <dd>{eventSummary(l)}</dd>
        <dt>Target</dt>
        <dd>{l.target ? `${l.target.kind} ${l.target.id}` : 'any'}</dd>
        <dt>Filter</dt>
        <dd>{l.filter ? <pre>{json(l.filter)}</pre> : 'none'}</dd>
        <dt>Callback</dt>
        <dd class="wrap">
          {callbackSummary(l.callback)} ({l.callback.format}, timeout {duration(l.callback.timeout_ms)})
        </dd>
        <dt>Headers</dt>
        <dd>
          {headers.length === 0 ? (
            'none'
          ) : (
            <ul class="plain">
              {headers.map(([name, value]) => (
                <li key={name}>
                  <code>
                    {name}: {value}
                  </code>
                </li>
              ))}
            </ul>
          )}
        </dd>
        <dt>Retry schedule</dt>
        <dd>{l.retry.schedule_ms.length ? l.retry.schedule_ms.map(duration).join(', ') : 'no retries'}</dd>
        {l.ordering ? (
          <>
            <dt>Ordering</dt>
            <dd>{l.ordering}</dd>
          </>
        ) : null}
        <dt>Created</dt>
        <dd>
          <Time iso={l.created_at} />
        </dd>
        <dt>Updated</dt>
        <dd>
          <Time iso={l.updated_at} />
        </dd>
      </dl>
      <details>
        <summary>The record as the API gives it</summary>
        <pre>{json(l)}</pre>
      </details>
    </section>
  );
}

/** Its outcome shows under the form, where the button was pressed, not with the actions at the top of the page. */
function ReplayForm({ listener }: { listener: Listener }) {
  const action = useAction();
  const ids = useId();
  const [since, setSince] = useState(() => toLocalInput(Date.now() - 3_600_000));
  const [until, setUntil] = useState('');
  const [onlyFailed, setOnlyFailed] = useState(false);

  return (
    <section aria-labelledby={`${ids}-h`}>
      <h2 id={`${ids}-h`}>Replay a window</h2>
      <form
        class="inline-form"
        onSubmit={(e) => {
          e.preventDefault();
          void action.run(async () => {
            const body: Record<string, unknown> = { since: fromLocalInput(since), only_failed: onlyFailed };
            if (until) body.until = fromLocalInput(until);
            return replayed(await replayAll(listener.id, body), onlyFailed ? REQUEUED : CREATED);
          });
        }}
      >
        <p class="muted">
          Events the relay received in the window (your local time) that match this listener now get new deliveries; with “only failed”, its failed
          deliveries of the window are sent again instead.
        </p>
        <label for={`${ids}-since`}>From</label>
        <input id={`${ids}-since`} type="datetime-local" required value={since} onInput={(e) => setSince(e.currentTarget.value)} />
        <label for={`${ids}-until`}>Until (empty: now)</label>
        <input id={`${ids}-until`} type="datetime-local" value={until} onInput={(e) => setUntil(e.currentTarget.value)} />
        <span>
          <input id={`${ids}-failed`} type="checkbox" checked={onlyFailed} onChange={(e) => setOnlyFailed(e.currentTarget.checked)} />
          <label for={`${ids}-failed`}>Only failed deliveries</label>
        </span>
        <button type="submit" disabled={action.busy}>
          Replay
        </button>
      </form>
      <StatusLine message={action.message} error={action.error} />
    </section>
  );
}

function RecentDeliveries({ listenerId }: { listenerId: string }) {
  const selectId = useId();
  const [status, setStatus] = useState('');
  const deliveries = usePoll(`deliveries ${listenerId} ${status}`, () =>
    get<Page<Delivery>>(`/deliveries${query({ listener_id: listenerId, status, order: 'desc', limit: RECENT })}`),
  );
  return (
    <section aria-labelledby="recent">
      <h2 id="recent">Recent deliveries</h2>
      <p class="inline-form">
        <label for={selectId}>Status</label>
        <select id={selectId} value={status} onChange={(e) => setStatus(e.currentTarget.value)}>
          <option value="">any</option>
          {STATUSES.map((s) => (
            <option value={s}>{s}</option>
          ))}
        </select>
      </p>
      <ErrorNotice error={deliveries.error} />
      {deliveries.data ? (
        <>
          <DeliveriesTable deliveries={deliveries.data.items} caption={`The listener's latest ${RECENT} deliveries, newest first`} />
          {deliveries.data.items.length < RECENT && deliveries.data.next_cursor && (
            <p class="muted">
              The relay looked at its latest deliveries only; older ones:{' '}
              <code>
                callback-relay delivery-list --listener-id {listenerId}
                {status && ` --status ${status}`} --all
              </code>
            </p>
          )}
        </>
      ) : (
        <Loading what="deliveries" />
      )}
    </section>
  );
}
