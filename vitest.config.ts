import { defineConfig } from 'vitest/config';

// Test files run in parallel on SQLite (RELAY_TEST_BACKEND unset; the store contract suite runs
// both backends itself). `npm test` then runs the files of vitest.postgres.config.ts again on
// PostgreSQL, and last those that disturb shared services (closing the broker's connections,
// restarting the database): `*.serial.test.ts`, by vitest.serial.config.ts, one file at a time.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/**/*.serial.test.ts', '**/node_modules/**'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
