import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createFanOut } from '../src/fanout/fanout.js';
import type { ClaimedDelivery, Store } from '../src/store/store.js';
import { openPostgresStore } from '../src/store/postgres/index.js';
import { createTestSchema, sql, TEST_DATABASE_URL } from './helpers/backend.js';
import { storedListener, taskEnvelope } from './helpers/envelopes.js';

/*
 * A PostgreSQL database of an earlier release, with deliveries in flight, opened by this one:
 * the migrations it lacks are applied, and the deliveries keep their leases. The local server,
 * a schema of its own.
 */

const P = 'p1';

async function claimAt(s: Store, owner: string, now: number, leaseMs: number, share = 100): Promise<ClaimedDelivery[]> {
  const { claimed } = await s.recordAndClaim(owner, [], {
    owner,
    now,
    leaseMs,
    transports: ['http'],
    allot: (due) => new Map(due.map((p) => [p, share])),
    admit: (candidates) => ({ take: candidates.map((c) => c.id), defer: new Map(), changed: new Map() }),
  }, now);
  return claimed;
}

/** Runs `test` in a schema of its own, dropped after it, with the stores it opened closed. */
async function inSchema(test: (schema: string, open: () => Promise<Store>) => Promise<void>) {
  const schema = await createTestSchema('upgrade');
  const stores: Store[] = [];
  const open = async () => {
    const opened = await openPostgresStore({ url: TEST_DATABASE_URL, schema: schema.schema, pool: 2, log: pino({ level: 'silent' }) });
    stores.push(opened);
    return opened;
  };
  try {
    await test(schema.schema, open);
  } finally {
    // A store the test closed already answers its second close with an error, ignored.
    for (const opened of stores) await opened.close().catch(() => {});
    await schema.drop();
  }
}

describe('PostgreSQL: a database of an earlier release', () => {
  it('keeps the leases of deliveries claimed before migration 006: in flight until they end, then due again', async () => {
    await inSchema(async (s, open) => {
      let store = await open();
      await store.createListener(storedListener('l1', { project: P }));
      const now = Date.now();
      await store.appendEvents(P, ['a', 'b'].map((id) => ({ envelope: taskEnvelope({ id, sequence: null }), original: null, bodyHash: id })), createFanOut(), now);
      const claimed = await claimAt(store, 'old-process', now, 60_000, 1);
      expect(claimed).toHaveLength(1);
      const [leased] = claimed;
      await store.close();
      // The schema as the release before migration 006 left it: the lease's end in next_attempt_at.
      const [{ until }] = await sql(`SELECT leased_until AS until FROM "${s}".deliveries WHERE id = '${leased.id}'`);
      expect(Number(until)).toBeGreaterThan(now + 60_000);
      await sql(`UPDATE "${s}".deliveries SET next_attempt_at = leased_until WHERE leased_until IS NOT NULL;
        ALTER TABLE "${s}".deliveries DROP COLUMN leased_until, RESET (fillfactor);
        DELETE FROM "${s}".schema_migrations WHERE version = 6`);

      store = await open();
      expect(await sql(`SELECT name FROM "${s}".schema_migrations WHERE version = 6`)).toEqual([{ name: '006_claims_heap_only.sql' }]);
      expect(await store.getDelivery(P, leased.id)).toMatchObject({ status: 'pending', in_flight: true, next_attempt_at: Number(until) });
      // Before the lease ends, a claim takes only the other delivery; after it, the leased one.
      const other = await claimAt(store, 'new-process', now + 1_000, 60_000);
      expect(other.map((d) => d.id)).not.toContain(leased.id);
      expect(other).toHaveLength(1);
      expect(await claimAt(store, 'new-process', Number(until) - 1, 60_000)).toEqual([]);
      expect((await claimAt(store, 'new-process', Number(until), 60_000)).map((d) => d.id)).toEqual([leased.id]);
    });
  }, 60_000);

  it('gives every listener of a database before migration 007 its gate row, keeping the states it had', async () => {
    await inSchema(async (s, open) => {
      let store = await open();
      for (const id of ['judged', 'new']) await store.createListener(storedListener(id, { project: P }));
      // The schema as the release before 007 left it: a row only where the gate had judged.
      await sql(`DELETE FROM "${s}".listener_gates WHERE listener_id = 'new';
        UPDATE "${s}".listener_gates SET breaker = 'open', probe_at = 5000, window_start = 1000, window_attempts = 12, window_failures = 11;
        ALTER TABLE "${s}".listener_gates ALTER COLUMN breaker SET NOT NULL, ALTER COLUMN window_start DROP DEFAULT,
          ALTER COLUMN window_attempts DROP DEFAULT, ALTER COLUMN window_failures DROP DEFAULT;
        DELETE FROM "${s}".schema_migrations WHERE version = 7`);
      await store.close();

      store = await open();
      expect(await sql(`SELECT name FROM "${s}".schema_migrations WHERE version = 7`)).toEqual([{ name: '007_gate_rows_with_listeners.sql' }]);
      expect(await sql(`SELECT listener_id, breaker FROM "${s}".listener_gates ORDER BY listener_id`)).toEqual([
        { listener_id: 'judged', breaker: 'open' },
        { listener_id: 'new', breaker: null },
      ]);
      // A blank row is no state: the API shows the judged listener's only.
      expect(Object.fromEntries(await store.listenerGates(P, ['judged', 'new']))).toEqual({
        judged: expect.objectContaining({ breaker: 'open', probe_at: 5000, window_attempts: 12, window_failures: 11 }),
      });
      // Deliveries to the listener with the blank row are claimed as before.
      const now = Date.now();
      await store.appendEvents(P, [{ envelope: taskEnvelope({ id: 'a', sequence: null }), original: null, bodyHash: 'a' }], createFanOut(), now);
      expect((await claimAt(store, 'new-process', now, 60_000)).map((d) => d.listenerId).sort()).toEqual(['judged', 'new']);
    });
  }, 60_000);
  it('sums the minutes it kept into hours when migration 009 adds the hourly rollups', async () => {
    await inSchema(async (s, open) => {
      let store = await open();
      await store.close();
      const HOUR = 3_600_000;
      const H = Math.floor(Date.now() / HOUR) * HOUR;
      const latency = Array.from({ length: 12 }, (_, i) => `latency_${i}`);
      // Minutes as the release before 009 kept them: two listeners over two hours, no hourly table.
      const rows = ([['l1', H - 60_000, 2], ['l1', H, 3], ['l1', H + 59 * 60_000, 4], ['l2', H + 60_000, 5]] as const)
        .map(([listener, minute, succeeded]) => `('${listener}', '${P}', ${minute}, ${succeeded}, 1, 0, ${latency.map((_, i) => (i === 2 ? 1 : 0)).join(', ')})`);
      await sql(`INSERT INTO "${s}".listener_rollups (listener_id, project, minute, succeeded, failed, retried, ${latency.join(', ')})
        VALUES ${rows.join(', ')};
        DROP TABLE "${s}".listener_rollups_hourly; DELETE FROM "${s}".schema_migrations WHERE version = 9`);

      store = await open();
      expect(await sql(`SELECT name FROM "${s}".schema_migrations WHERE version = 9`)).toEqual([{ name: '009_hourly_rollups.sql' }]);
      const hours = await store.rollups(P, { listenerId: 'l1', since: 0, hours: true });
      expect(hours.map(({ at, succeeded, failed, latency: l }) => [at, succeeded, failed, l[2]])).toEqual([
        [H - HOUR, 2, 1, 1],
        [H, 7, 2, 2],
      ]);
      expect((await store.rollups(P, { since: H, hours: true })).map(({ at, succeeded }) => [at, succeeded])).toEqual([[H, 12]]);
      // Health from half an hour before H: the minutes of (H - 30 min, H), then the hours from H.
      expect(Object.fromEntries([...(await store.rollupTotals(P, ['l1', 'l2'], H - 30 * 60_000))].map(([id, t]) => [id, t.succeeded]))).toEqual({ l1: 9, l2: 5 });
    });
  }, 60_000);
});
