import { toEnvelope, type EventEnvelope } from '../records/event.js';
import type { RelayEvent } from './listener-gate.js';

/**
 * The envelope of one of the relay's own events (DESIGN.md, "The relay's own events"): a
 * NOTIFICATION of the listener's project with no workbook, source `relay`, so an operator's
 * listener of `{"workbook": "*", "event_types": ["NOTIFICATION"], "events": ["relay.#"]}`
 * hears about breakers, deliveries that failed for good and listeners turned off.
 */
export function relayEventEnvelope(event: RelayEvent, now: number): EventEnvelope {
  const data = Object.fromEntries(Object.entries(event.data).filter(([, v]) => v !== undefined));
  return toEnvelope({ type: event.type, data, source: 'relay' }, now, 'relay');
}
