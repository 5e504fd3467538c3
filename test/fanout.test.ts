import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createFanOut, type FanOutOptions } from '../src/fanout/fanout.js';
import { compileListenerRule, type ListenerRule } from '../src/fanout/match.js';
import type { EventEnvelope } from '../src/records/event.js';
import { specOf, type StoredListener } from '../src/records/listener.js';
import { openSqliteStore, type SqliteStore } from '../src/store/sqlite/index.js';
import type { EnabledListener, KeptListeners, ListenerRouting } from '../src/store/store.js';
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
  let file: string;
  let store: SqliteStore;
  let compiled: string[];
  let reads: string[];
  /** The listeners whose whole rows the store read and handed over for compiling. */
  let rows: string[];
  let eventNumber = 0;

  /**
   * A fan-out that records which listeners it compiles and which projects' listener lists the
   * store handed it (read in the append's transaction because the listener version moved).
   */
  function fanOut(options: FanOutOptions = {}) {
    const f = createFanOut({
      ...options,
      compile: (rule: ListenerRule) => {
        compiled.push((rule as StoredListener).id);
        return compileListenerRule(rule);
      },
    });
    return {
      at: f.at,
      kept: f.kept,
      compile: (project: string, version: number, enabled: EnabledListener[], kept: KeptListeners) => {
        reads.push(project);
        rows.push(...enabled.filter((e) => e.row !== null).map((e) => e.id));
        return f.compile(project, version, enabled, kept);
      },
    };
  }

  /** Appends one event through the real store and answers the listeners it got deliveries for. */
  async function route(f: ListenerRouting, project: string, data: Record<string, unknown>, into: SqliteStore = store) {
    const id = `evt-${++eventNumber}`;
    await into.appendEvents(project, [{ envelope: { ...envelope(data), id }, original: null, bodyHash: id }], f, Date.now());
    return ((await into.listDeliveries(project, { event_id: id, limit: 1000 })).rows).map((d) => d.listener_id).sort();
  }

  async function change(project: string, n: number, over: Partial<StoredListener>, updatedAt = '2026-11-23T11:00:00.000Z') {
    const current = await store.getListener(project, listener(project, n).id);
    const updated = await store.updateListener(project, current!.id, { ...specOf(current!), ...over }, updatedAt);
    expect(updated).not.toBeNull();
  }

  beforeEach(async () => {
    file = path.join(tempDir(), 'relay.db');
    store = openSqliteStore({ path: file, durability: 'normal', busyTimeoutMs: 1000 });
    for (let n = 0; n < LISTENERS; n++) {
      await store.createListener(listener(P, n));
      await store.createListener(listener(Q, n));
    }
    compiled = [];
    reads = [];
    rows = [];
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

  it('after one listener of many changes, the very next event reads the list again and compiles that listener only', async () => {
    const f = fanOut();
    await route(f, P, { n: 0 });
    await route(f, Q, { n: 0 });
    compiled = [];
    reads = [];

    rows = [];
    await change(P, 7, { filter: { 'data.n': 100 } });
    expect(await route(f, P, { n: 100 })).toEqual([listener(P, 7).id]);
    expect(compiled).toEqual([listener(P, 7).id]);
    // Of the project's 40 listeners the store read the whole row of the changed one only.
    expect(rows).toEqual([listener(P, 7).id]);
    // Every other listener still routes with the matcher it had; the other project is not read again.
    expect(await route(f, P, { n: 7 })).toEqual([]);
    expect(await route(f, P, { n: 3 })).toEqual([listener(P, 3).id]);
    expect(await route(f, Q, { n: 7 })).toEqual([listener(Q, 7).id]);
    expect(compiled).toEqual([listener(P, 7).id]);
    expect(reads).toEqual([P]);
  });

  it('sees changes made through another connection to the database (another process) at the next event', async () => {
    const f = fanOut();
    await route(f, P, { n: 0 });
    await route(f, Q, { n: 0 });
    compiled = [];
    reads = [];

    const other = openSqliteStore({ path: file, durability: 'normal', busyTimeoutMs: 1000 });
    try {
      // As a dispatcher elsewhere turning a listener off, and a client creating one.
      const q5 = (await other.getListener(Q, listener(Q, 5).id))!;
      await other.updateListener(Q, q5.id, { ...specOf(q5), enabled: false }, '2026-11-23T11:00:00.000Z');
      await other.createListener(listener(P, 500));
    } finally {
      await other.close();
    }
    expect(await route(f, P, { n: 500 })).toEqual([listener(P, 500).id]);
    expect(await route(f, Q, { n: 5 })).toEqual([]);
    expect(reads.sort()).toEqual([P, Q]);
    // The new listener; a disabled one is not listed, so there is nothing to compile for it.
    expect(compiled).toEqual([listener(P, 500).id]);

    await change(Q, 5, { enabled: true }, '2026-11-23T12:00:00.000Z');
    expect(await route(f, Q, { n: 5 })).toEqual([listener(Q, 5).id]);
    expect(compiled).toEqual([listener(P, 500).id, listener(Q, 5).id]);
  });

  it('forgets a deleted listener and compiles nothing for it', async () => {
    const f = fanOut();
    await route(f, P, { n: 0 });
    compiled = [];
    expect(await store.deleteListener(P, listener(P, 9).id)).toBe(true);
    expect(await route(f, P, { n: 9 })).toEqual([]);
    expect(compiled).toEqual([]);
  });

  it('sees a change that kept updated_at (two changes in one millisecond)', async () => {
    const f = fanOut();
    await route(f, P, { n: 0 });
    compiled = [];
    await change(P, 4, { filter: { 'data.n': 44 } }, listener(P, 4).updated_at);
    expect(await route(f, P, { n: 44 })).toEqual([listener(P, 4).id]);
    expect(compiled).toEqual([listener(P, 4).id]);
  });

  it('after a change that leaves the rule as it was, reads and compiles that listener only', async () => {
    const f = fanOut();
    await route(f, P, { n: 0 });
    compiled = [];
    rows = [];
    // Every write of a listener's row moves its revision, whatever it changed.
    await change(P, 4, { description: 'renamed', callback: { ...listener(P, 4).callback, url: 'http://127.0.0.1:9/y' } });
    expect(await route(f, P, { n: 4 })).toEqual([listener(P, 4).id]);
    expect(rows).toEqual([listener(P, 4).id]);
    expect(compiled).toEqual([listener(P, 4).id]);
  });

  it('reads a project once for events that commit together after a change', async () => {
    const f = fanOut();
    await route(f, P, { n: 0 });
    reads = [];
    await change(P, 4, { description: 'renamed' });
    const routes = await Promise.all(Array.from({ length: 10 }, () => route(f, P, { n: 2 })));
    expect(routes).toEqual(Array.from({ length: 10 }, () => [listener(P, 2).id]));
    expect(reads).toEqual([P]);
  });

  it('routes around a stored listener whose filter no longer compiles, and says so once', async () => {
    const uncompilable: Array<[string, string]> = [];
    const f = fanOut({ onUncompilable: (l, err) => uncompilable.push([l.id, err.message]) });
    // Accepted by an older version's checks; the linear-time engine has no lookahead.
    await store.createListener(listener(P, 700, { filter: { 'data.x': { $regex: '^(?!test)' } } }));
    expect(await route(f, P, { n: 3, x: 'prod' })).toEqual([listener(P, 3).id]);
    expect(uncompilable).toEqual([[listener(P, 700).id, expect.stringMatching(/lookahead/)]]);
    await change(P, 4, { description: 'renamed' });
    expect(await route(f, P, { n: 3, x: 'prod' })).toEqual([listener(P, 3).id]);
    expect(uncompilable).toHaveLength(1);
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
