import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { StoreUnavailableError, type Store } from '../store.js';
import { migrate } from './migrate.js';
import { listenerQueries } from './listeners.js';
import { eventQueries } from './events.js';
import { deliveryQueries } from './deliveries.js';
import { createWriteBatcher } from './write-batcher.js';
import { engineStore } from './engine.js';

export interface SqliteOptions {
  path: string;
  durability: 'full' | 'normal';
  busyTimeoutMs: number;
  /** Group commit: the shortest time between two ingest commits (see write-batcher). */
  commitIntervalMs?: number;
}

// SQLite result codes that mean "cannot take the write now", not "the request was wrong".
const UNAVAILABLE = /^SQLITE_(BUSY|LOCKED|FULL|IOERR|READONLY|CANTOPEN|NOMEM|PROTOCOL)/;

function toStoreError(err: unknown): unknown {
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && UNAVAILABLE.test(code)) {
    return new StoreUnavailableError(`database cannot take the write now (${code})`, 1, { cause: err });
  }
  return err;
}

/** Runs a synchronous database call, turning "cannot write now" failures into StoreUnavailableError. */
function guard<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw toStoreError(err);
  }
}

export interface SqliteStore extends Store {
  readonly appliedMigrations: string[];
}

export function openSqliteStore(options: SqliteOptions): SqliteStore {
  fs.mkdirSync(path.dirname(options.path), { recursive: true });
  const db = new Database(options.path, { timeout: options.busyTimeoutMs });
  db.pragma('journal_mode = WAL');
  // FULL syncs the WAL on every commit: an acknowledged write survives power loss, not only a
  // process crash. NORMAL is the operator's explicit trade for throughput.
  db.pragma(`synchronous = ${options.durability === 'full' ? 'FULL' : 'NORMAL'}`);
  db.pragma('foreign_keys = ON');
  // Ingest inserts into several indexes at random places; a larger page cache keeps them hot.
  db.pragma('cache_size = -65536');
  const appliedMigrations = migrate(db);
  const listeners = listenerQueries(db);
  const events = eventQueries(db);
  const deliveries = deliveryQueries(db);
  const batcher = createWriteBatcher(db, toStoreError, { minCommitIntervalMs: options.commitIntervalMs });
  const ping = db.prepare('SELECT 1');
  const tx = <T>(fn: () => T): T => guard(() => db.transaction(fn).immediate());

  return {
    ...engineStore(db, { events, batcher, guard }),
    backend: 'sqlite',
    appliedMigrations,
    async ping() {
      guard(() => ping.get());
    },
    async close() {
      if (db.open) db.close();
    },

    async createListener(l) {
      guard(() => listeners.create(l));
    },
    async getListener(project, id) {
      return guard(() => listeners.get(project, id));
    },
    async listListeners(project, q) {
      return guard(() => listeners.list(project, q));
    },
    async updateListener(project, id, spec, updatedAt) {
      return tx(() => listeners.update(project, id, spec, updatedAt));
    },
    async rotateListenerSecret(project, id, rotation, updatedAt) {
      return guard(() => listeners.rotate(project, id, rotation, updatedAt));
    },
    async deleteListener(project, id) {
      return tx(() => listeners.remove(project, id, Date.now()));
    },
    async listEnabledListeners(project) {
      return guard(() => listeners.listEnabled(project));
    },

    appendEvents(project, list, fanOut, now) {
      return batcher.run(() => list.map((e) => events.append(project, e, fanOut, now)));
    },
    async listEvents(project, q) {
      return guard(() => events.list(project, q));
    },
    async getEvent(project, id) {
      return guard(() => events.get(project, id));
    },

    async listDeliveries(project, q) {
      return guard(() => deliveries.list(project, q, Date.now()));
    },
    async getDelivery(project, id) {
      return guard(() => deliveries.get(project, id, Date.now()));
    },
    async listAttempts(project, id) {
      return guard(() => deliveries.attempts(project, id));
    },
    async retryDelivery(project, id, now) {
      return tx(() => deliveries.retry(project, id, now));
    },
    replay(project, listenerId, window, matches, now) {
      return batcher.run(() => events.replay(project, listenerId, window, matches, now));
    },

    async recordAndClaim(owner, results, claim, now) {
      return tx(() => ({
        disabledListeners: results.length ? deliveries.record(owner, results, now) : [],
        claimed: claim ? deliveries.claim(claim) : [],
      }));
    },
    async releaseLeases(owner, ids, now) {
      tx(() => deliveries.release(owner, ids, now));
    },
    async nextDueAt() {
      return guard(() => deliveries.nextDueAt());
    },
    async queueDepth(now) {
      return guard(() => deliveries.depth(now));
    },
    async pruneFinished(before, batch) {
      return tx(() => deliveries.prune(before, batch));
    },
  };
}
