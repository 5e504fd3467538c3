import { defineConfig } from 'vitest/config';

// Test files run in parallel, except those that disturb shared services (closing the broker's
// connections, restarting the database): `*.serial.test.ts`, run after these by
// vitest.serial.config.ts, one file at a time.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/**/*.serial.test.ts', '**/node_modules/**'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
