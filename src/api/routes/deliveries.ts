import { Router } from 'express';
import { toAttemptView, toDeliveryView } from '../../records/delivery.js';
import { DELIVERY_STATUSES, type DeliveryStatus } from '../../records/states.js';
import type { OutboxStore } from '../../store/store.js';
import { conflict, invalidField, notFound } from '../problem.js';
import { orderedPageParams, page } from '../paging.js';

/** `listScanLimit`: rows a page looks at when its filters need checking row by row (RELAY_LIST_SCAN_LIMIT). */
export function deliveryRoutes({ store, onRequeued, listScanLimit }: { store: OutboxStore; onRequeued: () => void; listScanLimit?: number }): Router {
  const router = Router();

  router.get('/', async (req, res) => {
    const { limit, after, order } = orderedPageParams(req.query, 'deliveries', ['listener_id', 'event_id', 'status']);
    const q = req.query;
    for (const field of ['listener_id', 'event_id', 'status'] as const) {
      if (q[field] !== undefined && (typeof q[field] !== 'string' || q[field] === '')) throw invalidField(field, 'give one non-empty value');
    }
    if (q.status !== undefined && !DELIVERY_STATUSES.includes(q.status as DeliveryStatus)) {
      throw invalidField('status', `one of ${DELIVERY_STATUSES.join(', ')}`);
    }
    const found = await store.listDeliveries(res.locals.project, {
      after,
      order,
      limit: limit + 1,
      scanLimit: listScanLimit,
      listener_id: q.listener_id as string | undefined,
      event_id: q.event_id as string | undefined,
      status: q.status as DeliveryStatus | undefined,
    });
    res.json(page('deliveries', found.rows, limit, (d) => d.id, toDeliveryView, order, found.resume));
  });

  router.get('/:id', async (req, res) => {
    const delivery = await store.getDelivery(res.locals.project, req.params.id);
    if (!delivery) throw notFound(`delivery ${req.params.id}`);
    const attempts = await store.listAttempts(res.locals.project, delivery.id);
    res.json({ ...toDeliveryView(delivery), attempts: attempts.map(toAttemptView) });
  });

  router.post('/:id/retry', async (req, res) => {
    const outcome = await store.retryDelivery(res.locals.project, req.params.id, Date.now());
    if (outcome === 'not_found') throw notFound(`delivery ${req.params.id}`);
    if (outcome === 'in_flight') throw conflict(`delivery ${req.params.id} is being sent right now; try again when the attempt ends`);
    if (outcome === 'no_listener') throw conflict(`the listener of delivery ${req.params.id} was deleted`);
    onRequeued();
    const delivery = await store.getDelivery(res.locals.project, req.params.id);
    res.status(202).json(toDeliveryView(delivery!));
  });

  return router;
}
