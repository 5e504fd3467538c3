import pg from 'pg';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createFanOut } from '../src/fanout/fanout.js';
import type { AppendedEvent, NewEvent, Store } from '../src/store/store.js';
import { openPostgresStore } from '../src/store/postgres/index.js';
import { createTestSchema, TEST_DATABASE_URL, type TestSchema } from './helpers/backend.js';
import { storedListener, taskEnvelope } from './helpers/envelopes.js';

/*
 * The PostgreSQL store's group commit: appends of one project take turns, and the calls that
 * wait meanwhile share the project's next transaction; appends of other projects go on at the
 * same time. The local server, a schema of its own; an append is held up by a transaction of
 * the test's that holds the sequence counter the append needs.
 */

let schema: TestSchema | null = null;
let store: Store | null = null;
let blocker: pg.Client | null = null;

afterEach(async () => {
  await blocker?.end().catch(() => {});
  await store?.close();
  await schema?.drop();
  blocker = null;
  store = null;
  schema = null;
});

const event = (id: string, execution: string): NewEvent => ({
  envelope: taskEnvelope({ id, execution_id: execution, sequence: null }),
  original: null,
  bodyHash: id,
});

/** The relay's connections of this schema's test that wait for a lock right now. */
async function waitingOnLocks(admin: pg.Client): Promise<number> {
  const { rows } = await admin.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
     WHERE application_name = 'callback-relay' AND datname = current_database() AND wait_event_type = 'Lock'`,
  );
  return rows[0].n;
}

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('PostgreSQL group commit of appends', () => {
  it('runs one append transaction per project: calls that wait share the next one, other projects go on meanwhile', async () => {
    schema = await createTestSchema('groupcommit');
    store = await openPostgresStore({ url: TEST_DATABASE_URL, schema: schema.schema, pool: 10, log: pino({ level: 'silent' }) });
    const s = store;
    const routing = createFanOut();
    await s.createListener(storedListener('la', { project: 'pa' }));
    await s.createListener(storedListener('lb', { project: 'pb' }));

    // The test's transaction makes project pa's counter of execution x1 and keeps it uncommitted.
    blocker = new pg.Client({ connectionString: TEST_DATABASE_URL, options: `-c search_path=${schema.schema}` });
    await blocker.connect();
    await blocker.query('BEGIN');
    await blocker.query(`INSERT INTO execution_sequences (project, execution_id, last_sequence) VALUES ('pa', 'x1', 0)`);
    const admin = blocker;
    const watcher = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await watcher.connect();
    try {
      // The first append of pa waits for that counter inside its transaction.
      const first = s.appendEvents('pa', [event('a-1', 'x1')], routing, 1_000);
      await until('the first append waits for the counter', async () => (await waitingOnLocks(watcher)) === 1);
      // Two more calls of pa come meanwhile, with later receive times: they wait in the relay,
      // not in transactions of their own.
      const second = s.appendEvents('pa', [event('a-2', 'x1')], routing, 2_000);
      const third = s.appendEvents('pa', [event('a-3', 'x2')], routing, 3_000);
      // Project pb is not held up by pa's turn.
      const other = await s.appendEvents('pb', [event('b-1', 'x1')], routing, 4_000);
      expect(other).toEqual([{ id: 'b-1', duplicate: false, deliveries: 1, handed: 0 }]);
      expect(await waitingOnLocks(watcher)).toBe(1);
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
    } finally {
      await watcher.end();
    }
  });
});
