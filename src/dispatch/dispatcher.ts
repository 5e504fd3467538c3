import type { Logger } from 'pino';
import type { EventEnvelope } from '../records/event.js';
import type { AttemptResult, ClaimedDelivery, DeliveryQueue, ListenerRouting, RecordJudge } from '../store/store.js';
import { createListenerPaces } from './listener-pace.js';
import { admitCandidates, DEFAULT_BREAKER, judgeAttempts, listenerDisabledEvent, type BreakerSettings, type ListenerGateState } from './listener-gate.js';
import { relayEventEnvelope } from './relay-events.js';
import type { TransportAttempt } from '../transports/contract.js';
import type { TransportRegistry } from '../transports/registry.js';
import { backoffDelay } from '../backoff.js';
import { createAdmissionGate, reserveFor } from './admission.js';
import { handoffRoomOf, newHandoffBuffer } from './handoff-room.js';
import { createFailureLog } from './failure-log.js';
import { renderPayload, USER_AGENT, type CallbackFormat } from './formats.js';
import { decideOutcome, normalizeOutcome } from './outcome.js';
import { signatureHeaders } from './signing.js';
import { createWakeSignal } from '../wake-signal.js';
import { newOwner, ownerStopped, processIsGoneHere } from '../owner.js';

export interface DispatcherOptions {
  store: DeliveryQueue;
  /** The enabled transports; only deliveries of these are claimed. */
  transports: TransportRegistry;
  log: Logger;
  /** How long in-flight attempts may finish on stop. */
  shutdownGraceMs: number;
  /** Deliveries claimed per query. */
  batchSize?: number;
  /** Attempts in flight at once, over all receivers and projects (the admission gate's first limit). */
  maxInFlight?: number;
  /** Attempts in flight at once to one origin (the gate's per-origin slots). */
  slotsPerOrigin?: number;
  /** Longest sleep when nothing is due (other processes may add work). */
  idlePollMs?: number;
  /** How long finished attempts may wait to be recorded together. */
  flushDelayMs?: number;
  onAttempt?: (result: AttemptResult) => void;
  onListenersDisabled?: (ids: string[]) => void;
  random?: () => number;
  /** RELAY_BREAKER_* and RELAY_DISABLE_AFTER_HOURS. */
  breaker?: BreakerSettings;
  /** Routes the relay's own events (relay.circuit.*, relay.delivery.failed, relay.listener.disabled). */
  routing: ListenerRouting;
  /**
   * The room for deliveries handed over at commit (handoff-room.ts), when the thread that
   * commits them made it; else the dispatcher makes its own.
   */
  handoffRoom?: SharedArrayBuffer;
  /** Told of each delivery handed over at commit: sent as it came, or given back to the queue. */
  onHandedOver?: (outcome: 'sent' | 'queued') => void;
}

export interface Dispatcher {
  start(): void;
  /** Something may be due now: claim without waiting for the next poll. */
  wake(): void;
  /** Stops claiming, lets attempts in flight finish within the grace, releases the rest. */
  stop(): Promise<void>;
  /** What a store needs to hand this dispatcher fresh deliveries (Handoff): its lease owner, lease and room. */
  readonly handoff: { owner: string; leaseMs: number; room: SharedArrayBuffer };
  /**
   * Fresh deliveries handed over at commit, already leased to this dispatcher: they pass the
   * rest of the gate (origin and listener slots, the circuit) as claimed ones do. Those whose
   * listener's circuit this dispatcher has not seen closed go back to the queue, for the claim
   * to admit.
   */
  accept(deliveries: ClaimedDelivery[]): void;
}

const isBodyless = (method: unknown) => method === 'GET' || method === 'DELETE';

/** The event's id and type from a claimed delivery whose envelope may not even parse. */
function eventOf(d: ClaimedDelivery): { id: string; type: string } {
  try {
    const e = JSON.parse(d.envelopeJson) as { id?: unknown; type?: unknown };
    return { id: String(e.id ?? ''), type: String(e.type ?? '') };
  } catch {
    return { id: '', type: '' };
  }
}

/** Which per-origin slots an attempt takes: its URL's scheme, host and port, else its transport's. */
function slotKey(callback: { transport: string; url?: unknown }): string {
  if (typeof callback.url === 'string' && URL.canParse(callback.url)) {
    const u = new URL(callback.url);
    return `${u.protocol}//${u.host}`;
  }
  return `${callback.transport}:`;
}

// Added to each lease on top of the attempt's timeout and the shutdown grace, so a lease only
// expires for a process that died.
const LEASE_MARGIN_MS = 5_000;

// How soon a claim that found listeners' gates held by another dispatcher looks again: that
// dispatcher's cycle commits within milliseconds. Doubled for each claim in a row that met a
// held gate (up to the idle poll), with jitter, so that processes that keep meeting fall out
// of step and a gate held long is not asked for hundreds of times a second.
const CONTENDED_RETRY_MS = 10;

/** An attempt that was not made: its listener's receiver had answered 410 Gone (see `gone`). */
const TURNED_AWAY = Symbol('turned away');

/**
 * The dispatcher runs in cycles. Each cycle is one transaction that records the attempts
 * finished since the last one and claims what the admission gate lets in (whatever room there
 * is, each project its share), then starts sending what it claimed. Between cycles it sleeps
 * until new deliveries commit, attempts finish, or the next scheduled try is due. When the
 * store fails, it backs off (exponential with jitter, capped) instead of trying again at once.
 */
export function createDispatcher(o: DispatcherOptions): Dispatcher {
  const { store, transports, log } = o;
  const batchSize = o.batchSize ?? 200;
  const maxInFlight = o.maxInFlight ?? 512;
  const idlePollMs = o.idlePollMs ?? 1_000;
  const flushDelayMs = o.flushDelayMs ?? 20;
  const owner = newOwner();
  const gate = createAdmissionGate({ maxInFlight, slotsPerOrigin: o.slotsPerOrigin ?? 32 });
  const failures = createFailureLog({ log });
  const breaker = o.breaker ?? DEFAULT_BREAKER;
  const room = handoffRoomOf(o.handoffRoom ?? newHandoffBuffer());
  /**
   * Listeners whose circuit the last record or claim of this dispatcher found closed: their
   * handed-over deliveries go out as they come. (With several processes another one may open a
   * circuit meanwhile; this one learns it when it records its next attempt to that listener.)
   */
  const closedCircuits = new Set<string>();
  /** What this process holds of each listener, and the pace its receiver answers at. */
  const paces = createListenerPaces();
  const learnCircuits = (ids: Iterable<string>, stateOf: (id: string) => ListenerGateState | undefined) => {
    for (const id of ids) {
      const state = stateOf(id);
      if (state === undefined || state.breaker === 'closed') closedCircuits.add(id);
      else closedCircuits.delete(id);
    }
  };
  // Recording attempts also judges them: breakers, failing streaks and the relay's own events.
  const judge: RecordJudge = {
    routing: o.routing,
    judge(attempts, states, now) {
      const j = judgeAttempts(attempts, states, now, breaker);
      learnCircuits(new Set(attempts.map((a) => a.listenerId)), (id) => j.changed.get(id) ?? states.get(id));
      // Final failures and listeners turned off have their lines in the failure log already.
      for (const e of j.events) {
        if (e.type === 'relay.circuit.opened') log.warn({ listener: e.data.listener_id, project: e.project, lastError: e.data.last_error }, 'circuit opened: deliveries to this listener wait for a probe');
        if (e.type === 'relay.circuit.closed') log.info({ listener: e.data.listener_id, project: e.project }, 'circuit closed: deliveries to this listener go on');
      }
      return { changed: j.changed, disable: j.disable, events: j.events.map((e) => ({ project: e.project, envelope: relayEventEnvelope(e, now) })) };
    },
    turnedOff(project, listenerId, reason, now) {
      return relayEventEnvelope(listenerDisabledEvent(project, listenerId, reason), now);
    },
  };

  let running = false;
  let loopDone: Promise<void> = Promise.resolve();
  /** Claimed and not yet recorded, by this process. */
  const inFlight = new Set<string>();
  const leaseMs = o.shutdownGraceMs + LEASE_MARGIN_MS;
  /**
   * When each delivery's lease ends and how long its attempt may take, to renew it in time;
   * `since`: when this process took it (claimed or handed over).
   */
  const leases = new Map<string, { until: number; timeoutMs: number; since: number }>();
  /**
   * Listeners whose receiver answered 410 Gone to this process: a delivery of one that this
   * process took before the cycle that recorded the 410 committed (Infinity until it has) is
   * not sent but turned away, and given back once the listener is off in the store, for the
   * claim to hold with the rest of its backlog. Without it, the deliveries waiting here for
   * the listener's slots would all be sent to a receiver that asked for nothing more.
   */
  const gone = new Map<string, number>();
  /** The deliveries turned away, by listener, to give back once its 410 is recorded. */
  const turnedAway = new Map<string, string[]>();
  const isTurnedAway = (d: ClaimedDelivery) => {
    const stop = gone.get(d.listenerId);
    return stop !== undefined && (leases.get(d.id)?.since ?? 0) <= stop;
  };
  /** Finished attempts waiting for the next cycle to record them. */
  let results: AttemptResult[] = [];
  let flushTimer: NodeJS.Timeout | null = null;
  /** Store failures in a row; the next cycle waits longer after each. */
  let storeFailures = 0;

  const signal = createWakeSignal();
  const { wake, sleep } = signal;

  /** Whether a finished attempt waiting to be recorded lets held work go (an ordered head). */
  let handingOn = false;

  // A full batch of outcomes wakes the loop at once; fewer wait up to flushDelayMs, so that one
  // commit records many. Outcomes that hand an ordered execution on are recorded as soon as
  // half the attempts this process holds have finished: the execution's next delivery waits
  // for that record, and the other half's attempts finish while it is written, to be recorded
  // (and their executions' next deliveries claimed) by the cycle after.
  function resultReady(result: AttemptResult, handsOn: boolean) {
    results.push(result);
    handingOn ||= handsOn;
    if (results.length >= batchSize || !running || (handingOn && results.length * 2 >= inFlight.size)) {
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

  interface CycleResult {
    claimed: number;
    /** What the gate allotted; 0 when nothing was due or no project had room. */
    asked: number;
    /** Projects that had due work. */
    dueProjects: number;
    /** Whether the gate had room to claim at all. */
    hadRoom: boolean;
    /** The time the claim looked at: deliveries due later than this were not yet due to it. */
    at: number;
    failed: boolean;
    /** Candidates the claim put off because this process holds enough of their listener's. */
    paced: number;
    /** Candidates left due because another dispatcher was recording or claiming for their listener. */
    contended: number;
  }

  /** One transaction: record what finished, claim what the gate lets in. */
  async function cycle(claim: boolean): Promise<CycleResult> {
    const batch = results;
    results = [];
    handingOn = false;
    let dueProjects = 0;
    let paced = 0;
    const hasRoom = claim && gate.inFlight < maxInFlight;
    const now = Date.now();
    if (batch.length === 0 && !hasRoom) return { claimed: 0, asked: 0, dueProjects, hadRoom: hasRoom, at: now, failed: false, paced, contended: 0 };
    let outcome;
    try {
      outcome = await store.recordAndClaim(
        owner,
        batch,
        hasRoom
          ? {
              owner,
              now,
              leaseMs,
              transports: transports.names,
              allot: (due) => {
                dueProjects = due.length;
                const allotment = gate.allot(due);
                // At most one batch per cycle: a large claim holds the write lock long.
                let left = batchSize;
                for (const [project, n] of allotment) {
                  const take = Math.min(n, left);
                  if (take > 0) allotment.set(project, take);
                  else allotment.delete(project);
                  left -= take;
                }
                return allotment;
              },
              admit: (candidates, listeners, at) => {
                const admission = admitCandidates(candidates, listeners, at, breaker, paces);
                learnCircuits(listeners.keys(), (id) => admission.changed.get(id) ?? listeners.get(id)?.state);
                for (const [id, until] of admission.paced) paces.deferred(id, until);
                paced = admission.pacedCount;
                return admission;
              },
            }
          : null,
        now,
        judge,
      );
    } catch (err) {
      // The outcomes stay queued for the next cycle; their deliveries keep their leases
      // meanwhile, so nothing is sent twice by this process and nothing is lost.
      results = [...batch, ...results];
      storeFailures++;
      log.error({ err, results: batch.length, failures: storeFailures }, 'recording attempts or claiming failed; backing off');
      return { claimed: 0, asked: 0, dueProjects, hadRoom: hasRoom, at: now, failed: true, paced: 0, contended: 0 };
    }
    if (storeFailures > 0) log.info({ failures: storeFailures }, 'the store answers again; dispatching resumes');
    storeFailures = 0;
    let finished = 0;
    for (const r of batch) {
      if (inFlight.delete(r.deliveryId)) finished++;
      leases.delete(r.deliveryId);
    }
    room.add(finished);
    if (outcome.disabledListeners.length) {
      failures.listenersDisabled(outcome.disabledListeners, batch);
      o.onListenersDisabled?.(outcome.disabledListeners);
    }
    settleGone(batch);
    for (const d of outcome.claimed) launch(d, now);
    return { claimed: outcome.claimed.length, asked: outcome.asked, dueProjects, hadRoom: hasRoom, at: now, failed: false, paced, contended: outcome.contended };
  }

  async function attempt(d: ClaimedDelivery): Promise<AttemptResult | typeof TURNED_AWAY | null> {
    const { callback, retry } = d.listener;
    const transport = transports.get(callback.transport);
    if (transport === undefined) throw new Error(`transport ${callback.transport} is not enabled in this process`);
    const envelope = JSON.parse(d.envelopeJson) as EventEnvelope;
    const payload = renderPayload({
      envelope,
      envelopeJson: d.envelopeJson,
      format: callback.format as CallbackFormat,
      transport: callback.transport,
      bodyless: callback.transport === 'http' && isBodyless(callback.method),
      original: d.original,
      project: d.project,
      deliveryId: d.id,
      template: (callback as { template?: unknown }).template,
    });
    // The last steps of the gate that wait: the attempt's clock starts once it has its slots
    // (the origin's, then the listener's own max_in_flight).
    const releaseOrigin = await gate.originSlot(slotKey(callback));
    if (releaseOrigin === null) return null;
    const releaseListener = await gate.listenerSlot(d.listenerId, d.listener.max_in_flight);
    if (releaseListener === null) {
      releaseOrigin();
      return null;
    }
    const releaseSlot = () => {
      releaseListener();
      releaseOrigin();
    };
    if (isTurnedAway(d)) {
      releaseSlot();
      return TURNED_AWAY;
    }
    try {
      const started = Date.now();
      const secrets = [d.listener.secret];
      if (d.listener.previous_secret && Date.parse(d.listener.previous_secret_expires_at ?? '') > started) {
        secrets.push(d.listener.previous_secret);
      }
      const headers = {
        ...(callback as { headers?: Record<string, string> }).headers,
        ...payload.headers,
        ...signatureHeaders({ deliveryId: d.id, timestamp: Math.floor(started / 1000), body: payload.body, secrets }),
        'webhook-attempt': String(d.attemptNumber),
        ...(d.gap !== null && d.gap.length > 0 ? { 'webhook-gap': d.gap.join(',') } : {}),
        'user-agent': USER_AGENT,
      };
      const request: TransportAttempt = {
        deliveryId: d.id,
        attemptNumber: d.attemptNumber,
        listenerId: d.listenerId,
        project: d.project,
        callback,
        envelope,
        body: payload.body,
        query: payload.query,
        contentType: payload.contentType,
        headers,
        gap: d.gap,
        deadline: started + callback.timeout_ms,
      };
      let raw: unknown;
      try {
        raw = await transport.send(request);
      } catch (err) {
        // The contract says send never throws; an operator's module might.
        raw = { ok: false, error: 'TRANSPORT_ERROR', message: `the ${transport.name} transport threw: ${(err as Error)?.message ?? String(err)}` };
      }
      const now = Date.now();
      const outcome = normalizeOutcome(raw, now - started);
      const decision = decideOutcome(outcome, d.attemptNumber, retry.schedule_ms, now, o.random);
      // Before its slot goes to the next delivery of the listener.
      if (decision.disableListener !== null) gone.set(d.listenerId, Infinity);
      return {
        deliveryId: d.id,
        listenerId: d.listenerId,
        project: d.project,
        eventId: envelope.id,
        eventType: envelope.type,
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
    } finally {
      releaseSlot();
    }
  }

  /** `claimedAt`: the time the claim leased it from (a hand-over carries the end of its lease). */
  function launch(d: ClaimedDelivery, claimedAt: number | null) {
    const handedOver = claimedAt === null;
    // Still being sent by this process (its lease ran out while it waited for a slow
    // receiver): the claim just extended the lease; sending it twice would help no one.
    if (inFlight.has(d.id)) return;
    inFlight.add(d.id);
    // A hand-over took its slot when it was committed.
    if (!handedOver) room.add(-1);
    // The lease as the store wrote it, so that it is renewed before it ends there.
    const timeoutMs = d.listener.callback.timeout_ms;
    leases.set(d.id, { until: d.leasedUntil ?? (claimedAt ?? Date.now()) + leaseMs + timeoutMs, timeoutMs, since: Date.now() });
    gate.admit(d.project);
    paces.held(d.listenerId);
    attempt(d)
      .catch((err): AttemptResult => {
        const now = Date.now();
        const event = eventOf(d);
        const base = { deliveryId: d.id, listenerId: d.listenerId, project: d.project, eventId: event.id, eventType: event.type, disableListener: null };
        // A template whose rendering of this event is too large stays too large: the delivery
        // fails for good, saying why, rather than trying again.
        if ((err as { code?: unknown }).code === 'TEMPLATE_TOO_LARGE') {
          return {
            ...base,
            attempt: { number: d.attemptNumber, started_at: now, duration_ms: 0, status_code: null, error: 'TEMPLATE_TOO_LARGE', response_excerpt: null },
            status: 'failed',
            nextAttemptAt: null,
            lastError: (err as Error).message,
          };
        }
        // Rendering or signing failed: a defect, not the receiver's fault. The delivery is tried
        // again on its listener's retry schedule, and fails (recorded, announced by
        // relay.delivery.failed, retryable by hand) once that is spent, rather than every minute
        // for ever.
        log.error({ err, delivery: d.id }, 'attempt failed before sending');
        const outcome = normalizeOutcome({ ok: false, error: 'INTERNAL', message: `internal error: ${(err as Error)?.message ?? String(err)}` }, 0);
        const decision = decideOutcome(outcome, d.attemptNumber, d.listener.retry.schedule_ms, now, o.random);
        return {
          ...base,
          attempt: { number: d.attemptNumber, started_at: now, duration_ms: 0, status_code: null, error: 'INTERNAL', response_excerpt: null },
          status: decision.status,
          nextAttemptAt: decision.nextAttemptAt,
          lastError: outcome.message,
        };
      })
      .then((result) => {
        gate.release(d.project);
        // The pace of the receiver's answers, not of attempts that never reached it.
        const sent = result !== null && result !== TURNED_AWAY && result.attempt.error !== 'INTERNAL' && result.attempt.error !== 'TEMPLATE_TOO_LARGE';
        paces.done(d.listenerId, sent ? result.attempt.duration_ms : null);
        if (result === TURNED_AWAY) {
          // Not sent: its receiver answered 410 Gone. It keeps its lease until given back.
          if (inFlight.delete(d.id)) room.add(1);
          leases.delete(d.id);
          const ids = turnedAway.get(d.listenerId);
          if (ids) ids.push(d.id);
          else turnedAway.set(d.listenerId, [d.id]);
          return;
        }
        // Not sent (turned away at shutdown), or released at shutdown: the next process sends it.
        if (result === null || !inFlight.has(d.id)) return;
        failures.attemptFinished(d, result);
        o.onAttempt?.(result);
        resultReady(result, d.listener.ordering === 'execution' && result.status !== 'pending');
      });
  }

  /**
   * A lease runs from the claim, but a delivery may wait in the gate (its origin's or its
   * listener's slots), its receiver may be slow, and its outcome waits for the next record: the
   * leases of deliveries this process still holds are extended before they end, so no other
   * process takes one over while this one lives. Only a process that died loses its leases.
   */
  async function renewLeases() {
    const now = Date.now();
    const byUntil = new Map<number, string[]>();
    for (const [id, lease] of leases) {
      // Renewed once half of it has passed: a renewal that fails is tried again each second
      // (the timer's) while the other half lasts.
      if (lease.until - now > (leaseMs + lease.timeoutMs) / 2) continue;
      const until = now + leaseMs + lease.timeoutMs;
      const ids = byUntil.get(until);
      if (ids) ids.push(id);
      else byUntil.set(until, [id]);
    }
    for (const [until, ids] of byUntil) {
      try {
        await store.renewLeases(owner, ids, until);
      } catch (err) {
        log.error({ err, deliveries: ids.length }, 'could not renew leases; trying again in a second');
        continue;
      }
      // Only a lease the store extended counts as extended.
      for (const id of ids) {
        const lease = leases.get(id);
        if (lease && lease.until < until) lease.until = until;
      }
    }
  }
  let renewing: Promise<void> | null = null;
  let renewTimer: NodeJS.Timeout | undefined;

  /** Sleeps `ms` unless stopped; wakes meanwhile do not cut a backoff short. */
  async function backOff(ms: number) {
    const until = Date.now() + ms;
    while (running && Date.now() < until) await sleep(until - Date.now());
  }

  /**
   * Deliveries that a process of this host claimed and never finished, because it was killed,
   * go again now rather than when their leases end: a relay restarted after a crash picks up
   * at once. Owners of other hosts, or of this process, wait for their leases. Done once, as
   * the dispatcher starts (tried again each cycle while the database does not answer): it reads
   * the owner of every leased delivery. Answers whether it was done.
   */
  async function releaseGone(): Promise<boolean> {
    try {
      const { owners, deliveries } = await store.releaseLeasesOfGone(processIsGoneHere, Date.now());
      if (deliveries > 0) {
        log.warn({ owners, deliveries }, 'gave back deliveries that a process of this host claimed before it died; they are sent again now');
      }
      return true;
    } catch (err) {
      log.error({ err }, 'could not give back the deliveries of processes that died; trying again at the next cycle');
      return false;
    }
  }

  async function loop() {
    let swept = false;
    let contendedInARow = 0;
    while (running) {
      // Sockets first: a store that answers synchronously (SQLite) resolves the cycle's promise
      // at once, and a loop that claims again at once would otherwise never let the attempts it
      // launched be sent, nor their answers in.
      await new Promise<void>((resolve) => setImmediate(resolve));
      swept ||= await releaseGone();
      failures.summarize();
      const r = await cycle(true);
      contendedInARow = r.contended > 0 ? contendedInARow + 1 : 0;
      // The claim dealt with all it asked for: it took them, or put off those of listeners this
      // process holds enough of (their places in the queue go to what comes after them).
      const filled = r.asked > 0 && r.claimed + r.paced === r.asked;
      // Hand-overs are taken while this claim left nothing due waiting: not when it filled what
      // it asked for (more may be due), nor when due work found no room.
      room.open(running && !r.failed && r.hadRoom && !filled && !(r.dueProjects > 0 && r.asked === 0));
      if (r.failed) {
        await backOff(backoffDelay(storeFailures, { baseMs: 100, maxMs: 30_000 }));
        continue;
      }
      if (filled) {
        // More may be due. A full batch leaves room for more: claim again at once. When the
        // room ran out first, the attempts in flight free it as they finish, and their outcomes
        // wake the loop (a batch of them, or flushDelayMs after the first): one cycle then
        // records them and refills, instead of a small cycle for each few that finished.
        if (r.asked < batchSize) await sleep(idlePollMs);
        continue;
      }
      let wait = idlePollMs;
      // No room, or work is due but no project had room: the next finished attempt wakes the
      // loop. Otherwise everything due was claimed: sleep until the next try is due.
      const capped = !r.hadRoom || (r.dueProjects > 0 && r.asked === 0);
      if (!capped) {
        const next = await store.nextDueAt().catch(() => null);
        const now = Date.now();
        if (next !== null && next > now) wait = Math.min(idlePollMs, next - now);
        // Due since the claim looked (its try came while the cycle ran): look again at once.
        // Due before, yet not claimed: the gate holds it back (or another process has it, or
        // its transport is not this process's); the next wake or poll looks again.
        else if (next !== null && next > r.at) wait = 0;
      }
      // Another dispatcher held some listeners' gate for its own cycle, which commits within
      // milliseconds: look again then, not at the next poll (a drained backlog wakes no one).
      if (contendedInARow > 0) wait = Math.min(wait, backoffDelay(contendedInARow, { baseMs: CONTENDED_RETRY_MS, maxMs: idlePollMs }));
      if (wait > 0) await sleep(wait);
    }
  }

  let unsubscribe: () => void = () => {};

  /** Deliveries given back to the queue, still being written. */
  const givingBack = new Set<Promise<void>>();
  function release(ids: string[], what: string) {
    const done = store
      .releaseLeases(owner, ids, Date.now())
      .then(wake, (err) => log.error({ err, deliveries: ids.length }, `could not give ${what} back to the queue; they are due when their leases end`))
      .finally(() => givingBack.delete(done));
    givingBack.add(done);
  }
  function giveBack(ids: string[]) {
    room.add(ids.length);
    for (const _ of ids) o.onHandedOver?.('queued');
    release(ids, 'handed-over deliveries');
  }

  /**
   * After a cycle committed `batch`: the 410s in it are recorded (their listeners off in the
   * store), so what was turned away for them goes back to the queue now.
   */
  function settleGone(batch: readonly AttemptResult[]) {
    const now = Date.now();
    for (const r of batch) if (r.disableListener !== null && gone.get(r.listenerId) === Infinity) gone.set(r.listenerId, now);
    for (const [listenerId, ids] of turnedAway) {
      if (gone.get(listenerId) === Infinity) continue;
      turnedAway.delete(listenerId);
      log.info({ listener: listenerId, deliveries: ids.length }, 'not sent: the receiver answered 410 Gone; given back to be held with the rest of the listener\'s backlog');
      release(ids, 'deliveries of a listener whose receiver answered 410 Gone');
    }
  }

  return {
    handoff: { owner, leaseMs, room: room.buffer },
    accept(deliveries) {
      const back: string[] = [];
      for (const d of deliveries) {
        // A listener this process holds enough of takes its fresh deliveries through the claim,
        // which puts them off at its receiver's pace.
        if (
          running &&
          closedCircuits.has(d.listenerId) &&
          paces.fits(d.listenerId, d.listener.max_in_flight) &&
          transports.get(d.listener.callback.transport) !== undefined
        ) {
          o.onHandedOver?.('sent');
          launch(d, null);
        } else back.push(d.id);
      }
      if (back.length) giveBack(back);
    },
    start() {
      if (running) return;
      running = true;
      room.add(maxInFlight - reserveFor(maxInFlight));
      // Deliveries other processes commit wake this one at once (polling stays the fallback).
      unsubscribe = store.subscribeDue(wake);
      renewTimer = setInterval(() => {
        renewing ??= renewLeases().finally(() => (renewing = null));
      }, LEASE_MARGIN_MS / 5);
      renewTimer.unref();
      loopDone = loop().catch((err) => log.fatal({ err }, 'dispatcher loop stopped'));
    },
    wake,
    async stop() {
      if (!running) return;
      running = false;
      room.open(false);
      unsubscribe();
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
      // What still waits for an origin slot is turned away, unsent.
      gate.close();
      await cycle(false);
      if (inFlight.size > 0) {
        const pending = new Set(results.map((r) => r.deliveryId));
        const unfinished = [...inFlight].filter((id) => !pending.has(id));
        inFlight.clear();
        leases.clear();
        if (unfinished.length) {
          await store.releaseLeases(owner, unfinished, Date.now()).catch((err) => log.error({ err }, 'could not release leases; they expire by themselves'));
          log.warn({ count: unfinished.length }, 'released deliveries still in flight after the grace period; they will be sent again');
        }
      }
      clearInterval(renewTimer);
      await renewing;
      await Promise.all(givingBack);
      ownerStopped(owner);
    },
  };
}
