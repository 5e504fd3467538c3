import { useEffect, useRef, useState } from 'preact/hooks';
import { get, pathId, query } from '../api.js';
import { Code, ErrorNotice, Loading, PageTitle, Pager, Time, usePages } from '../components/common.js';
import { DeliveriesTable } from '../components/deliveries.js';
import { json } from '../format.js';
import { usePoll } from '../hooks.js';
import { Link, navigate } from '../router.js';
import type { EventWithDeliveries, Page, RelayEvent } from '../types.js';

const FILTERS = [
  { name: 'workbook', label: 'Workbook' },
  { name: 'execution_id', label: 'Execution id' },
  { name: 'type', label: 'Event type', hint: 'exact, such as TASK_FAILED' },
] as const;

/**
 * Where an event's execution id leads: the execution's page for the embedded engine's own
 * executions; for an execution of another engine (an event posted or ingested), which the relay
 * holds no record of, its events.
 */
function executionHref(ev: RelayEvent): string {
  const id = ev.execution_id ?? '';
  return ev.source === 'engine' ? `/executions/${encodeURIComponent(id)}` : `/events${query({ execution_id: id })}`;
}

/** The event log, newest first; the filters live in the address, so a filtered view can be bookmarked. */
export function EventsPage({ params }: { params: URLSearchParams }) {
  const filters = Object.fromEntries(FILTERS.map((f) => [f.name, params.get(f.name) ?? '']));
  const key = query(filters);
  const [draft, setDraft] = useState(filters);
  // Back and forward change the address under the form: show what is applied. Only then: the
  // effect also runs after the first paint, and what was typed by then must stay.
  const shown = useRef(key);
  useEffect(() => {
    if (shown.current === key) return;
    shown.current = key;
    setDraft(filters);
  }, [key]);
  const pages = usePages(`events ${key}`);
  const events = usePoll(`events ${key} ${pages.cursor ?? ''}`, () =>
    get<Page<RelayEvent>>(`/events${query({ ...filters, order: 'desc', limit: 50, cursor: pages.cursor })}`),
  );

  return (
    <>
      <PageTitle title="Event log" />
      <form
        class="filters"
        aria-label="Filter events"
        onSubmit={(e) => {
          e.preventDefault();
          navigate(`/events${query(Object.fromEntries(Object.entries(draft).map(([k, v]) => [k, v.trim()])))}`);
        }}
      >
        {FILTERS.map((f) => (
          <span class="field" key={f.name}>
            <label for={`filter-${f.name}`}>{f.label}</label>
            <input
              id={`filter-${f.name}`}
              name={f.name}
              value={draft[f.name]}
              placeholder={'hint' in f ? f.hint : undefined}
              onInput={(e) => setDraft({ ...draft, [f.name]: e.currentTarget.value })}
            />
          </span>
        ))}
        <button type="submit">Apply filters</button>
        <button
          type="button"
          onClick={() => {
            setDraft(Object.fromEntries(FILTERS.map((f) => [f.name, ''])));
            navigate('/events');
          }}
        >
          Clear
        </button>
      </form>
      <ErrorNotice error={events.error} />
      {!events.data ? (
        !events.error && <Loading what="events" />
      ) : events.data.items.length === 0 ? (
        events.data.next_cursor ? (
          <p>No events in this stretch of the log match these filters; the next page looks further back.</p>
        ) : (
          <p>No events{key ? ' match these filters' : ' yet'}.</p>
        )
      ) : (
        <div class="table-scroll">
          <table>
            <caption class="visually-hidden">Events, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Event</th>
                <th scope="col">Type</th>
                <th scope="col">Workbook</th>
                <th scope="col">Execution</th>
                <th scope="col">Task</th>
                <th scope="col">Seq.</th>
                <th scope="col">Source</th>
                <th scope="col">Received</th>
              </tr>
            </thead>
            <tbody>
              {events.data.items.map((ev) => (
                <tr key={ev.id}>
                  <th scope="row">
                    <Link to={`/events/${encodeURIComponent(ev.id)}`}>
                      <Code value={ev.id} />
                    </Link>
                  </th>
                  <td>{ev.type}</td>
                  <td>{ev.workbook ?? <span class="muted">none</span>}</td>
                  <td>
                    {ev.execution_id ? (
                      <Link to={executionHref(ev)}>
                        <Code value={ev.execution_id} />
                      </Link>
                    ) : (
                      <span class="muted">none</span>
                    )}
                  </td>
                  <td>{ev.task_name ?? <span class="muted">none</span>}</td>
                  <td>{ev.sequence ?? '—'}</td>
                  <td>{ev.source}</td>
                  <td>
                    <Time iso={ev.received_at} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pager pages={pages} nextCursor={events.data?.next_cursor} label="Events" />
    </>
  );
}

export function EventPage({ id }: { id: string }) {
  const event = usePoll(`event ${id}`, () => get<EventWithDeliveries>(`/events/${pathId(id)}`));
  const ev = event.data;
  return (
    <>
      <PageTitle title={ev ? `Event ${ev.type}` : 'Event'}>
        <p>
          <Code value={id} />
        </p>
      </PageTitle>
      <ErrorNotice error={event.error} />
      {!ev ? (
        !event.error && <Loading what="the event" />
      ) : (
        <>
          <dl class="facts">
            <dt>Category</dt>
            <dd>{ev.category}</dd>
            <dt>Workbook</dt>
            <dd>{ev.workbook ?? <span class="muted">none</span>}</dd>
            <dt>Execution</dt>
            <dd>
              {ev.execution_id ? <Link to={executionHref(ev)}>{ev.execution_id}</Link> : <span class="muted">none</span>}
              {ev.sequence !== null ? ` (sequence ${ev.sequence})` : ''}
            </dd>
            <dt>Task</dt>
            <dd>{ev.task_name ?? <span class="muted">none</span>}</dd>
            <dt>State</dt>
            <dd>{ev.state ? `${ev.previous_state ? `${ev.previous_state} → ` : ''}${ev.state}` : <span class="muted">none</span>}</dd>
            <dt>Source</dt>
            <dd>{ev.source}</dd>
            <dt>Occurred</dt>
            <dd>
              <Time iso={ev.occurred_at} />
            </dd>
            <dt>Received</dt>
            <dd>
              <Time iso={ev.received_at} />
            </dd>
          </dl>
          <details>
            <summary>The envelope as receivers get it</summary>
            <pre>{json(Object.fromEntries(Object.entries(ev).filter(([k]) => !['deliveries', 'deliveries_next_cursor', 'received_at'].includes(k))))}</pre>
          </details>
          <h2>Deliveries</h2>
          {ev.deliveries_next_cursor !== null && (
            <p role="note">
              The first {ev.deliveries.length.toLocaleString('en')} are shown. All of them: <code>callback-relay delivery-list --event-id {ev.id} --order asc --all</code>{' '}
              or <code>GET /v1/deliveries?event_id={ev.id}&amp;order=asc</code>.
            </p>
          )}
          <DeliveriesTable deliveries={ev.deliveries} caption="This event's deliveries, oldest first" showListener />
        </>
      )}
    </>
  );
}
