import pg from 'pg';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createFanOut } from '../src/fanout/fanout.js';
import type { ClaimOptions, NewEvent, Store } from '../src/store/store.js';
import { openPostgresStore } from '../src/store/postgres/index.js';
import { createTestSchema, sql, TEST_DATABASE_URL, type TestSchema } from './helpers/backend.js';
import { storedListener, taskEnvelope } from './helpers/envelopes.js';

/*
 * What a PostgreSQL claim meets from transactions beside it, which SQLite's one writer rules
 * out: an event removed under a delivery (a replay racing the pruner: no foreign key joins
 * them), and a listener enabled between the claim's pick and its settle. The local server, a
 * schema of its own, the store's own statements.
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

const event = (id: string): NewEvent => ({ envelope: taskEnvelope({ id, sequence: null }), original: null, bodyHash: id });

function claimAll(now: number): ClaimOptions {
  return {
    owner: 'races-test',
    now,
    leaseMs: 60_000,
    transports: ['http'],
    allot: (due) => new Map(due.map((p) => [p, 100])),
    admit: (candidates) => ({ take: candidates.map((c) => c.id), defer: new Map(), changed: new Map() }),
  };
}

async function openStore(): Promise<Store> {
  schema = await createTestSchema('races');
  store = await openPostgresStore({ url: TEST_DATABASE_URL, schema: schema.schema, pool: 3, log: pino({ level: 'silent' }) });
  return store;
}

const deliveryRows = (s: TestSchema) =>
  sql<{ event_id: string; status: string; lease_owner: string | null; next_attempt_at: string | null; last_error: string | null }>(
    'SELECT e.id AS event_id, d.status, d.lease_owner, d.next_attempt_at, d.last_error FROM deliveries d LEFT JOIN events e ON e.seq = d.event_seq ORDER BY d.id',
    [],
    s.schema,
  );

describe('PostgreSQL claims beside other transactions', () => {
  it('cancels a delivery whose event is gone and sends the others of its batch', async () => {
    const s = await openStore();
    await s.createListener(storedListener('l1', { project: P }));
    await s.appendEvents(P, [event('gone'), event('kept')], createFanOut(), Date.now());
    // What the pruner leaves when a replay made a delivery of the event it was removing.
    await sql(`DELETE FROM events WHERE id = 'gone'`, [], schema!.schema);

    const now = Date.now();
    const { claimed } = await s.recordAndClaim('races-test', [], claimAll(now), now);
    expect(claimed.map((d) => JSON.parse(d.envelopeJson).id)).toEqual(['kept']);
    const rows = await deliveryRows(schema!);
    expect(rows).toHaveLength(2);
    const orphan = rows.find((r) => r.event_id === null)!;
    expect(orphan).toMatchObject({ status: 'cancelled', lease_owner: null, last_error: 'its event was pruned before it was sent' });
    expect(rows.find((r) => r.event_id === 'kept')).toMatchObject({ status: 'pending', lease_owner: 'races-test' });
  });

  it('leaves a delivery due when its listener is enabled while a claim that saw it disabled is settling', async () => {
    const s = await openStore();
    await s.createListener(storedListener('l1', { project: P }));
    await s.appendEvents(P, [event('retry')], createFanOut(), Date.now());
    // Disabled while its delivery was in flight: the delivery came back pending with its next
    // try set (disabling holds only what waits unleased).
    await sql(`UPDATE listeners SET enabled = false`, [], schema!.schema);

    // Another session enables it and has not committed yet.
    const other = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await other.connect();
    try {
      await other.query(`SET search_path TO "${schema!.schema}"`);
      await other.query('BEGIN');
      await other.query('UPDATE listeners SET enabled = true');

      const now = Date.now();
      let settled = false;
      const claiming = s.recordAndClaim('races-test', [], claimAll(now), now).finally(() => (settled = true));
      // The claim picks the delivery of a listener it reads as disabled, then decides its hold
      // on the listener as it is: a row being changed is skipped, not waited for (a PATCH that
      // disables waits for the claim's deliveries), so the claim settles before the commit.
      for (let i = 0; i < 200 && !settled; i++) await new Promise((r) => setTimeout(r, 25));
      expect(settled).toBe(true);
      await other.query('COMMIT');
      const { claimed } = await claiming;
      expect(claimed).toEqual([]);
    } finally {
      await other.end();
    }
    // The enabling session released nothing (its delivery was not held when it looked), so the
    // delivery must still be due: held now, nothing would ever send it.
    const [row] = await deliveryRows(schema!);
    expect(row).toMatchObject({ event_id: 'retry', status: 'pending', lease_owner: null });
    expect(row.next_attempt_at).not.toBeNull();
    const later = Date.now();
    const { claimed } = await s.recordAndClaim('races-test', [], claimAll(later), later);
    expect(claimed.map((d) => JSON.parse(d.envelopeJson).id)).toEqual(['retry']);
  });

  it('holds a due delivery of a disabled listener, unscheduled, until the listener is enabled', async () => {
    const s = await openStore();
    await s.createListener(storedListener('l1', { project: P }));
    await s.appendEvents(P, [event('waits')], createFanOut(), Date.now());
    await sql(`UPDATE listeners SET enabled = false`, [], schema!.schema);

    const now = Date.now();
    const { claimed } = await s.recordAndClaim('races-test', [], claimAll(now), now);
    expect(claimed).toEqual([]);
    const [row] = await deliveryRows(schema!);
    expect(row).toMatchObject({ event_id: 'waits', status: 'pending', lease_owner: null, next_attempt_at: null });
  });
});
