import crypto from 'node:crypto';
import { monotonicFactory } from 'ulid';

// ulid's default source asks the OS for one random byte per character (tens of microseconds
// per id); a pool refilled 4 KiB at a time keeps ids cheap on the ingest and delivery paths.
const pool = Buffer.alloc(4096);
let offset = pool.length;
function random(): number {
  if (offset + 4 > pool.length) {
    crypto.randomFillSync(pool);
    offset = 0;
  }
  const value = pool.readUInt32LE(offset) / 2 ** 32;
  offset += 4;
  return value;
}

/**
 * Record ids: ULIDs, time-ordered (monotonic within a millisecond), so ids sort by creation
 * and keyset pages and pruning can walk them.
 */
export const newId: (now?: number) => string = monotonicFactory(random);
