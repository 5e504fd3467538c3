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

/**
 * Compiles a pattern into a predicate. Matching walks the words once per position of the
 * pattern (a table of pattern × type words), so it is linear in their product, with no
 * backtracking whatever the pattern.
 */
export function compileEventPattern(pattern: string): TypePredicate {
  // Consecutive `#` words mean what one does.
  const words = pattern.split('.').filter((w, i, all) => !(w === '#' && all[i - 1] === '#'));
  return (type) => {
    const parts = type.split('.');
    // reach[j]: the pattern so far can end having consumed j words of the type.
    let reach = new Uint8Array(parts.length + 1);
    reach[0] = 1;
    for (const word of words) {
      const next = new Uint8Array(parts.length + 1);
      if (word === '#') {
        let seen = 0;
        for (let j = 0; j <= parts.length; j++) {
          seen |= reach[j];
          next[j] = seen;
        }
      } else {
        for (let j = 0; j < parts.length; j++) {
          if (reach[j] && (word === '*' || word === parts[j])) next[j + 1] = 1;
        }
      }
      reach = next;
    }
    return reach[parts.length] === 1;
  };
}
