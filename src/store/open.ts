import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { openPostgresStore } from './postgres/index.js';
import { openSqliteStore } from './sqlite/index.js';
import type { Store } from './store.js';

/**
 * Which part of a process a store serves. `dispatch-thread`: the dispatch thread of role `all`
 * (src/dispatch/thread.ts) runs one cycle at a time and reads what the main thread just wrote,
 * so a few connections and a small page cache do; `beside-dispatch-thread`: that process's main
 * thread, whose SQLite page cache gives up what the thread's takes, so the two together hold
 * no more than one process without the thread.
 */
export type StoreUser = 'process' | 'beside-dispatch-thread' | 'dispatch-thread';

const DISPATCH_THREAD_POOL = 4;
const SQLITE_CACHE_MIB: Record<StoreUser, number> = { process: 64, 'beside-dispatch-thread': 48, 'dispatch-thread': 8 };

/** Opens the store RELAY_DATABASE_URL names and applies its migrations; the only place that knows the backends. */
export async function openStore(config: Config, log: Logger, user: StoreUser = 'process'): Promise<Store> {
  const db = config.database;
  if (db.kind === 'postgres') {
    const pool = user === 'dispatch-thread' ? Math.min(db.pool, DISPATCH_THREAD_POOL) : db.pool;
    return openPostgresStore({ url: db.url, schema: db.schema, pool, log: log.child({ component: 'postgres' }) });
  }
  return openSqliteStore({
    path: db.path,
    durability: config.durability,
    busyTimeoutMs: config.busyTimeoutMs,
    commitIntervalMs: config.commitIntervalMs,
    cacheMiB: SQLITE_CACHE_MIB[user],
  });
}
