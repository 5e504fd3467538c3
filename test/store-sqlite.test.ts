import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openSqliteStore, type SqliteStore } from '../src/store/sqlite/index.js';
import { StoreConflictError, type AttemptResult, type ClaimOptions, type NewEvent } from '../src/store/store.js';
import type { StoredListener } from '../src/records/listener.js';
import { toEnvelope } from '../src/ingest/ingest.js';
import { tempDir } from './helpers/relay.js';

let store: SqliteStore;
const P = 'p1';

function event(id: string, extra: Record<string, unknown> = {}, hash = id): NewEvent {
  return {
    envelope: toEnvelope({ id, type: 'TASK_SUCCEEDED', execution_id: 'exec-1', ...extra } as never, 1_000, 'api'),
    originalBody: null,
    bodyHash: hash,
  };
}

function listener(id: string, over: Partial<StoredListener> = {}): StoredListener {
  return {
    id,
    project: P,
    workbook: '*',
    event_types: ['TASK'],
    events: null,
    target: null,
    filter: null,
    callback: { transport: 'http', url: 'http://127.0.0.1:9/x', method: 'POST', headers: {}, format: 'json', timeout_ms: 1000 },
    retry: { schedule_ms: [1000] },
    enabled: true,
    description: null,
    secret: 'whsec_' + Buffer.alloc(32, 1).toString('base64'),
    previous_secret: null,
    previous_secret_expires_at: null,
    disabled_reason: null,
    created_at: new Date(0).toISOString(),
    updated_at: new Date(0).toISOString(),
    ...over,
  };
}

const toAll = (ids: string[]) => () => ids;
const claim = async (o: ClaimOptions) => (await store.recordAndClaim(o.owner, [], o, o.now)).claimed;
const record = async (owner: string, results: AttemptResult[], now: number) =>
  (await store.recordAndClaim(owner, results, null, now)).disabledListeners;

beforeEach(() => {
  store = openSqliteStore({ path: path.join(tempDir(), 'relay.db'), durability: 'full', busyTimeoutMs: 1000 });
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
