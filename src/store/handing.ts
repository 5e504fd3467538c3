import type { OriginalMessage } from '../records/event.js';
import type { ClaimedDelivery, FanOut, Handoff } from './store.js';

/**
 * The deliveries one append transaction hands over (see Handoff in store.ts), for both
 * backends: `offer` while writing, then `committed` after the commit, or `abandoned` when the
 * transaction did not commit or runs again.
 */
export interface Handing {
  /** The owner the handed deliveries are leased to. */
  readonly owner: string | null;
  /**
   * Offers a fresh delivery that is due now: answers its lease's end when the dispatcher takes
   * it (write it leased to `owner` until then), or null when it goes to the queue.
   */
  offer(d: { id: string; project: string; listenerId: string; envelopeJson: string; original: OriginalMessage | null }, fanOut: FanOut, now: number): number | null;
  /** How many offered deliveries were taken so far (none after `abandoned`). */
  readonly count: number;
  committed(): void;
  abandoned(): void;
}

export function startHanding(handoff: Handoff | null): Handing {
  const handed: ClaimedDelivery[] = [];
  return {
    owner: handoff?.owner ?? null,
    offer(d, fanOut, now) {
      if (handoff === null) return null;
      const listener = fanOut.handOff?.get(d.listenerId);
      if (listener === undefined || !handoff.take()) return null;
      const leasedUntil = now + handoff.leaseMs + listener.callback.timeout_ms;
      handed.push({ id: d.id, project: d.project, listenerId: d.listenerId, attemptNumber: 1, envelopeJson: d.envelopeJson, original: d.original, listener, gap: null, leasedUntil });
      return leasedUntil;
    },
    get count() {
      return handed.length;
    },
    committed() {
      if (handed.length) handoff!.deliver(handed.splice(0));
    },
    abandoned() {
      if (handed.length) handoff!.giveBack(handed.splice(0).length);
    },
  };
}
