/**
 * Edit distance with adjacent transpositions counted once (optimal string alignment): the
 * typos people make in field and event names are a missing, extra, wrong or swapped letter.
 */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) rows.push([i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) rows[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2][j - 2] + 1);
      rows[i][j] = d;
    }
  }
  return rows[a.length][b.length];
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
    const d = editDistance(folded, candidate.toLowerCase());
    if (d <= maxDistance && d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}
