import type { EventEnvelope } from '../records/event.js';

/** The envelope's scalar fields as a query string (GET and DELETE deliveries carry no body). */
export function envelopeQuery(envelope: EventEnvelope): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(envelope)) {
    if (value === null || typeof value === 'object' || value === undefined) continue;
    params.append(key, String(value));
  }
  return params.toString();
}

/** `url` with `query` appended after the receiver's own parameters, whose exact encoding stays. */
export function appendQuery(url: string, query: string): string {
  if (query === '') return url;
  const target = new URL(url);
  target.search = target.search.length > 1 ? `${target.search}&${query}` : `?${query}`;
  return target.toString();
}

/** The URL of a GET or DELETE delivery of the envelope itself. */
export function withEnvelopeQuery(url: string, envelope: EventEnvelope): string {
  return appendQuery(url, envelopeQuery(envelope));
}
