import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { openPostgresStore } from './postgres/index.js';
import { openSqliteStore } from './sqlite/index.js';
import type { Store } from './store.js';

/** Opens the store RELAY_DATABASE_URL names and applies its migrations; the only place that knows the backends. */
export async function openStore(config: Config, log: Logger): Promise<Store> {
  const db = config.database;
  if (db.kind === 'postgres') {
    return openPostgresStore({ url: db.url, schema: db.schema, pool: db.pool, log: log.child({ component: 'postgres' }) });
  }
  return openSqliteStore({
    path: db.path,
    durability: config.durability,
    busyTimeoutMs: config.busyTimeoutMs,
    commitIntervalMs: config.commitIntervalMs,
  });
}
