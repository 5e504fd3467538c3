import pg from 'pg';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createFanOut } from '../src/fanout/fanout.js';
import { FilterBudgetError, meteredRouting, newFilterMeter } from '../src/fanout/filter-budget.js';
import type { StoredListener } from '../src/records/listener.js';
import type { AppendedEvent, NewEvent, Store } from '../src/store/store.js';
import { openPostgresStore } from '../src/store/postgres/index.js';
import { createTestSchema, TEST_DATABASE_URL, type TestSchema } from './helpers/backend.js';
import { storedListener, taskEnvelope } from './helpers/envelopes.js';
import { eventually } from './helpers/spawn-relay.js';

/*
 * The PostgreSQL store's appends. Group commit: while an append of a project runs, the project's small
 * calls wait and share its next transaction, a call of many events starts beside it, and
 * appends of other projects go on at the same time. The local server, a schema of its own; an
 * append is held up by a transaction of the test's that holds the sequence counter it needs.
 */

let schema: TestSchema | null = null;
let store: Store | null = null;
let blocker: pg.Client | null = null;
let watching: pg.Client | null = null;
let otherStore: Store | null = null;

afterEach(async () => {
  await watching?.end().catch(() => {});
  await blocker?.end().catch(() => {});
  await otherStore?.close();
  otherStore = null;
  await store?.close();
  await schema?.drop();
  blocker = null;
  watching = null;
  store = null;
  schema = null;
});

const event = (id: string, execution: string): NewEvent => ({
  envelope: taskEnvelope({ id, execution_id: execution, sequence: null }),
  original: null,
  bodyHash: id,
});

/** The connections that wait for the test's transaction (on the backend `blocker`) right now. */
async function waitingFor(watcher: pg.Client, blocker: number): Promise<number> {
  const { rows } = await watcher.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))',
    [blocker],
  );
  return rows[0].n;
}

/**
 * A store of a fresh schema with listeners of projects pa and pb, and the test's transaction
 * holding project pa's (uncommitted) sequence counter of execution x1. The first append of pa
 * on x1 waits for it inside its transaction; the test commits it with `admin`.
 */
async function heldCounter(more: StoredListener[] = []) {
  schema = await createTestSchema('groupcommit');
  const open = () => openPostgresStore({ url: TEST_DATABASE_URL, schema: schema!.schema, pool: 10, log: pino({ level: 'silent' }) });
  const s = (store = await open());
  await s.createListener(storedListener('la', { project: 'pa' }));
  for (const l of more) await s.createListener(l);
  await s.createListener(storedListener('lb', { project: 'pb' }));
  const admin = (blocker = new pg.Client({ connectionString: TEST_DATABASE_URL, options: `-c search_path=${schema.schema}` }));
  await admin.connect();
  await admin.query('BEGIN');
  await admin.query(`INSERT INTO execution_sequences (project, execution_id, last_sequence) VALUES ('pa', 'x1', 0)`);
  const { rows } = await admin.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const watcher = (watching = new pg.Client({ connectionString: TEST_DATABASE_URL }));
  await watcher.connect();
  const waitingOnLocks = () => waitingFor(watcher, rows[0].pid);
  const routing = createFanOut();
  const first = s.appendEvents('pa', [event('a-1', 'x1')], routing, 1_000);
  await eventually(async () => (await waitingOnLocks()) === 1, 10_000, 'the first append to wait for the counter');
  return { s, routing, admin, waitingOnLocks, first, open };
}

describe('PostgreSQL group commit of appends', () => {
  it("gathers a project's small calls behind its running append, other projects go on meanwhile", async () => {
    const { s, routing, admin, waitingOnLocks, first } = await heldCounter();
    // Two more calls of pa come meanwhile, with later receive times: they wait in the relay,
    // not in transactions of their own.
    // Each with a routing of its own, as every ingest request has (its $regex work metered).
    const second = s.appendEvents('pa', [event('a-2', 'x1')], meteredRouting(routing, newFilterMeter()), 2_000);
    const third = s.appendEvents('pa', [event('a-3', 'x2')], meteredRouting(routing, newFilterMeter()), 3_000);
    // Project pb is not held up by pa's append.
    const other = await s.appendEvents('pb', [event('b-1', 'x1')], routing, 4_000);
    expect(other).toEqual([{ id: 'b-1', duplicate: false, deliveries: 1, handed: 0 }]);
    expect(await waitingOnLocks()).toBe(1);
    let settled = 0;
    for (const p of [first, second, third]) void p.then(() => settled++, () => settled++);
    await new Promise((r) => setTimeout(r, 200));
    expect(settled).toBe(0);

    await admin.query('COMMIT');
    const answers: AppendedEvent[][] = await Promise.all([first, second, third]);
    expect(answers.map((a) => a[0].duplicate)).toEqual([false, false, false]);
    const stored = await Promise.all(['a-1', 'a-2', 'a-3'].map((id) => s.getEvent('pa', id)));
    // The first went alone; the two that waited went in one transaction, which takes the
    // latest receive time of its calls.
    expect(stored.map((e) => e!.received_at)).toEqual([1_000, 3_000, 3_000]);
    expect(stored.map((e) => e!.envelope.sequence)).toEqual([1, 2, 1]);
    expect((await s.getEvent('pb', 'b-1'))!.received_at).toBe(4_000);
  });

  it('refuses only the call of a shared transaction whose $regex work runs over its budget', async () => {
    const { s, routing, admin, first } = await heldCounter([storedListener('lr', { project: 'pa', filter: { type: { $regex: '^TASK' } } })]);
    const spent = s.appendEvents('pa', [event('a-2', 'x1')], meteredRouting(routing, newFilterMeter(-1)), 2_000);
    const fine = s.appendEvents('pa', [event('a-3', 'x2')], meteredRouting(routing, newFilterMeter()), 3_000);
    const refusal = spent.then(() => null, (err: unknown) => err);
    await admin.query('COMMIT');
    expect(await refusal).toBeInstanceOf(FilterBudgetError);
    expect((await first)[0]).toMatchObject({ duplicate: false, deliveries: 2 });
    expect((await fine)[0]).toMatchObject({ duplicate: false, deliveries: 2 });
    expect(await s.getEvent('pa', 'a-2')).toBeNull();
    expect((await s.getEvent('pa', 'a-3'))!.received_at).toBe(3_000);
  });

  it('starts a call of many events of a project beside its running append', async () => {
    const { s, routing, admin, waitingOnLocks, first } = await heldCounter();
    let settled = false;
    void first.then(() => (settled = true), () => (settled = true));
    // 150 events of other executions: enough for a transaction of their own, which does not
    // wait for the held one.
    const many = Array.from({ length: 150 }, (_, i) => event(`m-${i}`, `y${i % 7}`));
    const answer = await s.appendEvents('pa', many, routing, 2_000);
    expect(answer.filter((a) => !a.duplicate && a.deliveries === 1)).toHaveLength(150);
    expect(settled).toBe(false);
    expect(await waitingOnLocks()).toBe(1);

    await admin.query('COMMIT');
    expect((await first)[0].duplicate).toBe(false);
    expect((await s.getEvent('pa', 'a-1'))!.received_at).toBe(1_000);
    expect((await s.getEvent('pa', 'm-149'))!.envelope.sequence).toBe(22);
  });
});

describe('PostgreSQL appends of one event id from two processes', () => {
  it('stores the event once: the append that finds it stored meanwhile runs again and answers a duplicate', async () => {
    const { routing, admin, waitingOnLocks, first, open } = await heldCounter();
    // Another process appends the same event. Its append looks the id up before it waits for
    // the counter, so it finds it new, and the first append stores it meanwhile.
    const other = (otherStore = await open());
    const second = other.appendEvents('pa', [event('a-1', 'x1')], routing, 2_000);
    await eventually(async () => (await waitingOnLocks()) === 2, 10_000, 'both appends to wait for the counter');

    await admin.query('COMMIT');
    const answers = await Promise.all([first, second]);
    expect(answers.map((a) => a[0].duplicate).sort()).toEqual([false, true]);
    expect(answers.map((a) => a[0].deliveries).sort()).toEqual([0, 1]);
    const stored = (await other.listEvents('pa', { limit: 10 })).rows;
    expect(stored.map((e) => [e.envelope.id, e.envelope.sequence])).toEqual([['a-1', 1]]);
    expect((await other.listDeliveries('pa', { limit: 10 })).rows).toHaveLength(1);
    // The append that ran again gave back the number it took: the next event of x1 is 2.
    await other.appendEvents('pa', [event('a-2', 'x1')], routing, 3_000);
    expect((await other.getEvent('pa', 'a-2'))!.envelope.sequence).toBe(2);
  });
});
