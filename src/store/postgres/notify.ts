import crypto from 'node:crypto';
import pg from 'pg';
import type { Logger } from 'pino';
import { backoffDelay } from '../../backoff.js';
import { clientConfig, statement, type Conn, type ConnectionSettings, type Database } from './database.js';

/**
 * The NOTIFY channel of deliveries made due in `schema`: each relay database (a schema) has its
 * own, so relays of another schema in the same database are not woken. Channel names are
 * identifiers of at most 63 bytes; a long schema name is shortened to a digest.
 */
export function dueChannel(schema: string): string {
  const plain = `relay_due_${schema}`;
  return plain.length <= 63 ? plain : `relay_due_${crypto.createHash('sha256').update(schema).digest('hex').slice(0, 40)}`;
}

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
 * One connection outside the pool that LISTENs on the schema's channel and calls every
 * subscriber when a notification arrives. Notifications this store itself sent carry its
 * `self` token and are skipped: its own process wakes its dispatcher directly. A dropped
 * connection is opened again with capped exponential backoff and jitter; notifications sent
 * meanwhile are lost, so subscribers are called once after every reconnect.
 */
export function createDueListener(settings: ConnectionSettings, self: string, log: Logger) {
  const channel = dueChannel(settings.schema);
  const subscribers = new Set<() => void>();
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

  function start() {
    const state = { stopped: false, client: null as pg.Client | null, interrupt: () => {}, done: Promise.resolve() };

    /** Connects and listens; resolves (once listening) to a promise of the connection's end. */
    async function listen(): Promise<{ ended: Promise<void> }> {
      const c = new pg.Client(clientConfig(settings));
      state.client = c;
      const ended = new Promise<void>((resolve) => {
        c.on('error', (err) => {
          if (!state.stopped) log.warn({ err }, 'the PostgreSQL connection listening for due deliveries failed');
          resolve();
        });
        c.on('end', () => resolve());
      });
      c.on('notification', (n) => {
        if (n.channel === channel && n.payload !== self) callAll();
      });
      await c.connect();
      await c.query(`LISTEN "${channel}"`);
      return { ended };
    }

    async function loop(): Promise<void> {
      let failures = 0;
      let listenedBefore = false;
      while (!state.stopped) {
        try {
          const { ended } = await listen();
          if (listenedBefore) callAll();
          if (failures > 0) log.info({ failures }, 'listening for due deliveries again');
          listenedBefore = true;
          failures = 0;
          await ended;
        } catch (err) {
          if (!state.stopped) log.warn({ err }, 'could not listen for due deliveries; trying again');
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

  return {
    subscribe(onDue: () => void): () => void {
      subscribers.add(onDue);
      if (!current) start();
      return () => {
        subscribers.delete(onDue);
        if (subscribers.size === 0) void stop();
      };
    },
    close: stop,
  };
}
