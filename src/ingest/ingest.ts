import crypto from 'node:crypto';
import { newId } from '../ids.js';
import { categoryOf, type EventEnvelope, type EventInput } from '../records/event.js';
import type { FanOutCache } from '../fanout/fanout.js';
import type { AppendedEvent, FanOut, NewEvent, Store } from '../store/store.js';
import { canonicalJson } from './mistral.js';


export interface IngestItem {
  input: EventInput;
  /** The body as a Mistral sent it, for the `mistral` format. */
  originalBody?: string | null;
}

/** The envelope for a client's event: relay-assigned id and time when absent; `sequence` comes from the store. */
export function toEnvelope(input: EventInput, now: number, defaultSource: string): EventEnvelope {
  return {
    id: input.id ?? newId(now),
    type: input.type,
    category: categoryOf(input.type),
    workbook: input.workbook ?? null,
    workflow: input.workflow ?? null,
    execution_id: input.execution_id ?? null,
    task_id: input.task_id ?? null,
    task_name: input.task_name ?? null,
    state: input.state ?? null,
    previous_state: input.previous_state ?? null,
    state_info: input.state_info ?? null,
    sequence: null,
    occurred_at: input.occurred_at ?? new Date(now).toISOString(),
    source: input.source ?? defaultSource,
    data: input.data ?? {},
  };
}

/** Digest of what the client sent (its `sequence` aside, which the relay ignores). */
export function bodyHash(input: EventInput): string {
  const { sequence: _ignored, ...rest } = input;
  return crypto.createHash('sha256').update(canonicalJson(rest)).digest('base64url');
}

export interface IngestDeps {
  store: Store;
  fanOut: FanOutCache;
  /** Told after every commit that added deliveries, so the dispatcher starts at once. */
  onDeliveriesCommitted: () => void;
  onEventsStored?: (source: string, count: number) => void;
}

/** Puts events into the outbox with their deliveries; resolves after commit. */
export function createIngest({ store, fanOut, onDeliveriesCommitted, onEventsStored }: IngestDeps) {
  async function append(project: string, events: NewEvent[], route: FanOut): Promise<AppendedEvent[]> {
    const results = await store.appendEvents(project, events, route, Date.now());
    results.forEach((r, i) => {
      if (!r.duplicate) onEventsStored?.(events[i].envelope.source, 1);
    });
    if (results.some((r) => r.deliveries > 0)) onDeliveriesCommitted();
    return results;
  }

  return {
    async ingest(project: string, items: IngestItem[], defaultSource = 'api'): Promise<AppendedEvent[]> {
      const now = Date.now();
      const events = items.map(({ input, originalBody }) => ({
        envelope: toEnvelope(input, now, defaultSource),
        originalBody: originalBody ?? null,
        bodyHash: bodyHash(input),
      }));
      return append(project, events, await fanOut.forProject(project));
    },
    /** One event to exactly these listeners, bypassing fan-out (PING). */
    async sendTo(project: string, envelope: EventEnvelope, listenerIds: string[]): Promise<AppendedEvent> {
      const [result] = await append(project, [{ envelope, originalBody: null, bodyHash: envelope.id }], () => listenerIds);
      return result;
    },
  };
}

export type Ingest = ReturnType<typeof createIngest>;
