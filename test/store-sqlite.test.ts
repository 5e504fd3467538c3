import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openSqliteStore, type SqliteStore } from '../src/store/sqlite/index.js';
import { StoreConflictError, StoreUnavailableError, type AttemptResult, type ClaimOptions, type NewEvent } from '../src/store/store.js';
import type { StoredListener } from '../src/records/listener.js';
import { toEnvelope } from '../src/ingest/ingest.js';
import { createWriteBatcher } from '../src/store/sqlite/write-batcher.js';
import { storedListener } from './helpers/envelopes.js';
import { tempDir } from './helpers/relay.js';

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

const toAll = (ids: string[]) => () => ids;
/** Claims up to `limit` of every project's due deliveries. */
const claim = async (o: Omit<ClaimOptions, 'allot' | 'transports'> & { limit: number }) =>
  (await store.recordAndClaim(o.owner, [], { ...o, transports: ['http'], allot: (due) => new Map(due.map((p) => [p, o.limit])) }, o.now)).claimed;
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
    const ids = (await store.listEvents(P, { limit: 10 })).map((e) => e.envelope.id);
    expect(ids).toEqual(['a', 'b', 'd']);
  });

  it('numbers an execution without gaps, even when a request rolls back', async () => {
    await store.appendEvents(P, [event('a')], toAll([]), 1);
    await Promise.allSettled([
      store.appendEvents(P, [event('b'), event('a', {}, 'x')], toAll([]), 2),
      store.appendEvents(P, [event('c'), event('d')], toAll([]), 2),
    ]);
    await store.appendEvents(P, [event('e', { execution_id: 'exec-2' }), event('f')], toAll([]), 3);
    const seqs = (await store.listEvents(P, { limit: 10 })).map((e) => [e.envelope.id, e.envelope.sequence]);
    expect(seqs).toEqual([['a', 1], ['c', 2], ['d', 3], ['e', 1], ['f', 4]]);
  });

  it('stores a duplicate once', async () => {
    const [first] = await store.appendEvents(P, [event('a')], toAll(['l1']), 1);
    const [again] = await store.appendEvents(P, [event('a')], toAll(['l1']), 2);
    expect(first).toEqual({ id: 'a', duplicate: false, deliveries: 1 });
    expect(again).toEqual({ id: 'a', duplicate: true, deliveries: 0 });
    expect(await store.listDeliveries(P, { limit: 10 })).toHaveLength(1);
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
    await record('w1', [{ deliveryId: d.id, listenerId: 'l1', project: P, attempt, status: 'pending', nextAttemptAt: 5_000, lastError: 'HTTP 500', disableListener: null }], 1_010);
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
    expect((await store.listDeliveries(P, { limit: 10 })).every((d) => d.status === 'pending' && d.next_attempt_at === null)).toBe(true);
    await store.updateListener(P, 'l1', { ...l, enabled: true }, new Date(4_000).toISOString());
    expect(await claim({ owner: 'w1', now: 4_000, leaseMs: 500, limit: 10 })).toHaveLength(3);
  });

  it('410 turns the listener off and holds its other deliveries', async () => {
    const [d] = await claim({ owner: 'w1', now: 1_000, leaseMs: 500, limit: 1 });
    const attempt = { number: 1, started_at: 1_000, duration_ms: 5, status_code: 410, error: 'HTTP_ERROR', response_excerpt: null };
    const disabled = await record('w1', [{ deliveryId: d.id, listenerId: 'l1', project: P, attempt, status: 'pending', nextAttemptAt: null, lastError: 'HTTP 410 Gone', disableListener: 'gone' }], 1_010);
    expect(disabled).toEqual(['l1']);
    expect(await store.getListener(P, 'l1')).toMatchObject({ enabled: false, disabled_reason: 'gone' });
    expect(await claim({ owner: 'w1', now: 9_999_999, leaseMs: 500, limit: 10 })).toHaveLength(0);
  });

  it('deleting the listener cancels its pending deliveries', async () => {
    expect(await store.deleteListener(P, 'l1')).toBe(true);
    const ds = await store.listDeliveries(P, { limit: 10 });
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
    await record('w1', claimed.map((d) => ({ deliveryId: d.id, listenerId: 'l1', project: P, attempt, status: 'succeeded' as const, nextAttemptAt: null, lastError: null, disableListener: null })), 2_000);
    expect(await store.pruneFinished(1_000, 100)).toEqual({ deliveries: 0, events: 0 });
    expect(await store.pruneFinished(3_000, 1)).toEqual({ deliveries: 1, events: 1 });
    expect(await store.pruneFinished(3_000, 100)).toEqual({ deliveries: 1, events: 1 });
    const left = await store.listDeliveries(P, { limit: 10 });
    expect(left.map((d) => d.status)).toEqual(['pending']);
    expect(await store.listEvents(P, { limit: 10 })).toHaveLength(1);
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
    const out = await store.recordAndClaim('w1', [], { owner: 'w1', now: 1, leaseMs: 1, transports: ['http'], allot: () => ((called = true), new Map()) }, 1);
    expect(called).toBe(false);
    expect(out).toEqual({ disabledListeners: [], claimed: [], asked: 0 });
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
    expect((await store.listEvents(P, { limit: 10 })).map((e) => e.envelope.id)).toEqual(['late']);
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
      store.recordAndClaim('w', [], { owner: 'w', now: 1_000, leaseMs: 500, transports, allot: (due) => new Map(due.map((p) => [p, 10])) }, 1_000);
    expect((await take(['http'])).claimed.map((d) => d.listenerId)).toEqual(['h1']);
    expect((await take(['http'])).claimed).toEqual([]);
    const amqp = await take(['amqp', 'jsonfile']);
    expect(amqp.claimed.map((d) => [d.listenerId, d.listener.callback.transport])).toEqual([['q1', 'amqp']]);
  });
});
