import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openSqliteStore, type SqliteStore } from '../src/store/sqlite/index.js';
import {
  LATENCY_BOUNDS_MS,
  StoreConflictError,
  StoreUnavailableError,
  type AttemptRecord,
  type AttemptResult,
  type ClaimedDelivery,
  type ClaimOptions,
  type FanOut,
  type ListenerRouting,
  type NewEvent,
  type RecordJudge,
} from '../src/store/store.js';
import {
  admitCandidates,
  DEFAULT_BREAKER,
  initialGateState,
  type GateListener,
  type JudgedAttempt,
  type ListenerGateState, HALF_OPEN_RECHECK_MS } from '../src/dispatch/listener-gate.js';
import type { ExecutionRecord, TaskRecord } from '../src/store/engine-store.js';
import type { StoredListener } from '../src/records/listener.js';
import { toEnvelope, type EventEnvelope } from '../src/records/event.js';
import { createWriteBatcher } from '../src/store/sqlite/write-batcher.js';
import { storedListener } from './helpers/envelopes.js';

// Not helpers/relay.js: the store is tested on its own, without loading the whole relay.
const tempDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'relay-store-'));

let store: SqliteStore;
const P = 'p1';

function event(id: string, extra: Record<string, unknown> = {}, hash = id): NewEvent {
  return {
    envelope: toEnvelope({ id, type: 'TASK_SUCCEEDED', execution_id: 'exec-1', ...extra } as never, 1_000, 'api'),
    original: null,
    bodyHash: hash,
  };
}

const listener = (id: string, over: Partial<StoredListener> = {}): StoredListener => storedListener(id, { project: P, ...over });

/**
 * A ListenerRouting whose matcher the test chooses from the enabled listeners it is handed;
 * it keeps one matcher per project and version, as fan-out does, and notes every compile.
 */
function routing(choose: (enabled: StoredListener[]) => FanOut) {
  const kept = new Map<string, { version: number; route: FanOut }>();
  const compiles: Array<{ project: string; version: number; enabled: string[] }> = [];
  const r: ListenerRouting & { compiles: typeof compiles } = {
    compiles,
    at: (project, version) => (kept.get(project)?.version === version ? kept.get(project)!.route : null),
    // It keeps no listener, so the store hands over every enabled listener's row.
    kept: () => new Map(),
    compile(project, version, heads) {
      const enabled = heads.map((h) => h.row!);
      compiles.push({ project, version, enabled: enabled.map((l) => l.id).sort() });
      const route = choose(enabled);
      kept.set(project, { version, route });
      return route;
    },
  };
  return r;
}
/** Every event to exactly these listener ids, whatever the store holds. */
const toAll = (ids: string[]) => routing(() => () => ids);
/** Every event to every enabled listener of the project. */
const toEnabled = () => routing((enabled) => () => enabled.map((l) => l.id));
/** A listener gate that lets every candidate through. */
const takeAll: ClaimOptions['admit'] = (candidates) => ({ take: candidates.map((c) => c.id), defer: new Map(), changed: new Map() });
/** Claims up to `limit` of every project's due deliveries, through `admit` (every one unless given). */
const claim = async (o: Omit<ClaimOptions, 'allot' | 'transports' | 'admit'> & { limit: number; admit?: ClaimOptions['admit'] }) =>
  (await store.recordAndClaim(o.owner, [], { admit: takeAll, ...o, transports: ['http'], allot: (due) => new Map(due.map((p) => [p, o.limit])) }, o.now)).claimed;
const record = async (owner: string, results: AttemptResult[], now: number) =>
  (await store.recordAndClaim(owner, results, null, now)).disabledListeners;

let dbPath: string;
beforeEach(() => {
  dbPath = path.join(tempDir(), 'relay.db');
  store = openSqliteStore({ path: dbPath, durability: 'full', busyTimeoutMs: 1000 });
});
afterEach(async () => {
  await store.close();
});

describe('group commit', () => {
  it('commits neighbours when one write in the same transaction fails', async () => {
    await store.appendEvents(P, [event('a')], toAll([]), 1);
    const results = await Promise.allSettled([
      store.appendEvents(P, [event('b')], toAll([]), 2),
      store.appendEvents(P, [event('c'), event('a', {}, 'other-body')], toAll([]), 2),
      store.appendEvents(P, [event('d')], toAll([]), 2),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(StoreConflictError);
    const ids = ((await store.listEvents(P, { limit: 10 })).rows).map((e) => e.envelope.id);
    expect(ids).toEqual(['a', 'b', 'd']);
  });

  it('numbers an execution without gaps, even when a request rolls back', async () => {
    await store.appendEvents(P, [event('a')], toAll([]), 1);
    await Promise.allSettled([
      store.appendEvents(P, [event('b'), event('a', {}, 'x')], toAll([]), 2),
      store.appendEvents(P, [event('c'), event('d')], toAll([]), 2),
    ]);
    await store.appendEvents(P, [event('e', { execution_id: 'exec-2' }), event('f')], toAll([]), 3);
    const seqs = ((await store.listEvents(P, { limit: 10 })).rows).map((e) => [e.envelope.id, e.envelope.sequence]);
    expect(seqs).toEqual([['a', 1], ['c', 2], ['d', 3], ['e', 1], ['f', 4]]);
  });

  it('stores a duplicate once', async () => {
    const [first] = await store.appendEvents(P, [event('a')], toAll(['l1']), 1);
    const [again] = await store.appendEvents(P, [event('a')], toAll(['l1']), 2);
    expect(first).toEqual({ id: 'a', duplicate: false, deliveries: 1, handed: 0 });
    expect(again).toEqual({ id: 'a', duplicate: true, deliveries: 0, handed: 0 });
    expect((await store.listDeliveries(P, { limit: 10 })).rows).toHaveLength(1);
  });
});

describe('claims and leases', () => {
  beforeEach(async () => {
    await store.createListener(listener('l1'));
    await store.appendEvents(P, [event('a'), event('b'), event('c')], toAll(['l1']), 1_000);
  });

  it('claims due deliveries once, and again only after the lease expires', async () => {
    const first = await claim({ owner: 'w1', now: 1_000, leaseMs: 500, limit: 2 });
    expect(first.map((d) => d.attemptNumber)).toEqual([1, 1]);
    const second = await claim({ owner: 'w2', now: 1_001, leaseMs: 500, limit: 10 });
    expect(second).toHaveLength(1);
    expect(await claim({ owner: 'w2', now: 1_002, leaseMs: 500, limit: 10 })).toHaveLength(0);
    // lease = leaseMs + the listener's timeout (1000 ms)
    const expired = await claim({ owner: 'w3', now: 1_000 + 1_500, leaseMs: 500, limit: 10 });
    expect(expired.map((d) => d.id).sort()).toEqual(first.map((d) => d.id).sort());
  });

  it('records outcomes only for the lease owner and schedules retries', async () => {
    const [d] = await claim({ owner: 'w1', now: 1_000, leaseMs: 500, limit: 1 });
    const attempt = { number: 1, started_at: 1_000, duration_ms: 5, status_code: 500, error: 'HTTP_ERROR', response_excerpt: 'no' };
    await record('w1', [{ deliveryId: d.id, listenerId: 'l1', project: P, eventId: 'a', eventType: 'TASK_SUCCEEDED', attempt, status: 'pending', nextAttemptAt: 5_000, lastError: 'HTTP 500', disableListener: null }], 1_010);
    const rec = (await store.getDelivery(P, d.id))!;
    expect(rec).toMatchObject({ status: 'pending', attempt_count: 1, next_attempt_at: 5_000, last_error: 'HTTP 500' });
    expect(await store.listAttempts(P, d.id)).toEqual([attempt]);
    expect(await store.nextDueAt()).toBe(1_000);
    const later = await claim({ owner: 'w1', now: 5_000, leaseMs: 500, limit: 10 });
    expect(later.find((x) => x.id === d.id)?.attemptNumber).toBe(2);
  });

  it('holds a disabled listener deliveries and releases them when enabled again', async () => {
    const l = (await store.getListener(P, 'l1'))!;
    await store.updateListener(P, 'l1', { ...l, enabled: false }, new Date(2_000).toISOString());
    expect(await claim({ owner: 'w1', now: 3_000, leaseMs: 500, limit: 10 })).toHaveLength(0);
    expect(((await store.listDeliveries(P, { limit: 10 })).rows).every((d) => d.status === 'pending' && d.next_attempt_at === null)).toBe(true);
    await store.updateListener(P, 'l1', { ...l, enabled: true }, new Date(4_000).toISOString());
    expect(await claim({ owner: 'w1', now: 4_000, leaseMs: 500, limit: 10 })).toHaveLength(3);
  });

  it('410 turns the listener off and holds its other deliveries', async () => {
    const [d] = await claim({ owner: 'w1', now: 1_000, leaseMs: 500, limit: 1 });
    const attempt = { number: 1, started_at: 1_000, duration_ms: 5, status_code: 410, error: 'HTTP_ERROR', response_excerpt: null };
    const disabled = await record('w1', [{ deliveryId: d.id, listenerId: 'l1', project: P, eventId: 'a', eventType: 'TASK_SUCCEEDED', attempt, status: 'pending', nextAttemptAt: null, lastError: 'HTTP 410 Gone', disableListener: 'gone' }], 1_010);
    expect(disabled).toEqual(['l1']);
    expect(await store.getListener(P, 'l1')).toMatchObject({ enabled: false, disabled_reason: 'gone' });
    expect(await claim({ owner: 'w1', now: 9_999_999, leaseMs: 500, limit: 10 })).toHaveLength(0);
  });

  it('deleting the listener cancels its pending deliveries', async () => {
    expect(await store.deleteListener(P, 'l1')).toBe(true);
    const ds = (await store.listDeliveries(P, { limit: 10 })).rows;
    expect(ds.map((d) => d.status)).toEqual(['cancelled', 'cancelled', 'cancelled']);
    expect(await claim({ owner: 'w1', now: 9_999, leaseMs: 500, limit: 10 })).toHaveLength(0);
  });

  it('releases leases so a delivery is due again at once', async () => {
    const claimed = await claim({ owner: 'w1', now: 1_000, leaseMs: 60_000, limit: 10 });
    await store.releaseLeases('w1', claimed.map((d) => d.id), 1_100);
    expect(await claim({ owner: 'w2', now: 1_100, leaseMs: 500, limit: 10 })).toHaveLength(3);
  });

  it('prunes finished deliveries created before the cutoff, and unreferenced events, keeping the rest', async () => {
    const claimed = await claim({ owner: 'w1', now: 1_000, leaseMs: 500, limit: 2 });
    const attempt = { number: 1, started_at: 1_000, duration_ms: 1, status_code: 200, error: null, response_excerpt: null };
    await record('w1', claimed.map((d) => ({ deliveryId: d.id, listenerId: 'l1', project: P, eventId: 'a', eventType: 'TASK_SUCCEEDED', attempt, status: 'succeeded' as const, nextAttemptAt: null, lastError: null, disableListener: null })), 2_000);
    // Both attempts ended in minute 0, one rollup row that the first cutoff already passes.
    expect(await store.pruneFinished(1_000, 100)).toEqual({ deliveries: 0, events: 0, rollups: 1 });
    expect(await store.pruneFinished(3_000, 1)).toEqual({ deliveries: 1, events: 1, rollups: 0 });
    expect(await store.pruneFinished(3_000, 100)).toEqual({ deliveries: 1, events: 1, rollups: 0 });
    const left = (await store.listDeliveries(P, { limit: 10 })).rows;
    expect(left.map((d) => d.status)).toEqual(['pending']);
    expect((await store.listEvents(P, { limit: 10 })).rows).toHaveLength(1);
  });
});

describe('claims per project', () => {
  it('asks the gate with every project that has due work and takes only what it allots', async () => {
    await store.createListener(listener('l1'));
    await store.createListener(listener('l2', { project: 'p2' }));
    await store.createListener(listener('l3', { project: 'p3' }));
    await store.appendEvents(P, [event('a'), event('b'), event('c')], toAll(['l1']), 1_000);
    await store.appendEvents('p2', [event('a'), event('b')], toAll(['l2']), 1_000);
    let seen: readonly string[] = [];
    const out = await store.recordAndClaim('w1', [], {
      owner: 'w1',
      now: 1_000,
      leaseMs: 500,
      transports: ['http'],
      admit: takeAll,
      allot: (due) => {
        seen = due;
        return new Map([[P, 1], ['p2', 2]]);
      },
    }, 1_000);
    expect([...seen].sort()).toEqual([P, 'p2']); // p3 has a listener but nothing due
    expect(out.asked).toBe(3);
    expect(out.claimed.map((d) => d.project).sort()).toEqual([P, 'p2', 'p2']);
    expect(await store.nextDueAt()).toBe(1_000); // p1's other two are still due
  });

  it('does not call the gate when nothing is due', async () => {
    await store.createListener(listener('l1'));
    let called = false;
    const out = await store.recordAndClaim('w1', [], { owner: 'w1', now: 1, leaseMs: 1, transports: ['http'], admit: takeAll, allot: () => ((called = true), new Map()) }, 1);
    expect(called).toBe(false);
    expect(out).toEqual({ disabledListeners: [], claimed: [], asked: 0, contended: 0 });
  });
});

describe('a busy database', () => {
  it('waits for another connection\'s lock without blocking the event loop, then writes', async () => {
    const other = new Database(dbPath);
    other.exec('BEGIN IMMEDIATE');
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 10);
    const started = performance.now();
    const write = store.appendEvents(P, [event('late')], toAll([]), 1);
    setTimeout(() => other.exec('COMMIT'), 300);
    await write;
    clearInterval(ticker);
    other.close();
    expect(performance.now() - started).toBeGreaterThanOrEqual(280);
    // The loop kept turning while the write waited (a blocking wait gives 0 or 1 ticks).
    expect(ticks).toBeGreaterThanOrEqual(5);
    expect(((await store.listEvents(P, { limit: 10 })).rows).map((e) => e.envelope.id)).toEqual(['late']);
  });

  it('refuses a write with StoreUnavailableError once the wait runs out', async () => {
    const other = new Database(dbPath);
    other.exec('BEGIN IMMEDIATE');
    try {
      const started = performance.now();
      await expect(store.appendEvents(P, [event('x')], toAll([]), 1)).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(store.retryDelivery(P, 'none', 1)).rejects.toBeInstanceOf(StoreUnavailableError);
      expect(performance.now() - started).toBeGreaterThanOrEqual(1_900); // busyTimeoutMs is 1000, twice
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    await store.appendEvents(P, [event('x')], toAll([]), 1);
  });
});

describe('group commit when the disk fills up', () => {
  it('answers every caller, never throws from its timer, and keeps working once there is room', async () => {
    const db = new Database(path.join(tempDir(), 'full.db'));
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE t (v TEXT NOT NULL)');
    const batcher = createWriteBatcher(db, (e) => e, { minCommitIntervalMs: 0 });
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    process.on('uncaughtException', onUncaught);
    try {
      const pages = db.pragma('page_count', { simple: true }) as number;
      db.pragma(`max_page_count = ${pages + 2}`);
      const big = 'x'.repeat(3_000);
      const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
      // Several writes share one transaction; one of them fills the disk, SQLite rolls the
      // whole transaction back, and the savepoint is gone with it.
      const writes = Array.from({ length: 20 }, () => batcher.run(() => insert.run(big)));
      const settled = await Promise.allSettled(writes);
      const failed = settled.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
      expect(failed.length).toBeGreaterThan(0);
      expect(failed.every((r) => String((r.reason as { code?: string }).code).startsWith('SQLITE_FULL'))).toBe(true);
      // What was answered as written is on disk, and nothing else.
      const written = settled.filter((r) => r.status === 'fulfilled').length;
      expect(db.prepare('SELECT count(*) FROM t').pluck().get()).toBe(written);
      expect(db.inTransaction).toBe(false);
      db.pragma('max_page_count = 1000000');
      await batcher.run(() => insert.run('after'));
      expect(db.prepare("SELECT count(*) FROM t WHERE v = 'after'").pluck().get()).toBe(1);
      await new Promise((r) => setTimeout(r, 50));
      expect(uncaught).toEqual([]);
    } finally {
      process.off('uncaughtException', onUncaught);
      db.close();
    }
  });
});

describe('claims by transport', () => {
  it('claims only deliveries whose listener uses a transport this process has enabled', async () => {
    await store.createListener(listener('h1'));
    await store.createListener(listener('q1', { callback: { transport: 'amqp', url: 'amqp://127.0.0.1/', exchange: 'x', topic: 't', routing_key: null, headers: {}, format: 'oslo', timeout_ms: 1000 } as never }));
    await store.appendEvents(P, [event('a')], toAll(['h1', 'q1']), 1_000);
    const take = (transports: string[]) =>
      store.recordAndClaim('w', [], { owner: 'w', now: 1_000, leaseMs: 500, transports, admit: takeAll, allot: (due) => new Map(due.map((p) => [p, 10])) }, 1_000);
    expect((await take(['http'])).claimed.map((d) => d.listenerId)).toEqual(['h1']);
    expect((await take(['http'])).claimed).toEqual([]);
    const amqp = await take(['amqp', 'jsonfile']);
    expect(amqp.claimed.map((d) => [d.listenerId, d.listener.callback.transport])).toEqual([['q1', 'amqp']]);
  });
});

describe('listener versions', () => {
  const deliveredTo = async (r: ListenerRouting, id: string, now = 1_000) => {
    await store.appendEvents(P, [event(id)], r, now);
    return ((await store.listDeliveries(P, { limit: 100 })).rows).filter((d) => d.event_id === id).map((d) => d.listener_id).sort();
  };

  it('routes the very next event by every listener change, and compiles only when the version moved', async () => {
    const r = toEnabled();
    expect(await deliveredTo(r, 'e0')).toEqual([]);
    await store.createListener(listener('l1'));
    expect(await deliveredTo(r, 'e1')).toEqual(['l1']);
    expect(await deliveredTo(r, 'e1b')).toEqual(['l1']);
    await store.createListener(listener('l2'));
    expect(await deliveredTo(r, 'e2')).toEqual(['l1', 'l2']);
    const l2 = (await store.getListener(P, 'l2'))!;
    await store.updateListener(P, 'l2', { ...l2, enabled: false }, new Date(2_000).toISOString());
    expect(await deliveredTo(r, 'e3')).toEqual(['l1']);
    await store.rotateListenerSecret(P, 'l1', { secret: 'whsec_new', previousSecret: l2.secret, previousSecretExpiresAt: new Date(9_000).toISOString() }, new Date(3_000).toISOString());
    expect(await deliveredTo(r, 'e4')).toEqual(['l1']);
    await store.updateListener(P, 'l2', { ...l2, enabled: true }, new Date(4_000).toISOString());
    expect(await deliveredTo(r, 'e5')).toEqual(['l1', 'l2']);
    expect(await store.deleteListener(P, 'l2')).toBe(true);
    expect(await deliveredTo(r, 'e6')).toEqual(['l1']);
    // One compile per change (e1b reused version 1's), each at a higher version, with the
    // enabled listeners as the change left them.
    expect(r.compiles).toEqual([
      { project: P, version: 0, enabled: [] },
      { project: P, version: 1, enabled: ['l1'] },
      { project: P, version: 2, enabled: ['l1', 'l2'] },
      { project: P, version: 3, enabled: ['l1'] },
      { project: P, version: 4, enabled: ['l1'] },
      { project: P, version: 5, enabled: ['l1', 'l2'] },
      { project: P, version: 6, enabled: ['l1'] },
    ]);
  });

  it('changes that change nothing leave the version alone; other projects have their own', async () => {
    const r = toEnabled();
    await store.createListener(listener('l1'));
    await store.createListener(listener('q1', { project: 'p2' }));
    await deliveredTo(r, 'a');
    expect(await store.updateListener(P, 'nope', listener('nope'), new Date(0).toISOString())).toBeNull();
    expect(await store.rotateListenerSecret(P, 'q1', { secret: 's', previousSecret: 's', previousSecretExpiresAt: new Date(0).toISOString() }, new Date(0).toISOString())).toBeNull();
    expect(await store.deleteListener(P, 'q1')).toBe(false);
    await deliveredTo(r, 'b');
    expect(r.compiles).toEqual([{ project: P, version: 1, enabled: ['l1'] }]);
  });

  it('a listener turned off by a 410 is gone from the very next event', async () => {
    const r = toEnabled();
    await store.createListener(listener('l1'));
    await store.createListener(listener('l2'));
    await store.appendEvents(P, [event('a')], r, 1_000);
    const [d] = (await claim({ owner: 'w1', now: 1_000, leaseMs: 500, limit: 10 })).filter((c) => c.listenerId === 'l1');
    const attempt = { number: 1, started_at: 1_000, duration_ms: 5, status_code: 410, error: 'HTTP_ERROR', response_excerpt: null };
    await record('w1', [{ deliveryId: d.id, listenerId: 'l1', project: P, eventId: 'a', eventType: 'TASK_SUCCEEDED', attempt, status: 'pending', nextAttemptAt: null, lastError: 'HTTP 410 Gone', disableListener: 'gone' }], 1_010);
    expect(await deliveredTo(r, 'b')).toEqual(['l2']);
  });

  it('an engine transaction routes its events at the version it reads, and reads none without events', async () => {
    const r = toEnabled();
    await store.createListener(listener('l1'));
    const envelope = (id: string): EventEnvelope => event(id).envelope;
    expect(await store.engineTransaction(P, { launch: true }, r, () => 'nothing')).toEqual({ value: 'nothing', events: 0, deliveries: 0 });
    expect(r.compiles).toEqual([]);
    expect(await store.engineTransaction(P, { launch: true }, r, (tx) => tx.appendEvent(envelope('x')))).toMatchObject({ events: 1, deliveries: 1 });
    await store.createListener(listener('l2'));
    const out = await store.engineTransaction(P, { executionId: 'exec-1' }, r, (tx) => {
      tx.appendEvent(envelope('y'));
      tx.appendEvent(envelope('z'));
    });
    expect(out).toMatchObject({ events: 2, deliveries: 4 });
    expect(r.compiles.map((c) => c.version)).toEqual([1, 2]);
  });
});

/** Rows of the store's own file, for what the API does not show (held markers, ordered keys). */
function raw<T>(sql: string, ...params: unknown[]): T[] {
  const db = new Database(dbPath, { readonly: true });
  try {
    return db.prepare(sql).all(...params) as T[];
  } finally {
    db.close();
  }
}

/** Every event to these listeners, those in `ordered` keeping their executions' order. */
const toOrdered = (ids: string[], ordered: string[] = ids) => routing(() => Object.assign(() => ids, { ordered: new Set(ordered) }));
const eventOf = (d: ClaimedDelivery) => (JSON.parse(d.envelopeJson) as EventEnvelope).id;
/** What was claimed, as [event, listener, gap]. */
const sent = (ds: ClaimedDelivery[]) => ds.map((d) => [eventOf(d), d.listenerId, d.gap]);
/** Each delivery of a listener (in creation order) as [event, status, next_attempt_at, held]. */
const queueOf = (listenerId: string) =>
  raw<{ event_id: string; status: string; next_attempt_at: number | null; held: string | null }>(
    'SELECT event_id, status, next_attempt_at, held FROM deliveries WHERE listener_id = ? ORDER BY id',
    listenerId,
  ).map((r) => [r.event_id, r.status, r.next_attempt_at, r.held]);
/** The ordered keys of a listener as [execution, head's event, gap kept without a head]. */
const keysOf = (listenerId: string) =>
  raw<{ execution_id: string; event_id: string | null; gap: string | null }>(
    `SELECT h.execution_id, d.event_id, h.gap FROM delivery_heads h LEFT JOIN deliveries d ON d.id = h.delivery_id
      WHERE h.listener_id = ? ORDER BY h.execution_id`,
    listenerId,
  ).map((r) => [r.execution_id, r.event_id, r.gap === null ? null : JSON.parse(r.gap)]);
/** The outcome of a claimed delivery's attempt. */
function outcome(d: ClaimedDelivery, status: AttemptResult['status'], at: number): AttemptResult {
  const ok = status === 'succeeded';
  return {
    deliveryId: d.id,
    listenerId: d.listenerId,
    project: d.project,
    eventId: eventOf(d),
    eventType: (JSON.parse(d.envelopeJson) as EventEnvelope).type,
    attempt: { number: d.attemptNumber, started_at: at, duration_ms: 1, status_code: ok ? 200 : 500, error: ok ? null : 'HTTP_ERROR', response_excerpt: null },
    status,
    nextAttemptAt: status === 'pending' ? at + 1_000 : null,
    lastError: ok ? null : 'HTTP 500',
    disableListener: null,
  };
}

describe('listeners stored before the delivery options', () => {
  it('read with the defaults of ordering, max_in_flight and rate_limit_per_s', async () => {
    await store.createListener(listener('old', { ordering: 'execution', max_in_flight: 4, rate_limit_per_s: 9 }));
    const other = new Database(dbPath);
    other.prepare(`UPDATE listeners SET spec = json_remove(spec, '$.ordering', '$.max_in_flight', '$.rate_limit_per_s')`).run();
    other.close();
    const read = (await store.getListener(P, 'old'))!;
    expect([read.ordering, read.max_in_flight, read.rate_limit_per_s]).toEqual(['none', 32, null]);
    expect((await store.listEnabledListeners(P)).map((l) => l.max_in_flight)).toEqual([32]);
    await store.appendEvents(P, [event('a')], toAll(['old']), 1_000);
    let ratePerS: number | null | undefined;
    const [d] = await claim({ owner: 'w1', now: 1_000, leaseMs: 500, limit: 10, admit: (c, listeners) => ((ratePerS = listeners.get('old')?.ratePerS), takeAll(c, listeners, 1_000)) });
    expect([d.listener.max_in_flight, ratePerS]).toEqual([32, null]);
  });
});

describe('ordered deliveries', () => {
  it('holds all but one head per execution, promotes in sequence order, and carries the skipped sequences', async () => {
    await store.createListener(listener('l1', { ordering: 'execution' }));
    await store.appendEvents(P, ['a', 'b', 'c', 'd'].map((id) => event(id)), toOrdered(['l1']), 1_000);
    await store.appendEvents(P, [event('x', { execution_id: 'exec-2' }), event('n', { execution_id: null })], toOrdered(['l1']), 1_000);
    expect(queueOf('l1')).toEqual([
      ['a', 'pending', 1_000, null],
      ['b', 'pending', null, 'exec-1'],
      ['c', 'pending', null, 'exec-1'],
      ['d', 'pending', null, 'exec-1'],
      ['x', 'pending', 1_000, null],
      ['n', 'pending', 1_000, null], // no execution: not ordered
    ]);
    expect(keysOf('l1')).toEqual([['exec-1', 'a', null], ['exec-2', 'x', null]]);
    expect(await store.queueDepth(1_000)).toEqual({ due: 3, scheduled: 0, oldestDueAt: 1_000 });

    const first = await claim({ owner: 'w1', now: 1_000, leaseMs: 500, limit: 100 });
    expect(sent(first)).toEqual([['a', 'l1', null], ['x', 'l1', null], ['n', 'l1', null]]);
    expect(first[0].listener.max_in_flight).toBe(32);
    // Every lease expired and nothing else due: the held ones are still never claimed.
    const [a, x, n] = await claim({ owner: 'w2', now: 9_000, leaseMs: 500, limit: 100 });
    expect(sent([a, x, n])).toEqual(sent(first));
    expect(await claim({ owner: 'w2', now: 99_000, leaseMs: 60_000, limit: 100 }).then((c) => c.length)).toBe(3);

    // a fails for good: b is the head, due at once, and says that sequence 1 was skipped.
    await record('w2', [outcome(a, 'failed', 100_000), outcome(n, 'succeeded', 100_000)], 100_000);
    expect(queueOf('l1').slice(0, 3)).toEqual([['a', 'failed', null, null], ['b', 'pending', 100_000, null], ['c', 'pending', null, 'exec-1']]);
    expect(keysOf('l1')).toEqual([['exec-1', 'b', null], ['exec-2', 'x', null]]);
    const [firstTry] = await claim({ owner: 'w1', now: 100_000, leaseMs: 500, limit: 100 });
    expect(sent([firstTry])).toEqual([['b', 'l1', [1]]]);
    // b's first try fails and waits for its next; a manual retry sends it now, still the head, gap and all.
    await record('w1', [outcome(firstTry, 'pending', 100_100)], 100_100);
    expect(await store.retryDelivery(P, firstTry.id, 100_200)).toBe('queued');
    const [b] = await claim({ owner: 'w1', now: 100_200, leaseMs: 500, limit: 100 });
    expect([...sent([b])[0], b.attemptNumber]).toEqual(['b', 'l1', [1], 2]);

    // A retry of a held delivery keeps its place; b failing too passes both sequences on.
    const cId = ((await store.listDeliveries(P, { limit: 100 })).rows).find((d) => d.event_id === 'c')!.id;
    expect(await store.retryDelivery(P, cId, 100_001)).toBe('queued');
    expect(queueOf('l1')[2]).toEqual(['c', 'pending', null, 'exec-1']);
    await record('w1', [outcome(b, 'failed', 101_000)], 101_000);
    const [c] = await claim({ owner: 'w1', now: 101_000, leaseMs: 500, limit: 100 });
    expect(sent([c])).toEqual([['c', 'l1', [1, 2]]]);

    // A manual retry of the finished a is sent out of order, without a gap, and promotes nothing.
    expect(await store.retryDelivery(P, a.id, 102_000)).toBe('queued');
    const [again] = await claim({ owner: 'w1', now: 102_000, leaseMs: 500, limit: 100 });
    expect(sent([again])).toEqual([['a', 'l1', null]]);
    await record('w1', [outcome(again, 'succeeded', 102_500)], 102_500);
    expect(queueOf('l1')[3]).toEqual(['d', 'pending', null, 'exec-1']);
    expect(keysOf('l1')).toEqual([['exec-1', 'c', null], ['exec-2', 'x', null]]);

    // c succeeds: d is sent with no gap.
    await record('w1', [outcome(c, 'succeeded', 103_000)], 103_000);
    const [d] = await claim({ owner: 'w1', now: 103_000, leaseMs: 500, limit: 100 });
    expect(sent([d])).toEqual([['d', 'l1', null]]);

    // d fails with nothing held: the key keeps the gap for the execution's next event.
    await record('w1', [outcome(d, 'failed', 104_000)], 104_000);
    expect(keysOf('l1')).toEqual([['exec-1', null, [4]], ['exec-2', 'x', null]]);
    await store.appendEvents(P, [event('e')], toOrdered(['l1']), 105_000);
    const [e] = await claim({ owner: 'w1', now: 105_000, leaseMs: 500, limit: 100 });
    expect(sent([e])).toEqual([['e', 'l1', [4]]]);
    await record('w1', [outcome(e, 'succeeded', 106_000)], 106_000);
    await record('w2', [outcome(x, 'succeeded', 106_000)], 106_000);
    expect(keysOf('l1')).toEqual([]);
    expect(((await store.listDeliveries(P, { limit: 100 })).rows).map((r) => [r.event_id, r.status])).toEqual([
      ['a', 'succeeded'], ['b', 'failed'], ['c', 'succeeded'], ['d', 'failed'], ['x', 'succeeded'], ['n', 'succeeded'], ['e', 'succeeded'],
    ]);
  });

  it('a key left without a head keeps its gap until retention prunes it', async () => {
    await store.createListener(listener('l1', { ordering: 'execution' }));
    await store.appendEvents(P, [event('a')], toOrdered(['l1']), 1_000);
    const [a] = await claim({ owner: 'w1', now: 1_000, leaseMs: 500, limit: 10 });
    await record('w1', [outcome(a, 'failed', 2_000)], 2_000);
    expect(keysOf('l1')).toEqual([['exec-1', null, [1]]]);
    await store.pruneFinished(2_000, 10);
    expect(keysOf('l1')).toEqual([['exec-1', null, [1]]]);
    await store.pruneFinished(2_001, 10);
    expect(keysOf('l1')).toEqual([]);
  });

  it('only the lease owner finishing the head promotes the next one', async () => {
    await store.createListener(listener('l1', { ordering: 'execution' }));
    await store.appendEvents(P, [event('a'), event('b')], toOrdered(['l1']), 1_000);
    const [a] = await claim({ owner: 'w1', now: 1_000, leaseMs: 500, limit: 10 });
    const [late] = await claim({ owner: 'w2', now: 5_000, leaseMs: 500, limit: 10 });
    expect(late.id).toBe(a.id);
    await record('w1', [outcome(a, 'succeeded', 5_100)], 5_100);
    expect(queueOf('l1')).toEqual([['a', 'pending', 6_500, null], ['b', 'pending', null, 'exec-1']]);
    await record('w2', [outcome({ ...late, attemptNumber: 2 }, 'succeeded', 5_200)], 5_200);
    expect(queueOf('l1')).toEqual([['a', 'succeeded', null, null], ['b', 'pending', 5_200, null]]);
  });

  it('replays an execution in sequence order behind one head, whatever the listener\'s ordering', async () => {
    await store.createListener(listener('l1'));
    await store.createListener(listener('l2'));
    // No deliveries at first; c is not a TASK_SUCCEEDED, y is another execution.
    await store.appendEvents(P, [event('a'), event('b'), event('c', { type: 'TASK_FAILED' }), event('d'), event('y', { execution_id: 'exec-2' })], toAll([]), 1_000);
    const succeeded = (id: string): FanOut => (e) => (e.type === 'TASK_SUCCEEDED' ? [id] : []);

    expect(await store.replay(P, 'l1', { executionId: 'exec-1', fromSequence: 2, limit: 10, scanLimit: 1000 }, succeeded('l1'), 2_000)).toEqual({ count: 2, truncated: false });
    expect(await store.replay(P, 'l2', { executionId: 'exec-1', fromSequence: 1, limit: 2, scanLimit: 1000 }, succeeded('l2'), 2_000)).toEqual({ count: 2, truncated: true, fromSequence: 4 });
    expect(await store.replay(P, 'l2', { executionId: 'exec-1', fromSequence: 5, limit: 2, scanLimit: 1000 }, succeeded('l2'), 2_000)).toEqual({ count: 0, truncated: false });
    expect(queueOf('l1')).toEqual([['b', 'pending', 2_000, null], ['d', 'pending', null, 'exec-1']]);
    expect(queueOf('l2')).toEqual([['a', 'pending', 2_000, null], ['b', 'pending', null, 'exec-1']]);

    const first = await claim({ owner: 'w1', now: 2_000, leaseMs: 500, limit: 10 });
    expect(sent(first)).toEqual([['b', 'l1', null], ['a', 'l2', null]]);
    await record('w1', first.map((d) => outcome(d, 'succeeded', 2_100)), 2_100);
    const second = await claim({ owner: 'w1', now: 2_100, leaseMs: 500, limit: 10 });
    expect(sent(second)).toEqual([['d', 'l1', null], ['b', 'l2', null]]);

    // Replaying again from the start while d is out: a, b and d wait behind it, then go in sequence order.
    expect(await store.replay(P, 'l1', { executionId: 'exec-1', fromSequence: 1, limit: 10, scanLimit: 1000 }, succeeded('l1'), 2_200)).toEqual({ count: 3, truncated: false });
    expect(queueOf('l1').slice(2)).toEqual([['a', 'pending', null, 'exec-1'], ['b', 'pending', null, 'exec-1'], ['d', 'pending', null, 'exec-1']]);
    let out = second.filter((d) => d.listenerId === 'l1');
    const order: string[] = [];
    for (let t = 3_000; out.length; t += 100) {
      await record('w1', out.map((d) => outcome(d, 'succeeded', t)), t);
      out = (await claim({ owner: 'w1', now: t, leaseMs: 500, limit: 10 })).filter((d) => d.listenerId === 'l1');
      order.push(...out.map(eventOf));
    }
    expect(order).toEqual(['a', 'b', 'd']);
  });

  it('enabling releases heads and unordered deliveries only; ordering "none" releases the held; deleting drops the keys', async () => {
    await store.createListener(listener('l1', { ordering: 'execution' }));
    await store.createListener(listener('l2', { ordering: 'execution' }));
    await store.appendEvents(P, [event('a'), event('b'), event('c'), event('n', { execution_id: null })], toOrdered(['l1', 'l2']), 1_000);
    const l1 = (await store.getListener(P, 'l1'))!;
    const l2 = (await store.getListener(P, 'l2'))!;

    await store.updateListener(P, 'l1', { ...l1, enabled: false }, new Date(2_000).toISOString());
    // Off and no longer ordered at once: nothing is held behind a head, nothing is due either.
    await store.updateListener(P, 'l2', { ...l2, enabled: false, ordering: 'none' }, new Date(2_000).toISOString());
    expect(queueOf('l1')).toEqual([['a', 'pending', null, null], ['b', 'pending', null, 'exec-1'], ['c', 'pending', null, 'exec-1'], ['n', 'pending', null, null]]);
    expect(queueOf('l2')).toEqual([['a', 'pending', null, null], ['b', 'pending', null, null], ['c', 'pending', null, null], ['n', 'pending', null, null]]);
    expect(keysOf('l2')).toEqual([]);

    await store.updateListener(P, 'l1', { ...l1, enabled: true }, new Date(3_000).toISOString());
    await store.updateListener(P, 'l2', { ...l2, enabled: true, ordering: 'none' }, new Date(3_000).toISOString());
    expect(queueOf('l1')).toEqual([['a', 'pending', 3_000, null], ['b', 'pending', null, 'exec-1'], ['c', 'pending', null, 'exec-1'], ['n', 'pending', 3_000, null]]);
    expect(queueOf('l2').map((r) => r[2])).toEqual([3_000, 3_000, 3_000, 3_000]);
    const claimed = await claim({ owner: 'w1', now: 3_000, leaseMs: 500, limit: 10 });
    expect(sent(claimed).filter(([, l]) => l === 'l1')).toEqual([['a', 'l1', null], ['n', 'l1', null]]);
    expect(claimed.filter((d) => d.listenerId === 'l2')).toHaveLength(4);

    await store.updateListener(P, 'l1', { ...l1, ordering: 'none' }, new Date(4_000).toISOString());
    expect(queueOf('l1').slice(1, 3)).toEqual([['b', 'pending', 4_000, null], ['c', 'pending', 4_000, null]]);
    expect(keysOf('l1')).toEqual([]);
    expect(sent(await claim({ owner: 'w1', now: 4_000, leaseMs: 500, limit: 10 }))).toEqual([['b', 'l1', null], ['c', 'l1', null]]);
    // The former head finishing promotes nothing any more.
    await record('w1', [outcome(claimed[0], 'succeeded', 4_100)], 4_100);
    expect(queueOf('l1').map((r) => r[1])).toEqual(['succeeded', 'pending', 'pending', 'pending']);

    // Ordered again: new events of exec-1 get a key of their own; deleting the listener drops it.
    await store.updateListener(P, 'l1', { ...l1, ordering: 'execution' }, new Date(5_000).toISOString());
    await store.appendEvents(P, [event('d'), event('e')], toOrdered(['l1']), 5_000);
    expect(keysOf('l1')).toEqual([['exec-1', 'd', null]]);
    expect(await store.deleteListener(P, 'l1')).toBe(true);
    expect(keysOf('l1')).toEqual([]);
    expect(queueOf('l1')).toEqual([
      ['a', 'succeeded', null, null],
      ...['b', 'c', 'n', 'd', 'e'].map((e) => [e, 'cancelled', null, null]),
    ]);
  });
});

describe('the listener gate in claims', () => {
  it('claims what admit takes, defers the rest to their time, and writes the states it changed', async () => {
    await store.createListener(listener('r1', { rate_limit_per_s: 20 }));
    await store.createListener(listener('b1'));
    await store.appendEvents(P, ['a', 'b', 'c'].map((id) => event(id)), toAll(['r1', 'b1']), 1_000);
    const asked: Array<{ candidates: string[]; listeners: Record<string, GateListener> }> = [];
    const admit: ClaimOptions['admit'] = (candidates, listeners, now) => {
      asked.push({ candidates: candidates.map((c) => `${c.listenerId}:${c.id}`), listeners: Object.fromEntries(listeners) });
      return admitCandidates(candidates, listeners, now, DEFAULT_BREAKER);
    };
    const byEvent = (listenerId: string) => queueOf(listenerId).map(([e, , at]) => [e, at]);

    // The bucket holds 2 (a tenth of a second at 20/s): a and b of r1 go, c of r1 waits for the
    // next token, 50 ms; b1 has no limit.
    const first = await claim({ owner: 'w1', now: 1_000, leaseMs: 60_000, limit: 10, admit });
    expect(sent(first).map(([e, l]) => `${l}:${e}`).sort()).toEqual(['b1:a', 'b1:b', 'b1:c', 'r1:a', 'r1:b']);
    expect(asked[0].candidates).toHaveLength(6);
    expect(asked[0].listeners).toEqual({ r1: { state: initialGateState(1_000), ratePerS: 20, maxInFlight: 32 }, b1: { state: initialGateState(1_000), ratePerS: null, maxInFlight: 32 } });
    expect(byEvent('r1')[2]).toEqual(['c', 1_050]);
    expect(Object.fromEntries(await store.listenerGates(P, ['r1', 'b1']))).toEqual({ r1: { ...initialGateState(1_000), tokens: 0, tokens_at: 1_000 } });

    // Recording b1's failures opens its breaker (the judgement is the test's: the store writes it).
    const opened: ListenerGateState = { breaker: 'open', probe_at: 20_000, window_start: 1_000, window_attempts: 3, window_failures: 3, prev_attempts: 0, prev_failures: 0, failing_since: 1_010, tokens: null, tokens_at: null };
    const judge: RecordJudge = {
      routing: toAll([]),
      judge: () => ({ changed: new Map([['b1', opened]]), disable: new Map(), events: [] }),
      turnedOff: () => { throw new Error('nothing is turned off here'); },
    };
    await store.recordAndClaim('w1', first.filter((d) => d.listenerId === 'b1').map((d) => outcome(d, 'pending', 1_010)), null, 1_010, judge);
    expect(byEvent('b1')).toEqual([['a', 2_010], ['b', 2_010], ['c', 2_010]]);

    // At 2_010 r1's bucket has refilled by 20.2 tokens (to its capacity, 2): c goes. b1's breaker
    // holds all three until the probe time.
    const second = await claim({ owner: 'w1', now: 2_010, leaseMs: 60_000, limit: 10, admit });
    expect(sent(second)).toEqual([['c', 'r1', null]]);
    expect(asked[1].listeners.b1).toEqual({ state: opened, ratePerS: null, maxInFlight: 32 });
    expect(byEvent('b1')).toEqual([['a', 20_000], ['b', 20_000], ['c', 20_000]]);
    expect((await store.listenerGates(P, ['r1'])).get('r1')).toEqual({ ...initialGateState(1_000), tokens: 1, tokens_at: 2_010 });

    // At the probe time exactly one goes and the breaker is half open; the others look again shortly.
    const third = await claim({ owner: 'w1', now: 20_000, leaseMs: 60_000, limit: 10, admit });
    expect(sent(third)).toEqual([['a', 'b1', null]]);
    expect(byEvent('b1').slice(1)).toEqual([['b', 20_000 + HALF_OPEN_RECHECK_MS], ['c', 20_000 + HALF_OPEN_RECHECK_MS]]);
    expect((await store.listenerGates(P, ['b1'])).get('b1')).toEqual({ ...opened, breaker: 'half_open', probe_at: 20_000 });
    // A deferred delivery is unleased: nobody holds it in flight.
    expect(raw('SELECT lease_owner FROM deliveries WHERE listener_id = ? ORDER BY id', 'b1')).toEqual([{ lease_owner: 'w1' }, { lease_owner: null }, { lease_owner: null }]);
  });
});

describe('judging recorded attempts', () => {
  const relayEvent = (id: string, type: string, data: Record<string, unknown>, now: number): EventEnvelope =>
    toEnvelope({ id, type, data, source: 'relay' } as never, now, 'relay');

  it('writes the states, turns listeners off as a 410 does and appends the relay\'s events in the same transaction', async () => {
    await store.createListener(listener('l1'));
    await store.createListener(listener('l2'));
    await store.createListener(listener('w1', { event_types: ['NOTIFICATION'] }));
    await store.createListener(listener('q1', { project: 'p2' }));
    await store.appendEvents(P, [event('a')], toAll(['l1', 'l2']), 1_000);
    const [d1, d2] = await claim({ owner: 'w1', now: 1_000, leaseMs: 60_000, limit: 10 });
    expect([d1.listenerId, d2.listenerId]).toEqual(['l1', 'l2']);

    const opened: ListenerGateState = { breaker: 'open', probe_at: 32_000, window_start: 500, window_attempts: 10, window_failures: 9, prev_attempts: 2, prev_failures: 1, failing_since: 500, tokens: null, tokens_at: null };
    const fine: ListenerGateState = { ...initialGateState(2_000), window_attempts: 1, tokens: 1.5, tokens_at: 2_000 };
    const calls: Array<{ attempts: readonly JudgedAttempt[]; states: Record<string, ListenerGateState>; now: number }> = [];
    let verdict: ReturnType<RecordJudge['judge']> = {
      changed: new Map([['l1', opened], ['l2', fine]]),
      disable: new Map([['l1', 'every attempt failed for 120 hours']]),
      events: [
        { project: P, envelope: relayEvent('r1', 'relay.delivery.failed', { listener_id: 'l1', delivery_id: d1.id, event_id: 'a', attempts: 1 }, 2_000) },
      ],
    };
    // Routed by every enabled listener of the project, as the change to l1 leaves them.
    const judge: RecordJudge = {
      routing: toEnabled(),
      judge(attempts, states, now) {
        calls.push({ attempts, states: Object.fromEntries(states), now });
        return verdict;
      },
      turnedOff: (project, listenerId, reason, now) => relayEvent('r2', 'relay.listener.disabled', { listener_id: listenerId, reason }, now),
    };
    const out = await store.recordAndClaim(
      'w1',
      // d2's result comes twice (a dispatcher whose lease ran out): it is judged once.
      [outcome(d1, 'failed', 2_000), outcome(d2, 'succeeded', 2_000), outcome(d2, 'succeeded', 2_000)],
      { owner: 'w1', now: 2_000, leaseMs: 60_000, transports: ['http'], admit: takeAll, allot: (due) => new Map(due.map((p) => [p, 10])) },
      2_000,
      judge,
    );

    expect(calls).toEqual([{
      attempts: [
        { listenerId: 'l1', project: P, deliveryId: d1.id, eventId: 'a', eventType: 'TASK_SUCCEEDED', ok: false, finalFailure: true, attempts: 1, lastError: 'HTTP 500', disabledReason: null },
        { listenerId: 'l2', project: P, deliveryId: d2.id, eventId: 'a', eventType: 'TASK_SUCCEEDED', ok: true, finalFailure: false, attempts: 1, lastError: null, disabledReason: null },
      ],
      states: { l1: initialGateState(2_000), l2: initialGateState(2_000) },
      now: 2_000,
    }]);
    expect(out.disabledListeners).toEqual(['l1']);
    expect(await store.getListener(P, 'l1')).toMatchObject({ enabled: false, disabled_reason: 'every attempt failed for 120 hours', updated_at: new Date(2_000).toISOString() });
    expect(Object.fromEntries(await store.listenerGates(P, ['l1', 'l2', 'w1', 'q1', 'nope']))).toEqual({ l1: opened, l2: fine });
    expect(await store.listenerGates('p2', ['l1', 'l2'])).toEqual(new Map());

    const relay = ((await store.listEvents(P, { limit: 10 })).rows).slice(1).map((e) => e.envelope);
    expect(relay.map((e) => [e.id, e.type, e.category, e.workbook, e.sequence])).toEqual([
      ['r1', 'relay.delivery.failed', 'NOTIFICATION', null, null],
      ['r2', 'relay.listener.disabled', 'NOTIFICATION', null, null],
    ]);
    // Routed after l1 was turned off, and claimed in the same transaction.
    expect(sent(out.claimed).map(([e, l]) => `${e}:${l}`)).toEqual(['r1:l2', 'r1:w1', 'r2:l2', 'r2:w1']);

    // The next judgement sees the states written; one that fails takes the whole record back.
    verdict = { changed: new Map(), disable: new Map(), events: [] };
    const w1r1 = out.claimed.find((d) => d.listenerId === 'w1')!;
    const l2r1 = out.claimed.find((d) => d.listenerId === 'l2')!;
    await store.recordAndClaim('w1', [outcome(w1r1, 'succeeded', 3_000), outcome(l2r1, 'succeeded', 3_000)], null, 3_000, judge);
    expect(calls[1].states).toEqual({ w1: initialGateState(3_000), l2: fine });
    const l2r2 = out.claimed.find((d) => d.listenerId === 'l2' && eventOf(d) === 'r2')!;
    const failing: RecordJudge = { routing: toEnabled(), judge: () => { throw new Error('judge failed'); }, turnedOff: judge.turnedOff };
    await expect(store.recordAndClaim('w1', [outcome(l2r2, 'succeeded', 4_000)], null, 4_000, failing)).rejects.toThrow('judge failed');
    expect(await store.listAttempts(P, l2r2.id)).toEqual([]);
    expect((await store.getDelivery(P, l2r2.id))?.status).toBe('pending');
  });
});

describe('engine task leases', () => {
  const execution = (id: string): ExecutionRecord => ({
    id, project: P, workbook: 'wb', workflow: 'wf', spec: {}, input: {}, state: 'RUNNING', state_info: null,
    pending_operation: null, created_at: 0, updated_at: 0,
  });
  const task = (id: string, over: Partial<TaskRecord> = {}): TaskRecord => ({
    id, project: P, execution_id: 'x1', name: id, action: 'std.noop', state: 'RUNNING', state_info: null, result: null,
    tries: 0, next_run_at: 1_000, action_started_at: null, rerun: false, created_at: 0, updated_at: 0, ...over,
  });

  beforeEach(async () => {
    await store.engineTransaction(P, { launch: true }, toAll([]), (tx) => {
      tx.insertExecution(execution('x1'));
      for (const id of ['t1', 't2', 't3']) tx.insertTask(task(id));
    });
  });

  it('a claim gives each task an owner and a lease; renewing extends only that owner\'s tasks in flight', async () => {
    const a = await store.claimRunnableTasks({ owner: 'host:1:a', now: 1_000, limit: 2, leaseMs: 500 });
    const b = await store.claimRunnableTasks({ owner: 'host:2:b', now: 1_100, limit: 5, leaseMs: 700 });
    expect(a.map((t) => [t.id, t.tries, t.action_started_at, t.next_run_at])).toEqual([['t1', 1, 1_000, null], ['t2', 1, 1_000, null]]);
    expect(b.map((t) => t.id)).toEqual(['t3']);
    expect(a[0]).not.toHaveProperty('owner');
    const leases = async () => (await store.listInFlightTasks()).map((t) => [t.id, t.owner, t.lease_until]);
    expect(await leases()).toEqual([['t1', 'host:1:a', 1_500], ['t2', 'host:1:a', 1_500], ['t3', 'host:2:b', 1_800]]);

    // t2's action ended with a retry: no longer in flight, so no longer renewed.
    await store.engineTransaction(P, { taskId: 't2' }, toAll([]), (tx) => {
      tx.saveTask({ ...tx.task('t2')!, next_run_at: 5_000, action_started_at: null });
    });
    expect(await store.renewTaskLeases('host:1:a', 9_000)).toBe(1);
    expect(await leases()).toEqual([['t1', 'host:1:a', 9_000], ['t3', 'host:2:b', 1_800]]);
    // A renewal never shortens a lease.
    expect(await store.renewTaskLeases('host:1:a', 2_000)).toBe(1);
    expect(await store.renewTaskLeases('nobody', 9_000)).toBe(0);
    expect(await leases()).toEqual([['t1', 'host:1:a', 9_000], ['t3', 'host:2:b', 1_800]]);
  });
});

describe('rollups and last outcomes', () => {
  const MIN = 60_000;
  const attempt = (number: number, started_at: number, duration_ms: number, status_code: number | null, error: string | null): AttemptRecord =>
    ({ number, started_at, duration_ms, status_code, error, response_excerpt: null });
  const result = (deliveryId: string, listenerId: string, a: AttemptRecord, status: AttemptResult['status'], lastError: string | null = null): AttemptResult =>
    ({ deliveryId, listenerId, project: P, eventId: 'a', eventType: 'TASK_SUCCEEDED', attempt: a, status, nextAttemptAt: status === 'pending' ? 99_000_000 : null, lastError, disableListener: null });
  const buckets = (counts: Record<number, number>) => Array.from({ length: LATENCY_BOUNDS_MS.length + 1 }, (_, i) => counts[i] ?? 0);
  let ds: Record<string, string[]>;

  beforeEach(async () => {
    await store.createListener(listener('l1'));
    await store.createListener(listener('l2'));
    await store.createListener(listener('l3'));
    await store.createListener(listener('q1', { project: 'p2' }));
    await store.appendEvents(P, ['a', 'b', 'c', 'd', 'e'].map((id) => event(id)), toAll(['l1', 'l2']), 1_000);
    const claimed = await claim({ owner: 'w1', now: 1_000, leaseMs: 60_000, limit: 100 });
    ds = { l1: claimed.filter((d) => d.listenerId === 'l1').map((d) => d.id), l2: claimed.filter((d) => d.listenerId === 'l2').map((d) => d.id) };
  });

  it('adds a batch of mixed outcomes to each listener\'s minutes, by the minute each attempt ended', async () => {
    await record('w1', [
      result(ds.l1[0], 'l1', attempt(1, 10 * MIN + 1_000, 5, 200, null), 'succeeded'),
      result(ds.l1[1], 'l1', attempt(1, 10 * MIN + 2_000, 30, 500, 'HTTP_ERROR'), 'pending', 'HTTP 500'),
      result(ds.l1[2], 'l1', attempt(1, 10 * MIN + 1_000, 40_000, null, 'TIMEOUT'), 'failed', 'timed out after 40000 ms'),
      // Starts in minute 10, ends in minute 11.
      result(ds.l1[3], 'l1', attempt(1, 11 * MIN - 10, 20, 204, null), 'succeeded'),
      result(ds.l2[0], 'l2', attempt(1, 11 * MIN + 5, 10, 200, null), 'succeeded'),
      result(ds.l2[1], 'l2', attempt(1, 11 * MIN + 6, 30_001, 200, null), 'succeeded'),
    ], 2_000);

    expect(await store.rollups(P, { listenerId: 'l1', since: 0 })).toEqual([
      { at: 10 * MIN, succeeded: 1, failed: 1, retried: 1, latency: buckets({ 0: 1, 2: 1, 11: 1 }) },
      { at: 11 * MIN, succeeded: 1, failed: 0, retried: 0, latency: buckets({ 1: 1 }) },
    ]);
    expect(await store.rollups(P, { listenerId: 'l2', since: 0 })).toEqual([
      { at: 11 * MIN, succeeded: 2, failed: 0, retried: 0, latency: buckets({ 0: 1, 11: 1 }) },
    ]);
    // The project sums its listeners minute by minute; `since` is inclusive on whole minutes.
    expect(await store.rollups(P, { since: 0 })).toEqual([
      { at: 10 * MIN, succeeded: 1, failed: 1, retried: 1, latency: buckets({ 0: 1, 2: 1, 11: 1 }) },
      { at: 11 * MIN, succeeded: 3, failed: 0, retried: 0, latency: buckets({ 0: 1, 1: 1, 11: 1 }) },
    ]);
    expect((await store.rollups(P, { since: 10 * MIN + 1 })).map((m) => m.at)).toEqual([11 * MIN]);
    expect(await store.rollups(P, { since: 11 * MIN })).toHaveLength(1);
    expect(await store.rollups('p2', { since: 0 })).toEqual([]);
    expect(await store.rollups('p2', { listenerId: 'l1', since: 0 })).toEqual([]);

    const outcomes = await store.listenerOutcomes(P, ['l1', 'l2', 'l3', 'q1', 'nope']);
    expect(Object.fromEntries(outcomes)).toEqual({
      l1: { last_success_at: 11 * MIN + 10, last_failure: { at: 10 * MIN + 41_000, error: 'timed out after 40000 ms', status_code: null } },
      l2: { last_success_at: 11 * MIN + 30_007, last_failure: null },
      l3: { last_success_at: null, last_failure: null },
    });
  });

  it('a later batch adds to the same minute, counts an attempt recorded twice once, and keeps the newest outcome', async () => {
    await record('w1', [
      result(ds.l1[0], 'l1', attempt(1, 10 * MIN, 100, 500, 'HTTP_ERROR'), 'pending', 'HTTP 500'),
      result(ds.l1[1], 'l1', attempt(1, 10 * MIN + 5_000, 100, 200, null), 'succeeded'),
    ], 2_000);
    await record('w1', [
      result(ds.l1[1], 'l1', attempt(1, 10 * MIN + 5_000, 100, 200, null), 'succeeded'),
      result(ds.l1[2], 'l1', attempt(1, 10 * MIN + 3_000, 600, 503, 'HTTP_ERROR'), 'pending', 'HTTP 503'),
      // Older than the failure kept: it does not replace it.
      result(ds.l1[3], 'l1', attempt(1, 10 * MIN - 30_000, 1, 502, 'HTTP_ERROR'), 'pending', 'HTTP 502'),
    ], 3_000);
    expect(await store.rollups(P, { listenerId: 'l1', since: 0 })).toEqual([
      { at: 9 * MIN, succeeded: 0, failed: 0, retried: 1, latency: buckets({ 0: 1 }) },
      { at: 10 * MIN, succeeded: 1, failed: 0, retried: 2, latency: buckets({ 3: 2, 6: 1 }) },
    ]);
    expect((await store.listenerOutcomes(P, ['l1'])).get('l1')).toEqual({
      last_success_at: 10 * MIN + 5_100,
      last_failure: { at: 10 * MIN + 3_600, error: 'HTTP 503', status_code: 503 },
    });
  });

  it('deleting a listener keeps its minutes in the project\'s, drops its outcomes, and a late attempt adds nothing', async () => {
    const ok = (i: number) => result(ds.l1[i], 'l1', attempt(1, 10 * MIN, 5, 200, null), 'succeeded');
    await record('w1', [ok(0), result(ds.l2[0], 'l2', attempt(1, 10 * MIN, 5, 200, null), 'succeeded')], 2_000);
    expect(await store.deleteListener(P, 'l1')).toBe(true);
    await record('w1', [ok(1)], 3_000);
    expect((await store.rollups(P, { listenerId: 'l1', since: 0 })).map((m) => m.succeeded)).toEqual([1]);
    expect((await store.rollups(P, { since: 0 })).map((m) => m.succeeded)).toEqual([2]);
    expect([...(await store.listenerOutcomes(P, ['l1', 'l2'])).keys()]).toEqual(['l2']);
  });

  it('pruning deletes minutes older than the cutoff in batches, keeping the rest', async () => {
    await record('w1', [0, 1, 2].flatMap((m) => [
      result(ds.l1[m], 'l1', attempt(1, m * MIN, 5, 200, null), 'succeeded'),
      result(ds.l2[m], 'l2', attempt(1, m * MIN, 5, 200, null), 'succeeded'),
    ]), 2_000);
    const minutes = async () => (await store.rollups(P, { since: 0 })).map((m) => [m.at, m.succeeded]);
    expect(await minutes()).toEqual([[0, 2], [MIN, 2], [2 * MIN, 2]]);
    await store.pruneFinished(2 * MIN, 1);
    expect((await store.rollups(P, { since: 0 })).reduce((n, m) => n + m.succeeded, 0)).toBe(5);
    await store.pruneFinished(2 * MIN, 100);
    expect(await minutes()).toEqual([[2 * MIN, 2]]);
    // Outcomes are each listener's latest: retention does not touch them.
    expect((await store.listenerOutcomes(P, ['l1'])).get('l1')?.last_success_at).toBe(2 * MIN + 5);
  });
});

describe('operations', () => {
  it('answers its location, an event cursor test, a no-op subscription, and runs work of one name once at a time', async () => {
    expect(store.location).toBe(dbPath);
    expect(store.appliedMigrations).toContain('008_ordering_and_gates.sql');
    await store.appendEvents(P, [event('a'), event('b')], toAll([]), 1);
    const [, second] = (await store.listEvents(P, { limit: 10 })).rows;
    const log = { execution_id: null };
    expect(store.eventCursorScope(second.cursor)).toEqual(log);
    for (const bad of ['', '1', '0.1.', '01.1', '1.0', '-1.1', '1.5.0', '1e3', 'abc', ' 1.1', '1.99999999999999999']) expect(store.eventCursorScope(bad)).toBeNull();
    expect(store.eventCursorScope('0.1')).toEqual(log);
    expect(store.eventCursorScope('x7:e-1')).toEqual({ execution_id: 'e-1' });
    expect(store.eventCursorScope('x7:a:b')).toEqual({ execution_id: 'a:b' });
    for (const bad of ['x', 'x7', 'x7:', 'x0:e', 'x07:e', '7:e', 'x99999999999999999:e']) expect(store.eventCursorScope(bad)).toBeNull();
    expect(((await store.listEvents(P, { limit: 10, after: second.cursor, order: 'desc' })).rows).map((e) => e.envelope.id)).toEqual(['a']);

    const unsubscribe = store.subscribeDue(() => {
      throw new Error('a single process is never told');
    });
    unsubscribe();

    let release!: () => void;
    const first = store.exclusively('prune', () => new Promise<string>((r) => (release = () => r('done'))));
    expect(await store.exclusively('prune', async () => 'again')).toBeUndefined();
    expect(await store.exclusively('recovery', async () => 'other name')).toBe('other name');
    release();
    expect(await first).toBe('done');
    expect(await store.exclusively('prune', async () => 'after')).toBe('after');
    await expect(store.exclusively('prune', async () => { throw new Error('boom'); })).rejects.toThrow('boom');
    expect(await store.exclusively('prune', async () => 'after a failure')).toBe('after a failure');
  });
});

describe('query plans', () => {
  it('the claims and the rollup reads walk indexes, never a whole table', async () => {
    // The statements as the store prepares them, so the plans are of the very SQL it runs.
    const sources: string[] = [];
    const prepare = Database.prototype.prepare;
    Database.prototype.prepare = function (this: Database.Database, sql: string) {
      sources.push(sql);
      return prepare.call(this, sql);
    } as typeof prepare;
    const file = path.join(tempDir(), 'plans.db');
    try {
      await openSqliteStore({ path: file, durability: 'normal', busyTimeoutMs: 100 }).close();
    } finally {
      Database.prototype.prepare = prepare;
    }
    const db = new Database(file, { readonly: true });
    const plan = (pattern: RegExp): string[] => {
      const sql = sources.filter((s) => pattern.test(s));
      expect(sql, String(pattern)).toHaveLength(1);
      const named = Object.fromEntries([...sql[0].matchAll(/@(\w+)/g)].map((m) => [m[1], null]));
      const stmt = db.prepare(`EXPLAIN QUERY PLAN ${sql[0]}`);
      const rows = (Object.keys(named).length ? stmt.all(named) : stmt.all(...Array((sql[0].match(/\?/g) ?? []).length).fill(null))) as Array<{ detail: string }>;
      const details = rows.map((r) => r.detail);
      // (A scan of a subquery's own rows reads no table.)
      expect(details.filter((d) => /^SCAN (?!json_each|\(subquery-\d+\))/.test(d)), details.join('\n')).toEqual([]);
      return details;
    };
    try {
      expect(plan(/LEFT JOIN listeners l ON l\.id = d\.listener_id/)[0]).toMatch(/^SEARCH d USING INDEX deliveries_due \(project=\? AND next_attempt_at<\?\)/);
      expect(plan(/SELECT min\(next_attempt_at\) FROM deliveries WHERE project = \?/)).toEqual(['SEARCH deliveries USING INDEX deliveries_due (project=?)']);
      // Held deliveries are not in the index the claims walk, so no claim ever reads one.
      expect(db.prepare(`SELECT sql FROM sqlite_master WHERE name = 'deliveries_due'`).pluck().get()).toMatch(/WHERE status = 'pending' AND held IS NULL$/);
      // Promotion reads only its key's held deliveries.
      expect(plan(/FROM deliveries WHERE listener_id = \? AND held = \? ORDER BY event_seq/)).toEqual([
        'SEARCH deliveries USING INDEX deliveries_held (listener_id=? AND held=?)',
      ]);
      // A window of a changed listener's backlog: its deliveries in id order, and the change
      // within that id range, both through the listener's index (not the project's by status,
      // whose range holds every listener's deliveries of that span).
      expect(plan(/SELECT max\(id\) AS last, count\(\*\) AS n FROM/)).toContain(
        'SEARCH deliveries USING COVERING INDEX deliveries_project_listener (project=? AND listener_id=? AND id>?)',
      );
      for (const change of [/SET next_attempt_at = NULL, held = CASE[^\n]*\s+WHERE project = @project/, /SET next_attempt_at = @now, held = NULL\s+WHERE project = @project/, /'listener deleted', updated_at = @now\s+WHERE project = @project/]) {
        expect(plan(change)).toEqual(['SEARCH deliveries USING INDEX deliveries_project_listener (project=? AND listener_id=? AND id>? AND id<?)']);
      }
      expect(plan(/FROM delivery_heads WHERE delivery_id = \?/)).toEqual(['SEARCH delivery_heads USING COVERING INDEX delivery_heads_delivery (delivery_id=?)']);
      expect(plan(/FROM events\s+WHERE project = \? AND execution_id = \? AND sequence >= \?/)).toEqual([
        'SEARCH events USING INDEX events_project_execution (project=? AND execution_id=? AND sequence>?)',
      ]);
      expect(plan(/FROM listener_gates\s+WHERE listener_id IN \(SELECT value FROM json_each\(\?\)\) AND project = \?/)[0]).toBe(
        'SEARCH listener_gates USING PRIMARY KEY (listener_id=?)',
      );
      expect(plan(/FROM task_executions t JOIN executions e[\s\S]*ORDER BY t\.next_run_at LIMIT/)[0]).toMatch(/^SEARCH t USING INDEX task_executions_runnable \(next_run_at<\?\)/);
      expect(plan(/FROM listener_rollups WHERE listener_id = \? AND minute >= \?/)).toEqual(['SEARCH listener_rollups USING PRIMARY KEY (listener_id=? AND minute>?)']);
      expect(plan(/FROM listener_rollups WHERE project = \? AND minute >= \? GROUP BY minute/)).toEqual([
        'SEARCH listener_rollups USING INDEX listener_rollups_project_minute (project=? AND minute>?)',
      ]);
      expect(plan(/SELECT listener_id, minute FROM listener_rollups WHERE minute </)).toContain(
        'SEARCH listener_rollups USING COVERING INDEX listener_rollups_minute (minute<?)',
      );
      expect(plan(/FROM listener_rollups_hourly WHERE listener_id = \? AND hour >= \?/)).toEqual([
        'SEARCH listener_rollups_hourly USING PRIMARY KEY (listener_id=? AND hour>?)',
      ]);
      expect(plan(/FROM listener_rollups_hourly WHERE project = \? AND hour >= \? GROUP BY hour/)).toEqual([
        'SEARCH listener_rollups_hourly USING INDEX listener_rollups_hourly_project_hour (project=? AND hour>?)',
      ]);
      expect(plan(/SELECT listener_id, hour FROM listener_rollups_hourly WHERE hour <=/)).toContain(
        'SEARCH listener_rollups_hourly USING COVERING INDEX listener_rollups_hourly_hour (hour<?)',
      );
      // A page's totals: each listener's minutes, then its hours, through the primary keys.
      expect(plan(/min\(at\) AS at/).filter((d) => d.startsWith('SEARCH'))).toEqual([
        'SEARCH listener_rollups USING PRIMARY KEY (listener_id=? AND minute>? AND minute<?)',
        'SEARCH listener_rollups_hourly USING PRIMARY KEY (listener_id=? AND hour>?)',
      ]);
      expect(plan(/FROM listeners l LEFT JOIN listener_outcomes o/)[0]).toMatch(/^SEARCH l USING (COVERING )?INDEX/);
    } finally {
      db.close();
    }
  });
});

describe('a database of an earlier release', () => {
  it('sums the minutes it kept into hours when migration 012 adds the hourly rollups', async () => {
    await store.close();
    const HOUR = 3_600_000;
    const H = Math.floor(Date.now() / HOUR) * HOUR;
    const latency = Array.from({ length: 12 }, (_, i) => `latency_${i}`);
    const raw = new Database(dbPath);
    // Minutes as the release before 012 kept them: two listeners over two hours, no hourly table.
    const add = raw.prepare(`INSERT INTO listener_rollups (listener_id, project, minute, succeeded, failed, retried, ${latency.join(', ')})
      VALUES (?, 'p1', ?, ?, 1, 0, ${latency.map((_, i) => (i === 2 ? 1 : 0)).join(', ')})`);
    for (const [listener, minute, succeeded] of [['l1', H - 60_000, 2], ['l1', H, 3], ['l1', H + 59 * 60_000, 4], ['l2', H + 60_000, 5]] as const) {
      add.run(listener, minute, succeeded);
    }
    raw.exec('DROP TABLE listener_rollups_hourly; DELETE FROM schema_migrations WHERE version = 12');
    raw.close();

    store = openSqliteStore({ path: dbPath, durability: 'full', busyTimeoutMs: 1000 });
    const hours = await store.rollups('p1', { listenerId: 'l1', since: 0, hours: true });
    expect(hours.map(({ at, succeeded, failed, latency: l }) => [at, succeeded, failed, l[2]])).toEqual([
      [H - HOUR, 2, 1, 1],
      [H, 7, 2, 2],
    ]);
    expect((await store.rollups('p1', { since: H, hours: true })).map(({ at, succeeded }) => [at, succeeded])).toEqual([[H, 12]]);
    // Health from half an hour before H: the minutes of (H - 30 min, H), then the hours from H.
    expect(Object.fromEntries([...(await store.rollupTotals('p1', ['l1', 'l2'], H - 30 * 60_000))].map(([id, t]) => [id, t.succeeded]))).toEqual({ l1: 9, l2: 5 });
  });
});
