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
import { retryWhileBusy, SYNC_BUSY_TIMEOUT_MS } from './busy.js';

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
  fs.mkdirSync(path.dirname(options.path), { recursive: true, mode: 0o700 });
  // Listener secrets and header values live in these files: owner-only whatever the umask (SQLite
  // gives -wal and -shm the database's mode); a looser file of ours from before is tightened.
  fs.closeSync(fs.openSync(options.path, 'a', 0o600));
  for (const file of [options.path, `${options.path}-wal`, `${options.path}-shm`]) {
    const stat = fs.statSync(file, { throwIfNoEntry: false });
    if (stat && stat.mode & 0o077 && stat.uid === process.getuid?.()) fs.chmodSync(file, stat.mode & 0o700);
  }
  const db = new Database(options.path, { timeout: SYNC_BUSY_TIMEOUT_MS });
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
  const batcher = createWriteBatcher(db, toStoreError, {
    minCommitIntervalMs: options.commitIntervalMs,
    busyTimeoutMs: options.busyTimeoutMs,
  });
  const ping = db.prepare('SELECT 1');
  // Statements and transactions wait for another process's lock between tries, not inside one.
  const run = <T>(fn: () => T): Promise<T> => retryWhileBusy(fn, options.busyTimeoutMs, toStoreError);
  const tx = <T>(fn: () => T): Promise<T> => run(() => db.transaction(fn).immediate());

  return {
    ...engineStore(db, { events, batcher, guard }),
    backend: 'sqlite',
    appliedMigrations,
    async ping() {
      await run(() => ping.get());
    },
    async close() {
      if (db.open) db.close();
    },

    async createListener(l) {
      await run(() => listeners.create(l));
    },
    async getListener(project, id) {
      return run(() => listeners.get(project, id));
    },
    async listListeners(project, q) {
      return run(() => listeners.list(project, q));
    },
    async updateListener(project, id, spec, updatedAt) {
      return tx(() => listeners.update(project, id, spec, updatedAt));
    },
    async rotateListenerSecret(project, id, rotation, updatedAt) {
      return run(() => listeners.rotate(project, id, rotation, updatedAt));
    },
    async deleteListener(project, id) {
      return tx(() => listeners.remove(project, id, Date.now()));
    },
    async listEnabledListeners(project) {
      return run(() => listeners.listEnabled(project));
    },

    appendEvents(project, list, fanOut, now) {
      return batcher.run(() => list.map((e) => events.append(project, e, fanOut, now)));
    },
    async listEvents(project, q) {
      return run(() => events.list(project, q));
    },
    async getEvent(project, id) {
      return run(() => events.get(project, id));
    },

    async listDeliveries(project, q) {
      return run(() => deliveries.list(project, q, Date.now()));
    },
    async getDelivery(project, id) {
      return run(() => deliveries.get(project, id, Date.now()));
    },
    async listAttempts(project, id) {
      return run(() => deliveries.attempts(project, id));
    },
    async retryDelivery(project, id, now) {
      return tx(() => deliveries.retry(project, id, now));
    },
    replay(project, listenerId, window, matches, now) {
      return batcher.run(() => events.replay(project, listenerId, window, matches, now));
    },

    async recordAndClaim(owner, results, claim, now) {
      return tx(() => {
        const disabledListeners = results.length ? deliveries.record(owner, results, now) : [];
        const { claimed, asked } = claim ? deliveries.claim(claim) : { claimed: [], asked: 0 };
        return { disabledListeners, claimed, asked };
      });
    },
    async releaseLeases(owner, ids, now) {
      await tx(() => deliveries.release(owner, ids, now));
    },
    async nextDueAt() {
      return run(() => deliveries.nextDueAt());
    },
    async queueDepth(now) {
      return run(() => deliveries.depth(now));
    },
    async pruneFinished(before, batch) {
      return tx(() => deliveries.prune(before, batch));
    },
  };
}
