import crypto from 'node:crypto';
import type { Logger } from 'pino';
import type { EventEnvelope } from '../records/event.js';
import type { AttemptResult, ClaimedDelivery, Store } from '../store/store.js';
import type { Transport } from '../transports/transport.js';
import { renderDelivery, USER_AGENT } from './formats.js';
import { decideOutcome } from './outcome.js';
import { signatureHeaders } from './signing.js';

export interface DispatcherOptions {
  store: Store;
  transport: Transport;
  log: Logger;
  /** How long in-flight attempts may finish on stop. */
  shutdownGraceMs: number;
  /** Deliveries claimed per query. */
  batchSize?: number;
  /** Attempts in flight at once, over all receivers. */
  maxInFlight?: number;
  /** Longest sleep when nothing is due (other processes may add work). */
  idlePollMs?: number;
  /** How long finished attempts may wait to be recorded together. */
  flushDelayMs?: number;
  onAttempt?: (result: AttemptResult) => void;
  onListenersDisabled?: (ids: string[]) => void;
  random?: () => number;
}

export interface Dispatcher {
  start(): void;
  /** Something may be due now: claim without waiting for the next poll. */
  wake(): void;
  /** Stops claiming, lets attempts in flight finish within the grace, releases the rest. */
  stop(): Promise<void>;
}

// Added to each lease on top of the attempt's timeout and the shutdown grace, so a lease only
// expires for a process that died.
const LEASE_MARGIN_MS = 5_000;

export function createDispatcher(o: DispatcherOptions): Dispatcher {
  const { store, transport, log } = o;
  const batchSize = o.batchSize ?? 200;
  const maxInFlight = o.maxInFlight ?? 512;
  const idlePollMs = o.idlePollMs ?? 1_000;
  const flushDelayMs = o.flushDelayMs ?? 20;
  const owner = `${process.pid}-${crypto.randomBytes(6).toString('hex')}`;

  let running = false;
  let loopDone: Promise<void> = Promise.resolve();
  const inFlight = new Set<string>();
  let results: AttemptResult[] = [];
  let flushScheduled = false;
  let flushTimer: NodeJS.Timeout | null = null;
  let flushing: Promise<void> = Promise.resolve();
  let wakeUp: (() => void) | null = null;
  let wakeTimer: NodeJS.Timeout | null = null;
  let woken = false;
  let drained: (() => void) | null = null;

  function wake() {
    woken = true;
    wakeUp?.();
  }

  /** Sleeps until woken or `ms` passes. */
  function sleep(ms: number): Promise<void> {
    if (woken) {
      woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      wakeUp = () => {
        wakeUp = null;
        woken = false;
        if (wakeTimer) clearTimeout(wakeTimer);
        wakeTimer = null;
        resolve();
      };
      wakeTimer = setTimeout(wakeUp, Math.max(0, ms));
    });
  }

  // Outcomes wait up to flushDelayMs (or until a batch is full) so that one commit records many.
  function scheduleFlush() {
    if (results.length >= batchSize) {
      if (flushTimer) clearTimeout(flushTimer);
      flushTimer = null;
      flushScheduled = false;
      flushing = flushing.then(flush);
      return;
    }
    if (flushScheduled) return;
    flushScheduled = true;
    flushTimer = setTimeout(() => {
      flushTimer = null;
      flushScheduled = false;
      flushing = flushing.then(flush);
    }, flushDelayMs);
  }

  // Outcomes of many attempts are recorded together: one transaction, one fsync.
  async function flush() {
    if (results.length === 0) return;
    const batch = results;
    results = [];
    try {
      const disabled = await store.recordAttempts(owner, batch, Date.now());
      if (disabled.length) {
        log.warn({ listeners: disabled }, 'listeners turned off: their receivers answered 410 Gone');
        o.onListenersDisabled?.(disabled);
      }
    } catch (err) {
      // Leases still stand, so these deliveries come back when they expire: at least once.
      log.error({ err, count: batch.length }, 'could not record attempt outcomes; they will be retried after their lease');
    }
    for (const r of batch) inFlight.delete(r.deliveryId);
    if (inFlight.size === 0) drained?.();
    // Finished attempts free slots and may have scheduled retries: look again.
    wake();
  }

  async function attempt(d: ClaimedDelivery) {
    const started = Date.now();
    const { callback, retry } = d.listener;
    const envelope = JSON.parse(d.envelopeJson) as EventEnvelope;
    const rendered = renderDelivery({
      envelope,
      envelopeJson: d.envelopeJson,
      format: callback.format,
      method: callback.method,
      url: callback.url,
      originalBody: d.originalBody,
      project: d.project,
    });
    const secrets = [d.listener.secret];
    if (d.listener.previous_secret && Date.parse(d.listener.previous_secret_expires_at ?? '') > started) {
      secrets.push(d.listener.previous_secret);
    }
    const headers = {
      ...callback.headers,
      ...rendered.headers,
      ...signatureHeaders({ deliveryId: d.id, timestamp: Math.floor(started / 1000), body: rendered.body, secrets }),
      'webhook-attempt': String(d.attemptNumber),
      'user-agent': USER_AGENT,
    };
    const outcome = await transport.send({
      url: rendered.url,
      method: callback.method,
      headers,
      body: rendered.body,
      timeoutMs: callback.timeout_ms,
    });
    const now = Date.now();
    const decision = decideOutcome(outcome, d.attemptNumber, retry.schedule_ms, now, o.random);
    const result: AttemptResult = {
      deliveryId: d.id,
      listenerId: d.listenerId,
      project: d.project,
      attempt: {
        number: d.attemptNumber,
        started_at: started,
        duration_ms: outcome.durationMs,
        status_code: outcome.statusCode,
        error: outcome.error,
        response_excerpt: outcome.responseExcerpt,
      },
      status: decision.status,
      nextAttemptAt: decision.nextAttemptAt,
      lastError: outcome.ok ? null : outcome.message,
      disableListener: decision.disableListener,
    };
    o.onAttempt?.(result);
    return result;
  }

  function launch(d: ClaimedDelivery) {
    // Still being sent by this process (its lease ran out while it waited for a slow
    // receiver): the claim just extended the lease; sending it twice would help no one.
    if (inFlight.has(d.id)) return;
    inFlight.add(d.id);
    attempt(d)
      .catch((err): AttemptResult => {
        // Rendering or signing failed: a defect, not the receiver's fault. Keep the delivery
        // and try again later rather than lose it.
        log.error({ err, delivery: d.id }, 'attempt failed before sending');
        const now = Date.now();
        return {
          deliveryId: d.id,
          listenerId: d.listenerId,
          project: d.project,
          attempt: { number: d.attemptNumber, started_at: now, duration_ms: 0, status_code: null, error: 'INTERNAL', response_excerpt: null },
          status: 'pending',
          nextAttemptAt: now + 60_000,
          lastError: `internal error: ${(err as Error).message}`,
          disableListener: null,
        };
      })
      .then((result) => {
        if (!running && !inFlight.has(d.id)) return; // released at shutdown; the next process sends it
        results.push(result);
        scheduleFlush();
      });
  }

  async function loop() {
    while (running) {
      const free = maxInFlight - inFlight.size;
      // Claim in whole batches: a claim per freed slot would cost a commit per delivery.
      if (free < Math.min(batchSize, maxInFlight) && inFlight.size > 0) {
        await sleep(idlePollMs);
        continue;
      }
      let claimed: ClaimedDelivery[];
      try {
        claimed = await store.claimDueDeliveries({
          owner,
          now: Date.now(),
          leaseMs: o.shutdownGraceMs + LEASE_MARGIN_MS,
          limit: Math.min(batchSize, free),
        });
      } catch (err) {
        log.error({ err }, 'claiming deliveries failed; trying again shortly');
        await sleep(idlePollMs);
        continue;
      }
      if (!running) {
        await store.releaseLeases(owner, claimed.map((d) => d.id), Date.now()).catch(() => {});
        break;
      }
      for (const d of claimed) launch(d);
      if (claimed.length === Math.min(batchSize, free)) continue;
      // Less than a full batch: nothing else is due now. Sleep until the next due time.
      const next = await store.nextDueAt().catch(() => null);
      const wait = next === null ? idlePollMs : Math.min(idlePollMs, next - Date.now());
      if (wait > 0) await sleep(wait);
    }
  }

  return {
    start() {
      if (running) return;
      running = true;
      loopDone = loop().catch((err) => log.fatal({ err }, 'dispatcher loop stopped'));
    },
    wake,
    async stop() {
      if (!running) return;
      running = false;
      wake();
      await loopDone;
      if (inFlight.size > 0) {
        log.info({ inFlight: inFlight.size, graceMs: o.shutdownGraceMs }, 'waiting for deliveries in flight');
        await new Promise<void>((resolve) => {
          drained = resolve;
          setTimeout(resolve, o.shutdownGraceMs).unref();
        });
      }
      await flushing;
      await flush();
      if (inFlight.size > 0) {
        const unfinished = [...inFlight];
        inFlight.clear();
        await store.releaseLeases(owner, unfinished, Date.now());
        log.warn({ count: unfinished.length }, 'released deliveries still in flight after the grace period; they will be sent again');
      }
    },
  };
}
