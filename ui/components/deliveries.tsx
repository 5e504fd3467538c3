import { Link } from '../router.js';
import type { Delivery } from '../types.js';
import { Code, StateText, Time } from './common.js';

export function DeliveryStatus({ delivery }: { delivery: Delivery }) {
  return (
    <>
      <StateText state={delivery.status} />
      {delivery.in_flight ? <span class="muted"> (sending now)</span> : null}
    </>
  );
}

export function DeliveriesTable({ deliveries, caption, showListener = false }: { deliveries: Delivery[]; caption: string; showListener?: boolean }) {
  if (deliveries.length === 0) return <p class="muted">No deliveries.</p>;
  return (
    <div class="table-scroll">
      <table>
        <caption class="visually-hidden">{caption}</caption>
        <thead>
          <tr>
            <th scope="col">Delivery</th>
            <th scope="col">Event type</th>
            {showListener ? <th scope="col">Listener</th> : null}
            <th scope="col">Status</th>
            <th scope="col">Attempts</th>
            <th scope="col">Last error</th>
            <th scope="col">Next attempt</th>
            <th scope="col">Created</th>
          </tr>
        </thead>
        <tbody>
          {deliveries.map((d) => (
            <tr key={d.id}>
              <th scope="row">
                <Link to={`/deliveries/${encodeURIComponent(d.id)}`}>
                  <Code value={d.id} />
                </Link>
              </th>
              <td>{d.event_type}</td>
              {showListener ? (
                <td>
                  <Link to={`/listeners/${encodeURIComponent(d.listener_id)}`}>
                    <Code value={d.listener_id} />
                  </Link>
                </td>
              ) : null}
              <td>
                <DeliveryStatus delivery={d} />
              </td>
              <td>{d.attempt_count}</td>
              <td class="wrap">{d.last_error ?? <span class="muted">none</span>}</td>
              <td>
                <Time iso={d.next_attempt_at} />
              </td>
              <td>
                <Time iso={d.created_at} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
