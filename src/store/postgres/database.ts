import pg from 'pg';
import type { Logger } from 'pino';
import { isConnectionLost, isTransient, toStoreError } from './errors.js';

/** A statement with a name: prepared once per connection, then only bound and executed. */
export interface Statement {
  name: string;
  text: string;
}

/** A connection inside a transaction: what the query modules run on. */
export interface Conn {
  rows<R>(statement: Statement | string, values?: readonly unknown[]): Promise<R[]>;
  /** Rows changed (or returned) by the statement. */
  count(statement: Statement | string, values?: readonly unknown[]): Promise<number>;
  /**
   * The transaction's last statement, sent together with its COMMIT (one round trip for both);
   * resolves after the commit. A statement that fails makes the COMMIT a rollback, so a check
   * that must undo the transaction belongs in the statement (raise_retry).
   */
  commitWith<R>(statement: Statement | string, values?: readonly unknown[]): Promise<R[]>;
  /**
   * Runs `fn` once the transaction has committed (at once when it has already), never when it
   * rolls back; the same function asked for twice runs once.
   */
  afterCommit(fn: () => void): void;
}

export interface ConnectionSettings {
  url: string;
  schema: string;
}

const INT8_OID = 20;
const INT8_ARRAY_OID = 1016;
// The array type ids are not in pg-types' TypeId enum, though its parsers know them.
const builtinParser = pg.types.getTypeParser as (oid: number, format?: 'text' | 'binary') => (value: string) => unknown;
const parseTextArray = builtinParser(INT8_ARRAY_OID, 'text') as (value: string) => Array<string | null>;

/*
 * Times are unix ms in bigint columns (and gaps bigint arrays); pg hands bigints over as
 * strings because they may exceed 2^53. Ours never do, so this store reads them as numbers.
 * Set per connection rather than globally, so other pg users in the process (tests, plugins)
 * keep the library's default.
 */
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if ((format ?? 'text') === 'text') {
      if (oid === INT8_OID) return (value: string) => Number(value);
      if (oid === INT8_ARRAY_OID) return (value: string) => parseTextArray(value).map((v) => (v === null ? null : Number(v)));
    }
    return builtinParser(oid, format);
  },
};

/**
 * What every connection of the store is opened with, the LISTEN client's included: the schema
 * as the search path (a startup parameter, so no statement can run before it is set); plans
 * made for each execution's values (plan_cache_mode=force_custom_plan: a generic plan cached
 * while a table was nearly empty goes on scanning it whole once it is large, until something
 * analyses it, and the relay's tables grow from empty at thousands of rows a second); no JIT
 * compilation (jit=off: a list page reads with sorts off, and a sort it still needs then costs
 * the plan past jit_above_cost, so its 0.5 ms of work came with 0.4 s of compiling); TCP
 * keep-alive, so a connection to a vanished server is noticed, and a bound on connecting (and on
 * waiting for a pooled connection), after which the caller is told to come back later.
 */
export function clientConfig({ url, schema }: ConnectionSettings): pg.ClientConfig {
  return {
    connectionString: url,
    options: `-c search_path=${schema} -c plan_cache_mode=force_custom_plan -c jit=off`,
    application_name: 'callback-relay',
    types,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    connectionTimeoutMillis: 5_000,
  };
}

let statements = 0;
/** Names a hot-path statement once, at module load; the name is the same in every connection. */
export function statement(text: string): Statement {
  return { name: `relay_${++statements}`, text };
}

const asQuery = (s: Statement | string, values: readonly unknown[]) =>
  typeof s === 'string' ? { text: s, values: values as unknown[] } : { name: s.name, text: s.text, values: values as unknown[] };

/** Awaits a COMMIT, which answers ROLLBACK instead of failing when the transaction had failed. */
async function committed(commit: Promise<pg.QueryResult>): Promise<void> {
  if ((await commit).command === 'ROLLBACK') throw new Error('the transaction was rolled back at its commit');
}

/**
 * Runs `send` with the connection's socket corked, so the queries it starts leave in one write:
 * each write to the server wakes its backend, and a transaction's BEGIN and first statement
 * (or its last statement and COMMIT) need only one.
 */
function inOneWrite<T>(client: pg.PoolClient, send: () => T): T {
  const stream = (client as unknown as { connection?: { stream?: { cork?(): void; uncork?(): void } } }).connection?.stream;
  stream?.cork?.();
  try {
    return send();
  } finally {
    stream?.uncork?.();
  }
}

/** A transaction's connection; `committed` is set once commitWith has committed. */
function connOf(client: pg.PoolClient): Conn & { committed: boolean; commitDone(): void } {
  const after = new Set<() => void>();
  return {
    committed: false,
    afterCommit(fn: () => void) {
      if (this.committed) fn();
      else after.add(fn);
    },
    /** Marks the transaction committed and runs what waited for that. */
    commitDone() {
      this.committed = true;
      for (const fn of after) fn();
      after.clear();
    },
    async rows<R>(s: Statement | string, values: readonly unknown[] = []) {
      return (await client.query(asQuery(s, values))).rows as R[];
    },
    async count(s: Statement | string, values: readonly unknown[] = []) {
      return (await client.query(asQuery(s, values))).rowCount ?? 0;
    },
    async commitWith<R>(s: Statement | string, values: readonly unknown[] = []) {
      const [result, commit] = inOneWrite(client, () => [client.query(asQuery(s, values)), client.query('COMMIT')] as const);
      // Both are settled below; neither may reject unobserved meanwhile.
      result.catch(() => {});
      commit.catch(() => {});
      const { rows } = await result;
      await committed(commit);
      this.commitDone();
      return rows as R[];
    },
  };
}

export interface Database {
  /** One statement on any pooled connection, outside a transaction (so in one of its own). */
  rows<R>(statement: Statement | string, values?: readonly unknown[]): Promise<R[]>;
  count(statement: Statement | string, values?: readonly unknown[]): Promise<number>;
  /**
   * Runs `fn` in one transaction on one pooled connection and commits; resolves after commit.
   * A deadlock, a serialization failure or a RetryTransaction from `fn` runs it all again (a
   * few times); database failures that are not the request's fault become StoreUnavailableError.
   */
  transaction<T>(fn: (c: Conn) => Promise<T>): Promise<T>;
  end(): Promise<void>;
}

const TRANSACTION_RUNS = 5;

export function openDatabase(settings: ConnectionSettings & { pool: number; log: Logger }): Database {
  const { log } = settings;
  // Pipeline mode sends a query without waiting for the answer to the one before: a
  // transaction's BEGIN travels with its first statement, saving a round trip on each.
  const pool = new pg.Pool({ ...clientConfig(settings), pipeline: true, max: settings.pool, idleTimeoutMillis: 30_000 });
  // A connection that dies while idle, or between two queries of a checked-out client, emits
  // 'error' on its client; unhandled, that would end the process. The pool drops idle ones by
  // itself; a checked-out one fails its next query, and is then released as broken.
  pool.on('error', (err) => {
    // pg-pool hangs the client on the error; logged, it would write out the whole connection
    // (its prepared statements' text among it) in one line of some twenty kilobytes.
    Reflect.deleteProperty(err, 'client');
    log.warn({ err }, 'an idle PostgreSQL connection failed; the pool opens a new one when needed');
  });
  pool.on('connect', (client) => {
    client.on('error', (err) => log.debug({ err }, 'a PostgreSQL connection failed'));
  });

  async function connect(): Promise<pg.PoolClient> {
    try {
      return await pool.connect();
    } catch (err) {
      throw toStoreError(err);
    }
  }

  /** Gives the client back; one whose connection broke (or whose state is unknown) is closed instead. */
  async function settle(client: pg.PoolClient, err: unknown, inTransaction: boolean): Promise<void> {
    if (isConnectionLost(err)) {
      client.release(err as Error);
      return;
    }
    if (!inTransaction) {
      client.release();
      return;
    }
    try {
      await client.query('ROLLBACK');
      client.release();
    } catch (rollbackErr) {
      client.release(rollbackErr as Error);
    }
  }

  async function single(s: Statement | string, values: readonly unknown[]): Promise<pg.QueryResult> {
    const client = await connect();
    try {
      const result = await client.query(asQuery(s, values));
      client.release();
      return result;
    } catch (err) {
      await settle(client, err, false);
      throw toStoreError(err);
    }
  }

  return {
    rows: async (s, values = []) => (await single(s, values)).rows,
    count: async (s, values = []) => (await single(s, values)).rowCount ?? 0,
    async transaction<T>(fn: (c: Conn) => Promise<T>): Promise<T> {
      for (let run = 1; ; run++) {
        const client = await connect();
        let value: T;
        try {
          const conn = connOf(client);
          // BEGIN leaves with the statement `fn` starts first (when it starts one at once). Its
          // failure, if any, is that statement's too; it is awaited before COMMIT.
          const [begun, done] = inOneWrite(client, () => {
            const begin = client.query('BEGIN');
            begin.catch(() => {});
            return [begin, fn(conn)] as const;
          });
          value = await done;
          await begun;
          if (!conn.committed) {
            await committed(client.query('COMMIT'));
            conn.commitDone();
          }
        } catch (err) {
          await settle(client, err, true);
          if (isTransient(err) && run < TRANSACTION_RUNS) continue;
          throw toStoreError(err);
        }
        client.release();
        return value;
      }
    },
    async end() {
      await pool.end();
    },
  };
}
