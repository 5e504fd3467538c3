/*
 * AMQP-style patterns over dotted event types, as listeners name them in `events`
 * (`esi_leap.lease.*.end`, `action_plan.cancel.#`): `*` stands for exactly one word, `#` for
 * zero or more. Only a whole word is a wildcard: `WORKFLOW_*` is an exact name.
 */

export type TypePredicate = (type: string) => boolean;

/** Whether an `events` entry is a pattern rather than an exact name or an alias. */
export function isEventPattern(entry: string): boolean {
  return entry.split('.').some((w) => w === '*' || w === '#');
}

/** Why a pattern is malformed (an empty word), or null. */
export function eventPatternProblem(entry: string): string | null {
  if (!isEventPattern(entry)) return null;
  return entry.split('.').some((w) => w === '') ? `"${entry}" has an empty word; write words between the dots` : null;
}

/** A compiled pattern over a type's words: the type is split at its dots once for all of a listener's patterns. */
export type WordsPredicate = (words: readonly string[]) => boolean;

/** Whether `part` (pattern words without `#`) matches `words` from `at` on. */
function segmentAt(part: readonly string[], words: readonly string[], at: number): boolean {
  for (let i = 0; i < part.length; i++) if (part[i] !== '*' && part[i] !== words[at + i]) return false;
  return true;
}

/**
 * Compiles a pattern into a predicate over a type's words. Without `#` a type matches word for
 * word. With it, the pattern is its segments between the `#`s: the first must match at the
 * start, the last at the end, and each one between at its leftmost place after the one before
 * (a later place never leaves more room for the rest), so no path is ever tried twice: the
 * work is at most the type's words times a segment's, and usually the type's words alone.
 */
export function compileWordsPattern(pattern: string): WordsPredicate {
  const words = pattern.split('.');
  if (!words.includes('#')) return (type) => type.length === words.length && segmentAt(words, type, 0);
  const segments: string[][] = [[]];
  for (const w of words) {
    if (w === '#') segments.push([]);
    else segments[segments.length - 1].push(w);
  }
  const first = segments[0];
  const last = segments[segments.length - 1];
  const middle = segments.slice(1, -1).filter((s) => s.length > 0);
  const least = segments.reduce((n, s) => n + s.length, 0);
  return (type) => {
    if (type.length < least || !segmentAt(first, type, 0)) return false;
    const end = type.length - last.length;
    if (!segmentAt(last, type, end)) return false;
    let at = first.length;
    for (const part of middle) {
      while (at + part.length <= end && !segmentAt(part, type, at)) at++;
      if (at + part.length > end) return false;
      at += part.length;
    }
    return true;
  };
}

/** Compiles a pattern into a predicate over a whole type. */
export function compileEventPattern(pattern: string): TypePredicate {
  const matches = compileWordsPattern(pattern);
  return (type) => matches(type.split('.'));
}
