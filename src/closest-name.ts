/**
 * Edit distance with adjacent transpositions counted once (optimal string alignment): the
 * typos people make in field and event names are a missing, extra, wrong or swapped letter.
 * Past `limit` it answers `limit + 1` as soon as that is certain (a row of the table all past
 * it), so that comparing long names that are far apart costs a few rows, not the whole table.
 */
export function editDistance(a: string, b: string, limit = Infinity): number {
  if (a === b) return 0;
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  // The table's rows i - 2 and i - 1 (a transposition reaches two back), then row i.
  let before: number[] = [];
  let last = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = new Array<number>(b.length + 1);
    row[0] = i;
    let least = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(last[j] + 1, row[j - 1] + 1, last[j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, before[j - 2] + 1);
      row[j] = d;
      if (d < least) least = d;
    }
    // No cell of a row is below the least of the row before it: the distance is past the limit too.
    if (least > limit) return limit + 1;
    before = last;
    last = row;
  }
  return Math.min(last[b.length], limit + 1);
}

/** How far a word may be from a name to still look like a typo of it: short words must be closer. */
export function typoDistance(word: string): number {
  return word.length <= 3 ? 1 : word.length <= 8 ? 2 : 3;
}

/**
 * The candidate `word` most likely meant, compared without case, or null when none is within
 * `maxDistance` (or `word` is one of them exactly). Ties go to the earlier candidate.
 */
export function closestName(word: string, candidates: Iterable<string>, maxDistance = typoDistance(word)): string | null {
  const folded = word.toLowerCase();
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    if (candidate === word) return null;
    // Very different lengths cannot be close: skip the table for them.
    if (Math.abs(candidate.length - word.length) > maxDistance) continue;
    const d = editDistance(folded, candidate.toLowerCase(), maxDistance);
    if (d <= maxDistance && d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}
