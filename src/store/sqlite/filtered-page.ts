import type { Database, Statement } from 'better-sqlite3';

/**
 * A keyset page query whose WHERE clause holds only the filters actually given, so SQLite
 * can pick the index that serves them (an `(@x IS NULL OR col = @x)` clause defeats that).
 * One prepared statement per combination of filters, made on first use.
 */
export function filteredPage<Row>(
  db: Database,
  build: (clauses: string[]) => string,
  filters: Record<string, string>,
) {
  const statements = new Map<string, Statement<Record<string, unknown>, Row>>();
  return (params: Record<string, unknown>): Row[] => {
    const given = Object.keys(filters).filter((k) => params[k] !== undefined && params[k] !== null);
    const key = given.join(',');
    let stmt = statements.get(key);
    if (!stmt) {
      stmt = db.prepare(build(given.map((k) => filters[k]))) as Statement<Record<string, unknown>, Row>;
      statements.set(key, stmt);
    }
    const bound: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(params)) if (!(k in filters) || given.includes(k)) bound[k] = v;
    return stmt.all(bound);
  };
}

/** Statements made on first use, one per key (say, the order, walk and filters of a page). */
export function statementCache(make: (key: string) => Statement): (key: string) => Statement {
  const statements = new Map<string, Statement>();
  return (key) => {
    let stmt = statements.get(key);
    if (!stmt) statements.set(key, (stmt = make(key)));
    return stmt;
  };
}

/**
 * Runs reads in one snapshot: a read transaction (WAL: it blocks no writer), or the transaction
 * already open on the connection.
 */
export function snapshotOf(db: Database): <T>(read: () => T) => T {
  return (read) => (db.inTransaction ? read() : db.transaction(read).deferred());
}
