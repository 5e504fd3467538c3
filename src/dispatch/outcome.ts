import type { AttemptOutcome } from '../transports/transport.js';
import { RESPONSE_EXCERPT_BYTES, utf8Excerpt } from '../transports/http-outcome.js';
import { nextAttemptDelay } from './retry-policy.js';

export interface OutcomeDecision {
  status: 'pending' | 'succeeded' | 'failed';
  /** unix ms of the next try; null when finished or held */
  nextAttemptAt: number | null;
  /** set on 410 Gone: the listener is turned off with this reason, the delivery held */
  disableListener: string | null;
}

/** What an attempt's outcome means for its delivery: done, another try (when), or give up. */
export function decideOutcome(
  outcome: AttemptOutcome,
  attemptNumber: number,
  scheduleMs: readonly number[],
  now: number,
  random: () => number = Math.random,
): OutcomeDecision {
  if (outcome.ok) return { status: 'succeeded', nextAttemptAt: null, disableListener: null };
  if (outcome.gone) {
    return {
      status: 'pending',
      nextAttemptAt: null,
      disableListener: `the receiver answered 410 Gone at ${new Date(now).toISOString()}`,
    };
  }
  const delay = nextAttemptDelay({ scheduleMs, attemptNumber, retryAfterMs: outcome.retryAfterMs, random });
  if (delay === null) return { status: 'failed', nextAttemptAt: null, disableListener: null };
  return { status: 'pending', nextAttemptAt: now + delay, disableListener: null };
}

const ERROR_CODE = /^[A-Z][A-Z0-9_]{0,63}$/;
const MAX_MESSAGE = 1_000;

/**
 * A transport's outcome as the dispatcher records it. Built-in transports keep the contract;
 * an operator's module may not, so every field is checked and bounded here: a malformed
 * outcome is a failed attempt, never a crash or an oversized record.
 */
export function normalizeOutcome(raw: unknown, durationMs: number): AttemptOutcome {
  const o = (raw !== null && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
  const ok = o.ok === true;
  // A UTF-16 code unit is at most 3 UTF-8 bytes: short texts (every built-in's) need no encoding.
  const text = (v: unknown, max: number) =>
    typeof v !== 'string' ? null : v.length * 3 <= max ? v : utf8Excerpt(Buffer.from(v, 'utf8'), max);
  let error = typeof o.error === 'string' && ERROR_CODE.test(o.error) ? o.error : null;
  let message = text(o.message, MAX_MESSAGE);
  if (!ok && error === null) {
    error = 'TRANSPORT_ERROR';
    message ??= raw !== null && typeof raw === 'object' ? 'the transport reported a failure without a code' : 'the transport returned no outcome';
  }
  const statusCode = Number.isInteger(o.statusCode) && (o.statusCode as number) >= 0 && (o.statusCode as number) <= 999 ? (o.statusCode as number) : null;
  const retryAfterMs = typeof o.retryAfterMs === 'number' && Number.isFinite(o.retryAfterMs) && o.retryAfterMs >= 0 ? o.retryAfterMs : null;
  return {
    ok,
    statusCode,
    durationMs,
    error: ok ? null : error,
    message: ok ? null : message,
    responseExcerpt: text(o.responseExcerpt, RESPONSE_EXCERPT_BYTES),
    retryAfterMs,
    gone: o.gone === true,
  };
}
