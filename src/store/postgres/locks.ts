import crypto from 'node:crypto';
import pg from 'pg';
import { clientConfig, type ConnectionSettings } from './database.js';
import { toStoreError } from './errors.js';

/**
 * The advisory-lock key of work `name` in `schema`. Advisory locks are per database, and
 * several relays (or test runs) may share one database in different schemas: the schema is
 * part of the key so each only excludes its own kind.
 */
export function lockKey(schema: string, name: string): string {
  return crypto.createHash('sha256').update(`callback-relay\0${schema}\0${name}`).digest().readBigInt64BE(0).toString();
}

/**
 * Runs `fn` while this process holds the session advisory lock of `name`; answers undefined at
 * once when another session holds it. The lock lives on a connection of its own rather than a
 * pooled one: `fn` (recovery, pruning) writes through the pool, and holding one of the pool's
 * connections meanwhile would starve it, or deadlock a pool of one. Ending the connection
 * releases the lock; if it dies during `fn`, another process may start the same work, which
 * for these jobs is only wasteful.
 */
export async function exclusively<T>(settings: ConnectionSettings, name: string, fn: () => Promise<T>): Promise<T | undefined> {
  const client = new pg.Client(clientConfig(settings));
  client.on('error', () => {});
  let locked: boolean;
  try {
    await client.connect();
    const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [lockKey(settings.schema, name)]);
    locked = rows[0].locked;
  } catch (err) {
    await client.end().catch(() => {});
    throw toStoreError(err);
  }
  try {
    return locked ? await fn() : undefined;
  } finally {
    await client.end().catch(() => {});
  }
}
