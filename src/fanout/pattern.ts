import { RE2JS } from 're2js';

/*
 * `$regex` patterns run on re2js, a JavaScript port of RE2: matching takes time linear in the
 * string whatever the pattern, because the engine never backtracks. The price is RE2 syntax:
 * no backreferences and no lookaround, which only a backtracking engine can run.
 */

// What RE2 refuses because only a backtracking engine can run it, recognised in its message
// (which quotes the offending piece) and, where the message is too short to tell, the pattern.
const BACKTRACKING_ONLY: ReadonlyArray<readonly [(detail: string, source: string) => boolean, string]> = [
  [(d) => /`\\[1-9]/.test(d), 'backreferences (\\1)'],
  [(d, s) => /`\\k/.test(d) || (/`\(\?P`/.test(d) && s.includes('(?P=')), 'named backreferences (\\k<name>, (?P=name))'],
  [(d) => /`\(\?[=!]/.test(d), 'lookahead ((?=…), (?!…))'],
  [(d) => /`\(\?<[=!]/.test(d), 'lookbehind ((?<=…), (?<!…))'],
  [(d) => /`\(\?>/.test(d), 'atomic groups ((?>…))'],
  [(d) => /repetition operator: `[^`]*\+`/.test(d), 'possessive quantifiers (a*+)'],
];
// Spellings of JavaScript or Python that RE2 writes differently.
const RE2_SPELLINGS: ReadonlyArray<readonly [RegExp, string]> = [
  [/`\\u/, 'write a code point as \\x{hhhh}, not \\uhhhh'],
  [/`\\Z/, 'write \\z for the end of the text'],
  [/`\\c/, 'write a control character as \\x{hh}, not \\cX'],
];

/** A `$regex` pattern compiled for the linear-time engine, or why it cannot be. */
export function compilePattern(source: string): { ok: true; pattern: RE2JS } | { ok: false; reason: string } {
  try {
    return { ok: true, pattern: RE2JS.compile(source) };
  } catch (err) {
    const detail = (err as Error).message.replace(/^error parsing regexp: /, '');
    const feature = BACKTRACKING_ONLY.find(([recognise]) => recognise(detail, source));
    if (feature) {
      return {
        ok: false,
        reason: `${feature[1]} cannot be used: $regex runs on RE2, which matches in linear time because it never backtracks (${detail})`,
      };
    }
    const spelling = RE2_SPELLINGS.find(([sign]) => sign.test(detail));
    return { ok: false, reason: `not a valid RE2 pattern: ${detail}${spelling ? `; ${spelling[1]}` : ''}` };
  }
}
