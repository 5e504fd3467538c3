import { defineConfig } from 'vitest/config';

// The tests that disturb shared services (a broker connection closed from the broker's side,
// a database restarted): one file at a time, after the parallel run, so they break no other test.
export default defineConfig({
  test: {
    include: ['test/**/*.serial.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
