import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { migrate } from '../src/store/postgres/migrate.js';
import { migratedChannel } from '../src/store/postgres/notify.js';
import { createTestSchema, sql, TEST_DATABASE_URL, type TestSchema } from './helpers/backend.js';
import { killAllRelayChildren, startRelayChild, type RelayChild } from './helpers/multiprocess.js';
import { tempDir } from './helpers/relay.js';
import { bodyServer, waitUntil } from './helpers/relay-process.js';

/*
 * A later release migrates a PostgreSQL database while a relay of this one runs on it: the
 * running relay stops (its attempts in flight finish and are recorded first), whether it
 * hears the migrator's NOTIFY or, having missed it, reads the migrations when its connection
 * comes back. Real relay processes (`node dist/main.js`), the local server, a schema each.
 */

afterAll(killAllRelayChildren);

const FUTURE = '999_from_a_later_release.sql';
const ANSWER_AFTER_MS = 1_500;

/** A receiver that answers 200 after ANSWER_AFTER_MS; counts what it answered. */
async function slowReceiver() {
  const answered: string[] = [];
  const server = bodyServer((req, res) => {
    setTimeout(() => {
      answered.push(String(req.headers['webhook-id']));
      res.end('ok');
    }, ANSWER_AFTER_MS);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  return { url, answered, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** A relay on `schema` with `count` deliveries in flight to a slow receiver. */
async function relayWithDeliveriesInFlight(schema: TestSchema, count: number, env: Record<string, string> = {}) {
  const receiver = await slowReceiver();
  const relay = await startRelayChild({
    ...schema.env,
    RELAY_DATA_DIR: tempDir('relay-superseded-'),
    RELAY_ALLOW_LOOPBACK: 'true',
    RELAY_SHUTDOWN_GRACE_MS: '10000',
    ...env,
  });
  const listener = await relay.api('POST', '/v1/listeners', {
    workbook: '*',
    event_types: ['NOTIFICATION'],
    events: ['superseded.test'],
    callback: { url: receiver.url, timeout_ms: 5_000 },
  });
  expect(listener.status, listener.text).toBe(201);
  const posted = await relay.api('POST', '/v1/events', { events: Array.from({ length: count }, (_, i) => ({ id: `e${i}`, type: 'superseded.test', data: { i } })) });
  expect(posted.status, posted.text).toBe(202);
  relay.exitExpected = true;
  await waitUntil(
    async () => (await sql(`SELECT 1 FROM "${schema.schema}".deliveries WHERE lease_owner IS NOT NULL`)).length === count,
    10_000,
    () => `${count} deliveries in flight`,
  );
  return { relay, receiver };
}

/** What the relay logged and did once it learned of the later release. */
async function expectStoppedForLaterRelease(relay: RelayChild, schema: TestSchema, delivered: number) {
  const exit = await relay.exited;
  expect(exit, relay.output).toEqual({ code: 2, signal: null });
  const fatal = relay.logs.filter((l) => l.level >= 60);
  expect(fatal, relay.output).toHaveLength(1);
  expect(fatal[0].msg).toContain(`was migrated by a later release of callback-relay: it has migration ${FUTURE}`);
  expect(fatal[0].migrations).toEqual([FUTURE]);
  expect(relay.stderr).toContain('This process stops.');
  expect(relay.logs.some((l) => l.msg === 'shutting down' && l.reason === 'the database was migrated by a later release')).toBe(true);
  expect(relay.logs.some((l) => l.msg === 'stopped')).toBe(true);
  // The attempts in flight finished and were recorded before the process ended.
  const rows = await sql<{ status: string; n: string }>(`SELECT status, count(*) AS n FROM "${schema.schema}".deliveries GROUP BY status`);
  expect(rows).toEqual([{ status: 'succeeded', n: String(delivered) }]);
}

describe('PostgreSQL: a later release migrates the database while a relay runs', () => {
  it('the relay hears the migrator, lets its attempts in flight finish, and stops with exit code 2', async () => {
    const schema = await createTestSchema('superseded');
    const { relay, receiver } = await relayWithDeliveriesInFlight(schema, 3);
    try {
      // As a later release's migrator does: the migration and its row committed, then the NOTIFY.
      await sql(`INSERT INTO "${schema.schema}".schema_migrations (version, name) VALUES (999, $1)`, [FUTURE]);
      await sql('SELECT pg_notify($1, $2)', [migratedChannel(schema.schema), FUTURE]);
      await expectStoppedForLaterRelease(relay, schema, 3);
      expect(receiver.answered).toHaveLength(3);
    } finally {
      await receiver.close();
      await schema.drop();
    }
  });

  it('a relay whose connections were cut when the migration came reads the migrations on reconnecting, and stops', async () => {
    const schema = await createTestSchema('superseded');
    // The relay's own login, so that only its connections are cut.
    const role = schema.schema.replace(/^t_/, 'r_').slice(0, 60);
    await sql(`CREATE ROLE "${role}" LOGIN SUPERUSER`);
    const url = TEST_DATABASE_URL.replace('postgres@', `${role}@`);
    const { relay, receiver } = await relayWithDeliveriesInFlight(schema, 2, { RELAY_DATABASE_URL: url });
    try {
      await sql(`INSERT INTO "${schema.schema}".schema_migrations (version, name) VALUES (999, $1)`, [FUTURE]);
      const cut = await sql('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [role]);
      expect(cut.length).toBeGreaterThan(0);
      await expectStoppedForLaterRelease(relay, schema, 2);
      // The cut connections were logged each in a line of its own size, not with the whole client.
      const failed = relay.logs.filter((l) => l.msg.startsWith('an idle PostgreSQL connection failed'));
      for (const l of failed) expect((l.err as { client?: unknown }).client).toBeUndefined();
      expect(relay.stdoutLines.filter((l) => l.length > 4_000)).toEqual([]);
    } finally {
      await receiver.close();
      await schema.drop();
      await sql(`DROP ROLE IF EXISTS "${role}"`);
    }
  });

  it('the migrator says what it applied on the schema’s channel', async () => {
    const schema = await createTestSchema('superseded');
    const c = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await c.connect();
    try {
      const heard: Array<string | undefined> = [];
      c.on('notification', (n) => heard.push(n.payload));
      await c.query(`LISTEN "${migratedChannel(schema.schema)}"`);
      const applied = await migrate({ url: TEST_DATABASE_URL, schema: schema.schema });
      expect(applied.length).toBeGreaterThan(0);
      await waitUntil(() => heard.length > 0, 5_000, () => 'a notification on the migrated channel');
      expect(heard).toEqual([applied.at(-1)]);
      // Up to date: nothing applied, nothing said.
      expect(await migrate({ url: TEST_DATABASE_URL, schema: schema.schema })).toEqual([]);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(heard).toHaveLength(1);
    } finally {
      await c.end();
      await schema.drop();
    }
  });
});

