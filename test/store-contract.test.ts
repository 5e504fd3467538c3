import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  initialGateState,
  type GateAdmission,
  type GateCandidate,
  type GateListener,
  type JudgedAttempt,
  type ListenerGateState,
} from '../src/dispatch/listener-gate.js';
import type { EventEnvelope } from '../src/records/event.js';
import { specOf, type StoredListener } from '../src/records/listener.js';
import type { ExecutionRecord, TaskRecord } from '../src/records/states.js';
import { openPostgresStore } from '../src/store/postgres/index.js';
import { openSqliteStore } from '../src/store/sqlite/index.js';
import {
  LATENCY_BOUNDS_MS,
  StoreConflictError,
  type AttemptRecord,
  type AttemptResult,
  type ClaimedDelivery,
  type FanOut,
  type ListenerRouting,
  type DeliveryQuery,
  type ListOrder,
  type ListPage,
  type NewEvent,
  type RecordJudge,
  type Store,
} from '../src/store/store.js';
import { createTestSchema, TEST_BACKENDS, TEST_DATABASE_URL, type TestBackend } from './helpers/backend.js';
import { storedListener, taskEnvelope } from './helpers/envelopes.js';
import { tempDir } from './helpers/relay.js';
import { ROOT } from './helpers/spawn-relay.js';
import { createFanOut } from '../src/fanout/fanout.js';

/*
 * The store contract (src/store/store.ts, src/store/engine-store.ts), run against every
 * backend: what one passes, the other must. Each test opens a new database (a SQLite file, or
 * a PostgreSQL schema of its own, dropped afterwards), so queue-wide answers (depth, due times,
 * in-flight tasks) are exact. "Another process" is a second store on the same database.
 */

const P = 'p1';
const Q = 'p2';
const MINUTE = 60_000;
// Times near the real clock, on a whole minute: pruning reads delivery ids (ULIDs made from
// these times), `in_flight` is judged by the store's clock, and rollups count whole minutes.
const T = Math.floor(Date.now() / MINUTE) * MINUTE;
const LONG_LEASE = 600_000;
const iso = (ms: number) => new Date(ms).toISOString();
const silent = pino({ level: 'silent' });

interface TestDatabase {
  /** Opens a store on this database (again: another process of the same deployment). */
  /** `backlogWindow`: deliveries per window of a listener's backlog (the store's default unless given). */
  open(o?: { backlogWindow?: number }): Promise<Store>;
  /** Where a SQLite database lives; the schema on PostgreSQL. */
  where: string;
  /** Closes every store opened and removes the database. */
  close(): Promise<void>;
  /**
   * Commits `sql` (`$1`… parameters) on a connection of its own just before a store next runs a
   * statement whose text matches `marker`: another process's commit falling between two reads.
   */
  commitBefore(marker: RegExp, sql: string, params: unknown[]): void;
}

async function newDatabase(backend: TestBackend, url = TEST_DATABASE_URL): Promise<TestDatabase> {
  const stores: Store[] = [];
  const opened = (store: Store) => (stores.push(store), store);
  if (backend === 'sqlite') {
    const dir = tempDir('store-contract-');
    const file = path.join(dir, 'relay.db');
    let raw: Database.Database | null = null;
    return {
      where: file,
      open: async (o = {}) => opened(await openSqliteStore({ path: file, durability: 'full', busyTimeoutMs: 5_000, commitIntervalMs: 0, ...o })),
      async close() {
        raw?.close();
        await Promise.all(stores.map((s) => s.close()));
        fs.rmSync(dir, { recursive: true, force: true });
      },
      commitBefore(marker, sql, params) {
        const other = (raw ??= new Database(file));
        // Every connection's statements share one prototype; its `get` is put back at once.
        const proto = Object.getPrototypeOf(other.prepare('SELECT 1')) as { get: (...args: unknown[]) => unknown };
        const get = proto.get;
        proto.get = function (this: { source: string }, ...args: unknown[]) {
          if (marker.test(this.source)) {
            proto.get = get;
            other.prepare(sql.replace(/\$\d+/g, '?')).run(...params);
          }
          return get.apply(this, args);
        };
      },
    };
  }
  const schema = await createTestSchema('contract');
  return {
    where: schema.schema,
    open: async (o = {}) => opened(await openPostgresStore({ url, schema: schema.schema, pool: 4, log: silent, ...o })),
    async close() {
      await Promise.all(stores.map((s) => s.close()));
      await schema.drop();
    },
    commitBefore(marker, sql, params) {
      const proto = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
      const query = proto.query;
      proto.query = function (this: unknown, q: unknown, ...rest: unknown[]) {
        const text = typeof q === 'string' ? q : (q as { text?: string } | null)?.text;
        if (typeof text !== 'string' || !marker.test(text)) return query.call(this, q, ...rest);
        proto.query = query;
        const other = new pg.Client({ connectionString: url });
        const committed = other
          .connect()
          .then(() => other.query(`SET search_path = ${schema.schema}`))
          .then(() => other.query(sql, params))
          .finally(() => other.end());
        return committed.then(() => query.call(this, q, ...rest));
      };
    },
  };
}

const migrationFiles = (backend: TestBackend) =>
  fs.readdirSync(path.join(ROOT, 'db', backend)).filter((f) => /^\d+_.+\.sql$/.test(f)).sort();

// ---- records ---------------------------------------------------------------------------------

const listener = (id: string, over: Partial<StoredListener> = {}): StoredListener =>
  storedListener(id, { project: P, created_at: iso(T), updated_at: iso(T), ...over });

function event(id: string, over: Partial<EventEnvelope> = {}, bodyHash = `hash-${id}`): NewEvent {
  return { envelope: taskEnvelope({ id, sequence: null, ...over }), original: null, bodyHash };
}

function attempt(number: number, startedAt: number, over: Partial<AttemptRecord> = {}): AttemptRecord {
  return { number, started_at: startedAt, duration_ms: 5, status_code: 200, error: null, response_excerpt: null, ...over };
}

type Outcome = Pick<AttemptResult, 'status' | 'nextAttemptAt' | 'lastError' | 'disableListener'>;
const SUCCEEDED: Outcome = { status: 'succeeded', nextAttemptAt: null, lastError: null, disableListener: null };

/** The first attempt of a delivery to this listener, as a claim or a hand-over gives it to the dispatcher. */
const firstAttemptOf = (l: StoredListener, deliveryId: string): ClaimedDelivery => ({
  id: deliveryId,
  project: P,
  listenerId: l.id,
  attemptNumber: 1,
  envelopeJson: expect.any(String),
  original: null,
  listener: {
    callback: l.callback,
    retry: l.retry,
    secret: l.secret,
    previous_secret: null,
    previous_secret_expires_at: null,
    updated_at: l.updated_at,
    max_in_flight: l.max_in_flight,
    ordering: l.ordering,
  },
  gap: null,
});
/** The event a claimed delivery carries. */
const envelopeOf = (d: ClaimedDelivery) => JSON.parse(d.envelopeJson) as EventEnvelope;

function result(d: ClaimedDelivery, a: AttemptRecord, outcome: Outcome = SUCCEEDED): AttemptResult {
  const { id: eventId, type: eventType } = envelopeOf(d);
  return { deliveryId: d.id, listenerId: d.listenerId, project: d.project, eventId, eventType, attempt: a, ...outcome };
}

type ClaimAdmit = (candidates: readonly GateCandidate[], listeners: ReadonlyMap<string, GateListener>, now: number) => GateAdmission;

/** The admission gate's listener step, letting every candidate go. */
const admitAll: ClaimAdmit = (candidates) => ({ take: candidates.map((c) => c.id), defer: new Map(), changed: new Map() });

function execution(id: string, at: number, over: Partial<ExecutionRecord> = {}): ExecutionRecord {
  return {
    id,
    project: P,
    workbook: 'wb',
    workflow: 'main',
    spec: { tasks: { a: { action: 'std.noop' } } },
    input: { n: 1 },
    state: 'RUNNING',
    state_info: null,
    pending_operation: null,
    created_at: at,
    updated_at: at,
    ...over,
  };
}

function task(id: string, executionId: string, at: number, over: Partial<TaskRecord> = {}): TaskRecord {
  return {
    id,
    project: P,
    execution_id: executionId,
    name: id,
    action: 'std.noop',
    state: 'RUNNING',
    state_info: null,
    result: null,
    tries: 0,
    next_run_at: at,
    action_started_at: null,
    rerun: false,
    created_at: at,
    updated_at: at,
    ...over,
  };
}

function engineEvent(id: string, type: string, executionId: string, taskId: string | null = null): EventEnvelope {
  return taskEnvelope({
    id,
    type,
    category: taskId ? 'TASK' : 'EXECUTION',
    workbook: 'wb',
    workflow: 'main',
    execution_id: executionId,
    task_id: taskId,
    task_name: taskId,
    sequence: null,
    source: 'engine',
  });
}

/** A relay.listener.disabled envelope, as a judge's turnedOff answers one. */
function relayOff(id: string, data: Record<string, unknown>, now: number): EventEnvelope {
  return taskEnvelope({
    id,
    type: 'relay.listener.disabled',
    category: 'NOTIFICATION',
    workbook: null,
    workflow: null,
    execution_id: null,
    task_id: null,
    task_name: null,
    sequence: null,
    source: 'relay',
    occurred_at: new Date(now).toISOString(),
    data,
  });
}

/**
 * A ListenerRouting as the fan-out keeps one: a matcher per project, compiled from the enabled
 * listeners the store hands over (workbook `*` or equal, category listed) and reused while the
 * project's listener version stays. `compiles` shows when the store asked for a new one.
 */
function countingRouting() {
  const compiled = new Map<string, { version: number; fanOut: FanOut }>();
  const compiles: Array<{ project: string; version: number; listeners: string[] }> = [];
  const routing: ListenerRouting = {
    at: (project, version) => {
      const c = compiled.get(project);
      return c && c.version === version ? c.fanOut : null;
    },
    // It keeps no listener, so the store hands over every enabled listener's row.
    kept: () => new Map(),
    compile(project, version, heads) {
      const enabled = heads.map((h) => h.row!);
      compiles.push({ project, version, listeners: enabled.map((l) => l.id).sort() });
      const match = (e: EventEnvelope) =>
        enabled.filter((l) => (l.workbook === '*' || l.workbook === e.workbook) && l.event_types.includes(e.category)).map((l) => l.id);
      const fanOut: FanOut = Object.assign(match, { ordered: new Set(enabled.filter((l) => l.ordering === 'execution').map((l) => l.id)) });
      compiled.set(project, { version, fanOut });
      return fanOut;
    },
  };
  return { routing, compiles };
}

// ---- the contract, per backend ---------------------------------------------------------------

describe.each(TEST_BACKENDS)('store contract on %s', (backend) => {
  let db: TestDatabase;
  let store: Store;
  let routing: ListenerRouting;

  beforeEach(async () => {
    db = await newDatabase(backend);
    store = await db.open();
    routing = countingRouting().routing;
  });
  afterEach(async () => {
    await db.close();
  });

  /** Claims every due delivery (up to `limit` per project) for `owner`. */
  async function claim(
    s: Store,
    owner: string,
    now: number,
    o: { leaseMs?: number; limit?: number; transports?: string[]; admit?: ClaimAdmit } = {},
  ) {
    const out = await s.recordAndClaim(
      owner,
      [],
      {
        owner,
        now,
        leaseMs: o.leaseMs ?? 500,
        transports: o.transports ?? ['http'],
        allot: (due) => new Map(due.map((p) => [p, o.limit ?? 100])),
        admit: o.admit ?? admitAll,
      },
      now,
    );
    return out.claimed;
  }
  const record = async (owner: string, results: AttemptResult[], now: number) =>
    (await store.recordAndClaim(owner, results, null, now)).disabledListeners;
  const ids = (rows: Array<{ id: string }>) => rows.map((r) => r.id);
  const sorted = (list: string[]) => [...list].sort();

  /** Creates the listeners (l1 unless given) and appends the events at `now`, routed to them. */
  async function seed(eventIds: string[], listeners: StoredListener[] = [listener('l1')], now = T) {
    for (const l of listeners) await store.createListener(l);
    return store.appendEvents(P, eventIds.map((id) => event(id)), routing, now);
  }
  /** The delivery of `eventId` to `listenerId`. */
  async function deliveryOf(eventId: string, listenerId = 'l1') {
    const [d] = (await store.listDeliveries(P, { event_id: eventId, listener_id: listenerId, limit: 10 })).rows;
    if (!d) throw new Error(`no delivery of ${eventId} to ${listenerId}`);
    return d;
  }

  describe('opening', () => {
    it('migrates a new database once, answers ping and says where it lives', async () => {
      expect(store.backend).toBe(backend);
      expect(store.appliedMigrations).toEqual(migrationFiles(backend));
      await expect(store.ping()).resolves.toBeUndefined();
      const again = await db.open();
      expect(again.appliedMigrations).toEqual([]);
      expect(store.location).toContain(db.where);
    });

    if (backend === 'postgres') {
      it('applies each migration once when two processes start together, and never shows the password', async () => {
        const withPassword = TEST_DATABASE_URL.replace('postgres@', 'postgres:s3cret-pw@');
        const fresh = await newDatabase('postgres', withPassword);
        try {
          const [a, b] = await Promise.all([fresh.open(), fresh.open()]);
          expect(sorted([...a.appliedMigrations, ...b.appliedMigrations])).toEqual(migrationFiles('postgres'));
          expect(a.location).toContain(fresh.where);
          expect(a.location).not.toContain('s3cret-pw');
        } finally {
          await fresh.close();
        }
      });
    }
  });

  describe('listeners', () => {
    it('keeps listeners per project: create, read, page, update, rotate, delete', async () => {
      const l1 = listener('l1');
      const l2 = listener('l2', { workbook: 'billing' });
      const l3 = listener('l3', { enabled: false, disabled_reason: 'gone' });
      for (const l of [l1, l2, l3, storedListener('l9', { project: Q })]) await store.createListener(l);

      expect(await store.getListener(P, 'l1')).toEqual(l1);
      expect(await store.getListener(P, 'l3')).toEqual(l3);
      expect(await store.getListener(Q, 'l1')).toBeNull();
      expect(await store.getListener(P, 'l9')).toBeNull();
      expect(ids(await store.listListeners(P, { limit: 2 }))).toEqual(['l1', 'l2']);
      expect(ids(await store.listListeners(P, { limit: 2, after: 'l2' }))).toEqual(['l3']);
      expect(ids(await store.listListeners(P, { limit: 2, after: 'l3' }))).toEqual([]);
      expect(ids(await store.listListeners(P, { limit: 10, workbook: 'billing' }))).toEqual(['l2']);
      expect(ids(await store.listListeners(Q, { limit: 10 }))).toEqual(['l9']);
      expect(sorted(ids(await store.listEnabledListeners(P)))).toEqual(['l1', 'l2']);

      const updated = await store.updateListener(P, 'l1', { ...specOf(l1), description: 'changed', retry: { schedule_ms: [10, 20] } }, iso(T + 1));
      expect(updated).toEqual({ ...l1, description: 'changed', retry: { schedule_ms: [10, 20] }, updated_at: iso(T + 1) });
      expect(await store.getListener(P, 'l1')).toEqual(updated);
      expect(await store.updateListener(Q, 'l1', specOf(l1), iso(T + 1))).toBeNull();
      // Turning a listener back on clears the reason the relay had turned it off.
      expect(await store.updateListener(P, 'l3', { ...specOf(l3), enabled: true }, iso(T + 2))).toEqual({
        ...l3,
        enabled: true,
        disabled_reason: null,
        updated_at: iso(T + 2),
      });

      const secret = 'whsec_' + Buffer.alloc(32, 2).toString('base64');
      const rotation = { secret, previousSecret: l1.secret, previousSecretExpiresAt: iso(T + 86_400_000) };
      expect(await store.rotateListenerSecret(P, 'l1', rotation, iso(T + 3))).toEqual({
        ...updated,
        secret,
        previous_secret: l1.secret,
        previous_secret_expires_at: iso(T + 86_400_000),
        updated_at: iso(T + 3),
      });
      expect(await store.rotateListenerSecret(Q, 'l1', rotation, iso(T + 3))).toBeNull();

      expect(await store.deleteListener(Q, 'l1')).toBe(false);
      expect(await store.deleteListener(P, 'l1')).toBe(true);
      expect(await store.deleteListener(P, 'l1')).toBe(false);
      expect(await store.getListener(P, 'l1')).toBeNull();
      expect(ids(await store.listListeners(Q, { limit: 10 }))).toEqual(['l9']);
    });

    it('routes the very next append by every listener change, recompiling only for the project that changed', async () => {
      const { routing: counted, compiles } = countingRouting();
      const append = async (id: string) => (await store.appendEvents(P, [event(id)], counted, T))[0];
      const l1 = listener('l1');
      const l2 = listener('l2');
      await store.createListener(l1);
      expect(await append('e1')).toEqual({ id: 'e1', duplicate: false, deliveries: 1, handed: 0 });
      expect(await append('e2')).toEqual({ id: 'e2', duplicate: false, deliveries: 1, handed: 0 });
      expect(compiles).toHaveLength(1); // the same version: the compiled matcher is reused

      await store.createListener(storedListener('q1', { project: Q }));
      expect((await append('e3')).deliveries).toBe(1);
      expect(compiles).toHaveLength(1); // another project's change leaves this one's version

      await store.createListener(l2);
      expect((await append('e4')).deliveries).toBe(2);
      await store.updateListener(P, 'l2', { ...specOf(l2), enabled: false }, iso(T + 1));
      expect((await append('e5')).deliveries).toBe(1);
      const rotation = { secret: l1.secret, previousSecret: l1.secret, previousSecretExpiresAt: iso(T + 1) };
      await store.rotateListenerSecret(P, 'l1', rotation, iso(T + 2));
      expect((await append('e6')).deliveries).toBe(1);
      await store.deleteListener(P, 'l1');
      expect((await append('e7')).deliveries).toBe(0);

      expect(compiles.map((c) => [c.project, c.listeners])).toEqual([
        [P, ['l1']],
        [P, ['l1', 'l2']],
        [P, ['l1']],
        [P, ['l1']],
        [P, []],
      ]);
      const versions = compiles.map((c) => c.version);
      expect(versions.every((v, i) => i === 0 || v > versions[i - 1])).toBe(true);
    });

    it('hands over, after a change, the rows only of the listeners the routing does not keep at their revision', async () => {
      const fanOut = createFanOut();
      const handed: string[][] = [];
      const keeping: ListenerRouting = {
        at: fanOut.at,
        kept: fanOut.kept,
        compile(project, version, enabled, kept) {
          handed.push(enabled.filter((e) => e.row !== null).map((e) => e.id).sort());
          return fanOut.compile(project, version, enabled, kept);
        },
      };
      const other = await db.open();
      const append = async (id: string) => (await store.appendEvents(P, [event(id)], keeping, T))[0].deliveries;
      const [l1, l2, l3] = ['l1', 'l2', 'l3'].map((id) => listener(id));
      for (const l of [l1, l2, l3]) await store.createListener(l);
      expect(await append('e1')).toBe(3);

      await store.updateListener(P, 'l2', { ...specOf(l2), description: 'changed' }, iso(T + 1));
      expect(await append('e2')).toBe(3);
      await store.rotateListenerSecret(P, 'l3', { secret: l3.secret, previousSecret: l3.secret, previousSecretExpiresAt: iso(T + 1) }, iso(T + 1));
      expect(await append('e3')).toBe(3);
      // Two changes within one millisecond, the second through another connection.
      await store.updateListener(P, 'l1', { ...specOf(l1), workbook: 'other' }, iso(T + 2));
      expect(await append('e4')).toBe(2);
      await other.updateListener(P, 'l1', { ...specOf(l1), workbook: '*' }, iso(T + 2));
      expect(await append('e5')).toBe(3);
      await other.updateListener(P, 'l1', { ...specOf(l1), enabled: false }, iso(T + 3));
      expect(await append('e6')).toBe(2);
      await store.createListener(listener('l4'));
      expect(await append('e7')).toBe(3);
      await store.deleteListener(P, 'l2');
      expect(await append('e8')).toBe(2);
      await store.updateListener(P, 'l1', { ...specOf(l1), enabled: true }, iso(T + 4));
      expect(await append('e9')).toBe(3);

      expect(handed).toEqual([['l1', 'l2', 'l3'], ['l2'], ['l3'], ['l1'], ['l1'], [], ['l4'], [], ['l1']]);
    });

    it('routes by a change another process committed', async () => {
      const other = await db.open();
      const { routing: here, compiles } = countingRouting();
      const l1 = listener('l1');
      await store.createListener(l1);
      expect((await store.appendEvents(P, [event('e1')], here, T))[0].deliveries).toBe(1);
      await other.createListener(listener('l2'));
      expect((await store.appendEvents(P, [event('e2')], here, T))[0].deliveries).toBe(2);
      await other.updateListener(P, 'l1', { ...specOf(l1), enabled: false }, iso(T + 1));
      expect((await store.appendEvents(P, [event('e3')], here, T))[0].deliveries).toBe(1);
      expect(compiles.map((c) => c.listeners)).toEqual([['l1'], ['l1', 'l2'], ['l2']]);
    });
  });

  describe('appending events', () => {
    it('writes events with their deliveries and numbers each execution without gaps', async () => {
      await store.createListener(listener('l1'));
      const first = await store.appendEvents(P, [event('a'), event('b', { execution_id: 'exec-2' }), event('c')], routing, T);
      const second = await store.appendEvents(P, [event('n', { execution_id: null }), event('d')], routing, T + 5);
      expect([...first, ...second]).toEqual(['a', 'b', 'c', 'n', 'd'].map((id) => ({ id, duplicate: false, deliveries: 1, handed: 0 })));

      const listed = (await store.listEvents(P, { limit: 10 })).rows;
      expect(listed.map((e) => [e.envelope.id, e.envelope.sequence, e.received_at])).toEqual([
        ['a', 1, T],
        ['b', 1, T],
        ['c', 2, T],
        ['n', null, T + 5],
        ['d', 3, T + 5],
      ]);
      expect(await store.getEvent(P, 'c')).toEqual({ envelope: { ...event('c').envelope, sequence: 2 }, received_at: T });
      expect(await store.getEvent(Q, 'c')).toBeNull();
      expect(await deliveryOf('c')).toEqual({
        id: expect.any(String),
        event_id: 'c',
        event_type: 'TASK_SUCCEEDED',
        workbook: 'billing',
        listener_id: 'l1',
        status: 'pending',
        attempt_count: 0,
        next_attempt_at: T,
        in_flight: false,
        last_error: null,
        created_at: T,
        updated_at: T,
      });
    });

    it('appends all of a call or none of it', async () => {
      await seed(['a']);
      await expect(store.appendEvents(P, [event('b'), event('c'), event('a', {}, 'another body')], routing, T)).rejects.toBeInstanceOf(
        StoreConflictError,
      );
      expect(await store.getEvent(P, 'b')).toBeNull();
      expect(await store.getEvent(P, 'c')).toBeNull();
      expect(ids((await store.listDeliveries(P, { limit: 10 })).rows)).toHaveLength(1);
      // The numbers the rolled-back events took are given again: no gap.
      await store.appendEvents(P, [event('d')], routing, T);
      expect((await store.getEvent(P, 'd'))!.envelope.sequence).toBe(2);
    });

    it('stores a duplicate once and refuses the same id with another body', async () => {
      await store.createListener(listener('l1'));
      await store.createListener(storedListener('q1', { project: Q }));
      expect(await store.appendEvents(P, [event('a')], routing, T)).toEqual([{ id: 'a', duplicate: false, deliveries: 1, handed: 0 }]);
      expect(await store.appendEvents(P, [event('a')], routing, T + 1)).toEqual([{ id: 'a', duplicate: true, deliveries: 0, handed: 0 }]);
      await expect(store.appendEvents(P, [event('a', {}, 'another body')], routing, T + 2)).rejects.toBeInstanceOf(StoreConflictError);
      // Event ids belong to their project.
      expect(await store.appendEvents(Q, [event('a')], routing, T)).toEqual([{ id: 'a', duplicate: false, deliveries: 1, handed: 0 }]);
      expect((await store.listDeliveries(P, { limit: 10 })).rows).toHaveLength(1);
      expect((await store.getEvent(P, 'a'))!.received_at).toBe(T);
    });

    it('answers concurrent calls as if they ran one by one: a conflicting call alone fails, a repeated id is a duplicate, numbers have no gap', async () => {
      await seed(['a']);
      // The calls after the first few wait for those and may share a transaction (a store may
      // commit concurrent calls together): the conflicting ones come last, among them.
      const calls = [
        ...Array.from({ length: 20 }, (_, i) => [event(`s${i}`)]),
        [event('b'), event('c')],
        [event('d'), event('a', {}, 'another body')],
        [event('c'), event('e')],
        [event('f', {}, 'first'), event('f', {}, 'second')],
      ];
      const settled = await Promise.allSettled(calls.map((list) => store.appendEvents(P, list, routing, T + 1)));
      expect(settled.map((r) => r.status)).toEqual([...calls.slice(0, 20).map(() => 'fulfilled'), 'fulfilled', 'rejected', 'fulfilled', 'rejected']);
      expect((settled[21] as PromiseRejectedResult).reason).toBeInstanceOf(StoreConflictError);
      expect((settled[23] as PromiseRejectedResult).reason).toBeInstanceOf(StoreConflictError);
      const answered = settled.map((r) => (r.status === 'fulfilled' ? r.value.map((x) => [x.id, x.duplicate]) : null));
      expect(answered.slice(20, 23)).toEqual([[['b', false], ['c', false]], null, [['c', true], ['e', false]]]);
      // Nothing of a refused call is stored, and exec-1's numbers run on without a gap.
      expect(await store.getEvent(P, 'd')).toBeNull();
      expect(await store.getEvent(P, 'f')).toBeNull();
      const sequences = ((await store.listEvents(P, { limit: 100, execution_id: 'exec-1' })).rows).map((e) => [e.envelope.id, e.envelope.sequence]);
      expect(sequences.map(([, n]) => n)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
      expect(new Set(sequences.map(([id]) => id))).toEqual(new Set(['a', 'b', 'c', 'e', ...Array.from({ length: 20 }, (_, i) => `s${i}`)]));
      expect((await store.listDeliveries(P, { limit: 100 })).rows).toHaveLength(24);
    });

    it('numbers concurrent appends to one execution 1..n, from two processes', async () => {
      const other = await db.open();
      await store.createListener(listener('l1'));
      const n = 24;
      await Promise.all(
        Array.from({ length: n }, (_, i) => (i % 2 ? other : store).appendEvents(P, [event(`e${i}`)], countingRouting().routing, T)),
      );
      // In commit order: the event log lists them by the sequence they were given.
      const sequences = ((await store.listEvents(P, { limit: 100, execution_id: 'exec-1' })).rows).map((e) => e.envelope.sequence);
      expect(sequences).toEqual(Array.from({ length: n }, (_, i) => i + 1));
      expect((await store.listDeliveries(P, { limit: 100 })).rows).toHaveLength(n);
    });
  });

  describe('lists', () => {
    type EventFilter = { execution_id?: string; type?: string; workbook?: string; since?: number };
    async function walkEvents(order: ListOrder | undefined, limit: number, filter: EventFilter = {}) {
      const pages: string[][] = [];
      let after: string | null = null;
      for (;;) {
        const { rows: page, resume } = await store.listEvents(P, { ...filter, order, limit, after });
        expect(resume).toBeNull();
        if (page.length === 0) return pages;
        for (const e of page) expect(store.eventCursorScope(e.cursor)).toEqual({ execution_id: filter.execution_id ?? null });
        pages.push(page.map((e) => e.envelope.id));
        after = page.at(-1)!.cursor;
      }
    }

    /**
     * Every page of a list as a client follows it: after a full page its last row, after a short
     * one where the walk stopped (resume), until neither.
     */
    async function follow<T>(read: (after: string | null) => Promise<ListPage<T>>, limit: number, cursorOf: (row: T) => string) {
      const pages: T[][] = [];
      for (let after: string | null = null; ; ) {
        const { rows, resume } = await read(after);
        expect(rows.length).toBeLessThanOrEqual(limit);
        pages.push(rows);
        after = rows.length === limit ? cursorOf(rows.at(-1)!) : resume;
        if (after === null) return pages;
      }
    }
    const eventIds = (pages: Array<Array<{ envelope: { id: string } }>>) => pages.map((p) => p.map((e) => e.envelope.id));

    it('pages events both ways with cursors and filters', async () => {
      const input = [
        event('a'),
        event('b', { execution_id: 'exec-2', type: 'TASK_FAILED' }),
        event('c', { workbook: 'shipping' }),
        event('d', { type: 'WORKFLOW_SUCCEEDED', category: 'EXECUTION', task_id: null, task_name: null }),
        event('e', { type: 'compute.instance.create.end', category: 'NOTIFICATION', workbook: null, execution_id: null }),
      ];
      for (const [i, e] of input.entries()) await store.appendEvents(P, [e], routing, T + i * 1000);
      await store.appendEvents(Q, [event('q')], routing, T);

      expect(await walkEvents(undefined, 2)).toEqual([['a', 'b'], ['c', 'd'], ['e']]);
      expect(await walkEvents('asc', 2)).toEqual([['a', 'b'], ['c', 'd'], ['e']]);
      expect(await walkEvents('desc', 2)).toEqual([['e', 'd'], ['c', 'b'], ['a']]);
      expect(await walkEvents('asc', 10, { execution_id: 'exec-1' })).toEqual([['a', 'c', 'd']]);
      expect(await walkEvents('desc', 1, { type: 'TASK_SUCCEEDED' })).toEqual([['c'], ['a']]);
      expect(await walkEvents('asc', 2, { workbook: 'billing' })).toEqual([['a', 'b'], ['d']]);
      expect(await walkEvents('desc', 10, { since: T + 2000 })).toEqual([['e', 'd', 'c']]);
      expect(store.eventCursorScope('not a cursor')).toBeNull();
      expect(store.eventCursorScope('')).toBeNull();
    });

    it('checks workbook and type on at most scanLimit events a page, and says where the walk stopped', async () => {
      // e0…e11, 10 ms apart; workbook "rare" at 1, 7 and 8; TASK_FAILED at 8 and 9; exec-2 from 6 on.
      for (let i = 0; i < 12; i++) {
        const over = { workbook: [1, 7, 8].includes(i) ? 'rare' : 'billing', type: i >= 8 && i <= 9 ? 'TASK_FAILED' : 'TASK_SUCCEEDED', execution_id: i >= 6 ? 'exec-2' : 'exec-1' };
        await store.appendEvents(P, [event(`e${i}`, over)], routing, T + i * 10);
        if (i % 3 === 0) await store.appendEvents(Q, [event(`q${i}`, over)], routing, T + i * 10);
      }
      const log = (await store.listEvents(P, { limit: 100 })).rows;
      expect(log.map((e) => e.envelope.id)).toEqual(Array.from({ length: 12 }, (_, i) => `e${i}`));
      const at = (i: number) => log[i].cursor;

      // The first page looks at e0…e3: it finds e1 and stops after e3.
      expect(await store.listEvents(P, { workbook: 'rare', limit: 3, scanLimit: 4 })).toEqual({ rows: [log[1]], resume: at(3) });
      const rare = (order: ListOrder, scanLimit: number, limit: number) =>
        follow((after) => store.listEvents(P, { workbook: 'rare', order, after, limit, scanLimit }), limit, (e) => e.cursor);
      expect(eventIds(await rare('asc', 4, 3))).toEqual([['e1'], ['e7'], ['e8'], []]);
      expect(eventIds(await rare('desc', 4, 3))).toEqual([['e8'], ['e7'], ['e1'], []]);
      expect(eventIds(await rare('asc', 5, 2))).toEqual([['e1'], ['e7', 'e8'], []]);
      expect(eventIds(await rare('asc', 100, 2))).toEqual([['e1', 'e7'], ['e8']]);
      // A walk that ends before scanLimit rows ends the list.
      expect(await store.listEvents(P, { workbook: 'rare', after: at(8), limit: 3, scanLimit: 4 })).toEqual({ rows: [], resume: null });
      expect(await store.listEvents(P, { workbook: 'none', limit: 3, scanLimit: 13 })).toEqual({ rows: [], resume: null });
      // Exactly scanLimit rows walked: whether more follow is for the next page to find.
      expect(await store.listEvents(P, { workbook: 'none', limit: 3, scanLimit: 12 })).toEqual({ rows: [], resume: at(11) });
      expect(await store.listEvents(P, { workbook: 'none', after: at(11), limit: 3, scanLimit: 12 })).toEqual({ rows: [], resume: null });

      // The walk of one execution, or from `since`, is bounded the same way.
      const failed = (filter: EventFilter, order: ListOrder) =>
        follow((after) => store.listEvents(P, { ...filter, type: 'TASK_FAILED', order, after, limit: 5, scanLimit: 2 }), 5, (e) => e.cursor);
      expect(eventIds(await failed({ execution_id: 'exec-2' }, 'asc'))).toEqual([[], ['e8', 'e9'], [], []]);
      expect(eventIds(await failed({ since: T + 70 }, 'desc'))).toEqual([[], ['e9', 'e8'], []]);
      expect(await store.listEvents(P, { since: T + 70, workbook: 'rare', limit: 5, scanLimit: 2 })).toEqual({ rows: [log[7], log[8]], resume: at(8) });
      // One execution's events in their sequence order, the log in the order received.
      await store.appendEvents(P, [event('x1', { execution_id: 'exec-3' })], routing, T + 500);
      await store.appendEvents(P, [event('x2', { execution_id: 'exec-3' })], routing, T + 400);
      const x = (await store.listEvents(P, { limit: 10, execution_id: 'exec-3' })).rows;
      expect(x.map((e) => [e.envelope.id, e.envelope.sequence])).toEqual([['x1', 1], ['x2', 2]]);
      expect((await store.listEvents(P, { limit: 10, since: T + 400 })).rows.map((e) => e.envelope.id)).toEqual(['x2', 'x1']);
      expect((await store.listEvents(P, { limit: 10, execution_id: 'exec-3', order: 'desc', after: x[1].cursor })).rows).toEqual([x[0]]);
      expect(x.map((e) => e.cursor)).toEqual(['x1:exec-3', 'x2:exec-3']);
      expect(store.eventCursorScope(x[0].cursor)).toEqual({ execution_id: 'exec-3' });
      expect(store.eventCursorScope((await store.listEvents(Q, { limit: 1 })).rows[0].cursor)).toEqual({ execution_id: null });
      // Unfiltered pages and walks served whole are never cut short.
      const exec2 = await store.listEvents(P, { execution_id: 'exec-2', limit: 2, scanLimit: 1 });
      expect(exec2).toEqual({ rows: [{ ...log[6], cursor: 'x1:exec-2' }, { ...log[7], cursor: 'x2:exec-2' }], resume: null });
      expect((await store.listEvents(P, { limit: 100, scanLimit: 1 })).rows).toHaveLength(14);
    });

    it('checks the filters its walk does not serve on at most scanLimit deliveries a page', async () => {
      await store.createListener(listener('l1'));
      await store.createListener(listener('l2'));
      await store.createListener(listener('lq', { project: Q }));
      for (let i = 0; i < 6; i++) {
        await store.appendEvents(P, [event(`e${i}`)], routing, T + i * 10);
        await store.appendEvents(Q, [event(`q${i}`)], routing, T + i * 10);
      }
      const all = (await store.listDeliveries(P, { limit: 100 })).rows;
      expect(all).toHaveLength(12);
      // Two of l1's succeed: e1's and e4's.
      const l1 = all.filter((d) => d.listener_id === 'l1');
      const done = [l1[1], l1[4]].map((d) => d.id);
      const claimed = await claim(store, 'w1', T + 100, { limit: 100 });
      await record('w1', claimed.filter((d) => done.includes(d.id)).map((d) => result(d, attempt(1, T + 100))), T + 110);
      await store.releaseLeases('w1', claimed.filter((d) => !done.includes(d.id)).map((d) => d.id), T + 110);

      const read = (q: Omit<DeliveryQuery, 'limit' | 'after'>, limit: number) => follow((after) => store.listDeliveries(P, { ...q, after, limit }), limit, (d) => d.id);
      // The listener's six walked, the status checked on each.
      const pages = await read({ listener_id: 'l1', status: 'succeeded', scanLimit: 3 }, 5);
      expect(pages.map(ids)).toEqual([[done[0]], [done[1]], []]);
      expect(await store.listDeliveries(P, { listener_id: 'l1', status: 'succeeded', limit: 5, scanLimit: 3 })).toEqual({ rows: [pages[0][0]], resume: l1[2].id });
      expect((await read({ listener_id: 'l1', status: 'succeeded', scanLimit: 3, order: 'desc' }, 5)).map(ids)).toEqual([[done[1]], [done[0]], []]);
      // The project's deliveries walked (p2's interleaved in the table), the status checked.
      expect((await read({ status: 'succeeded', scanLimit: 5 }, 5)).flat().map((d) => d.id)).toEqual(done);
      const pending = await read({ status: 'pending', scanLimit: 5 }, 4);
      expect(pending.flat().map((d) => d.id)).toEqual(all.filter((d) => !done.includes(d.id)).map((d) => d.id));
      expect(pending.flat().every((d) => d.status === 'pending')).toBe(true);
      // Where it stopped is always one of the project's own deliveries.
      const mine = new Set(all.map((d) => d.id));
      for (let after: string | null = null, pages = 0; pages === 0 || after !== null; pages++) {
        const { rows, resume } = await store.listDeliveries(P, { status: 'succeeded', after, limit: 5, scanLimit: 1 });
        expect(rows.every((d) => done.includes(d.id))).toBe(true);
        if (resume !== null) expect(mine.has(resume)).toBe(true);
        after = resume;
      }
      // Unfiltered, a page walks the project's own deliveries and is never cut short.
      expect((await read({ scanLimit: 1 }, 100)).map(ids)).toEqual([ids(all)]);
      const theirs = await store.listDeliveries(Q, { limit: 3, scanLimit: 1 });
      expect(theirs.rows.map((d) => d.event_id)).toEqual(['q0', 'q1', 'q2']);
      expect(theirs.resume).toBeNull();
      expect(await store.listDeliveries(Q, { listener_id: 'l1', limit: 5, scanLimit: 1 })).toEqual({ rows: [], resume: null });
      // An event's deliveries with a listener checked.
      expect((await store.listDeliveries(P, { event_id: 'e2', listener_id: 'l2', limit: 5, scanLimit: 2 })).rows.map((d) => d.listener_id)).toEqual(['l2']);
    });

    it("reads a page and where its walk stopped in one snapshot, whatever another process commits between them", async () => {
      await store.createListener(listener('l1'));
      for (let i = 0; i < 6; i++) await store.appendEvents(P, [event(`e${i}`)], routing, T + i * 10);
      const all = ids((await store.listDeliveries(P, { limit: 100 })).rows);
      // l1's pending deliveries, three looked at a page. Between the first page and its probe
      // (the statement that finds where the walk stopped) e0's delivery succeeds elsewhere: a
      // probe that saw it would stop a row further on, past e3's, which no page checked.
      db.commitBefore(/OFFSET/, `UPDATE deliveries SET status = 'succeeded' WHERE id = $1`, [all[0]]);
      const first = await store.listDeliveries(P, { listener_id: 'l1', status: 'pending', limit: 5, scanLimit: 3 });
      expect(first).toEqual({ rows: expect.any(Array), resume: all[2] });
      expect(ids(first.rows)).toEqual(all.slice(0, 3));
      const rest = await store.listDeliveries(P, { listener_id: 'l1', status: 'pending', after: first.resume, limit: 5, scanLimit: 3 });
      expect(ids(rest.rows)).toEqual(all.slice(3));
      expect((await store.getDelivery(P, all[0]))?.status).toBe('succeeded');
    });

    it('pages deliveries both ways by id, with filters', async () => {
      await store.createListener(listener('l1'));
      await store.createListener(listener('l2'));
      for (const [i, id] of ['a', 'b', 'c'].entries()) await store.appendEvents(P, [event(id)], routing, T + i * 1000);
      const all = ids((await store.listDeliveries(P, { limit: 100 })).rows);
      expect(all).toHaveLength(6);
      expect(sorted(all)).toEqual(all);
      expect(ids((await store.listDeliveries(P, { limit: 100, order: 'desc' })).rows)).toEqual([...all].reverse());

      const walk = async (order: ListOrder, limit: number) => {
        const pages: string[][] = [];
        for (let after: string | null = null; ; ) {
          const page = ids((await store.listDeliveries(P, { order, limit, after })).rows);
          if (page.length === 0) return pages;
          pages.push(page);
          after = page.at(-1)!;
        }
      };
      expect(await walk('asc', 4)).toEqual([all.slice(0, 4), all.slice(4)]);
      expect(await walk('desc', 4)).toEqual([[...all].reverse().slice(0, 4), [...all].reverse().slice(4)]);

      const byListener = (await store.listDeliveries(P, { limit: 100, listener_id: 'l2' })).rows;
      expect(byListener.map((d) => [d.event_id, d.listener_id])).toEqual([['a', 'l2'], ['b', 'l2'], ['c', 'l2']]);
      const byEvent = (await store.listDeliveries(P, { limit: 100, event_id: 'b', order: 'desc' })).rows;
      expect(sorted(byEvent.map((d) => d.listener_id))).toEqual(['l1', 'l2']);
      expect(byEvent.every((d) => d.event_id === 'b')).toBe(true);

      const [d] = await claim(store, 'w1', T + 10, { limit: 1 });
      await record('w1', [result(d, attempt(1, T + 10))], T + 20);
      expect(ids((await store.listDeliveries(P, { limit: 100, status: 'succeeded' })).rows)).toEqual([d.id]);
      expect((await store.listDeliveries(P, { limit: 100, status: 'pending' })).rows).toHaveLength(5);
      expect((await store.listDeliveries(Q, { limit: 100 })).rows).toEqual([]);
      expect(await store.getDelivery(Q, d.id)).toBeNull();
    });
  });

  describe('the delivery queue', () => {
    it('claims a due delivery under a lease and not again until the lease ends', async () => {
      const l1 = listener('l1', { callback: { ...listener('l1').callback, timeout_ms: 1000 } });
      await seed(['a', 'b', 'c'], [l1]);
      const out = await store.recordAndClaim(
        'w1',
        [],
        { owner: 'w1', now: T + 10, leaseMs: 500, transports: ['http'], allot: (due) => new Map(due.map((p) => [p, 2])), admit: admitAll },
        T + 10,
      );
      expect(out.asked).toBe(2);
      expect(out.disabledListeners).toEqual([]);
      const first = out.claimed;
      expect(first).toHaveLength(2);
      const [one] = first;
      const eventId = envelopeOf(one).id;
      expect(one).toEqual(firstAttemptOf(l1, (await deliveryOf(eventId)).id));
      expect(envelopeOf(one)).toEqual({ ...event(eventId).envelope, sequence: ['a', 'b', 'c'].indexOf(eventId) + 1 });

      const second = await claim(store, 'w2', T + 100);
      expect(second).toHaveLength(1);
      expect(sorted([...ids(first), ...ids(second)])).toEqual(sorted(ids((await store.listDeliveries(P, { limit: 10 })).rows)));
      // The lease ends at now + leaseMs + the listener's timeout: T + 1510 for the first claim.
      expect(await claim(store, 'w2', T + 1_509)).toEqual([]);
      const again = await claim(store, 'w3', T + 1_511);
      expect(sorted(ids(again))).toEqual(sorted(ids(first)));
      expect(again.map((d) => d.attemptNumber)).toEqual([1, 1]);
    });

    it('keeps the original message with the event for the claim', async () => {
      await store.createListener(listener('l1'));
      const original = { format: 'oslo' as const, body: '{"oslo.message": "{\\"event_type\\": \\"x\\"}"}' };
      await store.appendEvents(P, [{ ...event('a'), original }], routing, T);
      const [d] = await claim(store, 'w1', T);
      expect(d.original).toEqual(original);
    });

    it('keeps each envelope of an append byte for byte, whatever its strings hold', async () => {
      await store.createListener(listener('l1'));
      const awkward = ['line\nbreak', 'crlf\r\nend', 'back\\slash "quoted" {a,b}', 'NULL', '', 'é ü 😀 \u2028 \u0000 \t', ','];
      const list = awkward.map((text, i) => event(`w${i}`, { state_info: text, data: { text, i } }));
      await store.appendEvents(P, list, routing, T);
      for (const [i, text] of awkward.entries()) {
        const stored = (await store.getEvent(P, `w${i}`))!.envelope;
        expect(stored.state_info).toBe(text);
        expect(stored.data).toEqual({ text, i });
      }
      const claimed = await claim(store, 'w1', T, { limit: 20 });
      expect(claimed.map((d) => JSON.parse(d.envelopeJson).data).sort((a, b) => a.i - b.i)).toEqual(awkward.map((text, i) => ({ text, i })));
    });

    /** A Handoff with `slots` free slots that keeps what it is given and given back. */
    function handoffWith(slots: number) {
      const h = {
        owner: 'local',
        leaseMs: 500,
        taken: 0,
        givenBack: 0,
        delivered: [] as ClaimedDelivery[],
        take: () => (h.taken - h.givenBack < slots ? (h.taken++, true) : false),
        giveBack: (n: number) => void (h.givenBack += n),
        deliver: (list: ClaimedDelivery[]) => void h.delivered.push(...list),
      };
      return h;
    }

    it('hands fresh deliveries to the local dispatcher already leased, where no claim takes them', async () => {
      const h = handoffWith(10);
      store.handOffTo(h);
      const fanOut = createFanOut();
      const l1 = listener('l1');
      await store.createListener(l1);
      // A rate limit and an execution's order need the gate's state: those go to the queue.
      await store.createListener(listener('l2', { rate_limit_per_s: 5 }));
      await store.createListener(listener('l3', { ordering: 'execution' }));
      const appended = await store.appendEvents(P, [event('a', { execution_id: 'x1' })], fanOut, T);
      expect(appended).toEqual([{ id: 'a', duplicate: false, deliveries: 3, handed: 1 }]);
      expect(h.delivered).toHaveLength(1);
      const [handed] = h.delivered;
      // It carries the end of its lease as written, for the dispatcher to renew it in time.
      expect(handed).toEqual({ ...firstAttemptOf(l1, (await deliveryOf('a', 'l1')).id), leasedUntil: T + 1_500 });
      expect(envelopeOf(handed)).toEqual((await store.getEvent(P, 'a'))!.envelope);
      // Leased until now + leaseMs + the listener's timeout.
      expect((await deliveryOf('a', 'l1')).next_attempt_at).toBe(T + 1_500);

      // A claim finds only the others; the handed one is due again only when its lease ends,
      // as a claimed one is.
      expect(sorted((await claim(store, 'w1', T)).map((d) => d.listenerId))).toEqual(['l2', 'l3']);
      expect(await claim(store, 'w1', T + 1_499)).toEqual([]);
      expect(ids(await claim(store, 'w2', T + 1_501))).toContain(handed.id);
    });

    it('lets the owner of a handed delivery record it, and no one else', async () => {
      const h = handoffWith(10);
      store.handOffTo(h);
      await store.createListener(listener('l1'));
      await store.appendEvents(P, [event('a')], createFanOut(), T);
      const [handed] = h.delivered;
      await record('someone-else', [result(handed, attempt(1, T + 1))], T + 2);
      expect((await deliveryOf('a')).status).toBe('pending');
      await record('local', [result(handed, attempt(1, T + 1))], T + 2);
      expect(await deliveryOf('a')).toMatchObject({ status: 'succeeded', attempt_count: 1 });
    });

    it('keeps an attempt reported twice once, in one batch or in two', async () => {
      await seed(['a', 'b']);
      const [da, db] = await claim(store, 'w1', T);
      const ra = result(da, attempt(1, T + 1));
      await record('w1', [ra, ra], T + 2);
      await record('w1', [ra, result(db, attempt(1, T + 3))], T + 4);
      for (const d of [da, db]) {
        expect(await store.listAttempts(P, d.id)).toHaveLength(1);
        expect(await store.getDelivery(P, d.id)).toMatchObject({ status: 'succeeded', attempt_count: 1 });
      }
    });

    it('queues what the dispatcher has no room for, and gives back the slots of an append that did not commit', async () => {
      const h = handoffWith(1);
      store.handOffTo(h);
      const fanOut = createFanOut();
      await store.createListener(listener('l1'));
      const appended = await store.appendEvents(P, [event('a'), event('b')], fanOut, T);
      expect(appended.map((a) => a.handed)).toEqual([1, 0]);
      expect(h.delivered.map((d) => envelopeOf(d).id)).toEqual(['a']);
      expect(ids(await claim(store, 'w1', T))).toEqual([(await deliveryOf('b')).id]);

      // A conflict refuses the whole call: nothing of it stays handed over.
      h.delivered.length = 0;
      await record('local', [], T);
      const refused = store.appendEvents(P, [event('c'), event('a', {}, 'another body')], fanOut, T + 1);
      await expect(refused).rejects.toThrow(/already exists with a different body/);
      expect(h.delivered).toEqual([]);
      expect(h.taken - h.givenBack).toBe(1);
      expect(await store.getEvent(P, 'c')).toBeNull();

      // Without a hand-over every delivery waits for a claim.
      store.handOffTo(null);
      expect(await store.appendEvents(P, [event('d')], fanOut, T + 2)).toEqual([{ id: 'd', duplicate: false, deliveries: 1, handed: 0 }]);
    });

    it('records outcomes: a retry is scheduled, success and failure finish the delivery', async () => {
      await seed(['a', 'b']);
      const byId = new Map((await claim(store, 'w1', T + 10)).map((d) => [d.id, d]));
      const [da, db_] = [await deliveryOf('a'), await deliveryOf('b')];
      const retry = attempt(1, T + 10, { status_code: 500, error: 'HTTP_ERROR', response_excerpt: 'no' });
      const gone = attempt(1, T + 10, { status_code: 404, error: 'HTTP_ERROR' });
      const disabled = await record(
        'w1',
        [
          result(byId.get(da.id)!, retry, { status: 'pending', nextAttemptAt: T + 5_000, lastError: 'HTTP 500', disableListener: null }),
          result(byId.get(db_.id)!, gone, { status: 'failed', nextAttemptAt: null, lastError: 'HTTP 404', disableListener: null }),
        ],
        T + 20,
      );
      expect(disabled).toEqual([]);
      expect(await store.getDelivery(P, da.id)).toEqual({
        ...da,
        status: 'pending',
        attempt_count: 1,
        next_attempt_at: T + 5_000,
        in_flight: false,
        last_error: 'HTTP 500',
        updated_at: T + 20,
      });
      expect(await store.getDelivery(P, db_.id)).toEqual({
        ...db_,
        status: 'failed',
        attempt_count: 1,
        next_attempt_at: null,
        in_flight: false,
        last_error: 'HTTP 404',
        updated_at: T + 20,
      });
      expect(await store.listAttempts(P, da.id)).toEqual([retry]);
      expect(await store.listAttempts(Q, da.id)).toEqual([]);

      expect(await claim(store, 'w1', T + 4_999)).toEqual([]);
      const [later] = await claim(store, 'w2', T + 5_001);
      expect([later.id, later.attemptNumber]).toEqual([da.id, 2]);
      const ok = attempt(2, T + 5_001, { duration_ms: 7 });
      await record('w2', [result(later, ok)], T + 5_010);
      expect(await store.getDelivery(P, da.id)).toMatchObject({
        status: 'succeeded',
        attempt_count: 2,
        next_attempt_at: null,
        last_error: null,
        updated_at: T + 5_010,
      });
      expect(await store.listAttempts(P, da.id)).toEqual([retry, ok]);
      expect(await claim(store, 'w1', T + 999_999)).toEqual([]);
    });

    it('ignores the outcome of a dispatcher whose lease ended and was claimed again', async () => {
      await seed(['a']);
      const [late] = await claim(store, 'w1', T + 10);
      const [current] = await claim(store, 'w2', T + 10_000, { leaseMs: LONG_LEASE });
      expect(current.id).toBe(late.id);
      await record('w1', [result(late, attempt(1, T + 10))], T + 10_001);
      expect(await store.getDelivery(P, late.id)).toMatchObject({ status: 'pending', attempt_count: 0, in_flight: true });
      await record('w2', [result(current, attempt(1, T + 10_000))], T + 10_002);
      expect(await store.getDelivery(P, late.id)).toMatchObject({ status: 'succeeded', attempt_count: 1, in_flight: false });
    });

    it('turns a listener off on 410, holds its deliveries and routes the next event without it', async () => {
      const { routing: counted, compiles } = countingRouting();
      routing = counted;
      await seed(['a'], [listener('l1'), listener('l2')]);
      const claimed = await claim(store, 'w1', T + 10);
      await store.appendEvents(P, [event('b')], routing, T + 20);
      const a1 = claimed.find((d) => d.listenerId === 'l1')!;
      const goneAttempt = attempt(1, T + 10, { status_code: 410, error: 'HTTP_ERROR' });
      const gone = { status: 'pending' as const, nextAttemptAt: null, lastError: 'HTTP 410 Gone', disableListener: 'the receiver answered 410 Gone' };
      expect(await record('w1', [result(a1, goneAttempt, gone)], T + 30)).toEqual(['l1']);

      expect(await store.getListener(P, 'l1')).toMatchObject({ enabled: false, disabled_reason: 'the receiver answered 410 Gone' });
      expect(await store.getDelivery(P, a1.id)).toMatchObject({ status: 'pending', next_attempt_at: null, attempt_count: 1 });
      expect(await deliveryOf('b', 'l1')).toMatchObject({ status: 'pending', next_attempt_at: null });
      // Only l2's deliveries are due: b's, and a's once w1's lease on it ends.
      const due = await claim(store, 'w2', T + 999_999);
      expect(due.map((d) => d.listenerId)).toEqual(['l2', 'l2']);

      expect(await store.appendEvents(P, [event('c')], routing, T + 40)).toEqual([{ id: 'c', duplicate: false, deliveries: 1, handed: 0 }]);
      expect(compiles.at(-1)!.listeners).toEqual(['l2']);
    });

    it('holds a disabled listener\'s deliveries and makes them due when it is enabled again', async () => {
      const l1 = listener('l1');
      await seed(['a', 'b'], [l1]);
      await store.updateListener(P, 'l1', { ...specOf(l1), enabled: false }, iso(T + 100));
      const held = (await store.listDeliveries(P, { limit: 10 })).rows;
      expect(held.map((d) => [d.status, d.next_attempt_at])).toEqual([['pending', null], ['pending', null]]);
      expect(await claim(store, 'w1', T + 200)).toEqual([]);
      expect(await store.nextDueAt()).toBeNull();
      expect(await store.queueDepth(T + 200)).toEqual({ due: 0, scheduled: 0, oldestDueAt: null });

      await store.updateListener(P, 'l1', { ...specOf(l1), enabled: true }, iso(T + 300));
      expect(((await store.listDeliveries(P, { limit: 10 })).rows).map((d) => d.next_attempt_at)).toEqual([T + 300, T + 300]);
      expect(await claim(store, 'w1', T + 300)).toHaveLength(2);
    });

    it('cancels the pending deliveries of a deleted listener', async () => {
      await seed(['a', 'b'], [listener('l1'), listener('l2')]);
      expect(await store.deleteListener(P, 'l1')).toBe(true);
      const l1s = (await store.listDeliveries(P, { limit: 10, listener_id: 'l1' })).rows;
      expect(l1s.map((d) => [d.status, d.next_attempt_at])).toEqual([['cancelled', null], ['cancelled', null]]);
      expect((await claim(store, 'w1', T + 10)).map((d) => d.listenerId)).toEqual(['l2', 'l2']);
    });

    it('never gives one delivery to two claimers on the same database', async () => {
      const other = await db.open();
      const appended = await seed(Array.from({ length: 60 }, (_, i) => `e${i}`));
      expect(appended.every((a) => a.deliveries === 1)).toBe(true);
      const take = async (s: Store, owner: string) => {
        const got: string[] = [];
        for (;;) {
          const claimed = await claim(s, owner, T + 10, { limit: 5 });
          if (claimed.length === 0) return got;
          got.push(...ids(claimed));
        }
      };
      const takers = await Promise.all([take(store, 'w1'), take(other, 'w2'), take(store, 'w3'), take(other, 'w4')]);
      // A claimer that found every due row locked by the others stops early: sweep what is left.
      const rest = ids(await claim(store, 'w5', T + 10));
      const all = [...takers.flat(), ...rest];
      expect(all).toHaveLength(60);
      expect(new Set(all).size).toBe(60);
      expect(sorted(all)).toEqual(sorted(ids((await store.listDeliveries(P, { limit: 100 })).rows)));
    });

    it('asks the gate with the projects that have due work and claims what it allots', async () => {
      await seed(['a', 'b', 'c']);
      await store.createListener(storedListener('q1', { project: Q }));
      await store.createListener(storedListener('r1', { project: 'p3' }));
      await store.appendEvents(Q, [event('a'), event('b')], routing, T);
      await store.appendEvents('p3', [event('later')], routing, T + 60_000);
      let seen: readonly string[] = [];
      const out = await store.recordAndClaim(
        'w1',
        [],
        {
          owner: 'w1',
          now: T,
          leaseMs: 500,
          transports: ['http'],
          allot: (due) => {
            seen = due;
            return new Map([[P, 1], [Q, 2]]);
          },
          admit: admitAll,
        },
        T,
      );
      expect(sorted([...seen])).toEqual([P, Q]); // p3's delivery is not due yet
      expect(out.asked).toBe(3);
      expect(sorted(out.claimed.map((d) => d.project))).toEqual([P, Q, Q]);
      expect(await store.nextDueAt()).toBe(T); // two of p1's are still due

      let called = false;
      const allot = () => ((called = true), new Map());
      const none = await store.recordAndClaim('w1', [], { owner: 'w1', now: T - 1, leaseMs: 500, transports: ['http'], allot, admit: admitAll }, T - 1);
      expect(called).toBe(false);
      expect(none).toEqual({ disabledListeners: [], claimed: [], asked: 0, contended: 0 });
    });

    it('claims only deliveries of the transports this process has enabled', async () => {
      const amqp = { transport: 'amqp', url: 'amqp://127.0.0.1/', exchange: 'x', topic: 't', routing_key: null, headers: {}, format: 'oslo', timeout_ms: 1000 };
      await seed(['a'], [listener('h1'), listener('q1', { callback: amqp as never })]);
      expect((await claim(store, 'w', T, { transports: ['http'] })).map((d) => d.listenerId)).toEqual(['h1']);
      expect(await claim(store, 'w', T, { transports: ['http'] })).toEqual([]);
      const viaAmqp = await claim(store, 'w', T, { transports: ['amqp', 'jsonfile'] });
      expect(viaAmqp.map((d) => [d.listenerId, d.listener.callback])).toEqual([['q1', amqp]]);
    });

    it('gives back leases of unsent deliveries, due at once, only for their owner', async () => {
      await seed(['a', 'b', 'c']);
      const claimed = ids(await claim(store, 'w1', T + 10, { leaseMs: LONG_LEASE }));
      expect(claimed).toHaveLength(3);
      await store.releaseLeases('w2', claimed, T + 20);
      expect(await claim(store, 'w3', T + 20)).toEqual([]);
      await store.releaseLeases('w1', claimed, T + 20);
      expect(await store.nextDueAt()).toBe(T + 20);
      const again = await claim(store, 'w3', T + 20);
      expect(sorted(ids(again))).toEqual(sorted(claimed));
      expect(again.map((d) => d.attemptNumber)).toEqual([1, 1, 1]);
    });

    it('gives back the live leases of owners judged gone, keeping the others and finished deliveries as they are', async () => {
      await seed(['a', 'b', 'c', 'd', 'e']);
      const byDead = ids(await claim(store, 'dead', T, { leaseMs: LONG_LEASE, limit: 2 }));
      const byLive = ids(await claim(store, 'live', T, { leaseMs: LONG_LEASE, limit: 1 }));
      const doneByDead = await claim(store, 'dead', T, { leaseMs: LONG_LEASE, limit: 1 });
      const shortByDead = ids(await claim(store, 'dead', T, { leaseMs: 10, limit: 1 }));
      expect([byDead.length, byLive.length, doneByDead.length, shortByDead.length]).toEqual([2, 1, 1, 1]);
      await store.recordAndClaim('dead', [result(doneByDead[0], attempt(1, T))], null, T + 5);

      const asked: string[] = [];
      const isGone = (owner: string) => (asked.push(owner), owner === 'dead');
      // The short lease (10 ms + the listener's 1 s timeout) has ended by T + 2000: it is due already, not given back.
      expect(await store.releaseLeasesOfGone(isGone, T + 2_000)).toEqual({ owners: ['dead'], deliveries: 2 });
      expect(sorted(asked)).toEqual(['dead', 'live']);
      const again = await claim(store, 'next', T + 2_000, { leaseMs: LONG_LEASE });
      expect(sorted(ids(again))).toEqual(sorted([...byDead, ...shortByDead]));
      expect(again.map((d) => d.attemptNumber)).toEqual([1, 1, 1]);
      // The live owner's lease holds (nothing is left to claim), and the succeeded delivery stays succeeded.
      expect(await claim(store, 'other', T + 2_000, { leaseMs: LONG_LEASE })).toEqual([]);
      expect((await store.getDelivery(P, doneByDead[0].id))?.status).toBe('succeeded');
      expect(await store.releaseLeasesOfGone(() => false, T + 2_000)).toEqual({ owners: [], deliveries: 0 });
    });

    it('moves a changed listener\'s backlog a window at a time, durably, after its latest change', async () => {
      const l1 = listener('l1');
      await seed(['a', 'b', 'c', 'd', 'e'], [l1, listener('l2')]);
      let windowed = await db.open({ backlogWindow: 2 });
      const heldOf = async (id: string) =>
        (await windowed.listDeliveries(P, { listener_id: id, limit: 10 })).rows.filter((d) => d.status === 'pending' && d.next_attempt_at === null).length;
      const statusOf = async (id: string) =>
        (await windowed.listDeliveries(P, { listener_id: id, limit: 10 })).rows.reduce<Record<string, number>>((n, d) => ((n[d.status] = (n[d.status] ?? 0) + 1), n), {});
      const step = (now: number) => windowed.moveListenerBacklogs(now);

      // Disabling holds the first window at once, the rest window by window.
      await windowed.updateListener(P, 'l1', { ...specOf(l1), enabled: false }, iso(T + 1));
      expect(await heldOf('l1')).toBe(2);
      expect(await step(T + 2)).toEqual({ listenerId: 'l1', project: P, action: 'hold', unorder: false, moved: 2, done: false });
      expect(await heldOf('l1')).toBe(4);
      // Where it goes on is in the database: another store (a restarted process) takes it up.
      windowed = await db.open({ backlogWindow: 2 });
      expect(await step(T + 3)).toEqual({ listenerId: 'l1', project: P, action: 'hold', unorder: false, moved: 1, done: true });
      expect(await step(T + 3)).toBeNull();
      expect(await heldOf('l1')).toBe(5);
      expect(await heldOf('l2')).toBe(0);
      // Nothing of a disabled listener is claimed meanwhile; l2's deliveries are.
      expect((await claim(store, 'w', T + 4)).map((d) => d.listenerId)).toEqual(['l2', 'l2', 'l2', 'l2', 'l2']);

      // Enabled again half-way through being disabled: its latest change wins.
      await windowed.updateListener(P, 'l1', { ...specOf(l1), enabled: true }, iso(T + 5));
      await windowed.updateListener(P, 'l1', { ...specOf(l1), enabled: false }, iso(T + 6));
      await windowed.updateListener(P, 'l1', { ...specOf(l1), enabled: true }, iso(T + 7));
      expect(await heldOf('l1')).toBe(3);
      const steps = [await step(T + 8), await step(T + 8), await step(T + 8)];
      expect(steps.map((s) => s && [s.action, s.moved, s.done])).toEqual([['release', 2, false], ['release', 1, true], null]);
      expect(await heldOf('l1')).toBe(0);
      expect(await claim(store, 'w', T + 9)).toHaveLength(5);

      // Deleting cancels what waits: the first window at once, the rest window by window.
      expect(await windowed.deleteListener(P, 'l1')).toBe(true);
      expect(await statusOf('l1')).toEqual({ cancelled: 2, pending: 3 });
      while (await step(T + 11));
      expect(await statusOf('l1')).toEqual({ cancelled: 5 });
    });

    it('holds the backlog of a listener the relay turns off (a 410, the judgement) as a client\'s disabling does, a window at a time', async () => {
      await seed(['a', 'b', 'c', 'd', 'e', 'f'], [listener('l1'), listener('l2'), listener('l3')]);
      const windowed = await db.open({ backlogWindow: 2 });
      const waiting = async (id: string) => (await windowed.listDeliveries(P, { listener_id: id, limit: 10 })).rows.filter((d) => d.status === 'pending');
      // One delivery of l1 and one of l2 in flight; the others wait for a retry.
      const all = await claim(windowed, 'w1', T + 10, { leaseMs: LONG_LEASE });
      const [toL1, toL2] = ['l1', 'l2'].map((l) => all.find((d) => d.listenerId === l)!);
      const retry: Outcome = { status: 'pending', nextAttemptAt: T + 15, lastError: 'HTTP 500', disableListener: null };
      const failed: Outcome = { status: 'failed', nextAttemptAt: null, lastError: 'HTTP 500', disableListener: null };
      const others = all.filter((d) => d !== toL1 && d !== toL2);
      expect(others).toHaveLength(16);
      await windowed.recordAndClaim('w1', others.map((d) => result(d, attempt(1, T + 10, { status_code: 500 }), retry)), null, T + 11);

      // A 410: l1 is off, the delivery that answered it and the first window of the rest are held, in the same commit.
      const gone = { status: 'pending' as const, nextAttemptAt: null, lastError: 'HTTP 410 Gone', disableListener: 'the receiver answered 410 Gone' };
      expect((await windowed.recordAndClaim('w1', [result(toL1, attempt(1, T + 12, { status_code: 410 }), gone)], null, T + 20)).disabledListeners).toEqual(['l1']);
      const l1 = await waiting('l1');
      expect(l1).toHaveLength(6);
      expect(l1.filter((d) => d.next_attempt_at === null).length).toBeGreaterThanOrEqual(2);
      expect(l1.filter((d) => d.next_attempt_at === null).length).toBeLessThan(6);
      // The rest follow a window at a time, and nothing of l1 is claimed meanwhile.
      expect(await windowed.moveListenerBacklogs(T + 21)).toMatchObject({ listenerId: 'l1', action: 'hold', done: false });
      while (await windowed.moveListenerBacklogs(T + 22));
      expect((await waiting('l1')).map((d) => d.next_attempt_at)).toEqual(Array(6).fill(null));

      // The judgement (every attempt failed for hours) turns l2 off the same way.
      const judge: RecordJudge = {
        routing,
        judge: () => ({ changed: new Map(), disable: new Map([['l2', 'every attempt failed for 120 hours']]), events: [] }),
        turnedOff: (_p, listenerId, reason, now) => relayOff('off-l2', { listener_id: listenerId, reason }, now),
      };
      await windowed.recordAndClaim('w1', [result(toL2, attempt(1, T + 30, { status_code: 500 }), failed)], null, T + 31, judge);
      expect(await windowed.getListener(P, 'l2')).toMatchObject({ enabled: false, disabled_reason: 'every attempt failed for 120 hours' });
      expect((await waiting('l2')).filter((d) => d.next_attempt_at === null).length).toBeGreaterThanOrEqual(1);
      expect((await waiting('l2')).filter((d) => d.next_attempt_at === null).length).toBeLessThan(5);
      while (await windowed.moveListenerBacklogs(T + 32));
      expect((await waiting('l2')).map((d) => d.next_attempt_at)).toEqual(Array(5).fill(null));
      // Only l3's deliveries are left to send.
      expect(new Set((await claim(windowed, 'w2', T + 999_999)).map((d) => d.listenerId))).toEqual(new Set(['l3']));
    });

    it('extends the leases their owner holds, never shortening one, and no one else\'s', async () => {
      await seed(['a', 'b']);
      // Listener timeout 1000 ms: these leases end at T + 500 + 1000.
      const claimed = ids(await claim(store, 'w1', T, { leaseMs: 500 }));
      expect(claimed).toHaveLength(2);
      await store.renewLeases('w2', claimed, T + 60_000);
      await store.renewLeases('w1', [claimed[0]], T + 60_000);
      await store.renewLeases('w1', [claimed[0]], T + 10);
      // Past the original end: only the delivery whose lease was not renewed by its owner is due again.
      expect(ids(await claim(store, 'w3', T + 1_600, { leaseMs: LONG_LEASE }))).toEqual([claimed[1]]);
      expect(await claim(store, 'w3', T + 59_999)).toEqual([]);
      expect(ids(await claim(store, 'w3', T + 60_000))).toEqual([claimed[0]]);
    });

    it('re-queues one delivery on request, under the same id', async () => {
      await seed(['a', 'b']);
      const [a, b] = [await deliveryOf('a'), await deliveryOf('b')];
      expect(await store.retryDelivery(P, 'no-such-delivery', T)).toBe('not_found');
      expect(await store.retryDelivery(Q, a.id, T)).toBe('not_found');

      const claimed = await claim(store, 'w1', T + 10, { leaseMs: LONG_LEASE });
      expect(await store.retryDelivery(P, a.id, T + 20)).toBe('in_flight');
      expect(await store.getDelivery(P, a.id)).toMatchObject({ in_flight: true, next_attempt_at: T + 10 + LONG_LEASE + 1000 });
      const failed = { status: 'failed' as const, nextAttemptAt: null, lastError: 'HTTP 500', disableListener: null };
      await record('w1', claimed.map((d) => result(d, attempt(1, T + 10, { status_code: 500 }), failed)), T + 30);

      expect(await store.retryDelivery(P, a.id, T + 40)).toBe('queued');
      expect(await store.getDelivery(P, a.id)).toMatchObject({
        status: 'pending',
        attempt_count: 1,
        next_attempt_at: T + 40,
        in_flight: false,
        updated_at: T + 40,
      });
      const [again] = await claim(store, 'w2', T + 40);
      expect([again.id, again.attemptNumber]).toEqual([a.id, 2]);

      await store.deleteListener(P, 'l1');
      expect(await store.retryDelivery(P, b.id, T + 50)).toBe('no_listener');
    });

    it('replays a window for one listener as new deliveries, or re-queues its failed ones', async () => {
      await store.createListener(listener('l1'));
      const types = ['TASK_SUCCEEDED', 'TASK_FAILED', 'TASK_SUCCEEDED', 'TASK_SUCCEEDED'];
      for (const [i, id] of ['a', 'b', 'c', 'd'].entries()) await store.appendEvents(P, [event(id, { type: types[i] })], routing, T + (i + 1) * 1000);
      await store.createListener(listener('l2'));
      const onlySucceeded: FanOut = (e) => (e.type === 'TASK_SUCCEEDED' ? ['l2'] : []);
      const everything: FanOut = () => ['l2'];

      const window = { since: T + 1_500, until: T + 3_500, onlyFailed: false, after: null, limit: 10, scanLimit: 1000 };
      expect(await store.replay(P, 'l2', window, onlySucceeded, T + 10_000)).toEqual({ count: 1, truncated: false });
      const replayed = (await store.listDeliveries(P, { limit: 10, listener_id: 'l2' })).rows;
      expect(replayed.map((d) => [d.event_id, d.status, d.attempt_count, d.next_attempt_at])).toEqual([['c', 'pending', 0, T + 10_000]]);
      expect(replayed[0].id).not.toBe((await deliveryOf('c', 'l1')).id);

      const all = { since: T, until: T + 10_000, onlyFailed: false, after: null, limit: 3, scanLimit: 1000 };
      expect(await store.replay(P, 'l2', all, everything, T + 10_000)).toEqual({ count: 3, truncated: true, after: expect.any(String) });
      expect(await store.replay(P, 'l2', { ...all, limit: 4 }, everything, T + 10_000)).toEqual({ count: 4, truncated: false });
      expect((await store.listDeliveries(P, { limit: 100, listener_id: 'l2' })).rows).toHaveLength(8);
      expect(await store.replay(Q, 'l2', { ...all, limit: 10 }, everything, T + 10_000)).toEqual({ count: 0, truncated: false });

      // Failed ones: b and c fail, a succeeds, d waits for a retry.
      const claimed = await claim(store, 'w1', T + 5_000, { limit: 100 });
      const ofL1 = claimed.filter((d) => d.listenerId === 'l1');
      const failed = { status: 'failed' as const, nextAttemptAt: null, lastError: 'HTTP 500', disableListener: null };
      const later = { status: 'pending' as const, nextAttemptAt: T + 99_000, lastError: 'HTTP 500', disableListener: null };
      await record(
        'w1',
        ofL1.map((d) => {
          const id = envelopeOf(d).id;
          return result(d, attempt(1, T + 5_000), id === 'a' ? SUCCEEDED : id === 'd' ? later : failed);
        }),
        T + 5_010,
      );
      const failedWindow = { since: T + 1_500, until: T + 10_000, onlyFailed: true, after: null, limit: 1, scanLimit: 1000 };
      expect(await store.replay(P, 'l1', failedWindow, everything, T + 20_000)).toEqual({ count: 1, truncated: true, after: expect.any(String) });
      expect(await store.replay(P, 'l1', { ...failedWindow, limit: 10 }, everything, T + 20_000)).toEqual({ count: 1, truncated: false });
      for (const id of ['b', 'c']) {
        expect(await deliveryOf(id)).toMatchObject({ status: 'pending', next_attempt_at: T + 20_000, attempt_count: 1 });
      }
      expect((await store.listDeliveries(P, { limit: 100, listener_id: 'l1' })).rows).toHaveLength(4);
    });

    it('re-queues failed deliveries walking the project\'s failed ones in the order made, at most scanLimit a call, each once by following after', async () => {
      await store.createListener(listener('l1'));
      await store.createListener(listener('l2'));
      for (let i = 0; i < 8; i++) await store.appendEvents(P, [event(`f${i}`)], routing, T + i * 1000);
      const failed = { status: 'failed' as const, nextAttemptAt: null, lastError: 'HTTP 500', disableListener: null };
      const failAll = async (now: number) => {
        const claimed = await claim(store, 'w1', now, { limit: 100 });
        await record('w1', claimed.map((d) => result(d, attempt(d.attemptNumber, now), failed)), now + 10);
        return claimed.length;
      };
      // All sixteen fail: l1's and l2's, made in event order (l1's then l2's of each event).
      expect(await failAll(T + 9_000)).toBe(16);
      const window = { since: T + 2_000, until: T + 7_000, onlyFailed: true, after: null as string | null, limit: 100, scanLimit: 3 };
      const answers = [];
      for (let w = window; ; ) {
        const a = await store.replay(P, 'l1', w, () => [], T + 20_000);
        answers.push(a);
        // What a call re-queued fails again before the next one: following after never meets it again.
        await failAll(T + 20_000);
        if (!a.truncated) break;
        expect(store.isReplayCursor(a.after!, true)).toBe(true);
        expect(store.isReplayCursor(a.after!, false)).toBe(false);
        w = { ...window, after: a.after! };
      }
      // Sixteen failed deliveries, three looked at a call: six calls, the last one finding the end.
      expect(answers.map((a) => [a.count, a.truncated])).toEqual([[0, true], [1, true], [2, true], [1, true], [1, true], [0, false]]);
      for (const id of ['f2', 'f3', 'f4', 'f5', 'f6']) expect(await deliveryOf(id)).toMatchObject({ status: 'failed', attempt_count: 2 });
      for (const id of ['f0', 'f1', 'f7']) expect(await deliveryOf(id)).toMatchObject({ status: 'failed', attempt_count: 1 });
      for (let i = 0; i < 8; i++) expect(await deliveryOf(`f${i}`, 'l2')).toMatchObject({ status: 'failed', attempt_count: 1 });
      // At the limit the call stops at the last one it re-queued, and goes on after it.
      const first = await store.replay(P, 'l1', { ...window, scanLimit: 1000, limit: 2 }, () => [], T + 30_000);
      expect(first).toEqual({ count: 2, truncated: true, after: expect.any(String) });
      expect(await store.replay(P, 'l1', { ...window, scanLimit: 1000, limit: 2, after: first.after! }, () => [], T + 30_000)).toEqual({
        count: 2,
        truncated: true,
        after: expect.any(String),
      });
      expect((await store.listDeliveries(P, { limit: 100, listener_id: 'l1', status: 'pending' })).rows.map((d) => d.event_id).sort()).toEqual(['f2', 'f3', 'f4', 'f5']);
      // Another project's failed deliveries are neither looked at nor re-queued.
      expect(await store.replay(Q, 'l1', { ...window, scanLimit: 1000 }, () => [], T + 30_000)).toEqual({ count: 0, truncated: false });
    });

    it('goes on with a window replay from where a call stopped, at either limit, each event once', async () => {
      await store.createListener(listener('l1'));
      // Two events share each receive time, and their seqs run against the receive times in
      // part: the walk is in the order received, then stored.
      const times = [3, 1, 1, 2, 2, 3, 4, 4, 5];
      for (const [i, t] of times.entries()) await store.appendEvents(P, [event(`e${i}`, { type: i % 3 === 0 ? 'TASK_FAILED' : 'TASK_SUCCEEDED' })], routing, T + t * 1000);
      await store.appendEvents(Q, [event('q1')], routing, T + 2_000);
      await store.createListener(listener('l2'));
      const succeeded: FanOut = (e) => (e.type === 'TASK_SUCCEEDED' ? ['l2'] : []);
      const replayed = async () => ((await store.listDeliveries(P, { limit: 100, listener_id: 'l2' })).rows).map((d) => d.event_id);
      const inOrderReceived = ['e1', 'e2', 'e3', 'e4', 'e0', 'e5', 'e6', 'e7', 'e8'];
      const expected = inOrderReceived.filter((id) => Number(id.slice(1)) % 3 !== 0);

      for (const limits of [{ limit: 2, scanLimit: 1000 }, { limit: 1000, scanLimit: 2 }, { limit: 1, scanLimit: 1 }]) {
        const before = (await replayed()).length;
        const window = { since: T + 1_000, until: T + 5_000, onlyFailed: false, ...limits };
        let after: string | null = null;
        let calls = 0;
        for (;;) {
          const answer = await store.replay(P, 'l2', { ...window, after }, succeeded, T + 10_000);
          calls++;
          if (!answer.truncated) break;
          expect(store.isReplayCursor(answer.after!)).toBe(true);
          after = answer.after!;
        }
        // The window ends before e8 (at T + 5000): e8 is left out each time.
        expect((await replayed()).slice(before), JSON.stringify(limits)).toEqual(expected.filter((id) => id !== 'e8'));
        expect(calls).toBeGreaterThan(1);
      }
      // A position before the window's start starts at the window's start; one past its end finds nothing.
      const early = await store.replay(P, 'l2', { since: T + 4_000, until: T + 6_000, onlyFailed: false, after: `${T}.1`, limit: 10, scanLimit: 10 }, succeeded, T + 10_000);
      expect(early).toEqual({ count: 2, truncated: false });
      const late = await store.replay(P, 'l2', { since: T + 4_000, until: T + 6_000, onlyFailed: false, after: `${T + 7_000}.1`, limit: 10, scanLimit: 10 }, succeeded, T + 10_000);
      expect(late).toEqual({ count: 0, truncated: false });
      expect(store.isReplayCursor('12')).toBe(false);
      expect(store.isReplayCursor('1.0')).toBe(false);
      expect(store.isReplayCursor('99999999999999999.1')).toBe(false);
    });

    it('answers the queue depth and the next due time', async () => {
      expect(await store.nextDueAt()).toBeNull();
      expect(await store.queueDepth(T)).toEqual({ due: 0, scheduled: 0, oldestDueAt: null });
      const l1 = listener('l1');
      await store.createListener(l1);
      for (const [i, id] of ['a', 'b', 'c'].entries()) await store.appendEvents(P, [event(id)], routing, T + i * 100);

      expect(await store.queueDepth(T + 150)).toEqual({ due: 2, scheduled: 1, oldestDueAt: T });
      expect(await store.nextDueAt()).toBe(T);
      // The earliest due goes first; in flight it still counts as due, not as scheduled.
      const [a] = await claim(store, 'w1', T + 150, { limit: 1, leaseMs: LONG_LEASE });
      expect(a.id).toBe((await deliveryOf('a')).id);
      expect(await store.queueDepth(T + 150)).toEqual({ due: 2, scheduled: 1, oldestDueAt: T + 100 });
      expect(await store.nextDueAt()).toBe(T + 100);

      const retry = { status: 'pending' as const, nextAttemptAt: T + 10_000, lastError: 'HTTP 500', disableListener: null };
      await record('w1', [result(a, attempt(1, T + 150, { status_code: 500 }), retry)], T + 160);
      expect(await store.queueDepth(T + 160)).toEqual({ due: 1, scheduled: 2, oldestDueAt: T + 100 });
      expect(await store.queueDepth(T + 10_000)).toEqual({ due: 3, scheduled: 0, oldestDueAt: T + 100 });

      await store.updateListener(P, 'l1', { ...specOf(l1), enabled: false }, iso(T + 200));
      expect(await store.queueDepth(T + 200)).toEqual({ due: 0, scheduled: 0, oldestDueAt: null });
      expect(await store.nextDueAt()).toBeNull();
    });

    it('prunes finished deliveries with their attempts, unreferenced events and old rollups, in batches', async () => {
      await seed(['a', 'b', 'c']);
      await store.appendEvents(P, [event('z', { type: 'PING', category: 'NOTIFICATION' })], routing, T); // routed to no one
      const claimed = await claim(store, 'w1', T + 10);
      const outcome = (d: ClaimedDelivery): Outcome => {
        const id = envelopeOf(d).id;
        if (id === 'a') return SUCCEEDED;
        if (id === 'b') return { status: 'failed', nextAttemptAt: null, lastError: 'HTTP 500', disableListener: null };
        return { status: 'pending', nextAttemptAt: T + 99_000, lastError: 'HTTP 500', disableListener: null };
      };
      await record('w1', claimed.map((d) => result(d, attempt(1, T + 10), outcome(d))), T + 20);
      const [a, c] = [await deliveryOf('a'), await deliveryOf('c')];
      expect(await store.rollups(P, { since: 0 })).toHaveLength(1);

      expect(await store.pruneFinished(T, 100)).toEqual({ deliveries: 0, events: 0, rollups: 0 });
      // Well after every time this file creates records at: record ids are monotonic in a
      // process, so one made "at T" after one made at T + 1 min carries the later time.
      const cutoff = T + 10 * MINUTE;
      // The minute goes, and its hour too when that hour has ended by the cutoff (T in its last
      // ten minutes).
      const hours = Math.floor(T / (60 * MINUTE)) * 60 * MINUTE + 60 * MINUTE <= cutoff ? 1 : 0;
      expect(await store.pruneFinished(cutoff, 1)).toEqual({ deliveries: 1, events: 1, rollups: 1 + hours });
      const total = { deliveries: 1, events: 1, rollups: 1 + hours };
      for (;;) {
        const pruned = await store.pruneFinished(cutoff, 100);
        if (pruned.deliveries + pruned.events + pruned.rollups === 0) break;
        total.deliveries += pruned.deliveries;
        total.events += pruned.events;
        total.rollups += pruned.rollups;
      }
      expect(total).toEqual({ deliveries: 2, events: 3, rollups: 1 + hours });
      expect(await store.rollups(P, { since: 0, hours: true })).toHaveLength(1 - hours);
      expect(((await store.listEvents(P, { limit: 10 })).rows).map((e) => e.envelope.id)).toEqual(['c']);
      expect(ids((await store.listDeliveries(P, { limit: 10 })).rows)).toEqual([c.id]);
      expect(await store.getDelivery(P, a.id)).toBeNull();
      expect(await store.listAttempts(P, a.id)).toEqual([]);
      expect(await store.listAttempts(P, c.id)).toHaveLength(1);
      expect(await store.rollups(P, { since: 0 })).toEqual([]);
    });

    it('prunes old events stored after one stamped in the future (a clock that was ahead)', async () => {
      const YEAR = 365 * 24 * 60 * MINUTE;
      // No listener: the events have no deliveries to wait for.
      await store.appendEvents(P, [event('ahead')], routing, T + YEAR);
      await store.appendEvents(P, [event('o1'), event('o2')], routing, T);
      expect(await store.pruneFinished(T + 10 * MINUTE, 100)).toMatchObject({ events: 2 });
      expect(((await store.listEvents(P, { limit: 10 })).rows).map((e) => e.envelope.id)).toEqual(['ahead']);
    });

    it('counts retention from when a delivery finished, not from when it was made', async () => {
      const DAY = 24 * 60 * MINUTE;
      await seed(['a']);
      const [a] = await claim(store, 'w1', T + 10);
      // It failed for good four days after it was made (a long retry schedule, say).
      await record('w1', [result(a, attempt(1, T + 4 * DAY), { status: 'failed', nextAttemptAt: null, lastError: 'HTTP 500', disableListener: null })], T + 4 * DAY);
      // Made more than a day before the cutoff, finished after it: kept, with its event.
      expect(await store.pruneFinished(T + 2 * DAY, 100)).toMatchObject({ deliveries: 0, events: 0 });
      expect(await store.getDelivery(P, a.id)).toMatchObject({ status: 'failed' });
      expect(await store.pruneFinished(T + 5 * DAY, 100)).toMatchObject({ deliveries: 1, events: 1 });
      expect(await store.getDelivery(P, a.id)).toBeNull();
    });
  });

  describe('rollups and last outcomes', () => {
    it('counts attempts per listener and minute, sums a project and a listener\'s minutes, and keeps each listener\'s last outcomes', async () => {
      await seed(['a', 'b', 'c', 'd'], [listener('l1'), listener('l2')]);
      await store.createListener(storedListener('q1', { project: Q }));
      await store.createListener(listener('l3'));
      const claimed = await claim(store, 'w1', T + 10, { leaseMs: LONG_LEASE });
      const of = (eventId: string, listenerId: string) => claimed.find((d) => d.listenerId === listenerId && envelopeOf(d).id === eventId)!;
      const retry = (error: string): Outcome => ({ status: 'pending', nextAttemptAt: T + 99 * MINUTE, lastError: error, disableListener: null });
      const fail = (error: string): Outcome => ({ status: 'failed', nextAttemptAt: null, lastError: error, disableListener: null });
      // An attempt counts in the minute it ended: started_at + duration_ms.
      await record(
        'w1',
        [
          result(of('a', 'l1'), attempt(1, T + 1_000, { duration_ms: 5 })),
          result(of('b', 'l1'), attempt(1, T + 2_000, { duration_ms: 30 })),
          result(of('c', 'l1'), attempt(1, T + 3_000, { duration_ms: 99, status_code: 503, error: 'HTTP_ERROR' }), retry('HTTP 503')),
          result(of('a', 'l2'), attempt(1, T + 4_000, { duration_ms: 200 })),
          // Started in the first minute, ended in the second.
          result(of('d', 'l1'), attempt(1, T + MINUTE - 100, { duration_ms: 40_000, status_code: null, error: 'TIMEOUT' }), fail('timed out after 40000 ms')),
        ],
        T + MINUTE + 40_000,
      );
      const latency = (counts: Record<number, number>) => Array.from({ length: LATENCY_BOUNDS_MS.length + 1 }, (_, i) => counts[i] ?? 0);

      expect(await store.rollups(P, { listenerId: 'l1', since: 0 })).toEqual([
        { at: T, succeeded: 2, failed: 0, retried: 1, latency: latency({ 0: 1, 2: 1, 3: 1 }) },
        { at: T + MINUTE, succeeded: 0, failed: 1, retried: 0, latency: latency({ 11: 1 }) },
      ]);
      expect(await store.rollups(P, { since: 0 })).toEqual([
        { at: T, succeeded: 3, failed: 0, retried: 1, latency: latency({ 0: 1, 2: 1, 3: 1, 4: 1 }) },
        { at: T + MINUTE, succeeded: 0, failed: 1, retried: 0, latency: latency({ 11: 1 }) },
      ]);
      expect(await store.rollups(P, { listenerId: 'l1', since: T + MINUTE })).toHaveLength(1);
      // Totals per listener, for a page of them: l3 has no attempts, q1 is another project's.
      // (Whole hours are summed from the hourly rows: `at` is then the hour's start.)
      const hourOfT = Math.floor(T / (60 * MINUTE)) * 60 * MINUTE;
      expect(Object.fromEntries(await store.rollupTotals(P, ['l1', 'l2', 'l3', 'q1'], 0))).toEqual({
        l1: { at: hourOfT, succeeded: 2, failed: 1, retried: 1, latency: latency({ 0: 1, 2: 1, 3: 1, 11: 1 }) },
        l2: { at: hourOfT, succeeded: 1, failed: 0, retried: 0, latency: latency({ 4: 1 }) },
      });
      expect(Object.fromEntries(await store.rollupTotals(P, ['l1', 'l2'], T + MINUTE))).toEqual({
        l1: { at: T + MINUTE, succeeded: 0, failed: 1, retried: 0, latency: latency({ 11: 1 }) },
      });
      expect(await store.rollups(P, { listenerId: 'l3', since: 0 })).toEqual([]);
      expect(await store.rollups(Q, { since: 0 })).toEqual([]);
      expect(await store.rollups(Q, { listenerId: 'l1', since: 0 })).toEqual([]);

      const outcomes = await store.listenerOutcomes(P, ['l1', 'l2', 'l3', 'q1', 'nobody']);
      expect(Object.fromEntries(outcomes)).toEqual({
        l1: {
          last_success_at: T + 2_030,
          last_failure: { at: T + MINUTE - 100 + 40_000, error: 'timed out after 40000 ms', status_code: null },
        },
        l2: { last_success_at: T + 4_200, last_failure: null },
        l3: { last_success_at: null, last_failure: null },
      });

      // A later failure is the last one; an older outcome recorded late (another dispatcher's
      // batch) does not replace it. Every unrecorded claim's lease has ended by now.
      const later = T + 99 * MINUTE;
      const retaken = new Map((await claim(store, 'w2', later)).map((d) => [d.id, d]));
      const cL1 = retaken.get(of('c', 'l1').id)!;
      const [bL2, cL2] = [retaken.get(of('b', 'l2').id)!, retaken.get(of('c', 'l2').id)!];
      await record(
        'w2',
        [
          result(cL1, attempt(2, later, { status_code: 500, error: 'HTTP_ERROR' }), retry('HTTP 500')),
          result(bL2, attempt(1, later, { status_code: 502, error: 'HTTP_ERROR' }), retry('HTTP 502')),
        ],
        later + 10,
      );
      await record('w2', [result(cL2, attempt(1, later - MINUTE, { status_code: 504, error: 'HTTP_ERROR' }), retry('HTTP 504'))], later + 20);
      expect(Object.fromEntries(await store.listenerOutcomes(P, ['l1', 'l2']))).toEqual({
        l1: { last_success_at: T + 2_030, last_failure: { at: later + 5, error: 'HTTP 500', status_code: 500 } },
        l2: { last_success_at: T + 4_200, last_failure: { at: later + 5, error: 'HTTP 502', status_code: 502 } },
      });
      expect(await store.listenerOutcomes(Q, ['l1'])).toEqual(new Map());
    });

    it('sums the minutes by the hour: series by the hour, totals from the hours and the minutes before the first whole one, pruning by whole hours', async () => {
      const HOUR = 60 * MINUTE;
      const H = Math.floor(T / HOUR) * HOUR;
      await seed(['a', 'b', 'c', 'd'], [listener('l1'), listener('l2')]);
      const claimed = await claim(store, 'w1', T + 10, { leaseMs: LONG_LEASE });
      const of = (eventId: string, listenerId: string) => claimed.find((d) => d.listenerId === listenerId && envelopeOf(d).id === eventId)!;
      const retry: Outcome = { status: 'pending', nextAttemptAt: T + 999 * MINUTE, lastError: 'HTTP 503', disableListener: null };
      // Two batches, so that an hour is added to by more than one statement.
      await record(
        'w1',
        [
          result(of('a', 'l1'), attempt(1, H - 2 * MINUTE, { duration_ms: 5 })),
          result(of('b', 'l1'), attempt(1, H + 5 * MINUTE, { duration_ms: 30 })),
          result(of('a', 'l2'), attempt(1, H + 6 * MINUTE, { duration_ms: 200 })),
        ],
        T + 20,
      );
      await record(
        'w1',
        [
          result(of('c', 'l1'), attempt(1, H + 59 * MINUTE, { duration_ms: 99, status_code: 503, error: 'HTTP_ERROR' }), retry),
          result(of('d', 'l1'), attempt(1, H + 70 * MINUTE, { duration_ms: 5 })),
        ],
        T + 30,
      );
      const latency = (counts: Record<number, number>) => Array.from({ length: LATENCY_BOUNDS_MS.length + 1 }, (_, i) => counts[i] ?? 0);

      expect(await store.rollups(P, { listenerId: 'l1', since: 0, hours: true })).toEqual([
        { at: H - HOUR, succeeded: 1, failed: 0, retried: 0, latency: latency({ 0: 1 }) },
        { at: H, succeeded: 1, failed: 0, retried: 1, latency: latency({ 2: 1, 3: 1 }) },
        { at: H + HOUR, succeeded: 1, failed: 0, retried: 0, latency: latency({ 0: 1 }) },
      ]);
      expect(await store.rollups(P, { since: H, hours: true })).toEqual([
        { at: H, succeeded: 2, failed: 0, retried: 1, latency: latency({ 2: 1, 3: 1, 4: 1 }) },
        { at: H + HOUR, succeeded: 1, failed: 0, retried: 0, latency: latency({ 0: 1 }) },
      ]);
      // The minutes are there as well, each in its own row.
      expect((await store.rollups(P, { listenerId: 'l1', since: 0 })).map((m) => m.at)).toEqual([H - 2 * MINUTE, H + 5 * MINUTE, H + 59 * MINUTE, H + 70 * MINUTE]);
      expect(await store.rollups(Q, { since: 0, hours: true })).toEqual([]);

      const totals = async (since: number) => Object.fromEntries(await store.rollupTotals(P, ['l1', 'l2'], since));
      // From half an hour before H: that half hour's minutes, then the whole hours.
      expect(await totals(H - 30 * MINUTE)).toEqual({
        l1: { at: H - 2 * MINUTE, succeeded: 3, failed: 0, retried: 1, latency: latency({ 0: 2, 2: 1, 3: 1 }) },
        l2: { at: H, succeeded: 1, failed: 0, retried: 0, latency: latency({ 4: 1 }) },
      });
      expect(await totals(H - MINUTE)).toMatchObject({ l1: { at: H, succeeded: 2, retried: 1 }, l2: { at: H, succeeded: 1 } });
      // From within the hour H: its minutes from then on (the retry at H + 59 min), then H + 1 h.
      expect(await totals(H + 30 * MINUTE)).toEqual({
        l1: { at: H + 59 * MINUTE, succeeded: 1, failed: 0, retried: 1, latency: latency({ 0: 1, 3: 1 }) },
      });
      expect(await totals(H + HOUR)).toEqual({
        l1: { at: H + HOUR, succeeded: 1, failed: 0, retried: 0, latency: latency({ 0: 1 }) },
      });

      // A cutoff at H + 90 min takes every minute before it and the hours that ended by then.
      for (;;) {
        const pruned = await store.pruneFinished(H + 90 * MINUTE, 100);
        if (pruned.deliveries + pruned.events + pruned.rollups === 0) break;
      }
      expect(await store.rollups(P, { since: 0 })).toEqual([]);
      expect((await store.rollups(P, { since: 0, hours: true })).map((h) => h.at)).toEqual([H + HOUR]);
    });
  });

  describe('ordering and the listener gate', () => {
    const ordered = (id: string, over: Partial<StoredListener> = {}) => listener(id, { ordering: 'execution', ...over });
    /** The claimed deliveries of one listener, as [event id, gap]. */
    const sent = (claimed: ClaimedDelivery[], listenerId: string) =>
      claimed
        .filter((d) => d.listenerId === listenerId)
        .map((d) => [envelopeOf(d).id, d.gap])
        .sort((a, b) => String(a[0]).localeCompare(String(b[0])));
    const FAILED: Outcome = { status: 'failed', nextAttemptAt: null, lastError: 'HTTP 500', disableListener: null };

    it('sends an ordered listener one delivery per execution at a time, in sequence, with the sequences it skipped', async () => {
      await seed(['e1', 'e2', 'e3', 'x1'], [ordered('lo'), listener('lu')]);
      await store.appendEvents(P, [event('x1b', { execution_id: 'exec-2' }), event('n', { execution_id: null })], routing, T);
      // e1..e3 are exec-1, x1 is exec-1 too; x1b is exec-2; n has no execution and keeps no order.
      expect((await deliveryOf('e2', 'lo')).next_attempt_at).toBeNull();
      const first = await claim(store, 'w1', T + 10);
      expect(sent(first, 'lo')).toEqual([['e1', null], ['n', null], ['x1b', null]]);
      expect(sent(first, 'lu').map(([id]) => id)).toEqual(['e1', 'e2', 'e3', 'n', 'x1', 'x1b']);

      // e1 fails for good: e2 is the head, due at once, and says that sequence 1 was skipped.
      await record('w1', [result(first.find((d) => d.listenerId === 'lo' && envelopeOf(d).id === 'e1')!, attempt(1, T + 10), FAILED)], T + 20);
      expect(await deliveryOf('e2', 'lo')).toMatchObject({ status: 'pending', next_attempt_at: T + 20 });
      expect((await deliveryOf('e3', 'lo')).next_attempt_at).toBeNull();
      const second = await claim(store, 'w1', T + 20);
      expect(sent(second, 'lo')).toEqual([['e2', [1]]]);

      // A success clears the gap.
      await record('w1', [result(second[0], attempt(1, T + 20))], T + 30);
      const third = await claim(store, 'w1', T + 30);
      expect(sent(third, 'lo')).toEqual([['e3', null]]);
      await record('w1', [result(third[0], attempt(1, T + 30), FAILED)], T + 40);
      const fourth = await claim(store, 'w1', T + 40);
      expect(sent(fourth, 'lo')).toEqual([['x1', [3]]]);

      // Nothing waits behind x1: the key keeps its gap for the execution's next delivery.
      await record('w1', [result(fourth[0], attempt(1, T + 40), FAILED)], T + 50);
      await store.appendEvents(P, [event('e5')], routing, T + 60);
      const fifth = await claim(store, 'w1', T + 60);
      expect(sent(fifth, 'lo')).toEqual([['e5', [3, 4]]]);

      // e5's try fails and waits for its next; a manual retry sends it now, still the head, gap and all.
      const RETRY: Outcome = { status: 'pending', nextAttemptAt: T + 60_000, lastError: 'HTTP 500', disableListener: null };
      await record('w1', [result(fifth[0], attempt(1, T + 60), RETRY)], T + 70);
      expect(await store.retryDelivery(P, fifth[0].id, T + 80)).toBe('queued');
      expect(sent(await claim(store, 'w1', T + 80), 'lo')).toEqual([['e5', [3, 4]]]);
    });

    it('promotes nothing on a manual retry, holds across disabling, and releases what it held when ordering is turned off', async () => {
      const lo = ordered('lo');
      await seed(['e1', 'e2', 'e3'], [lo]);
      const [e1] = await claim(store, 'w1', T + 10);
      await record('w1', [result(e1, attempt(1, T + 10))], T + 20);
      // e2 is the head now; sending e1 again changes nothing for e3.
      expect(await store.retryDelivery(P, e1.id, T + 30)).toBe('queued');
      const again = await claim(store, 'w1', T + 30);
      expect(sent(again, 'lo')).toEqual([['e1', null], ['e2', null]]);
      await record('w1', [result(again.find((d) => d.id === e1.id)!, attempt(2, T + 30))], T + 40);
      expect((await deliveryOf('e3', 'lo')).next_attempt_at).toBeNull();
      await store.releaseLeases('w1', [again.find((d) => d.id !== e1.id)!.id], T + 40);

      await store.updateListener(P, 'lo', { ...specOf(lo), enabled: false }, iso(T + 100));
      await store.updateListener(P, 'lo', { ...specOf(lo), enabled: true }, iso(T + 200));
      expect((await deliveryOf('e2', 'lo')).next_attempt_at).toBe(T + 200);
      expect((await deliveryOf('e3', 'lo')).next_attempt_at).toBeNull();

      await store.updateListener(P, 'lo', { ...specOf(lo), ordering: 'none' }, iso(T + 300));
      expect((await deliveryOf('e3', 'lo')).next_attempt_at).toBe(T + 300);
      expect(sent(await claim(store, 'w1', T + 300), 'lo')).toEqual([['e2', null], ['e3', null]]);
    });

    it('lets go of what it held behind the heads a window at a time when ordering is turned off, across a disabling meanwhile', async () => {
      const [lo, lp] = [ordered('lo'), ordered('lp')];
      await seed(['e1', 'e2', 'e3', 'e4', 'e5'], [lo, lp]);
      const windowed = await db.open({ backlogWindow: 2 });
      const waiting = async (id: string) =>
        (await windowed.listDeliveries(P, { listener_id: id, limit: 10 })).rows.filter((d) => d.status === 'pending' && d.next_attempt_at === null).length;
      const moveAll = async (now: number) => {
        const steps = [];
        for (let s = await windowed.moveListenerBacklogs(now); s; s = await windowed.moveListenerBacklogs(now)) steps.push(s);
        return steps;
      };
      expect([await waiting('lo'), await waiting('lp')]).toEqual([4, 4]);

      // Enabled: the change lets go of the first window (e1 is the head already), the rest follow.
      await windowed.updateListener(P, 'lo', { ...specOf(lo), ordering: 'none' }, iso(T + 100));
      expect(await waiting('lo')).toBe(3);
      expect(await windowed.moveListenerBacklogs(T + 101)).toEqual({ listenerId: 'lo', project: P, action: 'release', unorder: true, moved: 2, done: false });
      expect(await moveAll(T + 102)).toEqual([{ listenerId: 'lo', project: P, action: 'release', unorder: true, moved: 1, done: true }]);
      expect(await waiting('lo')).toBe(0);

      // Turned off, then disabled before the rest went: the hold lets go of them too, so enabling makes them all due.
      await windowed.updateListener(P, 'lp', { ...specOf(lp), ordering: 'none' }, iso(T + 200));
      await windowed.updateListener(P, 'lp', { ...specOf(lp), ordering: 'none', enabled: false }, iso(T + 201));
      expect((await moveAll(T + 202)).map((s) => [s.action, s.unorder, s.done])).toEqual([['hold', true, false], ['hold', true, true]]);
      expect(await waiting('lp')).toBe(5);
      await windowed.updateListener(P, 'lp', { ...specOf(lp), ordering: 'none', enabled: true }, iso(T + 300));
      expect((await moveAll(T + 301)).map((s) => [s.action, s.unorder, s.done])).toEqual([['release', false, false], ['release', false, true]]);
      expect(await waiting('lp')).toBe(0);
      const claimed = await claim(windowed, 'w1', T + 400);
      expect([sent(claimed, 'lo').length, sent(claimed, 'lp').length]).toEqual([5, 5]);
    });

    it('forgets a deleted listener\'s order', async () => {
      await seed(['e1', 'e2'], [ordered('lo')]);
      await store.deleteListener(P, 'lo');
      await store.createListener(ordered('lo'));
      await store.appendEvents(P, [event('e3')], routing, T + 10);
      expect(sent(await claim(store, 'w1', T + 10), 'lo')).toEqual([['e3', null]]);
    });

    it('replays an execution from a sequence on, in order', async () => {
      await seed(['e1', 'e2', 'e3', 'x1'], [listener('l1')]);
      await store.appendEvents(P, [event('other', { execution_id: 'exec-2' })], routing, T);
      await store.createListener(listener('lr'));
      const from2 = { executionId: 'exec-1', fromSequence: 2, limit: 2, scanLimit: 1000 };
      const all: FanOut = () => ['lr'];
      expect(await store.replay(P, 'lr', from2, all, T + 100)).toEqual({ count: 2, truncated: true, fromSequence: 4 });
      const replayed = (await store.listDeliveries(P, { listener_id: 'lr', limit: 10 })).rows;
      expect(replayed.map((d) => [d.event_id, d.next_attempt_at])).toEqual([['e2', T + 100], ['e3', null]]);
      const heads = (await claim(store, 'w1', T + 100)).filter((d) => d.listenerId === 'lr');
      expect(sent(heads, 'lr')).toEqual([['e2', null]]);
      const [head] = heads;
      await record('w1', [result(head, attempt(1, T + 100))], T + 110);
      expect((await deliveryOf('e3', 'lr')).next_attempt_at).toBe(T + 110);
      expect(await store.replay(P, 'lr', { ...from2, fromSequence: 4, limit: 10 }, all, T + 120)).toEqual({ count: 1, truncated: false });
    });

    it('claims what the gate takes, defers the rest unleased, and keeps the gate states it changes', async () => {
      await seed(['a', 'b', 'c'], [listener('l1'), listener('l2', { rate_limit_per_s: 5 })]);
      let asked: { candidates: string[][]; listeners: Record<string, GateListener> } | null = null;
      const limited = { ...initialGateState(T + 10), tokens: 0, tokens_at: T + 10 };
      const admit: ClaimAdmit = (candidates, listeners, now) => {
        asked = { candidates: candidates.map((c) => [c.listenerId, c.id]), listeners: Object.fromEntries(listeners) };
        // l1's all go; one of l2's goes and the others wait a second each.
        const take: string[] = [];
        const defer = new Map<string, number>();
        let l2 = 0;
        for (const c of candidates) {
          if (c.listenerId === 'l1' || l2++ === 0) take.push(c.id);
          else defer.set(c.id, now + 1_000 * (l2 - 1));
        }
        return { take, defer, changed: new Map([['l2', limited]]) };
      };
      const claimed = await claim(store, 'w1', T + 10, { admit });
      expect(asked!.candidates).toHaveLength(6);
      expect(sorted(asked!.candidates.map(([, id]) => id))).toEqual(sorted(ids((await store.listDeliveries(P, { limit: 10 })).rows)));
      expect(asked!.listeners).toEqual({
        l1: { state: initialGateState(T + 10), ratePerS: null, maxInFlight: 32 },
        l2: { state: initialGateState(T + 10), ratePerS: 5, maxInFlight: 32 },
      });
      expect(claimed.map((d) => d.listenerId).sort()).toEqual(['l1', 'l1', 'l1', 'l2']);
      const deferred = ((await store.listDeliveries(P, { listener_id: 'l2', limit: 10 })).rows).filter((d) => !ids(claimed).includes(d.id));
      expect(deferred.map((d) => [d.next_attempt_at, d.in_flight]).sort((x, y) => Number(x[0]) - Number(y[0]))).toEqual([
        [T + 1_010, false],
        [T + 2_010, false],
      ]);
      expect(Object.fromEntries(await store.listenerGates(P, ['l1', 'l2', 'nobody']))).toEqual({ l2: limited });
      expect(await store.listenerGates(Q, ['l2'])).toEqual(new Map());

      // The next claim hands the gate the state it wrote; what it deferred is due at its time.
      asked = null;
      const later = await claim(store, 'w1', T + 1_010, { admit });
      expect(asked!.listeners).toEqual({ l2: { state: limited, ratePerS: 5, maxInFlight: 32 } });
      expect(later).toHaveLength(1);
    });

    it('records the gate\'s judgement of a batch: its states, the listeners it turns off, the relay\'s events', async () => {
      const l2 = listener('l2', { event_types: ['TASK', 'NOTIFICATION'] });
      await seed(['a'], [listener('l1'), l2, listener('watch', { event_types: ['NOTIFICATION'] })]);
      await store.appendEvents(P, [event('b')], routing, T + 1);
      const claimed = await claim(store, 'w1', T + 10, { limit: 2 });
      const open = { ...initialGateState(T + 10), breaker: 'open' as const, probe_at: T + 30_010 };
      const seen: { attempts: readonly JudgedAttempt[]; states: Record<string, ListenerGateState> }[] = [];
      const relayEvent = relayOff('relay-1', { listener_id: 'l2' }, T + 20);
      const announced: unknown[][] = [];
      const judge: RecordJudge = {
        routing,
        judge(attempts, states) {
          seen.push({ attempts, states: Object.fromEntries(states) });
          return {
            changed: new Map([['l1', open]]),
            disable: new Map([['l2', 'every attempt failed for 120 hours']]),
            events: [],
          };
        },
        turnedOff(...args) {
          announced.push(args);
          return relayEvent;
        },
      };
      const [toL1, toL2] = ['l1', 'l2'].map((l) => claimed.find((d) => d.listenerId === l)!);
      const judged = (d: ClaimedDelivery) => ({
        listenerId: d.listenerId,
        project: P,
        deliveryId: d.id,
        eventId: 'a',
        eventType: 'TASK_SUCCEEDED',
        attempts: 1,
        disabledReason: null,
      });
      const out = await store.recordAndClaim(
        'w1',
        [result(toL1, attempt(1, T + 10)), result(toL2, attempt(1, T + 10, { status_code: 500 }), FAILED)],
        null,
        T + 20,
        judge,
      );
      expect(out.disabledListeners).toEqual(['l2']);
      expect(announced).toEqual([[P, 'l2', 'every attempt failed for 120 hours', T + 20]]);
      expect(seen).toEqual([
        {
          attempts: [
            { ...judged(toL1), ok: true, finalFailure: false, lastError: null },
            { ...judged(toL2), ok: false, finalFailure: true, lastError: 'HTTP 500' },
          ],
          states: { l1: initialGateState(T + 20), l2: initialGateState(T + 20) },
        },
      ]);
      expect(Object.fromEntries(await store.listenerGates(P, ['l1', 'l2']))).toEqual({ l1: open });
      expect(await store.getListener(P, 'l2')).toMatchObject({ enabled: false, disabled_reason: 'every attempt failed for 120 hours' });
      expect(await deliveryOf('b', 'l2')).toMatchObject({ status: 'pending', next_attempt_at: null });
      // The relay's own event is in the log, routed after l2 went off (l2 takes notifications).
      expect(await store.getEvent(P, 'relay-1')).toEqual({ envelope: relayEvent, received_at: T + 20 });
      expect(((await store.listDeliveries(P, { event_id: 'relay-1', limit: 10 })).rows).map((d) => d.listener_id)).toEqual(['watch']);
    });

    it('announces a listener turned off once: not for a second 410, a later one, or a judgement about a listener already off', async () => {
      await seed(['a', 'b', 'c'], [listener('l1'), listener('watch', { event_types: ['NOTIFICATION'] })]);
      const claimed = await claim(store, 'w1', T + 10);
      const [da, db_, dc] = ['a', 'b', 'c'].map((e) => claimed.find((d) => (JSON.parse(d.envelopeJson) as { id: string }).id === e)!);
      const gone = { status: 'pending' as const, nextAttemptAt: null, lastError: 'HTTP 410 Gone', disableListener: 'the receiver answered 410 Gone' };
      const announced: unknown[][] = [];
      let disable = new Map<string, string>();
      const judge: RecordJudge = {
        routing,
        judge: () => ({ changed: new Map(), disable, events: [] }),
        turnedOff(project, listenerId, reason, now) {
          announced.push([project, listenerId, reason]);
          return relayOff(`off-${announced.length}`, { listener_id: listenerId, reason }, now);
        },
      };
      const goneAt = (d: ClaimedDelivery) => result(d, attempt(1, T + 10, { status_code: 410, error: 'HTTP_ERROR' }), gone);
      // Two 410s in one batch turn it off once.
      const first = await store.recordAndClaim('w1', [goneAt(da), goneAt(db_)], null, T + 20, judge);
      expect(first.disabledListeners).toEqual(['l1']);
      expect(announced).toEqual([[P, 'l1', 'the receiver answered 410 Gone']]);
      // The third, in flight meanwhile, finds it off; so does a judgement that would turn it off.
      disable = new Map([['l1', 'every attempt failed for 120 hours']]);
      const second = await store.recordAndClaim('w1', [goneAt(dc)], null, T + 30, judge);
      expect(second.disabledListeners).toEqual([]);
      expect(announced).toHaveLength(1);
      expect(await store.getListener(P, 'l1')).toMatchObject({ enabled: false, disabled_reason: 'the receiver answered 410 Gone' });
      const said = ((await store.listEvents(P, { limit: 10 })).rows).filter((e) => e.envelope.type === 'relay.listener.disabled');
      expect(said.map((e) => e.envelope.id)).toEqual(['off-1']);
      expect(((await store.listDeliveries(P, { event_id: 'off-1', limit: 10 })).rows).map((d) => d.listener_id)).toEqual(['watch']);
    });

    it('forgets the gate state of a listener enabled again: the failures that turned it off no longer count', async () => {
      const l1 = listener('l1');
      await seed(['a'], [l1]);
      const [d] = await claim(store, 'w1', T + 10, { limit: 1 });
      const failing = { ...initialGateState(T), failing_since: T, window_attempts: 3, window_failures: 3, prev_attempts: 4, prev_failures: 2 };
      const judge: RecordJudge = {
        routing,
        judge: () => ({ changed: new Map([['l1', failing]]), disable: new Map([['l1', 'every attempt failed for 120 hours']]), events: [] }),
        turnedOff: (_p, listenerId, reason, now) => relayOff('off-1', { listener_id: listenerId, reason }, now),
      };
      await store.recordAndClaim('w1', [result(d, attempt(1, T + 10, { status_code: 500 }), FAILED)], null, T + 20, judge);
      expect(await store.getListener(P, 'l1')).toMatchObject({ enabled: false });
      expect(Object.fromEntries(await store.listenerGates(P, ['l1']))).toEqual({ l1: failing });
      // Any other change keeps it; enabling forgets it.
      await store.updateListener(P, 'l1', { ...specOf(l1), enabled: false, description: 'still off' }, iso(T + 30));
      expect(Object.fromEntries(await store.listenerGates(P, ['l1']))).toEqual({ l1: failing });
      await store.updateListener(P, 'l1', { ...specOf(l1), enabled: true }, iso(T + 40));
      expect(await store.getListener(P, 'l1')).toMatchObject({ enabled: true, disabled_reason: null });
      expect((await store.listenerGates(P, ['l1'])).size).toBe(0);
    });
  });

  describe('the engine', () => {
    const engineListener = () => listener('l1', { event_types: ['EXECUTION', 'TASK'] });

    it('runs a launch, a change of an execution and a change of one task, each in one transaction', async () => {
      await store.createListener(engineListener());
      const before = Date.now();
      const launched = await store.engineTransaction(P, { launch: true }, routing, (tx) => {
        tx.insertExecution(execution('x1', tx.now));
        tx.insertTask(task('t1', 'x1', tx.now));
        tx.insertTask(task('t2', 'x1', tx.now, { state: 'WAITING', next_run_at: null }));
        tx.appendEvent(engineEvent('ev1', 'WORKFLOW_LAUNCHED', 'x1'));
        tx.appendEvent(engineEvent('ev2', 'TASK_LAUNCHED', 'x1', 't1'));
        return tx.now;
      });
      const t0 = launched.value;
      expect(launched).toEqual({ value: t0, events: 2, deliveries: 2 });
      expect(t0).toBeGreaterThanOrEqual(before);
      expect(t0).toBeLessThanOrEqual(Date.now());
      expect(await store.getExecution(P, 'x1')).toEqual(execution('x1', t0));
      expect(await store.getExecution(Q, 'x1')).toBeNull();
      expect(await store.getTask(P, 't1')).toEqual(task('t1', 'x1', t0));

      // Reads inside the transaction see its own writes.
      const changed = await store.engineTransaction(P, { executionId: 'x1' }, routing, (tx) => {
        const summary = () => tx.taskSummaries('x1').map((s) => [s.id, s.state, 'result' in s]);
        const seen = { summaries: summary(), count: tx.countTasks('x1') };
        tx.insertTask(task('t3', 'x1', tx.now));
        const t1 = tx.task('t1')!;
        tx.saveTask({ ...t1, state: 'SUCCESS', result: { ok: 1 }, next_run_at: null, tries: 1 });
        tx.saveExecution({ ...tx.execution('x1')!, state: 'PAUSED', state_info: 'paused by a test', pending_operation: 'pause' });
        tx.appendEvent(engineEvent('ev3', 'WORKFLOW_PAUSED', 'x1'));
        return { seen, summaries: summary(), count: tx.countTasks('x1'), execution: tx.execution('x1'), t1: tx.task('t1'), now: tx.now };
      });
      const t1 = changed.value.now;
      expect(changed.value.seen).toEqual({ summaries: [['t1', 'RUNNING', false], ['t2', 'WAITING', false]], count: 2 });
      expect(changed.value.summaries).toEqual([['t1', 'SUCCESS', false], ['t2', 'WAITING', false], ['t3', 'RUNNING', false]]);
      expect(changed.value.count).toBe(3);
      const paused = { ...execution('x1', t0), state: 'PAUSED' as const, state_info: 'paused by a test', pending_operation: 'pause' as const, updated_at: t1 };
      expect(changed.value.execution).toEqual(paused);
      const succeeded = { ...task('t1', 'x1', t0), state: 'SUCCESS' as const, result: { ok: 1 }, next_run_at: null, tries: 1, updated_at: t1 };
      expect(changed.value.t1).toEqual(succeeded);
      expect([changed.events, changed.deliveries]).toEqual([1, 1]);
      expect(await store.getExecution(P, 'x1')).toEqual(paused);
      expect(await store.getTask(P, 't1')).toEqual(succeeded);
      expect(await store.getTask(P, 't3')).toEqual(task('t3', 'x1', t1));

      const viaTask = await store.engineTransaction(P, { taskId: 't3' }, routing, (tx) => {
        const t3 = tx.task('t3')!;
        const state = tx.execution(t3.execution_id)!.state;
        tx.saveTask({ ...t3, state: 'ERROR', state_info: 'boom', next_run_at: null, rerun: true });
        tx.appendEvent(engineEvent('ev4', 'TASK_FAILED', 'x1', 't3'));
        return { state, t3: tx.task('t3'), now: tx.now };
      });
      const failed = { ...task('t3', 'x1', t1), state: 'ERROR' as const, state_info: 'boom', next_run_at: null, rerun: true, updated_at: viaTask.value.now };
      expect(viaTask.value).toEqual({ state: 'PAUSED', t3: failed, now: viaTask.value.now });
      expect(await store.getTask(P, 't3')).toEqual(failed);

      const events = (await store.listEvents(P, { limit: 10, execution_id: 'x1' })).rows;
      expect(events.map((e) => [e.envelope.id, e.envelope.sequence])).toEqual([['ev1', 1], ['ev2', 2], ['ev3', 3], ['ev4', 4]]);
      expect(await store.listTasks(P, 'x1', { limit: 2 })).toEqual({ rows: [expect.objectContaining({ id: 't1' }), expect.objectContaining({ id: 't2' })], resume: null });
      expect(ids((await store.listTasks(P, 'x1', { limit: 2, after: 't2' })).rows)).toEqual(['t3']);
    });

    it('runs a change whose scope does not exist with nothing loaded', async () => {
      await store.engineTransaction(P, { launch: true }, routing, (tx) => {
        tx.insertExecution(execution('x1', tx.now));
        tx.insertTask(task('t1', 'x1', tx.now));
      });
      const missing = await store.engineTransaction(P, { executionId: 'nope' }, routing, (tx) => tx.execution('nope'));
      expect(missing).toEqual({ value: null, events: 0, deliveries: 0 });
      expect((await store.engineTransaction(P, { taskId: 'nope' }, routing, (tx) => tx.task('nope'))).value).toBeNull();
      // Another project's execution and task are not there for it.
      expect((await store.engineTransaction(Q, { executionId: 'x1' }, routing, (tx) => tx.execution('x1'))).value).toBeNull();
      expect((await store.engineTransaction(Q, { taskId: 't1' }, routing, (tx) => tx.task('t1'))).value).toBeNull();
    });

    it('commits nothing of a change that throws', async () => {
      await store.createListener(engineListener());
      const refused = store.engineTransaction(P, { launch: true }, routing, (tx) => {
        tx.insertExecution(execution('x1', tx.now));
        tx.insertTask(task('t1', 'x1', tx.now));
        tx.appendEvent(engineEvent('ev1', 'WORKFLOW_LAUNCHED', 'x1'));
        throw new Error('refused by the test');
      });
      await expect(refused).rejects.toThrow('refused by the test');
      expect(await store.getExecution(P, 'x1')).toBeNull();
      expect(await store.getTask(P, 't1')).toBeNull();
      expect((await store.listEvents(P, { limit: 10 })).rows).toEqual([]);
      expect((await store.listDeliveries(P, { limit: 10 })).rows).toEqual([]);
      await store.engineTransaction(P, { launch: true }, routing, (tx) => {
        tx.insertExecution(execution('x1', tx.now));
        tx.appendEvent(engineEvent('ev2', 'WORKFLOW_LAUNCHED', 'x1'));
      });
      expect((await store.getEvent(P, 'ev2'))!.envelope.sequence).toBe(1);
    });

    it('numbers the events of concurrent changes of one execution without gaps, from two processes', async () => {
      const other = await db.open();
      await store.createListener(engineListener());
      await store.engineTransaction(P, { launch: true }, routing, (tx) => {
        tx.insertExecution(execution('x1', tx.now));
        tx.appendEvent(engineEvent('ev0', 'WORKFLOW_LAUNCHED', 'x1'));
      });
      const n = 16;
      const changes = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          (i % 2 ? other : store).engineTransaction(P, { executionId: 'x1' }, countingRouting().routing, (tx) => {
            tx.saveExecution({ ...tx.execution('x1')!, state_info: `change ${i}` });
            tx.appendEvent(engineEvent(`ev${i + 1}`, 'WORKFLOW_RESUMED', 'x1'));
          }),
        ),
      );
      expect(changes.map((c) => [c.events, c.deliveries])).toEqual(Array.from({ length: n }, () => [1, 1]));
      const sequences = ((await store.listEvents(P, { limit: 100, execution_id: 'x1' })).rows).map((e) => e.envelope.sequence);
      expect(sequences).toEqual(Array.from({ length: n + 1 }, (_, i) => i + 1));
    });

    async function launchTasks(tasks: (now: number) => TaskRecord[], executions: (now: number) => ExecutionRecord[] = (now) => [execution('x1', now)]) {
      await store.engineTransaction(P, { launch: true }, routing, (tx) => {
        for (const e of executions(tx.now)) tx.insertExecution(e);
        for (const t of tasks(tx.now)) tx.insertTask(t);
      });
    }

    it('claims due tasks of running executions under an owner\'s lease, renews it, and lists them in flight', async () => {
      await launchTasks(
        () => [
          task('a', 'x1', T),
          task('b', 'x1', T + MINUTE),
          task('c', 'x1', T, { state: 'WAITING', next_run_at: null }),
          // A wait that ends (std.sleep): its action started before and keeps its start and its try.
          task('d', 'x1', T + 1, { action: 'std.sleep', action_started_at: T - 5_000, tries: 1 }),
          task('e', 'x2', T),
        ],
        (now) => [execution('x1', now), execution('x2', now, { state: 'PAUSED' })],
      );
      expect(await store.nextTaskDueAt()).toBe(T);

      const claimed = await store.claimRunnableTasks({ owner: 'o1', now: T + 10, limit: 10, leaseMs: 30_000 });
      const x1 = execution('x1', 0);
      const running = { workbook: x1.workbook, workflow: x1.workflow, spec: x1.spec, input: x1.input, state: 'RUNNING' };
      expect(ids(claimed)).toEqual(['a', 'd']);
      const [a, d] = [(await store.getTask(P, 'a'))!, (await store.getTask(P, 'd'))!];
      expect(claimed).toEqual([
        { ...a, execution: running },
        { ...d, execution: running },
      ]);
      expect(a).toMatchObject({ tries: 1, action_started_at: T + 10, next_run_at: null, state: 'RUNNING' });
      expect(d).toMatchObject({ tries: 1, action_started_at: T - 5_000, next_run_at: null, state: 'RUNNING' });
      expect(await store.claimRunnableTasks({ owner: 'o2', now: T + 20, limit: 10, leaseMs: 30_000 })).toEqual([]);
      expect(await store.nextTaskDueAt()).toBe(T + MINUTE);

      const inFlight = async () => [...(await store.listInFlightTasks())].sort((x, y) => x.id.localeCompare(y.id));
      expect(await inFlight()).toEqual([
        { ...a, owner: 'o1', lease_until: T + 30_010 },
        { ...d, owner: 'o1', lease_until: T + 30_010 },
      ]);
      expect(await store.renewTaskLeases('o2', T + 90_000)).toBe(0);
      expect(await store.renewTaskLeases('o1', T + 90_000)).toBe(2);
      expect((await inFlight()).map((t) => [t.id, t.owner, t.lease_until])).toEqual([
        ['a', 'o1', T + 90_000],
        ['d', 'o1', T + 90_000],
      ]);

      // An outcome committed: the task is no longer in flight, nor renewed.
      await store.engineTransaction(P, { taskId: 'a' }, routing, (tx) => {
        tx.saveTask({ ...tx.task('a')!, state: 'SUCCESS', result: 42 });
      });
      expect(ids(await inFlight())).toEqual(['d']);
      expect(await store.renewTaskLeases('o1', T + 120_000)).toBe(1);
      expect(await store.latestResults(P, 'x1', ['a', 'd', 'zz'])).toEqual(new Map([['a', 42]]));
    });

    it('gives each due task to one of two claimers, in due order and up to the limit', async () => {
      const other = await db.open();
      await launchTasks(() => Array.from({ length: 30 }, (_, i) => task(`t${String(i).padStart(2, '0')}`, 'x1', T + i)));
      const [first] = await store.claimRunnableTasks({ owner: 'o0', now: T + 100, limit: 1, leaseMs: 30_000 });
      expect(first.id).toBe('t00');

      const take = async (s: Store, owner: string) => {
        const got: string[] = [];
        for (;;) {
          const claimed = await s.claimRunnableTasks({ owner, now: T + 100, limit: 4, leaseMs: 30_000 });
          if (claimed.length === 0) return got;
          got.push(...ids(claimed));
        }
      };
      const takers = await Promise.all([take(store, 'o1'), take(other, 'o2'), take(store, 'o3'), take(other, 'o4')]);
      const rest = ids(await store.claimRunnableTasks({ owner: 'o5', now: T + 100, limit: 100, leaseMs: 30_000 }));
      const all = [...takers.flat(), ...rest];
      expect(all).toHaveLength(29);
      expect(new Set(all).size).toBe(29);
      const owners = new Map((await store.listInFlightTasks()).map((t) => [t.id, t.owner]));
      expect(owners.size).toBe(30);
      takers.forEach((got, i) => got.forEach((id) => expect(owners.get(id)).toBe(`o${i + 1}`)));
      expect(owners.get('t00')).toBe('o0');
    });

    it('keeps workbooks by name and pages executions both ways', async () => {
      const wb = (name: string, at: number) => ({ project: P, name, source: `name: ${name}`, spec: { name }, created_at: at, updated_at: at });
      for (const name of ['w-b', 'w-a', 'w-c']) await store.createWorkbook(wb(name, T));
      await expect(store.createWorkbook(wb('w-a', T + 1))).rejects.toBeInstanceOf(StoreConflictError);
      await store.createWorkbook({ ...wb('w-a', T), project: Q });
      expect(await store.getWorkbook(P, 'w-a')).toEqual(wb('w-a', T));
      expect(await store.getWorkbook(P, 'nope')).toBeNull();
      const names = async (after?: string) => (await store.listWorkbooks(P, { limit: 2, after })).rows.map((w) => w.name);
      expect([await names(), await names('w-b'), await names('w-c')]).toEqual([['w-a', 'w-b'], ['w-c'], []]);
      expect(await store.updateWorkbook(P, 'w-b', 'name: w-b2', { name: 'w-b2' }, T + 5)).toEqual({
        ...wb('w-b', T),
        source: 'name: w-b2',
        spec: { name: 'w-b2' },
        updated_at: T + 5,
      });
      expect(await store.updateWorkbook(P, 'nope', 'x', {}, T + 5)).toBeNull();

      await launchTasks(
        () => [],
        (now) => [
          execution('x1', now, { workbook: 'w-a' }),
          execution('x2', now, { workbook: 'w-b', state: 'SUCCESS' }),
          execution('x3', now, { workbook: 'w-a', workflow: 'other', state: 'ERROR' }),
          execution('x4', now, { workbook: 'w-a', state: 'PAUSED' }),
        ],
      );
      type Filter = { workbook?: string; workflow?: string; state?: ExecutionRecord['state']; scanLimit?: number };
      const walk = async (order: ListOrder, filter: Filter = {}) => {
        const pages: string[][] = [];
        for (let after: string | null = null; ; ) {
          const { rows, resume } = await store.listExecutions(P, { ...filter, order, limit: 3, after });
          if (rows.length === 0 && resume === null) return pages;
          pages.push(ids(rows));
          after = rows.length === 3 ? rows[2].id : resume;
          if (after === null) return pages;
        }
      };
      expect(await walk('asc')).toEqual([['x1', 'x2', 'x3'], ['x4']]);
      expect(await walk('desc')).toEqual([['x4', 'x3', 'x2'], ['x1']]);
      expect(await walk('asc', { workbook: 'w-a' })).toEqual([['x1', 'x3', 'x4']]);
      expect(await walk('desc', { workflow: 'other' })).toEqual([['x3']]);
      expect(await walk('asc', { state: 'PAUSED' })).toEqual([['x4']]);
      // Filters checked on at most scanLimit executions a page: a page stops there and says where.
      expect(await walk('asc', { workbook: 'w-a', scanLimit: 2 })).toEqual([['x1'], ['x3', 'x4']]);
      expect(await walk('desc', { workbook: 'w-a', scanLimit: 1 })).toEqual([['x4'], ['x3'], [], ['x1']]);
      expect(await walk('asc', { state: 'ERROR', scanLimit: 3 })).toEqual([['x3']]);
      expect(await store.listExecutions(P, { state: 'SUCCESS', limit: 3, scanLimit: 2 })).toEqual({ rows: [expect.objectContaining({ id: 'x2' })], resume: 'x2' });
      expect(await store.listExecutions(P, { limit: 2, scanLimit: 1 })).toEqual({ rows: [expect.objectContaining({ id: 'x1' }), expect.objectContaining({ id: 'x2' })], resume: null });
      expect(ids((await store.listExecutions(Q, { limit: 10 })).rows)).toEqual([]);

      expect(await store.deleteWorkbook(P, 'w-a')).toBe('executions_running'); // x1 RUNNING, x4 PAUSED
      expect(await store.deleteWorkbook(P, 'w-b')).toBe('deleted');
      expect(await store.deleteWorkbook(P, 'w-b')).toBe('not_found');
      expect(await store.getWorkbook(Q, 'w-a')).toEqual({ ...wb('w-a', T), project: Q });
    });
  });

  describe('once per database', () => {
    it('runs work of one name once at a time, and again after it ends or fails', async () => {
      // On SQLite one process owns the file; on PostgreSQL the other holder is another process.
      const contender = backend === 'postgres' ? await db.open() : store;
      let started!: () => void;
      let release!: () => void;
      const running = new Promise<void>((resolve) => (started = resolve));
      const gate = new Promise<void>((resolve) => (release = resolve));
      const holder = store.exclusively('prune', async () => {
        started();
        await gate;
        return 'first';
      });
      await running;
      let ran = false;
      expect(await contender.exclusively('prune', async () => ((ran = true), 'second'))).toBeUndefined();
      expect(ran).toBe(false);
      expect(await contender.exclusively('recovery', async () => 'another name')).toBe('another name');
      release();
      expect(await holder).toBe('first');
      expect(await contender.exclusively('prune', async () => 'after')).toBe('after');
      await expect(store.exclusively('prune', async () => Promise.reject(new Error('failed inside')))).rejects.toThrow('failed inside');
      expect(await contender.exclusively('prune', async () => 'after a failure')).toBe('after a failure');
    });

    if (backend === 'postgres') {
      it('wakes a subscriber when another process commits due deliveries, until it unsubscribes', async () => {
        const other = await db.open();
        await other.createListener(listener('l1'));
        let woken = 0;
        const unsubscribe = store.subscribeDue(() => woken++);
        let n = 0;
        // Appends until the wake-up arrives: subscribing may finish after subscribeDue returns.
        const appendUntil = async (done: () => boolean) => {
          const deadline = Date.now() + 10_000;
          while (!done()) {
            if (Date.now() > deadline) throw new Error('no wake-up within 10 s of another process\'s commit');
            await other.appendEvents(P, [event(`e${n++}`)], routing, Date.now());
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        };
        await appendUntil(() => woken > 0);
        unsubscribe();
        const after = woken;
        let control = 0;
        const stopControl = store.subscribeDue(() => control++);
        try {
          await appendUntil(() => control > 0);
          expect(woken).toBe(after);
        } finally {
          stopControl();
        }
      });
    }
  });
});
