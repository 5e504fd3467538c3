/*
 * The dispatcher's room for deliveries handed over at commit (Handoff in src/store/store.ts),
 * shared by the thread that commits them and the dispatcher's, which may be another thread: two
 * integers in a SharedArrayBuffer, read and changed with Atomics.
 *   - free: slots a hand-over may take. It starts at RELAY_MAX_IN_FLIGHT less the reserve the
 *     admission gate keeps for another project's first delivery; every delivery the dispatcher
 *     holds (handed over or claimed) takes one until its outcome is recorded.
 *   - open: whether hand-overs are taken at all. The dispatcher opens it only while its last
 *     claim left nothing due in the queue, so that a hand-over never overtakes deliveries that
 *     wait there (each project gets its share through the claim meanwhile).
 */

import type { ClaimedDelivery, Handoff } from '../store/store.js';

const FREE = 0;
const OPEN = 1;

export interface HandoffRoom {
  readonly buffer: SharedArrayBuffer;
  /** Takes one slot when open and free; false otherwise. */
  take(): boolean;
  /** Gives `count` slots back (or takes them, when negative). */
  add(count: number): void;
  open(yes: boolean): void;
}

/** A closed room with no slots; the dispatcher that uses it gives it its slots when it starts. */
export function newHandoffBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT);
}

/** The room over a buffer another thread made. */
export function handoffRoomOf(buffer: SharedArrayBuffer): HandoffRoom {
  const a = new Int32Array(buffer);
  return {
    buffer,
    take() {
      if (Atomics.load(a, OPEN) === 0) return false;
      for (;;) {
        const free = Atomics.load(a, FREE);
        if (free <= 0) return false;
        if (Atomics.compareExchange(a, FREE, free, free - 1) === free) return true;
      }
    },
    add(count) {
      if (count !== 0) Atomics.add(a, FREE, count);
    },
    open(yes) {
      Atomics.store(a, OPEN, yes ? 1 : 0);
    },
  };
}

/** The Handoff a store uses to hand fresh deliveries to a dispatcher through its room. */
export function handoffThrough(
  target: { owner: string; leaseMs: number; room: SharedArrayBuffer },
  deliver: (deliveries: ClaimedDelivery[]) => void,
): Handoff {
  const room = handoffRoomOf(target.room);
  return {
    owner: target.owner,
    leaseMs: target.leaseMs,
    take: () => room.take(),
    giveBack: (count) => room.add(count),
    deliver,
  };
}
