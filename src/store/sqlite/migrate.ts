import type { Database } from 'better-sqlite3';
import { readMigrations, refuseUnknownMigrations, type Migration } from '../migrations.js';

export const SQLITE_MIGRATIONS_DIR = new URL('../../../db/sqlite/', import.meta.url);

/**
 * Applies, in order, the migrations not yet recorded. Each runs in its own transaction with
 * its bookkeeping row, so a crash mid-way leaves either all of a migration or none of it. A
 * database a later release migrated (a recorded migration this release lacks) is refused with
 * SchemaTooNewError, before anything is applied.
 */
export function migrate(db: Database, migrations: Migration[] = readMigrations(SQLITE_MIGRATIONS_DIR)): string[] {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
  ) STRICT`);
  const rows = db.prepare('SELECT version, name FROM schema_migrations').all() as Array<{ version: number; name: string }>;
  refuseUnknownMigrations('sqlite', rows, migrations);
  const applied = new Set(rows.map((r) => r.version));
  const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  const done: string[] = [];
  for (const m of migrations) {
    if (applied.has(m.version)) continue;
    db.transaction(() => {
      db.exec(m.sql);
      record.run(m.version, m.name, new Date().toISOString());
    }).immediate();
    done.push(m.name);
  }
  return done;
}
