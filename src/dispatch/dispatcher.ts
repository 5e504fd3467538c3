import crypto from 'node:crypto';
import type { Logger } from 'pino';
import type { EventEnvelope } from '../records/event.js';
import type { AttemptResult, ClaimedDelivery, Store } from '../store/store.js';
import type { Transport } from '../transports/transport.js';
import { renderDelivery, USER_AGENT } from './formats.js';
import { decideOutcome } from './outcome.js';
import { signatureHeaders } from './signing.js';
import { createWakeSignal } from '../wake-signal.js';

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

/**
 * The dispatcher runs in cycles. Each cycle is one transaction that records the attempts
 * finished since the last one and claims the next due deliveries (when there is room), then
 * starts sending what it claimed. Between cycles it sleeps until new deliveries commit, enough
 * attempts finish, or the next scheduled try is due.
 */
export function createDispatcher(o: DispatcherOptions): Dispatcher {
  const { store, transport, log } = o;
  const batchSize = o.batchSize ?? 200;
  const maxInFlight = o.maxInFlight ?? 512;
  const idlePollMs = o.idlePollMs ?? 1_000;
  const flushDelayMs = o.flushDelayMs ?? 20;
  const owner = `${process.pid}-${crypto.randomBytes(6).toString('hex')}`;

  let running = false;
  let loopDone: Promise<void> = Promise.resolve();
  /** Claimed and not yet recorded, by this process. */
  const inFlight = new Set<string>();
  /** Finished attempts waiting for the next cycle to record them. */
  let results: AttemptResult[] = [];
  let flushTimer: NodeJS.Timeout | null = null;

  const signal = createWakeSignal();
  const { wake, sleep } = signal;

  // A full batch of outcomes wakes the loop at once; fewer wait up to flushDelayMs, so that one
  // commit records many.
  function resultReady(result: AttemptResult) {
    results.push(result);
    if (results.length >= batchSize || !running) {
      if (flushTimer) clearTimeout(flushTimer);
      flushTimer = null;
      wake();
    } else if (!flushTimer) {
      flushTimer = setTimeout(() => {
        flushTimer = null;
        wake();
      }, flushDelayMs);
    }
  }

  /** One transaction: record what finished, claim what is due. Returns how many were claimed. */
  async function cycle(claim: boolean): Promise<{ claimed: number; asked: number }> {
    const batch = results;
    results = [];
    const free = maxInFlight - inFlight.size + batch.length;
    // Claim in whole batches (or what room is left when nothing is in flight): a claim per
    // freed slot would cost a commit per delivery.
    const asked = claim && (free >= batchSize || free === maxInFlight) ? Math.min(batchSize, free) : 0;
    if (batch.length === 0 && asked === 0) return { claimed: 0, asked };
    const now = Date.now();
    let outcome;
    try {
      outcome = await store.recordAndClaim(
        owner,
        batch,
        asked ? { owner, now, leaseMs: o.shutdownGraceMs + LEASE_MARGIN_MS, limit: asked } : null,
        now,
      );
    } catch (err) {
      // Unrecorded outcomes keep their leases, so those deliveries come back when the leases
      // expire: at least once, never lost.
      log.error({ err, results: batch.length }, 'recording attempts or claiming failed; trying again shortly');
      for (const r of batch) inFlight.delete(r.deliveryId);
      return { claimed: 0, asked: 0 };
    }
    for (const r of batch) inFlight.delete(r.deliveryId);
    if (outcome.disabledListeners.length) {
      log.warn({ listeners: outcome.disabledListeners }, 'listeners turned off: their receivers answered 410 Gone');
      o.onListenersDisabled?.(outcome.disabledListeners);
    }
    for (const d of outcome.claimed) launch(d);
    return { claimed: outcome.claimed.length, asked };
  }

  async function attempt(d: ClaimedDelivery): Promise<AttemptResult> {
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
    return {
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
        if (!inFlight.has(d.id)) return; // released at shutdown; the next process sends it
        o.onAttempt?.(result);
        resultReady(result);
      });
  }

  async function loop() {
    while (running) {
      const { claimed, asked } = await cycle(true);
      if (asked > 0 && claimed === asked) continue; // more may be due right now
      let wait = idlePollMs;
      if (asked > 0 || inFlight.size === 0) {
        const next = await store.nextDueAt().catch(() => null);
        if (next !== null) wait = Math.min(idlePollMs, next - Date.now());
      }
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
      if (flushTimer) clearTimeout(flushTimer);
      flushTimer = null;
      const deadline = Date.now() + o.shutdownGraceMs;
      if (inFlight.size > results.length) {
        log.info({ inFlight: inFlight.size - results.length, graceMs: o.shutdownGraceMs }, 'waiting for deliveries in flight');
      }
      // Record outcomes as they come in during the grace, without claiming anything new.
      while (inFlight.size > results.length && Date.now() < deadline) {
        await sleep(Math.min(100, deadline - Date.now()));
        if (results.length) await cycle(false);
      }
      await cycle(false);
      if (inFlight.size > 0) {
        const unfinished = [...inFlight];
        inFlight.clear();
        await store.releaseLeases(owner, unfinished, Date.now());
        log.warn({ count: unfinished.length }, 'released deliveries still in flight after the grace period; they will be sent again');
      }
    },
  };
}
