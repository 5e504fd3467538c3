import type { EventEnvelope } from '../records/event.js';

/**
 * The URL of a GET or DELETE delivery: the envelope's scalar fields appended to the query
 * string (such requests carry no body).
 */
export function withEnvelopeQuery(url: string, envelope: EventEnvelope): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(envelope)) {
    if (value === null || typeof value === 'object' || value === undefined) continue;
    params.append(key, String(value));
  }
  const query = params.toString();
  if (query === '') return url;
  const target = new URL(url);
  // Appended to the raw search so the receiver's own parameters keep their exact encoding.
  target.search = target.search.length > 1 ? `${target.search}&${query}` : `?${query}`;
  return target.toString();
}
