import type { EventEnvelope } from '../records/event.js';

/*
 * CloudEvents 1.0 in structured mode: the attributes and the data in one JSON body. AMQP
 * messages carry the `cloudevents` format this way (HTTP uses binary mode, formats.ts), so a
 * consumer needs nothing but the body.
 */

/** `/callback-relay/workbooks/<workbook>`, or `/callback-relay` for an event of no workbook. */
export function cloudEventSource(workbook: string | null): string {
  return workbook == null ? '/callback-relay' : `/callback-relay/workbooks/${encodeURIComponent(workbook)}`;
}

export const CLOUDEVENTS_STRUCTURED_CONTENT_TYPE = 'application/cloudevents+json';

export interface StructuredCloudEvent {
  specversion: '1.0';
  id: string;
  type: string;
  source: string;
  /** The execution's id; absent for events of no execution (an attribute may not be null). */
  subject?: string;
  time: string;
  datacontenttype: 'application/json';
  data: EventEnvelope;
}

export function structuredCloudEvent(envelope: EventEnvelope): StructuredCloudEvent {
  return {
    specversion: '1.0',
    id: envelope.id,
    type: envelope.type,
    source: cloudEventSource(envelope.workbook),
    ...(envelope.execution_id != null ? { subject: envelope.execution_id } : {}),
    time: envelope.occurred_at,
    datacontenttype: 'application/json',
    data: envelope,
  };
}

export function renderCloudEventStructured(envelope: EventEnvelope): string {
  return JSON.stringify(structuredCloudEvent(envelope));
}
