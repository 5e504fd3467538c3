import crypto from 'node:crypto';
import { toEnvelope, type EventEnvelope, type EventInput, type OriginalMessage } from '../records/event.js';
import type { FanOutCache } from '../fanout/fanout.js';
import type { AppendedEvent, FanOut, ListenerRouting, NewEvent, OutboxStore } from '../store/store.js';
import { meteredRouting, newFilterMeter } from '../fanout/filter-budget.js';
import { canonicalJson } from './mistral.js';

export { toEnvelope };

export interface IngestItem {
  input: EventInput;
  /** The message as its publisher sent it (a Mistral notifier, an oslo notifier), kept for its format. */
  original?: OriginalMessage | null;
}

/** Digest of what the client sent (its `sequence` and `source_format` aside, which the relay ignores). */
export function bodyHash(input: EventInput): string {
  const { sequence: _sequence, source_format: _sourceFormat, ...rest } = input;
  return crypto.hash('sha256', canonicalJson(rest), 'base64url');
}

export interface IngestDeps {
  store: Pick<OutboxStore, 'appendEvents'>;
  fanOut: FanOutCache;
  /** Told after every commit that added deliveries, so the dispatcher starts at once. */
  onDeliveriesCommitted: () => void;
  onEventsStored?: (source: string, count: number) => void;
}

/** Puts events into the outbox with their deliveries; resolves after commit. */
export function createIngest({ store, fanOut, onDeliveriesCommitted, onEventsStored }: IngestDeps) {
  async function append(project: string, events: NewEvent[], routing: ListenerRouting): Promise<AppendedEvent[]> {
    const results = await store.appendEvents(project, events, routing, Date.now());
    results.forEach((r, i) => {
      if (!r.duplicate) onEventsStored?.(events[i].envelope.source, 1);
    });
    // Deliveries handed over at commit are on their way already; the others wait to be claimed.
    if (results.some((r) => r.deliveries > r.handed)) onDeliveriesCommitted();
    return results;
  }

  return {
    /**
     * Stores the events of one request (a batch, a Mistral notification, a RabbitMQ message).
     * Their matching against the project's listeners is bounded: past FILTER_BUDGET_MS it
     * throws FilterBudgetError and nothing is stored (a 422; a message is rejected).
     */
    async ingest(project: string, items: IngestItem[], defaultSource = 'api'): Promise<AppendedEvent[]> {
      const now = Date.now();
      const events = items.map(({ input, original }) => ({
        envelope: toEnvelope(input, now, defaultSource, original?.format ?? null),
        original: original ?? null,
        bodyHash: bodyHash(input),
      }));
      return append(project, events, meteredRouting(fanOut, newFilterMeter()));
    },
    /** One event to exactly these listeners, bypassing fan-out (PING). */
    async sendTo(project: string, envelope: EventEnvelope, listenerIds: string[]): Promise<AppendedEvent> {
      const route: FanOut = () => listenerIds;
      const [result] = await append(project, [{ envelope, original: null, bodyHash: envelope.id }], {
        at: () => route,
        kept: () => new Map(),
        compile: () => route,
      });
      return result;
    },
  };
}

export type Ingest = ReturnType<typeof createIngest>;
