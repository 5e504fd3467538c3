import { defineConfig } from 'vitest/config';

// The tests that disturb shared services (a broker connection closed from the broker's side,
// the PostgreSQL server restarted): one file at a time, after the parallel runs, so they break
// no other test. The crash test of the AMQP consumer runs again on PostgreSQL, as the parallel
// files of vitest.postgres.config.ts do; the others pick their database themselves.
export default defineConfig({
  test: {
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    projects: [
      { extends: true, test: { name: 'serial', include: ['test/**/*.serial.test.ts'] } },
      {
        extends: true,
        test: {
          name: 'serial-postgres',
          include: ['test/amqp-ingest-crash.serial.test.ts'],
          env: { RELAY_TEST_BACKEND: 'postgres' },
        },
      },
    ],
  },
});
