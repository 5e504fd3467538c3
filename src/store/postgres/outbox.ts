import { newId } from '../../ids.js';
import type { EventEnvelope, OriginalMessage } from '../../records/event.js';
import type { Handing } from '../handing.js';
import type { FanOut } from '../store.js';
import { statement, type Conn } from './database.js';
import type { DueNotice } from './notify.js';
import { placeDeliveries, type Placing } from './order.js';

/** An event ready to insert: its sequence assigned, its listeners chosen. */
export interface OutboxEvent {
  envelope: EventEnvelope;
  original: OriginalMessage | null;
  bodyHash: string;
  listenerIds: readonly string[];
  /** The fan-out that chose them: its `ordered` keep an execution's order, its `handOff` may be handed over. */
  fanOut: FanOut;
}

/** A bigint[] as a text element of a text[] parameter (unnest cannot take an array of arrays). */
export const arrayLiteral = (values: readonly number[] | null) => (values === null ? null : `{${values.join(',')}}`);

/**
 * Events and their deliveries, as CTEs (`ev`, `dl`) of one statement whatever their number,
 * parameters numbered from `$first` (see outboxValues): the events' rows go in as arrays, the
 * envelopes as lines of one text (see joinedEnvelopes), all zipped by ROWS FROM (in
 * order, so seq follows the call's order), and each delivery joins the seq its event got. A
 * delivery held behind its execution's head is not due. The ids are new (the append looked them
 * up first): an id a concurrent transaction stored meanwhile fails the statement on the events'
 * unique key, which is transient (errors.ts), so the transaction runs again and finds it stored.
 */
export function outboxCtes(first: number): string {
  const p = (i: number) => `$${first + i}`;
  return `ev AS (
    INSERT INTO events (project, id, type, category, workbook, execution_id, sequence, envelope, original_body,
      original_format, body_hash, received_at)
    SELECT ${p(0)}, x.id, x.type, x.category, x.workbook, x.execution_id, x.sequence, x.envelope, x.original_body,
      x.original_format, x.body_hash, ${p(1)}
    FROM ROWS FROM (unnest(${p(2)}::text[]), unnest(${p(3)}::text[]), unnest(${p(4)}::text[]), unnest(${p(5)}::text[]),
        unnest(${p(6)}::text[]), unnest(${p(7)}::bigint[]), unnest(string_to_array(${p(8)}::text, E'\\n')), unnest(${p(9)}::text[]),
        unnest(${p(10)}::text[]), unnest(${p(11)}::text[]))
      WITH ORDINALITY AS x(id, type, category, workbook, execution_id, sequence, envelope, original_body, original_format, body_hash, n)
    ORDER BY x.n
    RETURNING id, seq
  ), dl AS (
    INSERT INTO deliveries (id, project, event_seq, event_id, listener_id, status, attempt_count, next_attempt_at, lease_owner,
      leased_until, held, gap, created_at, updated_at)
    SELECT d.id, ${p(0)}, ev.seq, d.event_id, d.listener_id, 'pending', 0, CASE WHEN d.held IS NULL THEN ${p(1)}::bigint END,
      CASE WHEN d.leased_until IS NOT NULL THEN ${p(18)}::text END, d.leased_until, d.held, d.gap::bigint[], ${p(1)}, ${p(1)}
    FROM unnest(${p(12)}::text[], ${p(13)}::text[], ${p(14)}::text[], ${p(15)}::text[], ${p(16)}::text[], ${p(17)}::bigint[])
      AS d(id, event_id, listener_id, held, gap, leased_until)
    JOIN ev ON ev.id = d.event_id
    RETURNING held, lease_owner
  )`;
}

/**
 * The envelopes as one text parameter, a line each, split again by the statement. As an array
 * parameter each would be escaped by node-postgres (every quote of the JSON) and unescaped by
 * the server, which took 5–10 ms of a 1,000-event append against about 1.3 ms this way, inside
 * the time the append holds its executions' sequence counters. JSON.stringify never writes a
 * line break (one inside a string is written \n), so a line is exactly one envelope. Null for
 * none (an empty text would split into one empty line).
 */
function joinedEnvelopes(envelopes: readonly string[]): string | null {
  return envelopes.length ? envelopes.join('\n') : null;
}

/** The select list that answers what outboxCtes inserted: `deliveries`, of which `due` are due now. */
export const outboxResult = `(SELECT count(*) FROM dl)::int AS deliveries, (SELECT count(*) FROM dl WHERE held IS NULL AND lease_owner IS NULL)::int AS due`;

const insertOutbox = statement(`WITH ${outboxCtes(1)} SELECT ${outboxResult}`);

/**
 * The parameters of outboxCtes: the events (due at `now`) and their deliveries, each placed
 * first when it keeps its execution's order (a statement of its own, only then).
 */
export async function outboxValues(
  c: Conn,
  project: string,
  list: readonly OutboxEvent[],
  now: number,
  handing: Handing | null = null,
  /** Filled with how many deliveries of each event (by id) were handed over. */
  handedByEvent?: Map<string, number>,
): Promise<unknown[]> {
  const events = list.map((e) => e.envelope);
  const envelopes = events.map((v) => JSON.stringify(v));
  const placing: Placing[] = [];
  const eventOf: string[] = [];
  const leasedUntil: Array<number | null> = [];
  list.forEach((e, i) => {
    const x = e.envelope.execution_id;
    for (const listenerId of e.listenerIds) {
      const id = newId(now);
      const execution = x !== null && e.fanOut.ordered?.has(listenerId) ? x : null;
      placing.push({ id, listenerId, execution });
      eventOf.push(e.envelope.id);
      const offered = { id, project, listenerId, envelopeJson: envelopes[i], original: e.original };
      const until = execution === null && handing ? handing.offer(offered, e.fanOut, now) : null;
      leasedUntil.push(until);
      if (until !== null) handedByEvent?.set(e.envelope.id, (handedByEvent.get(e.envelope.id) ?? 0) + 1);
    }
  });
  const placed = await placeDeliveries(c, placing, now);
  return [
    project,
    now,
    events.map((v) => v.id),
    events.map((v) => v.type),
    events.map((v) => v.category),
    events.map((v) => v.workbook),
    events.map((v) => v.execution_id),
    events.map((v) => v.sequence),
    joinedEnvelopes(envelopes),
    list.map((e) => e.original?.body ?? null),
    list.map((e) => e.original?.format ?? null),
    list.map((e) => e.bodyHash),
    placing.map((p) => p.id),
    eventOf,
    placing.map((p) => p.listenerId),
    placed.map((p) => p.held),
    placed.map((p) => arrayLiteral(p.gap)),
    leasedUntil,
    handing?.owner ?? null,
  ];
}

/**
 * Inserts events and their deliveries; answers how many deliveries were made, and how many of
 * each event's were handed over. `last`: this is
 * the transaction's last statement, sent with its COMMIT. When some are due (not handed over to
 * `handing`), the other processes' dispatchers are told after the commit.
 */
export async function writeOutbox(
  c: Conn,
  project: string,
  list: readonly OutboxEvent[],
  now: number,
  notice: DueNotice,
  last: boolean,
  handing: Handing | null,
): Promise<{ deliveries: number; handedByEvent: Map<string, number> }> {
  const handedByEvent = new Map<string, number>();
  const values = await outboxValues(c, project, list, now, handing, handedByEvent);
  const [row] = last ? await c.commitWith<OutboxCounts>(insertOutbox, values) : await c.rows<OutboxCounts>(insertOutbox, values);
  if (row.due > 0) notice.afterCommit(c);
  return { deliveries: row.deliveries, handedByEvent };
}

/** What outboxResult answers. */
export interface OutboxCounts {
  deliveries: number;
  due: number;
}
