import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { readMigrations } from '../src/store/migrations.js';
import { POSTGRES_MIGRATIONS_DIR } from '../src/store/postgres/migrate.js';
import { MIGRATIONS_READ_EVERY_MS } from '../src/store/sqlite/index.js';
import { SQLITE_MIGRATIONS_DIR } from '../src/store/sqlite/migrate.js';
import { createTestSchema, sql, type TestBackend } from './helpers/backend.js';
import { killAllRelays, runToExit, startRelayProcess } from './helpers/relay-process.js';
import { tempDir } from './helpers/relay.js';

/*
 * A database a later release migrated, opened by this one: real relay processes
 * (`node dist/main.js`) on a real SQLite file and on a schema of the local PostgreSQL. The
 * relay refuses to start, says which migrations it does not know, and applies nothing, rather
 * than serve a schema it would misread.
 */

afterAll(killAllRelays);

const FUTURE = '999_from_a_later_release.sql';

interface Migrations {
  rows(): Promise<Array<{ version: number; name: string }>>;
  run(sql: string, params: unknown[]): Promise<void>;
}

async function onSqlite(dataDir: string): Promise<Migrations> {
  const file = path.join(dataDir, 'relay.db');
  const withDb = <T>(fn: (db: Database.Database) => T): T => {
    const db = new Database(file);
    try {
      return fn(db);
    } finally {
      db.close();
    }
  };
  return {
    rows: async () => withDb((db) => db.prepare('SELECT version, name FROM schema_migrations ORDER BY version').all() as Array<{ version: number; name: string }>),
    run: async (sql, params) => void withDb((db) => db.prepare(sql.replace(/\$\d+/g, '?')).run(...params)),
  };
}

async function onPostgres(schema: string): Promise<Migrations> {
  return {
    rows: () => sql<{ version: number; name: string }>('SELECT version, name FROM schema_migrations ORDER BY version', [], schema),
    run: async (text, params) => void (await sql(text, params, schema)),
  };
}

const cases: Array<[TestBackend, URL]> = [
  ['sqlite', SQLITE_MIGRATIONS_DIR],
  ['postgres', POSTGRES_MIGRATIONS_DIR],
];

describe.each(cases)('a database migrated by a later release, on %s', (backend, dir) => {
  it('is refused at start: exit code 2, the unknown migration named, nothing applied; once it is gone the relay starts', async () => {
    const known = readMigrations(dir);
    const latest = known.at(-1)!;
    const dataDir = tempDir();
    const schema = backend === 'postgres' ? await createTestSchema('newer') : null;
    const env = { RELAY_PORT: '0', RELAY_DATA_DIR: dataDir, RELAY_LOG_LEVEL: 'info', ...(schema ? { ...schema.env, RELAY_DATABASE_POOL: '2' } : {}) };
    try {
      const first = await startRelayProcess(env);
      await first.stop();
      const db = schema ? await onPostgres(schema.schema) : await onSqlite(dataDir);
      expect((await db.rows()).map((r) => r.name)).toEqual(known.map((m) => m.name));

      // A later release's migration recorded, and this release's latest one taken off the
      // record: were the relay to go on, it would apply that one again (and fail on it).
      await db.run('DELETE FROM schema_migrations WHERE version = $1', [latest.version]);
      await db.run(`INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`, [999, FUTURE, new Date().toISOString()]);
      const before = await db.rows();

      const refused = await runToExit(env);
      expect(refused.exit).toEqual({ code: 2, signal: null });
      const stderr = refused.stderr;
      expect(stderr).toContain(`was migrated by a later release of callback-relay: it has migration ${FUTURE}`);
      expect(stderr).toContain(`its latest is ${latest.name}`);
      const fatal = refused.logs.filter((l) => l.level >= 60);
      expect(fatal, refused.output).toHaveLength(1);
      expect(fatal[0]).toMatchObject({ msg: 'the database is newer than this release', migrations: [FUTURE], latest_known: latest.name });
      expect(refused.logs.some((l) => l.msg.startsWith('callback-relay listening on'))).toBe(false);
      expect(await db.rows()).toEqual(before);

      // Back to this release's own migrations: it starts and serves.
      await db.run('DELETE FROM schema_migrations WHERE version = $1', [999]);
      await db.run(`INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`, [latest.version, latest.name, new Date().toISOString()]);
      const again = await startRelayProcess(env);
      try {
        expect((await fetch(`${again.url}/healthz`)).status).toBe(200);
      } finally {
        await again.stop();
      }
    } finally {
      await schema?.drop();
    }
  });
});

describe('a SQLite relay running when a later release migrates its file', () => {
  it('reads the migrations every two seconds, and stops with exit code 2 once it finds one it does not know', async () => {
    const dataDir = tempDir();
    const relay = await startRelayProcess({ RELAY_PORT: '0', RELAY_DATA_DIR: dataDir, RELAY_LOG_LEVEL: 'info' });
    try {
      const db = await onSqlite(dataDir);
      // As another process of a later release does: its migration and row committed to the file.
      await db.run(`INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`, [999, FUTURE, new Date().toISOString()]);
      const started = Date.now();
      const exit = await Promise.race([relay.exited, new Promise((resolve) => setTimeout(() => resolve('still running'), 10_000))]);
      expect(exit, relay.output).toEqual({ code: 2, signal: null });
      expect(Date.now() - started).toBeLessThan(MIGRATIONS_READ_EVERY_MS + 3_000);
      const fatal = relay.logs.filter((l) => l.level >= 60);
      expect(fatal, relay.output).toHaveLength(1);
      expect(fatal[0].msg).toContain(`the SQLite database was migrated by a later release of callback-relay: it has migration ${FUTURE}`);
      expect(fatal[0].msg).toContain('This process stops.');
      expect(relay.logs.some((l) => l.msg === 'shutting down' && l.reason === 'the database was migrated by a later release')).toBe(true);
      expect(relay.logs.some((l) => l.msg === 'stopped')).toBe(true);
    } finally {
      if (!relay.exit) await relay.kill9();
    }
  });
});
