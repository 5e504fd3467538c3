import pg from 'pg';
import { readMigrations, refuseUnknownMigrations, SchemaTooNewError, type Migration } from '../migrations.js';
import { clientConfig, type ConnectionSettings } from './database.js';
import { lockKey } from './locks.js';
import { migratedChannel } from './notify.js';
import { toStoreError } from './errors.js';

export const POSTGRES_MIGRATIONS_DIR = new URL('../../../db/postgres/', import.meta.url);

/**
 * Creates the schema when missing and applies, in order, the migrations not yet recorded in it.
 * Several processes may start at once: each waits for a session advisory lock of this schema,
 * so every migration is applied once, and one that finds them applied does nothing. Each
 * migration commits with its bookkeeping row, so a crash mid-way leaves all of it or none. A
 * schema a later release migrated (a recorded migration this release lacks) is refused with
 * SchemaTooNewError, before anything is applied. Having applied any, it says so on the schema's
 * migrated channel, so that running processes of an earlier release stop (see notify.ts).
 */
export async function migrate(settings: ConnectionSettings, migrations: Migration[] = readMigrations(POSTGRES_MIGRATIONS_DIR)): Promise<string[]> {
  const client = new pg.Client(clientConfig(settings));
  // A connection failing while we wait for the lock must reject the query, not crash the process.
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT pg_advisory_lock($1)', [lockKey(settings.schema, 'migrate')]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS "${settings.schema}"`);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const rows = (await client.query<{ version: number; name: string }>('SELECT version, name FROM schema_migrations')).rows;
    refuseUnknownMigrations('postgres', rows, migrations);
    const applied = new Set(rows.map((r) => r.version));
    const done: string[] = [];
    for (const m of migrations) {
      if (applied.has(m.version)) continue;
      await client.query('BEGIN');
      try {
        await client.query(m.sql);
        await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw Object.assign(new Error(`PostgreSQL migration ${m.name} failed: ${(err as Error).message}`, { cause: err }), {
          code: (err as { code?: string }).code,
        });
      }
      done.push(m.name);
    }
    if (done.length) await client.query('SELECT pg_notify($1, $2)', [migratedChannel(settings.schema), done.at(-1)]);
    // Closing the session below releases the lock too; unlocking first lets the next process go on at once.
    await client.query('SELECT pg_advisory_unlock($1)', [lockKey(settings.schema, 'migrate')]);
    return done;
  } catch (err) {
    if (err instanceof SchemaTooNewError) throw err;
    throw toStoreError(err);
  } finally {
    await client.end().catch(() => {});
  }
}
