import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createFanOut, type FanOutOptions } from '../src/fanout/fanout.js';
import { compileListenerRule, type ListenerRule } from '../src/fanout/match.js';
import type { EventEnvelope } from '../src/records/event.js';
import { specOf, type StoredListener } from '../src/records/listener.js';
import { openSqliteStore, type SqliteStore } from '../src/store/sqlite/index.js';
import { storedListener, taskEnvelope } from './helpers/envelopes.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { startTestRelay, tempDir, type TestRelay } from './helpers/relay.js';

const P = 'project-a';
const Q = 'project-b';
const LISTENERS = 40;

function listener(project: string, n: number, over: Partial<StoredListener> = {}): StoredListener {
  const at = '2026-11-23T10:00:00.000Z';
  return storedListener(`${project}-l${String(n).padStart(3, '0')}`, { project, filter: { 'data.n': n }, created_at: at, updated_at: at, ...over });
}

const envelope = (data: Record<string, unknown>): EventEnvelope =>
  taskEnvelope({ id: 'evt-1', sequence: 1, occurred_at: '2026-11-23T10:00:00.000Z', source: 'api', data });

describe('fan-out cache', () => {
  let store: SqliteStore;
  let compiled: string[];
  let reads: string[];

  /** A fan-out over the real store that records which listeners it compiles and which projects it reads. */
  function fanOut(options: FanOutOptions = {}) {
    const counted = {
      listEnabledListeners: (project: string) => {
        reads.push(project);
        return store.listEnabledListeners(project);
      },
    };
    return createFanOut(counted, {
      ...options,
      compile: (rule: ListenerRule) => {
        compiled.push((rule as StoredListener).id);
        return compileListenerRule(rule);
      },
    });
  }

  const route = async (f: ReturnType<typeof fanOut>, project: string, data: Record<string, unknown>) =>
    (await f.forProject(project))(envelope(data));

  async function change(project: string, n: number, over: Partial<StoredListener>, updatedAt = '2026-11-23T11:00:00.000Z') {
    const current = await store.getListener(project, listener(project, n).id);
    const updated = await store.updateListener(project, current!.id, { ...specOf(current!), ...over }, updatedAt);
    expect(updated).not.toBeNull();
  }

  beforeEach(async () => {
    store = openSqliteStore({ path: path.join(tempDir(), 'relay.db'), durability: 'normal', busyTimeoutMs: 1000 });
    for (let n = 0; n < LISTENERS; n++) {
      await store.createListener(listener(P, n));
      await store.createListener(listener(Q, n));
    }
    compiled = [];
    reads = [];
  });
  afterEach(async () => {
    await store.close();
  });

  it('compiles each listener once, then routes without reading or compiling', async () => {
    const f = fanOut();
    expect(await route(f, P, { n: 7 })).toEqual([listener(P, 7).id]);
    expect(compiled).toHaveLength(LISTENERS);
    expect(new Set(compiled).size).toBe(LISTENERS);
    compiled = [];
    for (let n = 0; n < LISTENERS; n++) expect(await route(f, P, { n })).toEqual([listener(P, n).id]);
    expect(compiled).toEqual([]);
    expect(reads).toEqual([P]);
  });

  it('after one listener of many changes, compiles that listener only', async () => {
    const f = fanOut();
    await route(f, P, { n: 0 });
    await route(f, Q, { n: 0 });
    compiled = [];

    await change(P, 7, { filter: { 'data.n': 100 } });
    f.invalidate(P);
    expect(await route(f, P, { n: 100 })).toEqual([listener(P, 7).id]);
    expect(compiled).toEqual([listener(P, 7).id]);
    // Every other listener still routes with the matcher it had.
    expect(await route(f, P, { n: 7 })).toEqual([]);
    expect(await route(f, P, { n: 3 })).toEqual([listener(P, 3).id]);
    expect(await route(f, Q, { n: 7 })).toEqual([listener(Q, 7).id]);
    expect(compiled).toEqual([listener(P, 7).id]);
  });

  it('reads every project again after invalidate() and compiles only what changed', async () => {
    const f = fanOut();
    await route(f, P, { n: 0 });
    await route(f, Q, { n: 0 });
    compiled = [];
    reads = [];

    // Changed behind the fan-out's back, as a dispatcher disabling a listener does.
    await change(Q, 5, { enabled: false });
    await store.createListener(listener(P, 500));
    f.invalidate();
    expect(await route(f, P, { n: 500 })).toEqual([listener(P, 500).id]);
    expect(await route(f, Q, { n: 5 })).toEqual([]);
    expect(reads.sort()).toEqual([P, Q]);
    // The new listener; a disabled one is not listed, so there is nothing to compile for it.
    expect(compiled).toEqual([listener(P, 500).id]);

    await change(Q, 5, { enabled: true }, '2026-11-23T12:00:00.000Z');
    f.invalidate(Q);
    expect(await route(f, Q, { n: 5 })).toEqual([listener(Q, 5).id]);
    expect(compiled).toEqual([listener(P, 500).id, listener(Q, 5).id]);
  });

  it('forgets a deleted listener and compiles nothing for it', async () => {
    const f = fanOut();
    await route(f, P, { n: 0 });
    compiled = [];
    expect(await store.deleteListener(P, listener(P, 9).id)).toBe(true);
    f.invalidate(P);
    expect(await route(f, P, { n: 9 })).toEqual([]);
    expect(compiled).toEqual([]);
  });

  it('sees a change that kept updated_at (two changes in one millisecond)', async () => {
    const f = fanOut();
    await route(f, P, { n: 0 });
    compiled = [];
    await change(P, 4, { filter: { 'data.n': 44 } }, listener(P, 4).updated_at);
    f.invalidate(P);
    expect(await route(f, P, { n: 44 })).toEqual([listener(P, 4).id]);
    expect(compiled).toEqual([listener(P, 4).id]);
  });

  it('compiles nothing for a change that leaves the rule as it was', async () => {
    const f = fanOut();
    await route(f, P, { n: 0 });
    compiled = [];
    await change(P, 4, { description: 'renamed', callback: { ...listener(P, 4).callback, url: 'http://127.0.0.1:9/y' } });
    f.invalidate(P);
    expect(await route(f, P, { n: 4 })).toEqual([listener(P, 4).id]);
    expect(compiled).toEqual([]);
  });

  it('reads a project once for events that arrive together after a change', async () => {
    const f = fanOut();
    await route(f, P, { n: 0 });
    reads = [];
    f.invalidate(P);
    const routes = await Promise.all(Array.from({ length: 10 }, () => route(f, P, { n: 2 })));
    expect(routes).toEqual(Array.from({ length: 10 }, () => [listener(P, 2).id]));
    expect(reads).toEqual([P]);
  });

  it('reads again once the list is older than maxAgeMs, still compiling only what changed', async () => {
    const f = fanOut({ maxAgeMs: -1 });
    await route(f, P, { n: 0 });
    compiled = [];
    await store.createListener(listener(P, 600));
    expect(await route(f, P, { n: 600 })).toEqual([listener(P, 600).id]);
    expect(compiled).toEqual([listener(P, 600).id]);
  });

  it('routes around a stored listener whose filter no longer compiles, and says so once', async () => {
    const uncompilable: Array<[string, string]> = [];
    const f = fanOut({ onUncompilable: (l, err) => uncompilable.push([l.id, err.message]) });
    // Accepted by an older version's checks; the linear-time engine has no lookahead.
    await store.createListener(listener(P, 700, { filter: { 'data.x': { $regex: '^(?!test)' } } }));
    expect(await route(f, P, { n: 3, x: 'prod' })).toEqual([listener(P, 3).id]);
    expect(uncompilable).toEqual([[listener(P, 700).id, expect.stringMatching(/lookahead/)]]);
    f.invalidate(P);
    expect(await route(f, P, { n: 3, x: 'prod' })).toEqual([listener(P, 3).id]);
    expect(uncompilable).toHaveLength(1);
  });

  it('reads again after a failed read', async () => {
    let fail = true;
    const f = createFanOut({
      listEnabledListeners: (project: string) => (fail ? Promise.reject(new Error('database is gone')) : store.listEnabledListeners(project)),
    });
    await expect(f.forProject(P)).rejects.toThrow('database is gone');
    fail = false;
    expect((await f.forProject(P))(envelope({ n: 1 }))).toEqual([listener(P, 1).id]);
  });
});

describe('listener filters through a real relay', () => {
  let relay: TestRelay;
  let receiver: Receiver;

  beforeAll(async () => {
    receiver = await startReceiver();
    relay = await startTestRelay();
  });
  afterAll(async () => {
    await relay.close();
    await receiver.close();
  });

  const create = (filter: unknown) =>
    relay.api('POST', '/v1/listeners', {
      workbook: '*',
      event_types: ['NOTIFICATION'],
      filter,
      callback: { url: receiver.url('/hook') },
      retry: { schedule_ms: [] },
    });

  it('answers an event at once when a filter holds a pattern that freezes a backtracking engine', async () => {
    const created = await create({ 'data.x': { $regex: '^([a-z]|[a-z0-9])*$' } });
    expect(created.status, created.text).toBe(201);

    const started = performance.now();
    const refused = await relay.api('POST', '/v1/events', { type: 'lease.check', data: { x: 'a'.repeat(32) + '!' } });
    expect(refused.status, refused.text).toBe(202);
    expect(performance.now() - started).toBeLessThan(2_000);

    const accepted = await relay.api('POST', '/v1/events', { type: 'lease.check', data: { x: 'a'.repeat(32) } });
    expect(accepted.status, accepted.text).toBe(202);
    const deliveries = async (eventId: string) =>
      (await relay.api('GET', `/v1/deliveries?event_id=${encodeURIComponent(eventId)}`)).body.items as Array<{ listener_id: string }>;
    expect(await deliveries(refused.body.items[0].id)).toEqual([]);
    expect((await deliveries(accepted.body.items[0].id)).map((d) => d.listener_id)).toEqual([created.body.id]);
  });

  it.each<[string, unknown, string, RegExp]>([
    ['a lookahead', { 'data.x': { $regex: 'a(?=b)' } }, 'filter.data.x.$regex', /lookahead .* cannot be used: \$regex runs on RE2/],
    ['a backreference', { 'data.x': { $regex: '(a)\\1' } }, 'filter.data.x.$regex', /backreferences/],
    ['an invalid pattern', { 'data.x': { $regex: '(' } }, 'filter.data.x.$regex', /not a valid RE2 pattern/],
    ['patterns over the program budget', { 'data.x': { $regex: '\\pL{1000}' } }, 'filter.data.x.$regex', /at most 1000 RE2 instructions/],
    ['a filter over 16 KiB', { 'data.x': 'x'.repeat(16 * 1024) }, 'filter', /at most 16384 bytes of JSON/],
    ['too many keys', Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`data.k${i}`, i])), 'filter', /at most 50 keys/],
    ['a condition nested too deep', { 'data.x': { $in: [[1]] } }, 'filter.data.x', /\$in\.0: must be a string, number, boolean or null/],
  ])('refuses %s with a 400 naming the field', async (_name, filter, field, message) => {
    const res = await create(filter);
    expect(res.status, res.text).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(res.body.errors).toContainEqual({ field, message: expect.stringMatching(message) });
  });
});
