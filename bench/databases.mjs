// Where each relay run keeps its data: a fresh SQLite folder, or a fresh schema of the
// PostgreSQL database at BENCH_PG_URL. Either is removed when the run ends, so runs never see
// each other's rows and a benchmark leaves nothing behind.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

export const BACKENDS = ['sqlite', 'postgres'];
export const PG_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const redacted = (url) => url.replace(/:[^:@/]*@/, ':***@');

/**
 * A backend hands out fresh databases: `fresh(label)` → { backend, location, env (for the
 * relay), url and schema (PostgreSQL), drop() }. `settle()` finishes what the runs before left
 * the server to write (see openPostgres). `close()` drops whatever is still there.
 */
export async function openBackend(name) {
  return name === 'postgres' ? openPostgres() : openSqlite();
}

function openSqlite() {
  const live = new Set();
  return {
    name: 'sqlite',
    async fresh() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-bench-'));
      const database = {
        backend: 'sqlite',
        location: dir,
        env: { RELAY_DATA_DIR: dir },
        async drop() {
          live.delete(database);
          fs.rmSync(dir, { recursive: true, force: true });
        },
      };
      live.add(database);
      return database;
    },
    // A run's SQLite database is its own folder, removed after it: nothing carries over.
    settle: async () => {},
    close: () => Promise.all([...live].map((d) => d.drop())),
  };
}

async function openPostgres() {
  const admin = new pg.Client({ connectionString: PG_URL });
  try {
    await admin.connect();
  } catch (err) {
    throw new Error(`BENCH_PG_URL ${redacted(PG_URL)}: ${err.message} (start PostgreSQL, or point BENCH_PG_URL at one)`);
  }
  const live = new Set();
  let seq = 0;
  let settleRefused = false;
  return {
    name: 'postgres',
    /**
     * A checkpoint: a run writes hundreds of megabytes of WAL, and the checkpoint that asks for
     * (with the full-page images after it) would otherwise fall in whichever run comes next,
     * on either backend, since the server shares the machine. Needs superuser or pg_checkpoint.
     */
    async settle() {
      if (settleRefused) return;
      try {
        await admin.query('CHECKPOINT');
      } catch (err) {
        settleRefused = true;
        console.error(`bench: CHECKPOINT refused (${err.message}); runs may pay for the writes of the run before them`);
      }
    },
    async fresh(label) {
      const schema = `bench_${process.pid}_${++seq}_${label.replace(/[^a-z0-9]+/gi, '_').toLowerCase()}`.slice(0, 63);
      await admin.query(`CREATE SCHEMA ${pg.escapeIdentifier(schema)}`);
      // The relay still wants a data folder (nothing is written there while tokens are given).
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-bench-pg-'));
      const database = {
        backend: 'postgres',
        location: `${redacted(PG_URL)} schema ${schema}`,
        url: PG_URL,
        schema,
        env: { RELAY_DATA_DIR: dir, RELAY_DATABASE_URL: PG_URL, RELAY_DATABASE_SCHEMA: schema },
        async drop() {
          live.delete(database);
          await admin.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`);
          fs.rmSync(dir, { recursive: true, force: true });
        },
      };
      live.add(database);
      return database;
    },
    async close() {
      await Promise.all([...live].map((d) => d.drop()));
      await admin.end();
    },
  };
}
