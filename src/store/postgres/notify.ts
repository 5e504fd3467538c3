import crypto from 'node:crypto';
import pg from 'pg';
import type { Logger } from 'pino';
import { backoffDelay } from '../../backoff.js';
import { refuseUnknownMigrations, SchemaTooNewError, type Migration } from '../migrations.js';
import { clientConfig, statement, type Conn, type ConnectionSettings, type Database } from './database.js';

/**
 * A NOTIFY channel of `schema`: each relay database (a schema) has its own, so relays of another
 * schema in the same database are not woken. Channel names are identifiers of at most 63
 * bytes; a long schema name is shortened to a digest.
 */
function channelOf(kind: 'due' | 'migrated', schema: string): string {
  const plain = `relay_${kind}_${schema}`;
  return plain.length <= 63 ? plain : `relay_${kind}_${crypto.createHash('sha256').update(schema).digest('hex').slice(0, 40)}`;
}

/** The channel of deliveries made due in `schema`. */
export const dueChannel = (schema: string) => channelOf('due', schema);

/** The channel on which a relay that applied migrations to `schema` says so (the payload: the last one's name). */
export const migratedChannel = (schema: string) => channelOf('migrated', schema);

/**
 * How a transaction that made deliveries due tells the dispatchers of other processes: once it
 * has committed, a NOTIFY on the schema's channel, sent on its own. PostgreSQL serialises the
 * commits of transactions that notify, so the NOTIFY is kept out of them, and the requests of
 * all this process's commits are coalesced: while one NOTIFY is on its way, any number of
 * further commits make one more. The payload names this store, so its own listener can skip
 * it. A process that dies between a commit and its NOTIFY leaves the work to the others' next
 * poll.
 */
export interface DueNotice {
  readonly channel: string;
  readonly self: string;
  /** The transaction of `c` makes deliveries due: notify once it has committed. */
  afterCommit(c: Conn): void;
}

const notifyDue = statement('SELECT pg_notify($1, $2)');

export function dueNotice(db: Pick<Database, 'rows'>, schema: string, self: string, log: Logger): DueNotice {
  const channel = dueChannel(schema);
  let sending = false;
  let again = false;
  async function send() {
    sending = true;
    try {
      do {
        again = false;
        await db.rows(notifyDue, [channel, self]);
      } while (again);
    } catch (err) {
      // The other processes find the work at their next poll.
      log.debug({ err }, 'could not notify other processes of due deliveries');
    } finally {
      sending = false;
    }
  }
  const notify = () => {
    if (sending) again = true;
    else void send();
  };
  return {
    channel,
    self,
    afterCommit(c) {
      c.afterCommit(notify);
    },
  };
}

/**
 * One connection outside the pool that LISTENs on the schema's channels while anyone subscribes:
 * on the due channel it calls every due subscriber when a notification arrives (those this
 * store itself sent carry its `self` token and are skipped: its own process wakes its
 * dispatcher directly); on the migrated channel, and after every connect, it reads the
 * schema's migrations and calls the migration watchers once if a later release applied one
 * this release does not know. A dropped connection is opened again with capped exponential
 * backoff and jitter; notifications sent meanwhile are lost, so due subscribers are called
 * once after every reconnect, and the migrations are read again.
 */
export function createSchemaListener(settings: ConnectionSettings, self: string, known: readonly Migration[], log: Logger) {
  const due = dueChannel(settings.schema);
  const migrated = migratedChannel(settings.schema);
  const subscribers = new Set<() => void>();
  const watchers = new Set<(err: SchemaTooNewError) => void>();
  let superseded: SchemaTooNewError | null = null;
  /** The listening loop now running, if any; stopping it ends its connection and its pause. */
  let current: { stopped: boolean; client: pg.Client | null; interrupt: () => void; done: Promise<void> } | null = null;

  const callAll = () => {
    for (const onDue of subscribers) {
      try {
        onDue();
      } catch (err) {
        log.error({ err }, 'a due-deliveries subscriber threw');
      }
    }
  };

  /** Reads the migrations on `c`; a later release's calls the watchers (once). */
  async function checkMigrations(c: pg.Client) {
    if (superseded || watchers.size === 0) return;
    const { rows } = await c.query<{ version: number; name: string }>('SELECT version, name FROM schema_migrations');
    try {
      refuseUnknownMigrations('postgres', rows, known);
    } catch (err) {
      if (!(err instanceof SchemaTooNewError) || superseded) throw err;
      superseded = err;
      for (const onNewer of watchers) onNewer(err);
    }
  }

  function start() {
    const state = { stopped: false, client: null as pg.Client | null, interrupt: () => {}, done: Promise.resolve() };

    /** Connects and listens; resolves (once listening) to a promise of the connection's end. */
    async function listen(): Promise<{ ended: Promise<void> }> {
      const c = new pg.Client(clientConfig(settings));
      state.client = c;
      const ended = new Promise<void>((resolve) => {
        c.on('error', (err) => {
          if (!state.stopped) log.warn({ err }, 'the PostgreSQL connection listening for notifications (due deliveries, migrations) failed');
          resolve();
        });
        c.on('end', () => resolve());
      });
      c.on('notification', (n) => {
        if (n.channel === due && n.payload !== self) callAll();
        if (n.channel === migrated) {
          checkMigrations(c).catch((err) => log.warn({ err }, 'could not read the migrations another process applied'));
        }
      });
      await c.connect();
      await c.query(`LISTEN "${due}"; LISTEN "${migrated}"`);
      // A migration applied while this connection was not listening sent its notification in vain.
      await checkMigrations(c);
      return { ended };
    }

    async function loop(): Promise<void> {
      let failures = 0;
      let listenedBefore = false;
      while (!state.stopped) {
        try {
          const { ended } = await listen();
          if (listenedBefore) callAll();
          if (failures > 0) log.info({ failures }, 'listening for notifications again');
          listenedBefore = true;
          failures = 0;
          await ended;
        } catch (err) {
          if (!state.stopped) log.warn({ err }, 'could not listen for notifications (due deliveries, migrations); trying again');
        }
        state.client?.end().catch(() => {});
        state.client = null;
        if (state.stopped) break;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, backoffDelay(++failures, { baseMs: 250, maxMs: 5_000 }));
          timer.unref();
          state.interrupt = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    }

    state.done = loop();
    current = state;
  }

  async function stop(): Promise<void> {
    const state = current;
    current = null;
    if (!state) return;
    state.stopped = true;
    state.interrupt();
    await state.client?.end().catch(() => {});
    await state.done;
  }

  /** Adds `item` to `set`, starting the connection if it is the first subscriber of either kind. */
  function join<T>(set: Set<T>, item: T): () => void {
    set.add(item);
    if (!current) start();
    return () => {
      set.delete(item);
      if (subscribers.size === 0 && watchers.size === 0) void stop();
    };
  }

  return {
    subscribe: (onDue: () => void): (() => void) => join(subscribers, onDue),
    watchMigrations: (onNewer: (err: SchemaTooNewError) => void): (() => void) => join(watchers, onNewer),
    close: stop,
  };
}
