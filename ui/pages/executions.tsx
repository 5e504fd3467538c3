import { useId } from 'preact/hooks';
import { get, query } from '../api.js';
import { Code, ErrorNotice, Loading, PageTitle, Pager, StateText, Time, usePages } from '../components/common.js';
import { usePoll } from '../hooks.js';
import { Link, navigate } from '../router.js';
import type { Execution, Page } from '../types.js';

const STATES = ['IDLE', 'RUNNING', 'PAUSED', 'SUCCESS', 'ERROR', 'CANCELLED'];

export function ExecutionsPage({ params }: { params: URLSearchParams }) {
  const state = params.get('state') ?? '';
  const selectId = useId();
  const pages = usePages(`executions ${state}`);
  const executions = usePoll(`executions ${state} ${pages.cursor ?? ''}`, () =>
    get<Page<Execution>>(`/executions${query({ state, order: 'desc', limit: 50, cursor: pages.cursor })}`),
  );

  return (
    <>
      <PageTitle title="Executions" />
      <p class="inline-form">
        <label for={selectId}>State</label>
        <select id={selectId} value={state} onChange={(e) => navigate(`/executions${query({ state: e.currentTarget.value })}`)}>
          <option value="">any</option>
          {STATES.map((s) => (
            <option value={s}>{s}</option>
          ))}
        </select>
      </p>
      <ErrorNotice error={executions.error} />
      {!executions.data ? (
        !executions.error && <Loading what="executions" />
      ) : executions.data.items.length === 0 && executions.data.next_cursor ? (
        <p>No executions in this stretch are in state {state}; the next page looks further back.</p>
      ) : executions.data.items.length === 0 ? (
        <p>
          No executions{state ? ` in state ${state}` : ' yet'}. Start one with <code>POST /v1/executions</code> or{' '}
          <code>npx callback-relay execution-create</code>.
        </p>
      ) : (
        <div class="table-scroll">
          <table>
            <caption class="visually-hidden">Executions, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Execution</th>
                <th scope="col">Workbook</th>
                <th scope="col">Workflow</th>
                <th scope="col">State</th>
                <th scope="col">Why</th>
                <th scope="col">Started</th>
                <th scope="col">Last change</th>
              </tr>
            </thead>
            <tbody>
              {executions.data.items.map((x) => (
                <tr key={x.id}>
                  <th scope="row">
                    <Link to={`/executions/${encodeURIComponent(x.id)}`}>
                      <Code value={x.id} />
                    </Link>
                  </th>
                  <td>{x.workbook}</td>
                  <td>{x.workflow}</td>
                  <td>
                    <StateText state={x.state} />
                  </td>
                  <td class="wrap">{x.state_info ?? ''}</td>
                  <td>
                    <Time iso={x.created_at} />
                  </td>
                  <td>
                    <Time iso={x.updated_at} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pager pages={pages} nextCursor={executions.data?.next_cursor} label="Executions" />
    </>
  );
}
