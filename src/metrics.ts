import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { AttemptResult, QueueDepth, Store } from './store/store.js';

/** Metrics as prom-client exports them to another thread (`Registry.getMetricsAsJSON`). */
export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

/** What `GET /metrics` serves. */
export interface MetricsSource {
  contentType: string;
  metrics(): Promise<string>;
}

/**
 * One registry per relay instance, so tests can run several relays in one process. The
 * dispatcher's metrics are also kept apart (`dispatchRegistry`): a dispatcher in a worker
 * thread has its own, which the main thread adds to what it serves (`withThreadMetrics`).
 */
export function createMetrics(store: Store) {
  const base = new Registry();
  const dispatchRegistry = new Registry();
  collectDefaultMetrics({ register: base, prefix: 'relay_' });

  const eventsIngested = new Counter({
    name: 'relay_events_ingested_total',
    help: 'Events stored in the outbox (duplicates not counted), by source',
    labelNames: ['source'] as const,
    registers: [base],
  });
  const attempts = new Counter({
    name: 'relay_delivery_attempts_total',
    help: 'Delivery attempts by outcome: succeeded, retry (another try is scheduled), failed (no tries left), held (410 turned the listener off)',
    labelNames: ['outcome'] as const,
    registers: [dispatchRegistry],
  });
  const handedOver = new Counter({
    name: 'relay_deliveries_handed_over_total',
    help: 'Fresh deliveries handed to the dispatcher as they committed, without a claim: sent (as they came), or queued (given back to the queue for the claim to admit)',
    labelNames: ['outcome'] as const,
    registers: [dispatchRegistry],
  });
  const attemptSeconds = new Histogram({
    name: 'relay_delivery_attempt_duration_seconds',
    help: 'Duration of delivery attempts, from sending to the end of the answer',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [dispatchRegistry],
  });
  const amqpConsumed = new Counter({
    name: 'relay_amqp_messages_consumed_total',
    help: 'Notifications taken from RabbitMQ and acknowledged after their event committed (a redelivery stored once included), by queue',
    labelNames: ['queue'] as const,
    registers: [base],
  });
  const amqpRejected = new Counter({
    name: 'relay_amqp_messages_rejected_total',
    help: 'Notifications rejected without requeue (too_large, not_json, bad_envelope, no_event_type, invalid_field, id_conflict, filter_budget), by reason',
    labelNames: ['reason'] as const,
    registers: [base],
  });
  // One query serves the three gauges of a scrape (a scrape asks each gauge before it awaits
  // any; the next scrape asks again). While the database does not answer they are NaN, and the
  // scrape still answers with every other metric: the outage is when those matter.
  let asked: Promise<QueueDepth | null> | null = null;
  const depth = (): Promise<QueueDepth | null> =>
    (asked ??= store
      .queueDepth(Date.now())
      .catch(() => null)
      .finally(() => (asked = null)));
  new Gauge({
    name: 'relay_deliveries_due',
    help: 'Pending deliveries due now (in flight ones included); NaN while the database does not answer',
    registers: [base],
    async collect() {
      this.set((await depth())?.due ?? NaN);
    },
  });
  new Gauge({
    name: 'relay_deliveries_scheduled',
    help: 'Pending deliveries waiting for a later try; NaN while the database does not answer',
    registers: [base],
    async collect() {
      this.set((await depth())?.scheduled ?? NaN);
    },
  });
  new Gauge({
    name: 'relay_oldest_due_delivery_age_seconds',
    help: 'How long the oldest due, unclaimed delivery has been waiting (0 when none); NaN while the database does not answer',
    registers: [base],
    async collect() {
      const d = await depth();
      this.set(d === null ? NaN : d.oldestDueAt === null ? 0 : Math.max(0, (Date.now() - d.oldestDueAt) / 1000));
    },
  });

  return {
    registry: Registry.merge([base, dispatchRegistry]),
    dispatchRegistry,
    eventStored(source: string) {
      eventsIngested.inc({ source });
    },
    attemptRecorded(r: AttemptResult) {
      const outcome = r.status === 'pending' ? (r.disableListener ? 'held' : 'retry') : r.status;
      attempts.inc({ outcome });
      attemptSeconds.observe(r.attempt.duration_ms / 1000);
    },
    handedOver(outcome: 'sent' | 'queued') {
      handedOver.inc({ outcome });
    },
    amqpIngest: {
      messageConsumed(queue: string) {
        amqpConsumed.inc({ queue });
      },
      messageRejected(reason: string) {
        amqpRejected.inc({ reason });
      },
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/**
 * What this thread's registry holds, plus what `fromThreads` answers (each thread's dispatch
 * metrics, summed by name). A thread that does not answer is left out rather than failing
 * the scrape.
 */
export function withThreadMetrics(registry: Registry, fromThreads: () => Promise<MetricsJson[]>): MetricsSource {
  return {
    contentType: registry.contentType,
    async metrics() {
      const others = await fromThreads().catch(() => []);
      if (others.length === 0) return registry.metrics();
      const own = (await registry.getMetricsAsJSON()) as MetricsJson;
      return AggregatorRegistry.aggregate([own, ...others]).metrics();
    },
  };
}
