import type { AttemptOutcome } from '../transports/transport.js';
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
