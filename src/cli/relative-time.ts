const UNITS = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['min', 60_000],
  ['s', 1000],
] as const;

/** 2 min ago, in 4 s: the largest whole unit of how far `at` is from `now`; "now" within a second. */
export function relativeTime(at: string | number | null | undefined, now: number): string {
  if (at === null || at === undefined || at === '') return '-';
  const ms = typeof at === 'number' ? at : Date.parse(at);
  if (Number.isNaN(ms)) return String(at);
  const delta = ms - now;
  const size = Math.abs(delta);
  // Days up to two weeks; beyond that the date itself says more than "200 d ago".
  if (size >= 14 * 86_400_000) return new Date(ms).toISOString().slice(0, 10);
  for (const [unit, unitMs] of UNITS) {
    if (size >= unitMs) {
      const n = Math.floor(size / unitMs);
      return delta > 0 ? `in ${n} ${unit}` : `${n} ${unit} ago`;
    }
  }
  return 'now';
}

/** When the next try is due: relative while ahead, "due now" once the time has come. */
export function nextAttemptText(at: string | null | undefined, now: number): string {
  if (!at) return '-';
  return Date.parse(at) <= now ? 'due now' : relativeTime(at, now);
}

/** An absolute time with how long ago (or ahead) it is, for the `key: value` lines of one record. */
export function timeWithRelative(at: string | null | undefined, now: number): string {
  if (!at) return '-';
  return `${at} (${relativeTime(at, now)})`;
}
