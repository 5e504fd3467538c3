import { call, get, pathId } from '../api.js';
import { Code, ErrorNotice, Loading, PageTitle, StateText, StatusLine, Time } from '../components/common.js';
import { DeliveryStatus } from '../components/deliveries.js';
import { duration } from '../format.js';
import { useAction, usePoll } from '../hooks.js';
import { Link } from '../router.js';
import type { Attempt, Delivery, DeliveryWithAttempts } from '../types.js';

export function DeliveryPage({ id }: { id: string }) {
  const delivery = usePoll(`delivery ${id}`, () => get<DeliveryWithAttempts>(`/deliveries/${pathId(id)}`));
  const action = useAction();
  const d = delivery.data;

  return (
    <>
      <PageTitle title="Delivery">
        <p>
          <Code value={id} /> <span class="muted">(the receiver sees it as <code>webhook-id</code>)</span>
        </p>
      </PageTitle>
      <ErrorNotice error={delivery.error} />
      {!d ? (
        !delivery.error && <Loading what="the delivery" />
      ) : (
        <>
          <section aria-label="Actions">
            <div class="toolbar">
              <button
                type="button"
                disabled={action.busy}
                onClick={() =>
                  action.run(async () => {
                    const after = await call<Delivery>('POST', `/deliveries/${pathId(id)}/retry`);
                    delivery.reload();
                    return `Re-queued: the delivery is ${after.status}, due now with the same webhook-id; it goes once its listener lets it (a disabled listener, an open circuit or a rate limit holds it back).`;
                  })
                }
              >
                Retry now
              </button>
            </div>
            <StatusLine message={action.message} error={action.error} />
          </section>
          <section aria-labelledby="summary">
            <h2 id="summary">Summary</h2>
            <dl class="facts">
              <dt>Status</dt>
              <dd>
                <DeliveryStatus delivery={d} />
              </dd>
              <dt>Event</dt>
              <dd>
                {d.event_type} <Link to={`/events/${encodeURIComponent(d.event_id)}`}>{d.event_id}</Link>
              </dd>
              <dt>Listener</dt>
              <dd>
                <Link to={`/listeners/${encodeURIComponent(d.listener_id)}`}>{d.listener_id}</Link>
              </dd>
              <dt>Workbook</dt>
              <dd>{d.workbook ?? <span class="muted">none</span>}</dd>
              <dt>Attempts</dt>
              <dd>{d.attempt_count}</dd>
              <dt>Next attempt</dt>
              <dd>
                <Time iso={d.next_attempt_at} />
              </dd>
              <dt>Last error</dt>
              <dd class="wrap">{d.last_error ?? <span class="muted">none</span>}</dd>
              <dt>Created</dt>
              <dd>
                <Time iso={d.created_at} />
              </dd>
              <dt>Updated</dt>
              <dd>
                <Time iso={d.updated_at} />
              </dd>
            </dl>
          </section>
          <Attempts attempts={d.attempts} />
        </>
      )}
    </>
  );
}

function Outcome({ attempt: a }: { attempt: Attempt }) {
  if (a.error === null) return <StateText state="succeeded" />;
  return (
    <>
      <StateText state="failed" />: {a.error}
      {a.status_code === null ? ' (no answer)' : ''}
    </>
  );
}

function Attempts({ attempts }: { attempts: Attempt[] }) {
  return (
    <section aria-labelledby="attempts">
      <h2 id="attempts">Attempts ({attempts.length})</h2>
      {attempts.length === 0 ? (
        <p class="muted">No attempt yet.</p>
      ) : (
        <div class="table-scroll">
          <table class="attempts">
            <caption class="visually-hidden">Every attempt of this delivery, first first</caption>
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">Started</th>
                <th scope="col">Duration</th>
                <th scope="col">HTTP status</th>
                <th scope="col">Outcome</th>
                <th scope="col">Answer (excerpt)</th>
              </tr>
            </thead>
            <tbody>
              {attempts.map((a) => (
                <tr key={a.number}>
                  <th scope="row">{a.number}</th>
                  <td>
                    <Time iso={a.started_at} ms />
                  </td>
                  <td>{duration(a.duration_ms)}</td>
                  <td>{a.status_code ?? <span class="muted">none</span>}</td>
                  <td>
                    <Outcome attempt={a} />
                  </td>
                  <td>{a.response_excerpt ? <pre class="excerpt">{a.response_excerpt}</pre> : <span class="muted">none</span>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
