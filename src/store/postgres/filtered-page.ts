import { statement, type Statement } from './database.js';

/**
 * A keyset page query whose WHERE clause holds only the filters actually given, so the planner
 * can pick the index that serves them (an `($x IS NULL OR col = $x)` clause defeats that).
 * `build` gets each given filter's clause with its parameter already numbered; one named
 * statement per combination of filters, made on first use.
 */
export function filteredPage(
  build: (clauses: string[], limitParam: string) => string,
  filters: Record<string, (param: string) => string>,
) {
  const statements = new Map<string, Statement>();
  /** `fixed` are the leading parameters ($1…) every variant has; answers the statement and its values. */
  return (fixed: unknown[], given: Record<string, unknown>, limit: number): { statement: Statement; values: unknown[] } => {
    const names = Object.keys(filters).filter((k) => given[k] !== undefined && given[k] !== null);
    const key = names.join(',');
    let s = statements.get(key);
    if (!s) {
      const clauses = names.map((k, i) => filters[k](`$${fixed.length + i + 1}`));
      s = statement(build(clauses, `$${fixed.length + names.length + 1}`));
      statements.set(key, s);
    }
    return { statement: s, values: [...fixed, ...names.map((k) => given[k]), limit] };
  };
}

/**
 * A statement written with named parameters (`@name`), numbered in the order `names` gives
 * them: made once per key (say, the order, walk and filters of a page) on first use.
 */
export function namedStatements(make: (key: string) => { text: string; names: readonly string[] }) {
  const made = new Map<string, { statement: Statement; names: readonly string[] }>();
  /** The statement of `key` and its values, taken from `params` by name. */
  return (key: string, params: Record<string, unknown>): { statement: Statement; values: unknown[] } => {
    let m = made.get(key);
    if (!m) {
      const { text, names } = make(key);
      m = { statement: statement(text.replace(/@([a-z_]+)/g, (_, n: string) => `$${names.indexOf(n) + 1}`)), names };
      made.set(key, m);
    }
    return { statement: m.statement, values: m.names.map((n) => params[n]) };
  };
}
