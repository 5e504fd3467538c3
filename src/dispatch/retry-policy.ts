/** Delays between tries: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (8 attempts, about 27 h). */
export const DEFAULT_RETRY_SCHEDULE_MS: number[] = [5000, 300000, 1800000, 7200000, 18000000, 36000000, 36000000];

export const RETRY_JITTER = 0.2;

const RETRY_AFTER_STATUSES: ReadonlySet<number> = new Set([429, 502, 503, 504]);

/** Whether a response with this status may tell the relay when to try again (`Retry-After`). */
export function isRetryAfterStatus(status: number): boolean {
  return RETRY_AFTER_STATUSES.has(status);
}

export interface NextAttemptInput {
  /** Delays between tries, in ms; n delays allow n + 1 attempts. */
  scheduleMs: readonly number[];
  /** 1-based number of the attempt that just failed. */
  attemptNumber: number;
  /** The receiver's `Retry-After` in ms, when its status allows one (see `isRetryAfterStatus`). */
  retryAfterMs?: number | null;
  /** Uniform in [0, 1); `Math.random` unless a test fixes it. */
  random?: () => number;
}

/**
 * How long to wait before the next try, in whole ms, or null when the schedule is used up.
 * The scheduled delay gets ±20% jitter; a `Retry-After` is then honoured but clamped to
 * [jittered delay, 2 × jittered delay], so a receiver can slow the relay down, never speed it
 * up past the schedule, nor park a delivery for longer than twice it.
 */
export function nextAttemptDelay({ scheduleMs, attemptNumber, retryAfterMs, random = Math.random }: NextAttemptInput): number | null {
  if (!Number.isInteger(attemptNumber) || attemptNumber < 1) {
    throw new RangeError(`attemptNumber must be an integer >= 1, got ${attemptNumber}`);
  }
  if (attemptNumber > scheduleMs.length) return null;

  const scheduled = Math.max(0, scheduleMs[attemptNumber - 1]);
  const r = Math.min(1, Math.max(0, random()));
  const jittered = Math.round(scheduled * (1 + RETRY_JITTER * (2 * r - 1)));
  if (retryAfterMs == null || !Number.isFinite(retryAfterMs)) return jittered;
  return Math.round(Math.min(2 * jittered, Math.max(jittered, retryAfterMs)));
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAY = '(?:mon|tue|wed|thu|fri|sat|sun)';
const LONG_DAY = '(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)';
const MONTH = '(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)';
const TIME = '(\\d{2}):(\\d{2}):(\\d{2})';
// The three HTTP-date forms of RFC 9110 §5.6.7; the weekday is not checked against the date.
const IMF_FIXDATE = new RegExp(`^${DAY}, (\\d{2}) ${MONTH} (\\d{4}) ${TIME} GMT$`, 'i');
const RFC850_DATE = new RegExp(`^${LONG_DAY}, (\\d{2})-${MONTH}-(\\d{2}) ${TIME} GMT$`, 'i');
const ASCTIME_DATE = new RegExp(`^${DAY} ${MONTH} ([ \\d]\\d) ${TIME} (\\d{4})$`, 'i');
const DELTA_SECONDS = /^[+-]?\d+(?:\.\d+)?$/;

function utc(year: number, month: string, day: number, h: number, m: number, s: number): number | null {
  const monthIndex = MONTHS.indexOf(month.toLowerCase());
  if (h > 23 || m > 59 || s > 60) return null;
  const t = Date.UTC(year, monthIndex, day, h, m, Math.min(s, 59));
  // Date.UTC rolls 31 Feb over into March; such a date is malformed, not a day in March.
  if (new Date(t).getUTCDate() !== day) return null;
  return t;
}

/** An HTTP-date as epoch ms, or null when `value` is not one. */
export function parseHttpDate(value: string, now: number): number | null {
  let m = IMF_FIXDATE.exec(value);
  if (m) return utc(Number(m[3]), m[2], Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]));
  m = ASCTIME_DATE.exec(value);
  if (m) return utc(Number(m[6]), m[1], Number(m[2].trim()), Number(m[3]), Number(m[4]), Number(m[5]));
  m = RFC850_DATE.exec(value);
  if (m) {
    // Two-digit year: RFC 9110 reads one more than 50 years ahead as the most recent past year.
    let year = 2000 + Number(m[3]);
    while (year > new Date(now).getUTCFullYear() + 50) year -= 100;
    return utc(year, m[2], Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]));
  }
  return null;
}

/**
 * A `Retry-After` header value (delta-seconds or an HTTP-date) as a wait in ms from `now`;
 * null when absent or malformed, 0 for a date in the past or a negative number.
 */
export function parseRetryAfter(value: string | null | undefined, now: number): number | null {
  if (value == null) return null;
  const v = value.trim();
  if (v === '') return null;
  if (DELTA_SECONDS.test(v)) {
    const ms = Math.ceil(Number(v) * 1000);
    return Number.isFinite(ms) ? Math.max(0, ms) : null;
  }
  const at = parseHttpDate(v, now);
  return at === null ? null : Math.max(0, at - now);
}
