import crypto from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { afterAll } from 'vitest';

/*
 * Which database the tests of this run use (RELAY_TEST_BACKEND=sqlite|postgres) and, for
 * PostgreSQL, a schema of its own per use on the local server, as pg-boss's tests do: files run
 * in parallel against one database and never see each other's rows.
 */

export type TestBackend = 'sqlite' | 'postgres';
export const TEST_BACKENDS: readonly TestBackend[] = ['sqlite', 'postgres'];

/** The local server every PostgreSQL test uses (trust auth, database `test`). */
export const TEST_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';

export function testBackend(): TestBackend {
  const value = process.env.RELAY_TEST_BACKEND ?? '';
  if (value === '' || value === 'sqlite') return 'sqlite';
  if (value === 'postgres') return 'postgres';
  throw new Error(`RELAY_TEST_BACKEND must be sqlite or postgres (unset means sqlite), not ${JSON.stringify(value)}`);
}

export interface TestSchema {
  url: string;
  schema: string;
  /** What a relay needs to use it. */
  env: { RELAY_DATABASE_URL: string; RELAY_DATABASE_SCHEMA: string };
  /** DROP SCHEMA … CASCADE; safe to call twice (it also runs at the end of the file). */
  drop(): Promise<void>;
}

async function connect(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
  } catch (err) {
    const reason = (err as { code?: string }).code ?? (err as Error).message;
    throw new Error(
      `PostgreSQL is not answering at ${TEST_DATABASE_URL} (${reason}); the postgres tests need it running with a database "test" ` +
        '(.ci/run starts it; by hand: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)',
      { cause: err },
    );
  }
  return client;
}

/** Runs statements on one short-lived connection to the local server's database `test`. */
export async function withClient<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = await connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** One statement on a short-lived connection, its rows; `schema` sets the search path first. */
export async function sql<T extends pg.QueryResultRow = pg.QueryResultRow>(text: string, params: unknown[] = [], schema?: string): Promise<T[]> {
  return withClient(async (c) => {
    if (schema) await c.query(`SET search_path TO "${schema}"`);
    return (await c.query<T>(text, params)).rows;
  });
}

// Schemas this file created and has not dropped yet, dropped after its last test.
const live = new Map<string, TestSchema>();
afterAll(async () => {
  await Promise.all([...live.values()].map((s) => s.drop()));
});

let counter = 0;

/** Creates a fresh, empty schema in database `test`; `label` makes it recognisable in psql. */
export async function createTestSchema(label = 'relay'): Promise<TestSchema> {
  const schema = `t_${label.replace(/[^a-z0-9]/g, '_').slice(0, 20)}_${process.pid}_${++counter}_${crypto.randomBytes(4).toString('hex')}`;
  await withClient((c) => c.query(`CREATE SCHEMA "${schema}"`));
  const created: TestSchema = {
    url: TEST_DATABASE_URL,
    schema,
    env: { RELAY_DATABASE_URL: TEST_DATABASE_URL, RELAY_DATABASE_SCHEMA: schema },
    async drop() {
      if (!live.delete(schema)) return;
      await withClient(async (c) => {
        // A relay left running by a failed test may hold a lock; say so rather than hang the file.
        await c.query(`SET lock_timeout = '20s'`);
        try {
          await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        } catch (err) {
          throw new Error(`could not drop test schema ${schema}: ${(err as Error).message}`, { cause: err });
        }
      });
    },
  };
  live.set(schema, created);
  return created;
}

// One schema per data folder: a relay started again on the same folder (a restart, a second
// process of the same deployment) finds the database it had.
const schemaByDataDir = new Map<string, Promise<TestSchema>>();

/**
 * The database variables a relay of this run gets: none on SQLite (its file lives in the data
 * folder), none when the caller chose a database itself (RELAY_DATABASE_URL given), otherwise
 * the schema of its data folder on PostgreSQL, with a small pool unless the caller sets one.
 */
export async function relayDatabaseEnv(env: Record<string, string | undefined>): Promise<Record<string, string>> {
  if (env.RELAY_DATABASE_URL || testBackend() === 'sqlite') return {};
  const dataDir = env.RELAY_DATA_DIR;
  let schema = dataDir ? schemaByDataDir.get(path.resolve(dataDir)) : undefined;
  if (!schema) {
    schema = createTestSchema();
    if (dataDir) {
      const key = path.resolve(dataDir);
      schemaByDataDir.set(key, schema);
      // A failed creation is not remembered: the next start tries again and reports its own error.
      schema.catch(() => schemaByDataDir.delete(key));
    }
  }
  // Test files run side by side against one server of 100 connections: a small pool each.
  return { ...(await schema).env, RELAY_DATABASE_POOL: env.RELAY_DATABASE_POOL ?? '4' };
}

/** Which backend a relay with these variables runs on. */
export function backendOf(env: Record<string, string | undefined>): TestBackend {
  return /^postgres(ql)?:\/\//.test(env.RELAY_DATABASE_URL ?? '') ? 'postgres' : 'sqlite';
}
