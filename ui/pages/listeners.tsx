import { get, query } from '../api.js';
import { DeliveryChart } from '../components/chart.js';
import { Code, ErrorNotice, Loading, PageTitle, Pager, StateText, Time, usePages } from '../components/common.js';
import { duration, percent } from '../format.js';
import { usePoll } from '../hooks.js';
import { Link } from '../router.js';
import type { Callback, Listener, Page } from '../types.js';

export function callbackSummary(c: Callback): string {
  if (c.transport === 'exec') return `exec ${c.command ?? ''}`;
  if (c.transport === 'http') return `${c.method ?? 'POST'} ${c.url ?? ''}`;
  return `${c.transport} ${c.url ?? ''}`.trim();
}

export function eventSummary(l: Listener): string {
  return l.events?.length ? `${l.event_types.join(', ')}: ${l.events.join(', ')}` : l.event_types.join(', ');
}

/** Whether the listener sends, as text: disabled wins over the circuit state. */
export function ListenerState({ listener }: { listener: Listener }) {
  if (!listener.enabled) return <StateText state="disabled" />;
  return <StateText state={listener.health?.state ?? 'enabled'} />;
}

export function LastFailure({ listener }: { listener: Listener }) {
  const failure = listener.health?.last_failure;
  if (!failure) return <span class="muted">none</span>;
  const status = failure.status_code === null ? null : `HTTP ${failure.status_code}`;
  // The error is a code (`TIMEOUT`) or already a sentence with the status (`HTTP 503 Service Unavailable`).
  const what = !failure.error ? (status ?? 'failed') : status && !failure.error.includes(status) ? `${failure.error} (${status})` : failure.error;
  return (
    <span>
      {what}, <Time iso={failure.at} />
    </span>
  );
}

export function ListenersPage() {
  const pages = usePages('listeners');
  const list = usePoll(`listeners ${pages.cursor ?? ''}`, () => get<Page<Listener>>(`/listeners${query({ limit: 50, cursor: pages.cursor })}`));

  return (
    <>
      <PageTitle title="Listeners" />
      <DeliveryChart path="/stats" title="Deliveries per minute, whole project" />
      <section aria-labelledby="listeners-table">
        <h2 id="listeners-table">All listeners</h2>
        <ErrorNotice error={list.error} />
        {!list.data ? (
          !list.error && <Loading what="listeners" />
        ) : list.data.items.length === 0 ? (
          <p>
            No listeners yet. Create one with <code>POST /v1/listeners</code> or <code>npx callback-relay listener-add</code>.
          </p>
        ) : (
          <div class="table-scroll">
            <table>
              <thead>
                <tr>
                  <th scope="col">Listener</th>
                  <th scope="col">Workbook</th>
                  <th scope="col">Events</th>
                  <th scope="col">Callback</th>
                  <th scope="col">State</th>
                  <th scope="col">Success (24 h)</th>
                  <th scope="col">p95 (24 h)</th>
                  <th scope="col">Last failure</th>
                </tr>
              </thead>
              <tbody>
                {list.data.items.map((l) => (
                  <tr key={l.id}>
                    <th scope="row">
                      <Link to={`/listeners/${encodeURIComponent(l.id)}`}>{l.description ?? <Code value={l.id} />}</Link>
                    </th>
                    <td>{l.workbook === '*' ? 'all (*)' : l.workbook}</td>
                    <td>{eventSummary(l)}</td>
                    <td class="wrap">{callbackSummary(l.callback)}</td>
                    <td>
                      <ListenerState listener={l} />
                    </td>
                    <td>{l.health ? percent(l.health.success_rate_24h) : '—'}</td>
                    <td>{l.health && l.health.p95_ms_24h !== null ? `≤ ${duration(l.health.p95_ms_24h)}` : '—'}</td>
                    <td>
                      <LastFailure listener={l} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        <Pager pages={pages} nextCursor={list.data?.next_cursor} label="Listeners" />
      </section>
    </>
  );
}
