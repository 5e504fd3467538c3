import type { NetworkGuard } from '../net/network-guard.js';
import { parseHttpUrl } from './http-outcome.js';

/** Where a callback URL sends to, in the two parts undici's dispatch takes. */
export interface Target {
  readonly origin: string;
  readonly path: string;
}

interface Verdict {
  readonly refusal: unknown;
  readonly until: number;
}

/** URLs and origins remembered; past this the oldest entry goes (GET and DELETE URLs differ per delivery). */
const MAX_ENTRIES = 1024;
/**
 * How long a guard verdict on an origin holds. It can change: the relay learns its own port
 * once it listens, after the dispatcher has started. A new socket is checked by the guard's
 * connector whatever this says; the pre-check catches up on pooled ones within this time.
 */
const VERDICT_TTL_MS = 1000;

function remember<V>(map: Map<string, V>, key: string, value: V): void {
  if (map.size >= MAX_ENTRIES && !map.has(key)) map.delete(map.keys().next().value!);
  map.set(key, value);
}

/**
 * Callback URLs parsed once, and the network guard's verdict on literal addresses
 * (`assertLiteralHostAllowed`) held per origin for a moment: both are the same for every
 * delivery to a listener, and they were a measurable share of each attempt.
 */
export function createTargets(guard: NetworkGuard) {
  const byUrl = new Map<string, Target>();
  const verdicts = new Map<string, Verdict>();

  function parse(text: string): Target {
    let target = byUrl.get(text);
    if (target === undefined) {
      const url = parseHttpUrl(text);
      target = { origin: url.origin, path: url.pathname + url.search };
      remember(byUrl, text, target);
    }
    return target;
  }

  function assertAllowed(origin: string, now: number): void {
    let verdict = verdicts.get(origin);
    if (verdict === undefined || verdict.until <= now) {
      let refusal: unknown = null;
      try {
        guard.assertLiteralHostAllowed(origin);
      } catch (err) {
        refusal = err;
      }
      verdict = { refusal, until: now + VERDICT_TTL_MS };
      remember(verdicts, origin, verdict);
    }
    if (verdict.refusal !== null) throw verdict.refusal;
  }

  return {
    /** The URL's target, once the guard allows its host; throws a BAD_URL TransportError or the guard's refusal. */
    resolve(text: string, now: number): Target {
      const target = parse(text);
      assertAllowed(target.origin, now);
      return target;
    },
  };
}
