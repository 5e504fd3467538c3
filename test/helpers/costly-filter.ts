/*
 * Among the slowest filters the limits let through (src/fanout/filter.ts), and values that make
 * them slow: what the tests of the matching budget (src/fanout/filter-budget.ts) send.
 */

// Along a random string of a and b this pattern keeps hundreds of states alive, more than the
// engine's DFA caches: among the slowest patterns the limits let through (306 RE2 instructions;
// three of them fit in one filter), about 0.2-0.7 s for each 64 Ki-character value here.
export const COSTLY = '[ab]*a[ab]{300}[cd]';
/** 64 Ki characters of a and b, the same on every run (a small LCG). */
export const LONG = (() => {
  let x = 12345;
  return Array.from({ length: 64 * 1024 }, () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) & 0x10000 ? 'a' : 'b')).join('');
})();
/** A value the pattern matches: an a, 300 of a and b, then c. */
export const SHORT = `a${'b'.repeat(300)}c`;
export const costlyFilter = { 'data.s': { $regex: COSTLY }, 'data.t': { $regex: COSTLY }, 'data.u': { $regex: COSTLY } };
