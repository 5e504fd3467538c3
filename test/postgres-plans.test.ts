import pg from 'pg';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createFanOut } from '../src/fanout/fanout.js';
import type { NewEvent, Store } from '../src/store/store.js';
import { clientConfig } from '../src/store/postgres/database.js';
import { openPostgresStore } from '../src/store/postgres/index.js';
import { createTestSchema, TEST_DATABASE_URL, type TestSchema } from './helpers/backend.js';
import { storedListener, taskEnvelope } from './helpers/envelopes.js';

/*
 * The PostgreSQL store's statements keep finding rows through their indexes as tables grow,
 * whether or not anything analyses them (this machine's server runs with autovacuum off, as a
 * busy or freshly loaded one may lag behind). A plan cached while a table was nearly empty
 * scans it whole once it is large: at 1,000 single-event requests a second that made every
 * append read every event of its project. The local server, a schema of its own.
 */

const P = 'p1';
let schema: TestSchema | null = null;
let store: Store | null = null;

afterEach(async () => {
  await store?.close();
  await schema?.drop();
  store = null;
  schema = null;
});

const event = (id: string): NewEvent => ({ envelope: taskEnvelope({ id, execution_id: `x-${id.length % 7}`, sequence: null }), original: null, bodyHash: id });

async function tableStats(schemaName: string) {
  const c = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await c.connect();
  try {
    const indexes = await c.query<{ index: string; read: string; scans: string }>(
      'SELECT indexrelname AS index, idx_tup_read AS read, idx_scan AS scans FROM pg_stat_user_indexes WHERE schemaname = $1',
      [schemaName],
    );
    const tables = await c.query<{ table: string; seq: string; inserted: string; updated: string; heap_only: string }>(
      `SELECT relname AS table, seq_tup_read AS seq, n_tup_ins AS inserted, n_tup_upd AS updated, n_tup_hot_upd AS heap_only
       FROM pg_stat_user_tables WHERE schemaname = $1`,
      [schemaName],
    );
    return {
      indexRead: (name: string) => Number(indexes.rows.find((r) => r.index === name)?.read ?? 0),
      indexScans: (name: string) => Number(indexes.rows.find((r) => r.index === name)?.scans ?? 0),
      seqRead: (name: string) => Number(tables.rows.find((r) => r.table === name)?.seq ?? 0),
      inserted: (name: string) => Number(tables.rows.find((r) => r.table === name)?.inserted ?? 0),
      updated: (name: string) => Number(tables.rows.find((r) => r.table === name)?.updated ?? 0),
      heapOnly: (name: string) => Number(tables.rows.find((r) => r.table === name)?.heap_only ?? 0),
    };
  } finally {
    await c.end();
  }
}

/** Claims up to `share` due deliveries and records them as succeeded: one dispatcher cycle each way. */
async function deliver(s: Store, share: number): Promise<number> {
  const now = Date.now();
  const owner = 'plans-test';
  const { claimed } = await s.recordAndClaim(owner, [], {
    owner,
    now,
    leaseMs: 1_000,
    transports: ['http'],
    allot: (due) => new Map(due.map((p) => [p, share])),
    admit: (candidates) => ({ take: candidates.map((c) => c.id), defer: new Map(), changed: new Map() }),
  }, now);
  const results = claimed.map((d) => ({
    deliveryId: d.id,
    listenerId: d.listenerId,
    project: d.project,
    eventId: 'e',
    eventType: 't',
    attempt: { number: 1, started_at: now, duration_ms: 1, status_code: 200, error: null, response_excerpt: null },
    status: 'succeeded' as const,
    nextAttemptAt: null,
    lastError: null,
    disableListener: null,
  }));
  await s.recordAndClaim(owner, results, null, now);
  return claimed.length;
}

/** The schema's counters, once every backend that ran `check`'s work has ended. */
async function settledStats(schemaName: string, check: (stats: Awaited<ReturnType<typeof tableStats>>) => boolean) {
  let stats = await tableStats(schemaName);
  for (let tries = 0; !check(stats) && tries < 50; tries++) {
    await new Promise((r) => setTimeout(r, 100));
    stats = await tableStats(schemaName);
  }
  expect(check(stats)).toBe(true);
  return stats;
}

describe('PostgreSQL plans as tables grow', () => {
  it('appends and records read a few index entries each, not the whole table, with no statistics gathered', async () => {
    schema = await createTestSchema('plans');
    store = await openPostgresStore({ url: TEST_DATABASE_URL, schema: schema.schema, pool: 2, log: pino({ level: 'silent' }) });
    const s = store;
    const routing = createFanOut();
    await s.createListener(storedListener('l1', { project: P }));
    let n = 0;
    const single = async () => s.appendEvents(P, [event(`single-${n++}`)], routing, Date.now());
    const deliverAll = () => deliver(s, 1_000);

    // While the tables are small, every statement runs often enough to be planned for good.
    for (let i = 0; i < 12; i++) {
      await single();
      expect(await deliverAll()).toBe(1);
    }
    // Then they grow.
    for (let b = 0; b < 4; b++) await s.appendEvents(P, Array.from({ length: 1_000 }, (_, i) => event(`batch-${b}-${i}`)), routing, Date.now());
    expect(await deliverAll()).toBe(1_000);
    for (let b = 0; b < 3; b++) expect(await deliverAll()).toBe(1_000);
    // And the small statements go on: each should cost a few index entries.
    for (let i = 0; i < 30; i++) {
      await single();
      expect(await deliverAll()).toBe(1);
    }
    // A backend's counters reach the statistics when it ends.
    await s.close();
    store = null;
    const stats = await settledStats(schema.schema, (st) => st.indexScans('listeners_pkey') > 0);
    // The batches may read the tables whole (a hash join is right for 1,000 of 4,000 rows):
    // about 6,000 index entries of events and 32,000 rows of deliveries. The 30 single appends
    // and the 30 small records would add 120,000 and 380,000 more through a plan made for a
    // small table.
    expect(stats.indexRead('events_project_received')).toBeLessThan(30_000);
    expect(stats.seqRead('deliveries')).toBeLessThan(100_000);
    expect(stats.seqRead('events')).toBeLessThan(30_000);
  }, 120_000);

  it('never compiles a statement with JIT, also one whose plan a disabled sort makes look costly', async () => {
    schema = await createTestSchema('plans');
    const c = new pg.Client(clientConfig({ url: TEST_DATABASE_URL, schema: schema.schema }));
    await c.connect();
    try {
      expect((await c.query('SHOW jit')).rows).toEqual([{ jit: 'off' }]);
      // As a list page reads: sorts off, and a sort it still needs priced at 10^10.
      await c.query('BEGIN; SET LOCAL enable_sort = off');
      const [{ 'QUERY PLAN': [plan] }] = (await c.query('EXPLAIN (ANALYZE, FORMAT JSON) SELECT g FROM generate_series(1, 100) g ORDER BY g % 7')).rows;
      expect(plan.Plan['Total Cost']).toBeGreaterThan(1e9);
      expect(plan.JIT).toBeUndefined();
      await c.query('ROLLBACK');
    } finally {
      await c.end();
    }
  });

  it("a dispatcher's cycles reach the deliveries and attempts they record by key, not by reading the tables whole", async () => {
    schema = await createTestSchema('plans');
    const open = () => openPostgresStore({ url: TEST_DATABASE_URL, schema: schema!.schema, pool: 2, log: pino({ level: 'silent' }) });
    store = await open();
    const routing = createFanOut();
    await store.createListener(storedListener('l1', { project: P }));
    // 20,000 deliveries sent and recorded, and the statistics brought up to date.
    for (let b = 0; b < 20; b++) {
      await store.appendEvents(P, Array.from({ length: 1_000 }, (_, i) => event(`old-${b}-${i}`)), routing, Date.now());
      expect(await deliver(store, 1_000)).toBe(1_000);
    }
    await store.close();
    const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await admin.connect();
    await admin.query(`ANALYZE ${pg.escapeIdentifier(schema.schema)}.deliveries, ${pg.escapeIdentifier(schema.schema)}.attempts`);
    await admin.end();
    const before = await settledStats(schema.schema, (st) => st.inserted('attempts') === 20_000);
    // Then the throughput run's shape: a dispatcher claiming and recording 200 at a time.
    store = await open();
    await store.appendEvents(P, Array.from({ length: 1_000 }, (_, i) => event(`new-${i}`)), routing, Date.now());
    for (let c = 0; c < 5; c++) expect(await deliver(store, 200)).toBe(200);
    await store.close();
    store = null;
    const after = await settledStats(schema.schema, (st) => st.inserted('attempts') === 21_000);
    // Through a plan that joins the batch to the whole table, each of the 5 cycles would read
    // the 21,000 deliveries and the 20,000 attempts once or more: over 100,000 rows each.
    const read = { deliveries: after.seqRead('deliveries') - before.seqRead('deliveries'), attempts: after.seqRead('attempts') - before.seqRead('attempts') };
    expect(read.deliveries).toBeLessThan(5_000);
    expect(read.attempts).toBeLessThan(5_000);
  }, 120_000);

  it('a claim leases its deliveries with heap-only updates, adding no index entries; the outcome is recorded', async () => {
    schema = await createTestSchema('plans');
    store = await openPostgresStore({ url: TEST_DATABASE_URL, schema: schema.schema, pool: 2, log: pino({ level: 'silent' }) });
    const routing = createFanOut();
    await store.createListener(storedListener('l1', { project: P }));
    await store.appendEvents(P, Array.from({ length: 1_000 }, (_, i) => event(`hot-${i}`)), routing, Date.now());
    expect(await deliver(store, 1_000)).toBe(1_000);
    const delivered = await store.listDeliveries(P, { limit: 1_000 });
    expect(delivered.rows.filter((d) => d.status === 'succeeded' && !d.in_flight)).toHaveLength(1_000);
    await store.close();
    store = null;
    // Each delivery was updated twice: claimed, then finished. The finish changes `status`,
    // which partial indexes name, so it cannot be heap-only; the claim can, where its page had
    // room for the new version (pages are filled half at insert). Before migration 006 the claim
    // moved next_attempt_at, which deliveries_due indexes, and no update was heap-only.
    const stats = await settledStats(schema.schema, (st) => st.updated('deliveries') === 2_000);
    expect(stats.heapOnly('deliveries')).toBeGreaterThanOrEqual(500);
    expect(stats.heapOnly('deliveries')).toBeLessThanOrEqual(1_000);
  }, 120_000);

  it("a window replay reads each of the window's events about once, however many pages it takes", async () => {
    schema = await createTestSchema('plans');
    const open = () => openPostgresStore({ url: TEST_DATABASE_URL, schema: schema!.schema, pool: 2, log: pino({ level: 'silent' }) });
    store = await open();
    const routing = createFanOut();
    const since = Date.now();
    for (let b = 0; b < 20; b++) await store.appendEvents(P, Array.from({ length: 1_000 }, (_, i) => event(`w-${b}-${i}`)), routing, since + b);
    await store.createListener(storedListener('l1', { project: P }));
    await store.close();
    const before = await settledStats(schema.schema, (st) => st.inserted('events') === 20_000);
    store = await open();
    const none = Object.assign(() => [], { ordered: new Set<string>() });
    const window = { since, until: since + 1_000, onlyFailed: false, after: null, limit: 100_000, scanLimit: 100_000 };
    expect(await store.replay(P, 'l1', window, none, Date.now())).toEqual({ count: 0, truncated: false });
    await store.close();
    store = null;
    const scans = before.indexScans('events_project_received');
    const after = await settledStats(schema.schema, (st) => st.indexScans('events_project_received') > scans);
    // The walk takes 20 pages of 1,000, each event's batch sharing one receive time: a page that
    // starts within a receive time reads its earlier events again, about 40,000 entries in all.
    // Sorting the rest of the window for each page (the plan for a table not analysed yet) read
    // 420,000.
    expect(after.indexRead('events_project_received') - before.indexRead('events_project_received')).toBeLessThan(60_000);
  }, 120_000);

  it('a page of events or deliveries whose filters match nothing reads about scanLimit index entries, not the table', async () => {
    schema = await createTestSchema('plans');
    const open = () => openPostgresStore({ url: TEST_DATABASE_URL, schema: schema!.schema, pool: 2, log: pino({ level: 'silent' }) });
    store = await open();
    const routing = createFanOut();
    await store.createListener(storedListener('l1', { project: P }));
    const since = Date.now();
    for (let b = 0; b < 20; b++) await store.appendEvents(P, Array.from({ length: 1_000 }, (_, i) => event(`w-${b}-${i}`)), routing, since + b);
    await store.close();
    const before = await settledStats(schema.schema, (st) => st.inserted('deliveries') === 20_000);
    store = await open();
    const scanLimit = 1_000;
    const events = await store.listEvents(P, { limit: 51, order: 'desc', workbook: 'none', scanLimit });
    expect(events.rows).toEqual([]);
    expect(events.resume).not.toBeNull();
    expect((await store.listEvents(P, { limit: 51, type: 'none', scanLimit, after: events.resume })).rows).toEqual([]);
    const deliveries = await store.listDeliveries(P, { limit: 51, listener_id: 'l1', status: 'succeeded', scanLimit });
    expect(deliveries).toEqual({ rows: [], resume: expect.any(String) });
    expect((await store.listDeliveries(P, { limit: 51, status: 'succeeded', scanLimit })).rows).toEqual([]);
    expect((await store.listDeliveries(P, { limit: 51, order: 'desc' })).rows).toHaveLength(51);
    await store.close();
    store = null;
    const scans = before.indexScans('deliveries_project_id');
    const after = await settledStats(schema.schema, (st) => st.indexScans('deliveries_project_id') > scans);
    const read = (index: string) => after.indexRead(index) - before.indexRead(index);
    // Each page walks scanLimit entries and its probe as many again: two pages of events,
    // a listener's deliveries, then the project's twice (the last page fills at once). A sort
    // of what the walks find would read all 20,000 of each.
    expect(read('events_project_received')).toBeLessThan(5 * scanLimit);
    expect(read('deliveries_project_listener')).toBeLessThan(3 * scanLimit);
    expect(read('deliveries_project_id')).toBeLessThan(3 * scanLimit + 200);
    expect(after.seqRead('events') - before.seqRead('events')).toBe(0);
    expect(after.seqRead('deliveries') - before.seqRead('deliveries')).toBe(0);
  }, 120_000);

  it("moving a listener's backlog reads each window through the listener's index and the primary key, however many deliveries are held", async () => {
    schema = await createTestSchema('plans');
    const open = () => openPostgresStore({ url: TEST_DATABASE_URL, schema: schema!.schema, pool: 2, log: pino({ level: 'silent' }) });
    store = await open();
    const s = store;
    const routing = createFanOut();
    const l1 = storedListener('l1', { project: P, workbook: 'one' });
    const l2 = storedListener('l2', { project: P, workbook: 'two' });
    await s.createListener(l1);
    await s.createListener(l2);
    const append = (workbook: string, n: number, tag: string) =>
      s.appendEvents(P, Array.from({ length: n }, (_, i) => ({ ...event(`${tag}-${i}`), envelope: taskEnvelope({ id: `${tag}-${i}`, workbook, sequence: null }) })), routing, Date.now());
    const toggle = async (l: typeof l1, enabled: boolean) => {
      const { id: _id, project: _p, secret: _s, previous_secret: _ps, previous_secret_expires_at: _pe, disabled_reason: _d, created_at: _c, updated_at: _u, ...spec } = l;
      await store!.updateListener(P, l.id, { ...spec, enabled } as never, new Date().toISOString());
      while (await store!.moveListenerBacklogs(Date.now()));
    };
    // While the tables are small, the statements run often enough to be planned for good.
    for (let i = 0; i < 12; i++) {
      await append('one', 1, `small-${i}`);
      await toggle(l1, false);
      await toggle(l1, true);
    }
    // Then 20,000 of l2's deliveries are held, and l1 gets 3,000 to move.
    for (let b = 0; b < 20; b++) await append('two', 1_000, `held-${b}`);
    await toggle(l2, false);
    for (let b = 0; b < 3; b++) await append('one', 1_000, `moved-${b}`);
    await s.close();
    const before = await settledStats(schema.schema, (st) => st.inserted('deliveries') === 23_012);
    store = await open();
    await toggle(l1, false);
    await toggle(l1, true);
    const seen = await store.listDeliveries(P, { listener_id: 'l1', limit: 1 });
    expect(seen.rows[0].next_attempt_at).not.toBeNull();
    await store.close();
    store = null;
    const scans = before.indexScans('deliveries_project_listener');
    const after = await settledStats(schema.schema, (st) => st.indexScans('deliveries_project_listener') > scans);
    const read = (index: string) => after.indexRead(index) - before.indexRead(index);
    // Two passes over l1's 3,012 deliveries, a window of 1,000 at a time: about 3,000 entries
    // of the listener's index, then 6,000 (the first pass's versions are still there: a hold
    // changes an indexed column, so every index gets an entry), and about as many primary key
    // lookups (9,000 and 7,600 here). Joined to the held ones through deliveries_due, each
    // window would read its 20,000 entries or more.
    expect(read('deliveries_project_listener')).toBeLessThan(10_000);
    expect(read('deliveries_pkey')).toBeLessThan(10_000);
    expect(read('deliveries_due')).toBeLessThan(1_000);
    expect(after.seqRead('deliveries') - before.seqRead('deliveries')).toBe(0);
  }, 120_000);
});
