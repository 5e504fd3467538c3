import { defineConfig } from 'vitest/config';

/**
 * The tests that run a second time with RELAY_TEST_BACKEND=postgres, after the parallel SQLite
 * run: integration, crash and engine tests that start relays through the test helpers, which
 * give each relay (each data folder) a schema of its own on the local PostgreSQL.
 *
 * Left out: pure unit tests; store-contract.test.ts (it runs both backends itself) and the
 * tests that choose PostgreSQL themselves; tests that open the SQLite file with better-sqlite3
 * or test SQLite-only behaviour (amqp-ingest, busy-database, cli, crash, engine-commit-retry,
 * fanout, listener-headers, listeners, secrets-at-rest, store-sqlite); tests that start relays
 * without the helpers and so stay on SQLite (engine-restart, failure-log, log-format); and the
 * dashboard's browser test, whose answers come from the API the files here cover.
 */
export const POSTGRES_RUN = [
  'admission',
  'amqp-delivery',
  'api-errors',
  'cli-engine',
  'cli-esi-import',
  'cli-events',
  'cli-listen',
  'cli-output',
  'cli-verify',
  'delivery',
  'delivery-options',
  'dispatch-thread',
  'engine',
  'engine-crash',
  'engine-http-credentials',
  'engine-limits',
  'engine-operations',
  'engine-workbooks',
  'envelope',
  'exec-relay',
  'filter-budget',
  'list-order',
  'listener-backlogs',
  'page-bytes',
  'openapi',
  'oslo-interop',
  'replay-chunks',
  'request-limits',
  'restart-leases',
  'stats',
  'templates',
  'transport-modules',
].map((name) => `test/${name}.test.ts`);

export default defineConfig({
  test: {
    include: POSTGRES_RUN,
    env: { RELAY_TEST_BACKEND: 'postgres' },
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
