import { describe, expect, it } from 'vitest';
import { HTTP } from 'cloudevents';
import type { EventEnvelope } from '../src/records/event.js';
import { taskEnvelope } from './helpers/envelopes.js';
import {
  CLOUDEVENTS_STRUCTURED_CONTENT_TYPE,
  renderCloudEventStructured,
  structuredCloudEvent,
} from '../src/dispatch/cloudevents-structured.js';

const taskEvent = taskEnvelope();

function parse(body: string) {
  const event = HTTP.toEvent({ headers: { 'content-type': CLOUDEVENTS_STRUCTURED_CONTENT_TYPE }, body });
  if (Array.isArray(event)) throw new Error('expected one event');
  return event;
}

describe('cloudevents structured mode', () => {
  it('is read by the cloudevents SDK with every attribute and the envelope as data', () => {
    const event = parse(renderCloudEventStructured(taskEvent));
    expect(event.specversion).toBe('1.0');
    expect(event.id).toBe(taskEvent.id);
    expect(event.type).toBe('TASK_SUCCEEDED');
    expect(event.source).toBe('/callback-relay/workbooks/billing');
    expect(event.subject).toBe('exec-1');
    expect(event.time).toBe('2026-11-23T10:00:00.123Z');
    expect(event.datacontenttype).toBe('application/json');
    expect(event.data).toEqual(taskEvent);
  });

  it('has exactly the attributes of the spec, the subject only with an execution', () => {
    expect(Object.keys(structuredCloudEvent(taskEvent))).toEqual([
      'specversion', 'id', 'type', 'source', 'subject', 'time', 'datacontenttype', 'data',
    ]);
    const bare = { ...taskEvent, workbook: null, execution_id: null, category: 'NOTIFICATION' as const, type: 'PING' };
    const body = JSON.parse(renderCloudEventStructured(bare));
    expect('subject' in body).toBe(false);
    expect(body.source).toBe('/callback-relay');
    const event = parse(JSON.stringify(body));
    expect(event.subject).toBeUndefined();
    expect(event.source).toBe('/callback-relay');
  });

  it('percent-encodes the workbook in the source', () => {
    expect(structuredCloudEvent({ ...taskEvent, workbook: 'a b/c' }).source).toBe('/callback-relay/workbooks/a%20b%2Fc');
  });

  it('keeps dotted oslo types as they are', () => {
    const event = parse(renderCloudEventStructured({ ...taskEvent, type: 'esi_leap.lease.fulfill.end', category: 'NOTIFICATION' }));
    expect(event.type).toBe('esi_leap.lease.fulfill.end');
  });
});
