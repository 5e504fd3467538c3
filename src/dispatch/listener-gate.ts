/*
 * The listener's own step of the admission gate (DESIGN.md, "Dispatching: one admission gate"
 * and "Listener delivery options"): its rate limit (a token bucket), its circuit breaker and,
 * after a last try, what the relay says about it in its own events. Pure functions over a state
 * the store keeps per listener in the database, read and written in the transaction that
 * claims or records, so every process shares one breaker and one bucket per listener.
 * No I/O and no clock here: `now` is given.
 */

import type { ListenerCapacity, ListenerPaces } from './listener-pace.js';

export type BreakerPosition = 'closed' | 'open' | 'half_open';

/** One listener's gate state, as the store keeps it. */
export interface ListenerGateState {
  breaker: BreakerPosition;
  /** open: when the probe may go; half_open: when the probe went (another may go a cool-down later). */
  probe_at: number | null;
  /**
   * The breaker's window (RELAY_BREAKER_WINDOW_S) as a sliding window counter: the attempts and
   * failures counted since `window_start`, and those of the window before it, which count in the
   * share of it still inside the last window's length (see windowCounts). A window that has
   * passed becomes the window before; all four start again on closing.
   */
  window_start: number;
  window_attempts: number;
  window_failures: number;
  prev_attempts: number;
  prev_failures: number;
  /** The first failure since the last success; null while the listener succeeds. */
  failing_since: number | null;
  /** Rate limit bucket: tokens left at `tokens_at`; null for a listener without a rate limit. */
  tokens: number | null;
  tokens_at: number | null;
}

export interface BreakerSettings {
  /** RELAY_BREAKER_FAILURE_RATIO */
  failureRatio: number;
  /** RELAY_BREAKER_MIN_ATTEMPTS */
  minAttempts: number;
  /** RELAY_BREAKER_WINDOW_S, in ms */
  windowMs: number;
  /** RELAY_BREAKER_COOLDOWN_S, in ms */
  cooldownMs: number;
  /** RELAY_DISABLE_AFTER_HOURS, in ms */
  disableAfterMs: number;
}

/** How soon a delivery held back by a half-open breaker is looked at again. */
export const HALF_OPEN_RECHECK_MS = 1_000;

export const DEFAULT_BREAKER: BreakerSettings = {
  failureRatio: 0.7,
  minAttempts: 10,
  windowMs: 300_000,
  cooldownMs: 30_000,
  disableAfterMs: 120 * 3600_000,
};

export function initialGateState(now: number): ListenerGateState {
  return { breaker: 'closed', probe_at: null, ...freshWindow(now), failing_since: null, tokens: null, tokens_at: null };
}

const freshWindow = (now: number) => ({ window_start: now, window_attempts: 0, window_failures: 0, prev_attempts: 0, prev_failures: 0 });

/** Moves `s`'s window on to `now`: a window that has passed becomes the window before (forgotten once that has passed too). */
function slideWindow(s: ListenerGateState, now: number, windowMs: number): void {
  const elapsed = now - s.window_start;
  if (elapsed < windowMs) return;
  if (elapsed < 2 * windowMs) {
    Object.assign(s, { window_start: s.window_start + windowMs, prev_attempts: s.window_attempts, prev_failures: s.window_failures, window_attempts: 0, window_failures: 0 });
  } else {
    Object.assign(s, freshWindow(now));
  }
}

/**
 * About how many attempts and failures fell in the last `windowMs` before `now`: the current
 * window's, and the window before's weighed by how much of it that span still covers (the
 * attempts taken as spread evenly over it), so the count neither drops to nothing when a window
 * ends nor keeps attempts older than the span for long.
 */
export function windowCounts(s: ListenerGateState, now: number, windowMs: number): { attempts: number; failures: number } {
  const weight = Math.min(1, Math.max(0, 1 - (now - s.window_start) / windowMs));
  return { attempts: s.window_attempts + s.prev_attempts * weight, failures: s.window_failures + s.prev_failures * weight };
}

/** The most tokens a rate limit's bucket holds: a tenth of a second's worth, at least one. */
export const bucketCapacity = (ratePerS: number) => Math.max(1, ratePerS / 10);
/**
 * The longest a rate limit puts a delivery off: it is looked at again then, and the bucket
 * decides once more. However low a listener's rate, its deliveries' times stay within what a
 * date and the database's integers hold.
 */
export const RATE_WAIT_MAX_MS = 3_600_000;

/** A due delivery the claim may take, and what its listener's gate needs to know. */
export interface GateCandidate {
  id: string;
  listenerId: string;
}

export interface GateListener {
  state: ListenerGateState;
  /** The listener's `rate_limit_per_s`, or null. */
  ratePerS: number | null;
  /** The listener's `max_in_flight`. */
  maxInFlight: number;
}

export interface GateAdmission {
  /** Candidates to claim now. */
  take: string[];
  /** Candidates held back, with when they may be tried (their next_attempt_at moves there). */
  defer: Map<string, number>;
  /** States that changed, to write back in the same transaction. */
  changed: Map<string, ListenerGateState>;
}

/** The admission, and what of it this process's pace put off (for the dispatcher, not the store). */
export interface PacedAdmission extends GateAdmission {
  /** Listeners whose surplus this process put off (listener-pace.ts), to when at the latest. */
  paced: Map<string, number>;
  /** How many candidates that put off. */
  pacedCount: number;
}

/**
 * Which candidates go now. Candidates come oldest first. An open breaker holds its listener's
 * deliveries until the probe time; then exactly one goes (the probe) and the breaker is half
 * open until its outcome is recorded; a listener takes no more than this process can start
 * soon (`paces`), and the rest are put off at the pace its receiver answers; a rate-limited
 * listener takes what its bucket holds and the rest are spread over the next seconds at the
 * rate, so they do not come back all at once.
 */
export function admitCandidates(
  candidates: readonly GateCandidate[],
  listeners: ReadonlyMap<string, GateListener>,
  now: number,
  settings: BreakerSettings,
  paces?: Pick<ListenerPaces, 'capacity'>,
): PacedAdmission {
  const take: string[] = [];
  const defer = new Map<string, number>();
  const changed = new Map<string, ListenerGateState>();
  const paced = new Map<string, number>();
  let pacedCount = 0;
  const states = new Map<string, ListenerGateState>();
  const held = new Map<string, number>();
  const capacities = new Map<string, ListenerCapacity & { surplus: number }>();
  const stateOf = (id: string): ListenerGateState | null => {
    let s = states.get(id);
    if (!s) {
      const l = listeners.get(id);
      if (!l) return null;
      s = { ...l.state };
      // A bucket refills at the rate, up to a tenth of a second's worth (at least one token):
      // no second sees much more than the rate, even right after a quiet spell.
      if (l.ratePerS !== null) {
        const capacity = bucketCapacity(l.ratePerS);
        const elapsed = s.tokens_at === null ? Infinity : Math.max(0, now - s.tokens_at);
        s.tokens = Math.min(capacity, (s.tokens ?? capacity) + (elapsed * l.ratePerS) / 1000);
        s.tokens_at = now;
      }
      states.set(id, s);
    }
    return s;
  };

  // Listeners whose probe this claim already took: their other candidates wait for its outcome.
  const probing = new Set<string>();
  for (const c of candidates) {
    const s = stateOf(c.listenerId);
    if (s === null) {
      take.push(c.id);
      continue;
    }
    if (s.breaker !== 'closed') {
      // Open: nothing goes before the probe time. Half open: a probe is out; if its outcome
      // never came (its process died), another goes a cool-down after it.
      const probeAt = s.breaker === 'open' ? (s.probe_at ?? now) : (s.probe_at ?? now) + settings.cooldownMs;
      if (probing.has(c.listenerId) || now < probeAt) {
        // While a probe is out, the others look again shortly: its success lets them go at once.
        defer.set(c.id, s.breaker === 'open' && !probing.has(c.listenerId) ? probeAt : now + Math.min(HALF_OPEN_RECHECK_MS, settings.cooldownMs));
        continue;
      }
    }
    const listener = listeners.get(c.listenerId)!;
    if (paces && s.breaker === 'closed') {
      let cap = capacities.get(c.listenerId);
      if (!cap) capacities.set(c.listenerId, (cap = { ...paces.capacity(c.listenerId, listener.maxInFlight, now), surplus: 0 }));
      if (cap.room <= 0) {
        // The n-th surplus delivery waits for n more attempts' worth of its receiver's pace.
        const at = Math.min(cap.after + Math.ceil(++cap.surplus * cap.spacingMs), now + RATE_WAIT_MAX_MS);
        defer.set(c.id, at);
        paced.set(c.listenerId, at);
        pacedCount++;
        continue;
      }
    }
    const rate = listener.ratePerS;
    if (rate !== null) {
      changed.set(c.listenerId, s);
      if (s.tokens! < 1) {
        // The n-th held delivery waits until n more tokens have come.
        const n = (held.get(c.listenerId) ?? 0) + 1;
        held.set(c.listenerId, n);
        defer.set(c.id, now + Math.min(Math.ceil(((n - s.tokens!) * 1000) / rate), RATE_WAIT_MAX_MS));
        continue;
      }
      s.tokens! -= 1;
    }
    if (s.breaker !== 'closed') {
      // This one is the probe.
      s.breaker = 'half_open';
      s.probe_at = now;
      probing.add(c.listenerId);
      changed.set(c.listenerId, s);
    }
    take.push(c.id);
    const cap = capacities.get(c.listenerId);
    if (cap) cap.room--;
  }
  return { take, defer, changed, paced, pacedCount };
}

/** One recorded attempt, as the gate judges it. */
export interface JudgedAttempt {
  listenerId: string;
  project: string;
  deliveryId: string;
  eventId: string;
  eventType: string;
  ok: boolean;
  /** The delivery failed for good with this attempt. */
  finalFailure: boolean;
  attempts: number;
  lastError: string | null;
  /** A 410 turned the listener off with this reason. */
  disabledReason: string | null;
}

/** An event the relay emits about one of its own listeners (NOTIFICATION, workbook null). */
export interface RelayEvent {
  project: string;
  type: 'relay.listener.disabled' | 'relay.delivery.failed' | 'relay.circuit.opened' | 'relay.circuit.closed';
  data: { listener_id: string; delivery_id?: string; event_id?: string; attempts?: number; last_error?: string | null; reason?: string };
}

export interface Judgement {
  changed: Map<string, ListenerGateState>;
  /** Listeners to turn off for failing only for RELAY_DISABLE_AFTER_HOURS, with the reason. */
  disable: Map<string, string>;
  /** Breakers opened and closed, deliveries failed for good (listeners turned off: listenerDisabledEvent). */
  events: RelayEvent[];
}

/** relay.* events are never the subject of other relay events, so no loop can start. */
export const isRelayEvent = (type: string) => type.startsWith('relay.');

/** `120 hours`, `1 hour`, `30 minutes`, `1.8 seconds`: the largest unit that is at least 1, to two decimals. */
export function durationText(ms: number): string {
  const [size, unit] = ms >= 3600_000 ? [3600_000, 'hour'] : ms >= 60_000 ? [60_000, 'minute'] : [1000, 'second'];
  const n = Math.round((ms / size) * 100) / 100;
  return `${n} ${unit}${n === 1 ? '' : 's'}`;
}

/** Whether the last window's attempts open a closed breaker: enough of them, and failures at the ratio. */
const tripped = ({ attempts, failures }: { attempts: number; failures: number }, settings: BreakerSettings) =>
  attempts >= settings.minAttempts && failures / attempts >= settings.failureRatio;

/**
 * What the recorded attempts of a batch change: each listener's breaker (opens on a failure
 * ratio over the last window with enough attempts; a success closes it; a failed probe opens it
 * again for another cool-down), its failing streak (the listener is turned off once it has
 * failed and nothing but failed for the configured time), and the relay's events about them
 * (but for the turning off, which the store announces: see listenerDisabledEvent).
 * `states` holds the current state of every listener in `attempts` (initialGateState if none).
 */
export function judgeAttempts(
  attempts: readonly JudgedAttempt[],
  states: ReadonlyMap<string, ListenerGateState>,
  now: number,
  settings: BreakerSettings,
): Judgement {
  const changed = new Map<string, ListenerGateState>();
  const disable = new Map<string, string>();
  const events: RelayEvent[] = [];
  for (const a of attempts) {
    const before = changed.get(a.listenerId) ?? states.get(a.listenerId) ?? initialGateState(now);
    const s = { ...before };
    slideWindow(s, now, settings.windowMs);
    s.window_attempts++;
    if (a.ok) {
      s.failing_since = null;
      if (s.breaker !== 'closed') {
        Object.assign(s, { breaker: 'closed', probe_at: null }, freshWindow(now));
        events.push({ project: a.project, type: 'relay.circuit.closed', data: { listener_id: a.listenerId } });
      }
    } else {
      s.window_failures++;
      s.failing_since ??= now;
      if (s.breaker === 'half_open' || (s.breaker === 'open' && s.probe_at !== null && now >= s.probe_at)) {
        // The probe failed: another cool-down.
        s.breaker = 'open';
        s.probe_at = now + settings.cooldownMs;
      } else if (s.breaker === 'closed' && tripped(windowCounts(s, now, settings.windowMs), settings)) {
        s.breaker = 'open';
        s.probe_at = now + settings.cooldownMs;
        events.push({ project: a.project, type: 'relay.circuit.opened', data: { listener_id: a.listenerId, last_error: a.lastError } });
      }
      if (a.disabledReason === null && now - s.failing_since >= settings.disableAfterMs && !disable.has(a.listenerId)) {
        disable.set(a.listenerId, `every attempt failed for ${durationText(settings.disableAfterMs)} (since ${new Date(s.failing_since).toISOString()})`);
      }
    }
    changed.set(a.listenerId, s);
    if (a.finalFailure && !isRelayEvent(a.eventType)) {
      events.push({
        project: a.project,
        type: 'relay.delivery.failed',
        data: { listener_id: a.listenerId, delivery_id: a.deliveryId, event_id: a.eventId, attempts: a.attempts, last_error: a.lastError },
      });
    }
  }
  return { changed, disable, events };
}

/**
 * relay.listener.disabled, said once for a listener that a batch really turned off (by a 410
 * or by `Judgement.disable`): only the store knows which were still on, so it asks for this
 * after turning them off, and says nothing of one that was off already.
 */
export function listenerDisabledEvent(project: string, listenerId: string, reason: string): RelayEvent {
  return { project, type: 'relay.listener.disabled', data: { listener_id: listenerId, reason } };
}
