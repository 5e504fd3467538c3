import { Router, type RequestHandler } from 'express';
import { z } from 'zod';
import { EventInput } from '../../records/event.js';
import { toDeliveryView } from '../../records/delivery.js';
import type { Ingest } from '../../ingest/ingest.js';
import type { OutboxStore } from '../../store/store.js';
import { requireMediaType } from '../media-type.js';
import { jsonBody } from '../json-body.js';
import { fieldProblems, invalidField, notFound, validationProblem, type FieldError } from '../problem.js';
import { orderedPageParams, page } from '../paging.js';

export const EVENTS_BODY_LIMIT = '16mb';
/** Deliveries an event's read lists; `deliveries_next_cursor` continues them in GET /v1/deliveries. */
export const EVENT_DELIVERIES = 1000;
export const MAX_EVENTS_PER_REQUEST = 1000;

const Batch = z.strictObject({ events: z.array(z.unknown()) });

/** Validates a single event or a batch; a bad event rejects the whole request, naming its index. */
function parseEvents(body: unknown): EventInput[] {
  const isBatch = typeof body === 'object' && body !== null && !Array.isArray(body) && 'events' in body && !('type' in body);
  if (!isBatch) {
    const one = EventInput.safeParse(body);
    if (!one.success) throw validationProblem(one.error);
    return [one.data];
  }
  const batch = Batch.safeParse(body);
  if (!batch.success) throw validationProblem(batch.error);
  const raw = batch.data.events;
  if (raw.length === 0) throw invalidField('events', 'give at least one event');
  if (raw.length > MAX_EVENTS_PER_REQUEST) throw invalidField('events', `at most ${MAX_EVENTS_PER_REQUEST} events per request`);
  const events: EventInput[] = [];
  const errors: FieldError[] = [];
  raw.forEach((e, i) => {
    const parsed = EventInput.safeParse(e);
    if (parsed.success) events.push(parsed.data);
    else errors.push(...validationProblem(parsed.error, `events.${i}`).errors!);
  });
  if (errors.length) throw fieldProblems(errors);
  return events;
}

const timeParam = (value: unknown, field: string): number | undefined => {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !z.iso.datetime({ offset: true }).safeParse(value).success) {
    throw invalidField(field, 'must be an RFC 3339 date-time such as 2026-11-23T10:00:00Z');
  }
  return Date.parse(value);
};

const stringParam = (value: unknown, field: string): string | undefined => {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '') throw invalidField(field, 'give one non-empty value');
  return value;
};

/**
 * POST /v1/events after the token check: the busiest route, which the app mounts ahead of its
 * routers (see createApp), so that an ingest request reaches it through one route match.
 */
export function postEvents({ ingest }: { ingest: Ingest }): RequestHandler[] {
  return [
    requireMediaType(),
    jsonBody(EVENTS_BODY_LIMIT),
    async (req, res) => {
      const events = parseEvents(req.body);
      const results = await ingest.ingest(res.locals.project, events.map((input) => ({ input })), 'api');
      res.status(202).json({ items: results.map((r) => ({ id: r.id, duplicate: r.duplicate })) });
    },
  ];
}

/**
 * The reads of /v1/events (POST is postEvents). `listScanLimit`: events a page looks at when it
 * filters by workbook or type (RELAY_LIST_SCAN_LIMIT).
 */
export function eventRoutes({ store, listScanLimit }: { store: OutboxStore; listScanLimit?: number }): Router {
  const router = Router();

  router.get('/', async (req, res) => {
    const { limit, after, order } = orderedPageParams(req.query, 'events', ['workbook', 'execution_id', 'type', 'since']);
    // An event cursor is a position in the event log, or in one execution's events (listed in
    // their sequence order), and continues only that list; anything else is not one of ours.
    // Before the log was walked in the order received, its cursors held an event's number alone,
    // and before they named their execution, an execution's held its sequence alone.
    const executionId = stringParam(req.query.execution_id, 'execution_id');
    if (after !== null) {
      const scope = store.eventCursorScope(after);
      if (!scope) {
        if (/^x?[0-9]+$/.test(after)) throw invalidField('cursor', 'a cursor of an earlier version of the relay: start again without a cursor');
        throw invalidField('cursor', 'not a cursor this API returned');
      }
      if (scope.execution_id !== (executionId ?? null)) {
        throw invalidField(
          'cursor',
          scope.execution_id === null
            ? 'this cursor continues a list of events without execution_id: give the same filters with it, or start again without a cursor'
            : executionId === undefined
              ? "this cursor continues a list of one execution's events: give its execution_id with it, or start again without a cursor"
              : `this cursor continues the events of execution ${scope.execution_id}, not of ${executionId}: start again without a cursor`,
        );
      }
    }
    const found = await store.listEvents(res.locals.project, {
      after,
      order,
      limit: limit + 1,
      scanLimit: listScanLimit,
      workbook: stringParam(req.query.workbook, 'workbook'),
      execution_id: executionId,
      type: stringParam(req.query.type, 'type'),
      since: timeParam(req.query.since, 'since'),
    });
    const view = (r: (typeof found.rows)[number]) => ({ ...r.envelope, received_at: new Date(r.received_at).toISOString() });
    res.json(page('events', found.rows, limit, (r) => r.cursor, view, order, found.resume));
  });

  router.get('/:id', async (req, res) => {
    const event = await store.getEvent(res.locals.project, req.params.id);
    if (!event) throw notFound(`event ${req.params.id}`);
    // The first EVENT_DELIVERIES; with more, the cursor continues them in GET /v1/deliveries?event_id=.
    const { rows } = await store.listDeliveries(res.locals.project, { event_id: req.params.id, limit: EVENT_DELIVERIES + 1 });
    const { items, next_cursor } = page('deliveries', rows, EVENT_DELIVERIES, (d) => d.id, toDeliveryView);
    res.json({
      ...event.envelope,
      received_at: new Date(event.received_at).toISOString(),
      deliveries: items,
      deliveries_next_cursor: next_cursor,
    });
  });

  return router;
}
