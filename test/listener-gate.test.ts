import { describe, expect, it } from 'vitest';
import {
  admitCandidates,
  bucketCapacity,
  durationText,
  HALF_OPEN_RECHECK_MS,
  initialGateState,
  RATE_WAIT_MAX_MS,
  judgeAttempts,
  listenerDisabledEvent,
  type BreakerSettings,
  type GateListener,
  type JudgedAttempt,
  type ListenerGateState,
  windowCounts,
} from '../src/dispatch/listener-gate.js';
import { createListenerPaces, UNKNOWN_PACE_RECHECK_MS } from '../src/dispatch/listener-pace.js';

const S: BreakerSettings = { failureRatio: 0.7, minAttempts: 10, windowMs: 300_000, cooldownMs: 30_000, disableAfterMs: 3600_000 };

const attempt = (over: Partial<JudgedAttempt> = {}): JudgedAttempt => ({
  listenerId: 'l1',
  project: 'p',
  deliveryId: 'd1',
  eventId: 'e1',
  eventType: 'TASK_SUCCEEDED',
  ok: false,
  finalFailure: false,
  attempts: 1,
  lastError: 'HTTP 503',
  disabledReason: null,
  ...over,
});

/** Runs attempts one at a time through the judge, as batches of one, under a clock we move. */
function judgeEach(state: ListenerGateState, outcomes: boolean[], start: number, stepMs = 1_000) {
  let s = state;
  const events: string[] = [];
  outcomes.forEach((ok, i) => {
    const j = judgeAttempts([attempt({ ok })], new Map([['l1', s]]), start + i * stepMs, S);
    s = j.changed.get('l1')!;
    events.push(...j.events.map((e) => e.type));
  });
  return { state: s, events };
}

describe('durationText', () => {
  it('says a duration in its largest whole unit, singular for one', () => {
    expect([120 * 3600_000, 3600_000, 1.5 * 3600_000, 30 * 60_000, 60_000, 1800, 1000, 500].map(durationText)).toEqual([
      '120 hours',
      '1 hour',
      '1.5 hours',
      '30 minutes',
      '1 minute',
      '1.8 seconds',
      '1 second',
      '0.5 seconds',
    ]);
  });
});

describe('circuit breaker', () => {
  it('opens at the failure ratio once there are enough attempts, not before', () => {
    const nine = judgeEach(initialGateState(0), Array(9).fill(false), 0);
    expect(nine.state.breaker).toBe('closed');
    expect(nine.events).toEqual([]);
    const ten = judgeEach(nine.state, [false], 9_000);
    expect(ten.state).toMatchObject({ breaker: 'open', probe_at: 9_000 + S.cooldownMs });
    expect(ten.events).toEqual(['relay.circuit.opened']);
  });

  it('stays closed below the ratio (6 of 10 failed)', () => {
    const r = judgeEach(initialGateState(0), [false, true, false, true, false, true, false, true, false, false], 0);
    expect(r.state.breaker).toBe('closed');
  });

  it('counts the attempts of the last window\'s length, across the end of a window', () => {
    // Six failures just before the window ends and five just after: eleven in the last 300 s.
    const before = judgeEach(initialGateState(0), Array(6).fill(false), S.windowMs - 6_000);
    expect(before.state.breaker).toBe('closed');
    const after = judgeEach(before.state, Array(5).fill(false), S.windowMs + 1_000);
    expect(after.state).toMatchObject({ breaker: 'open', window_start: S.windowMs, window_attempts: 5, window_failures: 5, prev_attempts: 6, prev_failures: 6 });
    expect(after.events).toEqual(['relay.circuit.opened']);
  });

  it('weighs the window before by the share of it still within the last window\'s length', () => {
    const s = { ...initialGateState(0), window_start: 1_000, window_attempts: 4, window_failures: 1, prev_attempts: 10, prev_failures: 8 };
    expect(windowCounts(s, 1_000, S.windowMs)).toEqual({ attempts: 14, failures: 9 });
    expect(windowCounts(s, 1_000 + S.windowMs / 4, S.windowMs)).toEqual({ attempts: 11.5, failures: 7 });
    expect(windowCounts(s, 1_000 + S.windowMs, S.windowMs)).toEqual({ attempts: 4, failures: 1 });
    // A clock a little behind another process's counts the window before whole.
    expect(windowCounts(s, 500, S.windowMs)).toEqual({ attempts: 14, failures: 9 });
  });

  it('forgets attempts older than the last window\'s length', () => {
    const old = judgeEach(initialGateState(0), Array(9).fill(false), 0);
    // Nine failures a little over a window ago count for little: one more does not open it.
    const soon = judgeEach(old.state, [false], S.windowMs + 10_000);
    expect(soon.state).toMatchObject({ breaker: 'closed', window_attempts: 1, window_failures: 1, prev_attempts: 9 });
    // Two windows on, they are gone.
    const later = judgeEach(old.state, [false], 2 * S.windowMs + 10_000);
    expect(later.state).toMatchObject({ breaker: 'closed', window_start: 2 * S.windowMs + 10_000, window_attempts: 1, prev_attempts: 0, prev_failures: 0 });
  });

  it('starts the count again when the circuit closes', () => {
    const open = judgeEach(initialGateState(0), Array(10).fill(false), S.windowMs - 20_000).state;
    expect(open.breaker).toBe('open');
    const closed = judgeAttempts([attempt({ ok: true })], new Map([['l1', open]]), S.windowMs + 40_000, S).changed.get('l1')!;
    expect(closed).toMatchObject({ breaker: 'closed', window_start: S.windowMs + 40_000, window_attempts: 0, window_failures: 0, prev_attempts: 0, prev_failures: 0 });
  });

  it('holds deliveries while open, lets one probe through after the cool-down, and closes on its success', () => {
    const open = judgeEach(initialGateState(0), Array(10).fill(false), 0).state;
    const listeners = new Map<string, GateListener>([['l1', { state: open, ratePerS: null, maxInFlight: 32 }]]);
    const cands = [
      { id: 'a', listenerId: 'l1' },
      { id: 'b', listenerId: 'l1' },
      { id: 'c', listenerId: 'other' },
    ];
    const during = admitCandidates(cands, listeners, open.probe_at! - 1, S);
    expect(during.take).toEqual(['c']);
    expect([...during.defer]).toEqual([
      ['a', open.probe_at],
      ['b', open.probe_at],
    ]);

    const after = admitCandidates(cands, listeners, open.probe_at!, S);
    expect(after.take).toEqual(['a', 'c']);
    // The others look again a second later: a successful probe lets them go then.
    expect(after.defer.get('b')).toBe(open.probe_at! + HALF_OPEN_RECHECK_MS);
    const probing = after.changed.get('l1')!;
    expect(probing).toMatchObject({ breaker: 'half_open', probe_at: open.probe_at });

    // While the probe is out nothing else goes.
    const meanwhile = admitCandidates([{ id: 'b', listenerId: 'l1' }], new Map([['l1', { state: probing, ratePerS: null, maxInFlight: 32 }]]), open.probe_at! + 5, S);
    expect(meanwhile.take).toEqual([]);

    const closed = judgeAttempts([attempt({ ok: true })], new Map([['l1', probing]]), open.probe_at! + 100, S);
    expect(closed.changed.get('l1')).toMatchObject({ breaker: 'closed', probe_at: null, window_attempts: 0, failing_since: null });
    expect(closed.events.map((e) => e.type)).toEqual(['relay.circuit.closed']);
  });

  it('opens again for another cool-down when the probe fails, without a second opened event', () => {
    const open = judgeEach(initialGateState(0), Array(10).fill(false), 0).state;
    const probing = admitCandidates([{ id: 'a', listenerId: 'l1' }], new Map([['l1', { state: open, ratePerS: null, maxInFlight: 32 }]]), open.probe_at!, S).changed.get('l1')!;
    const failed = judgeAttempts([attempt({ ok: false })], new Map([['l1', probing]]), open.probe_at! + 50, S);
    expect(failed.changed.get('l1')).toMatchObject({ breaker: 'open', probe_at: open.probe_at! + 50 + S.cooldownMs });
    expect(failed.events).toEqual([]);
  });

  it('sends another probe a cool-down later when the first never reported (its process died)', () => {
    const halfOpen: ListenerGateState = { ...initialGateState(0), breaker: 'half_open', probe_at: 1_000 };
    const l = new Map([['l1', { state: halfOpen, ratePerS: null, maxInFlight: 32 }]]);
    expect(admitCandidates([{ id: 'a', listenerId: 'l1' }], l, 1_000 + S.cooldownMs - 1, S).take).toEqual([]);
    expect(admitCandidates([{ id: 'a', listenerId: 'l1' }], l, 1_000 + S.cooldownMs, S).take).toEqual(['a']);
  });
});

describe('failing streak, final failures and 410', () => {
  it('turns a listener off once it has failed and nothing else for the configured time', () => {
    const first = judgeAttempts([attempt()], new Map(), 1_000, S);
    expect(first.changed.get('l1')!.failing_since).toBe(1_000);
    expect(first.disable.size).toBe(0);
    const later = judgeAttempts([attempt()], first.changed, 1_000 + S.disableAfterMs, S);
    expect(later.disable.get('l1')).toMatch(/every attempt failed for 1 hour \(since /);
    // The store says relay.listener.disabled once it has turned the listener off.
    expect(later.events).toEqual([]);
    // A success in between starts the streak again.
    const ok = judgeAttempts([attempt({ ok: true })], first.changed, 2_000, S);
    const after = judgeAttempts([attempt()], ok.changed, 1_000 + S.disableAfterMs, S);
    expect(after.disable.size).toBe(0);
  });

  it('says relay.delivery.failed after a last try, except about the relay\'s own events', () => {
    const j = judgeAttempts(
      [
        attempt({ deliveryId: 'd1', eventId: 'e1', finalFailure: true, attempts: 8 }),
        attempt({ deliveryId: 'd2', eventId: 'e2', eventType: 'relay.delivery.failed', finalFailure: true, attempts: 3 }),
      ],
      new Map(),
      5_000,
      S,
    );
    expect(j.events).toEqual([
      { project: 'p', type: 'relay.delivery.failed', data: { listener_id: 'l1', delivery_id: 'd1', event_id: 'e1', attempts: 8, last_error: 'HTTP 503' } },
    ]);
  });

  it('leaves a 410 to the store: no relay.listener.disabled per attempt, and no second turning off', () => {
    const gone = attempt({ disabledReason: 'the receiver answered 410 Gone' });
    const j = judgeAttempts([gone, gone], new Map([['l1', { ...initialGateState(0), failing_since: 0 }]]), S.disableAfterMs, S);
    expect(j.events).toEqual([]);
    expect(j.disable.size).toBe(0);
    expect(listenerDisabledEvent('p', 'l1', 'the receiver answered 410 Gone')).toEqual({
      project: 'p',
      type: 'relay.listener.disabled',
      data: { listener_id: 'l1', reason: 'the receiver answered 410 Gone' },
    });
  });
});

describe('rate limit', () => {
  it('takes what the bucket holds and spreads the rest at the rate', () => {
    const state = initialGateState(0);
    // 20 a second: a bucket of 2 tokens (a tenth of a second's worth), one token every 50 ms.
    const listeners = new Map<string, GateListener>([['l1', { state, ratePerS: 20, maxInFlight: 32 }]]);
    const cands = ['a', 'b', 'c', 'd'].map((id) => ({ id, listenerId: 'l1' }));
    const first = admitCandidates(cands, listeners, 10_000, S);
    expect(first.take).toEqual(['a', 'b']);
    expect([...first.defer]).toEqual([
      ['c', 10_050],
      ['d', 10_100],
    ]);
    const s = first.changed.get('l1')!;
    expect(s).toMatchObject({ tokens: 0, tokens_at: 10_000 });
    // 50 ms later one token has come back.
    const next = admitCandidates([{ id: 'c', listenerId: 'l1' }, { id: 'd', listenerId: 'l1' }], new Map([['l1', { state: s, ratePerS: 20, maxInFlight: 32 }]]), 10_050, S);
    expect(next.take).toEqual(['c']);
    expect(next.defer.get('d')).toBe(10_100);
  });

  it('holds a tenth of a second of tokens however long the listener was quiet, and at least one', () => {
    const quiet = { ...initialGateState(0), tokens: 0, tokens_at: 0 };
    const many = Array.from({ length: 20 }, (_, i) => ({ id: `c${i}`, listenerId: 'l1' }));
    const fast = admitCandidates(many, new Map([['l1', { state: quiet, ratePerS: 50, maxInFlight: 32 }]]), 3600_000, S);
    expect(fast.take).toHaveLength(5);
    const slow = admitCandidates(many, new Map([['l1', { state: quiet, ratePerS: 0.5, maxInFlight: 32 }]]), 3600_000, S);
    expect(slow.take).toEqual(['c0']);
    expect(bucketCapacity(50)).toBe(5);
    expect(bucketCapacity(0.5)).toBe(1);
  });

  it('puts a delivery off an hour at most, however low the rate: it is looked at again then', () => {
    const empty = { ...initialGateState(0), tokens: 0, tokens_at: 10_000 };
    const cands = ['a', 'b', 'c', 'd'].map((id) => ({ id, listenerId: 'l1' }));
    // The lowest rate a listener takes: one token in 1,000 s; the fourth is looked at in an hour.
    const lowest = admitCandidates(cands, new Map([['l1', { state: empty, ratePerS: 0.001, maxInFlight: 32 }]]), 10_000, S);
    expect([...lowest.defer.values()]).toEqual([1_000_000, 2_000_000, 3_000_000, RATE_WAIT_MAX_MS].map((ms) => 10_000 + ms));
    // A rate far below it (a listener stored so): times stay dates, not Infinity or 1e303 ms.
    const tiny = admitCandidates(cands, new Map([['l1', { state: empty, ratePerS: 1e-300, maxInFlight: 32 }]]), 10_000, S);
    expect([...tiny.defer.values()]).toEqual(cands.map(() => 10_000 + RATE_WAIT_MAX_MS));
    expect(tiny.take).toEqual([]);
  });
});

describe("a listener's pace (what one process holds of it)", () => {
  const cands = (listenerId: string, n: number) => Array.from({ length: n }, (_, i) => ({ id: `${listenerId}-${i}`, listenerId }));
  const closed = (maxInFlight: number): GateListener => ({ state: initialGateState(0), ratePerS: null, maxInFlight });

  it('takes two rounds of max_in_flight of a listener whose receiver has not answered yet, and looks at the rest again shortly', () => {
    const paces = createListenerPaces();
    // An attempt that never reached the receiver says nothing of its pace.
    paces.held('l1');
    paces.done('l1', null);
    const got = admitCandidates(cands('l1', 10), new Map([['l1', closed(4)]]), 10_000, S, paces);
    expect(got.take).toEqual(['l1-0', 'l1-1', 'l1-2', 'l1-3', 'l1-4', 'l1-5', 'l1-6', 'l1-7']);
    expect([...got.defer]).toEqual([
      ['l1-8', 10_000 + UNKNOWN_PACE_RECHECK_MS],
      ['l1-9', 10_000 + UNKNOWN_PACE_RECHECK_MS],
    ]);
    expect([got.pacedCount, got.paced.get('l1')]).toEqual([2, 10_000 + UNKNOWN_PACE_RECHECK_MS]);
  });

  it('puts a surplus off an hour at most', () => {
    const paces = createListenerPaces();
    paces.held('l1');
    paces.done('l1', 60_000);
    paces.deferred('l1', 10_000 + RATE_WAIT_MAX_MS - 20_000);
    for (let i = 0; i < 2; i++) paces.held('l1');
    // A minute an answer, one at a time: 1 s of it is less than the two rounds (2), which it holds.
    const got = admitCandidates(cands('l1', 3), new Map([['l1', closed(1)]]), 10_000, S, paces);
    expect([...got.defer.values()]).toEqual([10_000 + RATE_WAIT_MAX_MS, 10_000 + RATE_WAIT_MAX_MS, 10_000 + RATE_WAIT_MAX_MS]);
  });

  it("holds a slow receiver's share to what it answers in a second, spreads the rest at its pace, and leaves other listeners alone", () => {
    const paces = createListenerPaces();
    // The slow receiver answers in a second, four at a time: this process holds eight.
    for (let i = 0; i < 8; i++) paces.held('slow');
    paces.done('slow', 1_000);
    paces.held('slow');
    // A fast one answers in 4 ms: 32 at a time, 8,000 in a second.
    paces.held('fast');
    paces.done('fast', 4);
    const listeners = new Map([
      ['slow', closed(4)],
      ['fast', closed(32)],
    ]);
    const mixed = [...cands('slow', 3), ...cands('fast', 500)];
    const got = admitCandidates(mixed, listeners, 10_000, S, paces);
    expect(got.take).toHaveLength(500);
    expect(got.take.every((id) => id.startsWith('fast'))).toBe(true);
    // One delivery's worth of its pace apart: 1000 ms / 4.
    expect([...got.defer]).toEqual([
      ['slow-0', 10_250],
      ['slow-1', 10_500],
      ['slow-2', 10_750],
    ]);
    // The next claim goes on after what the last one put off.
    paces.deferred('slow', got.paced.get('slow')!);
    const next = admitCandidates(cands('slow', 1), listeners, 10_100, S, paces);
    expect([...next.defer]).toEqual([['slow-0', 11_000]]);
    // As the receiver answers, room comes back.
    paces.done('slow', 1_000);
    const after = admitCandidates(cands('slow', 2), listeners, 10_200, S, paces);
    expect(after.take).toEqual(['slow-0']);
    expect(paces.fits('slow', 4)).toBe(true);
    paces.held('slow');
    expect(paces.fits('slow', 4)).toBe(false);
    expect(paces.fits('fast', 32)).toBe(true);
  });

  it('does not put off a probe, nor spend a token on what it puts off', () => {
    const paces = createListenerPaces();
    for (let i = 0; i < 2; i++) paces.held('l1');
    const open = { ...initialGateState(0), breaker: 'open' as const, probe_at: 5_000 };
    const probe = admitCandidates(cands('l1', 2), new Map([['l1', { state: open, ratePerS: null, maxInFlight: 1 }]]), 5_000, S, paces);
    expect(probe.take).toEqual(['l1-0']);
    const limited: GateListener = { state: { ...initialGateState(0), tokens: 1, tokens_at: 5_000 }, ratePerS: 10, maxInFlight: 1 };
    const full = admitCandidates(cands('l1', 1), new Map([['l1', limited]]), 5_000, S, paces);
    expect(full.take).toEqual([]);
    expect(full.pacedCount).toBe(1);
    expect(full.changed.size).toBe(0);
  });
});
