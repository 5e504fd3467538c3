import { decodeTime, isValid } from 'ulid';
import { expect, it } from 'vitest';
import { newId } from '../src/ids.js';

it('makes valid, unique, time-ordered ULIDs, increasing within one millisecond', () => {
  const now = Date.now();
  const ids = Array.from({ length: 5000 }, (_, i) => newId(now + Math.floor(i / 1000)));
  expect(ids.every((id) => isValid(id))).toBe(true);
  expect(new Set(ids).size).toBe(ids.length);
  expect([...ids].sort()).toEqual(ids);
  expect(decodeTime(ids[0])).toBe(now);
  expect(decodeTime(ids[4999])).toBe(now + 4);
});
