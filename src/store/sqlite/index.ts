import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { StoreUnavailableError, type Handoff, type ListenerRouting, type NewEvent, type Store } from '../store.js';
import { startHanding, type Handing } from '../handing.js';
import { readMigrations, refuseUnknownMigrations, SchemaTooNewError } from '../migrations.js';
import { migrate, SQLITE_MIGRATIONS_DIR } from './migrate.js';
import { listenerQueries } from './listeners.js';
import { listenerVersions } from './listener-versions.js';
import { rollupQueries } from './rollups.js';
import { gateQueries } from './gates.js';
import { backlogQueries } from './backlogs.js';
import { executionOrder } from './execution-order.js';
import { applyJudgement } from './judgement.js';
import { eventQueries } from './events.js';
import { deliveryQueries } from './deliveries.js';
import { createWriteBatcher } from './write-batcher.js';
import { engineStore } from './engine.js';
import { retryWhileBusy, SYNC_BUSY_TIMEOUT_MS } from './busy.js';
import { isReplayCursor } from '../rows.js';

/** How often a SQLite store that watches its migrations reads them (see watchMigrations). */
export const MIGRATIONS_READ_EVERY_MS = 2_000;

export interface SqliteOptions {
  path: string;
  durability: 'full' | 'normal';
  busyTimeoutMs: number;
  /** Group commit: the shortest time between two ingest commits (see write-batcher). */
  commitIntervalMs?: number;
  /** The connection's page cache in MiB (default 64). */
  cacheMiB?: number;
  /** Deliveries per window of a listener's backlog (default BACKLOG_WINDOW; tests make it small). */
  backlogWindow?: number;
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
  db.pragma(`cache_size = -${(options.cacheMiB ?? 64) * 1024}`);
  const known = readMigrations(SQLITE_MIGRATIONS_DIR);
  const appliedMigrations = migrate(db, known);
  const versions = listenerVersions(db);
  const rollups = rollupQueries(db);
  const gates = gateQueries(db);
  const order = executionOrder(db);
  const backlogs = backlogQueries(db, options.backlogWindow);
  const listeners = listenerQueries(db, { versions, rollups, gates, executionOrder: order, backlogs });
  const events = eventQueries(db, order);
  const deliveries = deliveryQueries(db, { versions, rollups, gates, executionOrder: order, backlogs });
  const fanOut = (project: string, routing: ListenerRouting) => versions.fanOut(project, routing, listeners.enabledFor);
  // Call inside the write transaction: routes at the listener version it reads, after every
  // listener change committed before it.
  const appendRouted = (project: string, list: NewEvent[], routing: ListenerRouting, now: number, handing?: Handing) => {
    const route = fanOut(project, routing);
    return list.map((e) => events.append(project, e, route, now, handing));
  };
  let handoff: Handoff | null = null;
  const batcher = createWriteBatcher(db, toStoreError, {
    minCommitIntervalMs: options.commitIntervalMs,
    busyTimeoutMs: options.busyTimeoutMs,
  });
  const ping = db.prepare('SELECT 1');
  // Statements and transactions wait for another process's lock between tries, not inside one.
  const run = <T>(fn: () => T): Promise<T> => retryWhileBusy(fn, options.busyTimeoutMs, toStoreError);
  const tx = <T>(fn: () => T): Promise<T> => run(() => db.transaction(fn).immediate());
  // Work of one name runs once at a time in this process. SQLite has no advisory locks, and a
  // file normally has one relay process; where roles are split over several, the work guarded
  // (recovery, pruning) re-checks what it changes inside its own write transactions, so a
  // second process running it too costs time, not correctness.
  const exclusive = new Set<string>();

  return {
    ...engineStore(db, { events, batcher, guard, fanOut }),
    backend: 'sqlite',
    location: options.path,
    appliedMigrations,
    async ping() {
      await run(() => ping.get());
    },
    async close() {
      if (db.open) db.close();
    },
    async exclusively(name, fn) {
      if (exclusive.has(name)) return undefined;
      exclusive.add(name);
      try {
        return await fn();
      } finally {
        exclusive.delete(name);
      }
    },

    async createListener(l, maxPerProject = Infinity) {
      await tx(() => listeners.create(l, maxPerProject));
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
      return tx(() => listeners.rotate(project, id, rotation, updatedAt));
    },
    async deleteListener(project, id) {
      return tx(() => listeners.remove(project, id, Date.now()));
    },
    async moveListenerBacklogs(now) {
      // Looked for every second: only a backlog to move takes the write lock.
      if (!(await run(() => backlogs.moving()))) return null;
      return tx(() => backlogs.next(now));
    },
    async listEnabledListeners(project) {
      return run(() => listeners.listEnabled(project));
    },
    async listenerOutcomes(project, ids) {
      return run(() => rollups.outcomes(project, ids));
    },
    async rollups(project, q) {
      return run(() => rollups.read(project, q));
    },
    async rollupTotals(project, ids, since) {
      return run(() => rollups.totals(project, ids, since));
    },
    async listenerGates(project, ids) {
      return run(() => gates.ofProject(project, ids));
    },

    // Several calls share one commit (write-batcher), each in its own savepoint. What was handed
    // over goes to the dispatcher once committed; a call rolled back gives its slots back.
    appendEvents(project, list, routing, now) {
      const handing = startHanding(handoff);
      return batcher
        .run(() => appendRouted(project, list, routing, now, handing))
        .then(
          (appended) => {
            handing.committed();
            return appended;
          },
          (err: unknown) => {
            handing.abandoned();
            throw err;
          },
        );
    },
    handOffTo(h) {
      handoff = h;
    },
    async listEvents(project, q) {
      return run(() => events.list(project, q));
    },
    eventCursorScope(text) {
      return events.cursorScope(text);
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
    isReplayCursor: (text, onlyFailed) => isReplayCursor(text, onlyFailed),

    async recordAndClaim(owner, results, claim, now, judge) {
      return tx(() => {
        const { recorded, disabled } = results.length ? deliveries.record(owner, results, now) : { recorded: [], disabled: [] };
        if (judge) disabled.push(...applyJudgement({ gates, disable: deliveries.disable, append: appendRouted }, { results, recorded, gone: [...disabled] }, judge, now));
        const { claimed, asked } = claim ? deliveries.claim(claim) : { claimed: [], asked: 0 };
        return { disabledListeners: disabled, claimed, asked, contended: 0 };
      });
    },
    async releaseLeases(owner, ids, now) {
      await tx(() => deliveries.release(owner, ids, now));
    },
    async releaseLeasesOfGone(isGone, now) {
      // Read without the write lock: mostly no owner is gone, and there is nothing to write.
      const owners = (await run(() => deliveries.leaseOwners(now))).filter(isGone);
      if (owners.length === 0) return { owners, deliveries: 0 };
      return { owners, deliveries: await tx(() => deliveries.releaseOwners(owners, now)) };
    },
    async renewLeases(owner, ids, until) {
      if (ids.length) await tx(() => deliveries.renew(owner, ids, until));
    },
    async nextDueAt() {
      return run(() => deliveries.nextDueAt());
    },
    async queueDepth(now) {
      return run(() => deliveries.depth(now));
    },
    // SQLite cannot tell one process of another's commit. The process that commits wakes its
    // own dispatcher (one process per file, the usual case, dispatches all it commits); a
    // dispatcher of another process on the same file finds the work at its next poll.
    subscribeDue() {
      return () => {};
    },
    // SQLite tells a process nothing of another's commits (as above): the migrations (a table of
    // a dozen rows) are read every MIGRATIONS_READ_EVERY_MS instead.
    watchMigrations(onNewer) {
      const read = db.prepare<[], { version: number; name: string }>('SELECT version, name FROM schema_migrations');
      const timer = setInterval(() => {
        try {
          refuseUnknownMigrations('sqlite', read.all(), known);
        } catch (err) {
          // A read that failed (the file busy, or closed under the timer): the next one tries again.
          if (!(err instanceof SchemaTooNewError)) return;
          clearInterval(timer);
          onNewer(err);
        }
      }, MIGRATIONS_READ_EVERY_MS);
      timer.unref();
      return () => clearInterval(timer);
    },
    async pruneFinished(before, batch) {
      return tx(() => deliveries.prune(before, batch));
    },
  };
}
