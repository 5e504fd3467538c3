import crypto from 'node:crypto';
import type { Logger } from 'pino';
import type { Store } from '../store.js';
import { openDatabase } from './database.js';
import { deliveryQueries } from './deliveries.js';
import { engineStore } from './engine.js';
import { eventQueries } from './events.js';
import { listenerQueries } from './listeners.js';
import { backlogQueries } from './backlogs.js';
import { readGates } from './gates.js';
import { exclusively } from './locks.js';
import { readMigrations } from '../migrations.js';
import { migrate, POSTGRES_MIGRATIONS_DIR } from './migrate.js';
import { createSchemaListener, dueNotice } from './notify.js';
import { queueQueries } from './queue.js';
import { isReplayCursor } from '../rows.js';
import { rollupQueries } from './rollups.js';

export interface PostgresOptions {
  /** postgres://user:pass@host:5432/db */
  url: string;
  /** The schema every table lives in; created when missing. */
  schema: string;
  /** Connections in the pool. */
  pool: number;
  log: Logger;
  /** Deliveries per window of a listener's backlog (default BACKLOG_WINDOW; tests make it small). */
  backlogWindow?: number;
}

// The schema is set as each connection's search path at start-up, where it is not quoted.
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** The URL as the start-up log may show it: no password, and the schema. */
function locationOf(url: string, schema: string): string {
  let shown = url;
  try {
    const u = new URL(url);
    if (u.password) u.password = '';
    shown = u.toString();
  } catch {
    shown = url.replace(/:\/\/([^:@/]*):[^@/]*@/, '://$1@');
  }
  return `${shown} (schema ${schema})`;
}

/**
 * Opens the PostgreSQL store: applies the migrations (under an advisory lock, so processes
 * starting together apply each once), then serves the store contract from a connection pool.
 * Any number of relay processes may open the same database and schema and share its queue.
 */
export async function openPostgresStore(o: PostgresOptions): Promise<Store> {
  if (!SCHEMA_NAME.test(o.schema)) {
    throw new Error(`PostgreSQL schema name ${JSON.stringify(o.schema)}: use lower-case letters, digits and _, not starting with a digit`);
  }
  const settings = { url: o.url, schema: o.schema };
  const known = readMigrations(POSTGRES_MIGRATIONS_DIR);
  const appliedMigrations = await migrate(settings, known);
  const db = openDatabase({ ...settings, pool: o.pool, log: o.log });
  // This store's NOTIFYs carry its token, so its own LISTEN connection can skip them.
  const self = crypto.randomBytes(8).toString('hex');
  const notice = dueNotice(db, o.schema, self, o.log);
  const channels = createSchemaListener(settings, self, known, o.log);
  const backlogs = backlogQueries(db, notice, o.backlogWindow);
  const listeners = listenerQueries(db, backlogs);
  const events = eventQueries(db, notice, { appendsAtOnce: Math.max(1, Math.floor(o.pool / 2)) });
  const deliveries = deliveryQueries(db, notice);
  const queue = queueQueries(db, { notice, append: events.appendIn, backlogs });
  const rollups = rollupQueries(db);
  let closed: Promise<void> | null = null;

  return {
    ...engineStore(db, notice),
    backend: 'postgres',
    location: locationOf(o.url, o.schema),
    appliedMigrations,
    async ping() {
      await db.rows('SELECT 1');
    },
    close() {
      closed ??= channels.close().then(() => db.end());
      return closed;
    },
    exclusively: (name, fn) => exclusively(settings, name, fn),

    createListener: (l, maxPerProject) => listeners.create(l, maxPerProject),
    getListener: (project, id) => listeners.get(project, id),
    listListeners: (project, q) => listeners.list(project, q),
    updateListener: (project, id, spec, updatedAt) => listeners.update(project, id, spec, updatedAt),
    rotateListenerSecret: (project, id, rotation, updatedAt) => listeners.rotate(project, id, rotation, updatedAt),
    deleteListener: (project, id) => listeners.remove(project, id, Date.now()),
    moveListenerBacklogs: (now) => backlogs.next(now),
    listEnabledListeners: (project) => listeners.listEnabled(project),
    listenerOutcomes: (project, ids) => rollups.outcomes(project, ids),
    rollups: (project, q) => rollups.read(project, q),
    rollupTotals: (project, ids, since) => rollups.totals(project, ids, since),
    listenerGates: (project, ids) => readGates(db, project, ids),

    appendEvents: (project, list, routing, now) => events.appendEvents(project, list, routing, now),
    handOffTo: (h) => events.handOffTo(h),
    listEvents: (project, q) => events.list(project, q),
    eventCursorScope: (text) => events.cursorScope(text),
    getEvent: (project, id) => events.get(project, id),

    listDeliveries: (project, q) => deliveries.list(project, q),
    getDelivery: (project, id) => deliveries.get(project, id),
    listAttempts: (project, id) => deliveries.attempts(project, id),
    retryDelivery: (project, id, now) => deliveries.retry(project, id, now),
    replay: (project, listenerId, window, matches, now) => events.replay(project, listenerId, window, matches, now),
    isReplayCursor: (text, onlyFailed) => isReplayCursor(text, onlyFailed),

    recordAndClaim: (owner, results, claim, now, judge) => queue.recordAndClaim(owner, results, claim, now, judge),
    releaseLeases: (owner, ids, now) => deliveries.release(owner, ids, now),
    releaseLeasesOfGone: (isGone, now) => deliveries.releaseGone(isGone, now),
    renewLeases: (owner, ids, until) => deliveries.renew(owner, ids, until),
    nextDueAt: () => deliveries.nextDueAt(),
    queueDepth: (now) => deliveries.depth(now),
    subscribeDue: (onDue) => channels.subscribe(onDue),
    watchMigrations: (onNewer) => channels.watchMigrations(onNewer),
    pruneFinished: (before, batch) => deliveries.prune(before, batch),
  };
}
