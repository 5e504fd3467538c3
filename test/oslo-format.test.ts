import { describe, expect, it } from 'vitest';
import type { EventEnvelope } from '../src/records/event.js';
import { taskEnvelope } from './helpers/envelopes.js';
import {
  exceptionPayload,
  osloEventType,
  osloMessage,
  osloMessageId,
  osloPayload,
  osloPriority,
  osloRoutingKey,
  osloTimestamp,
  renderOslo,
  versionedObject,
} from '../src/dispatch/oslo-format.js';
import { routingKeyFor } from '../src/transports/amqp-routing.js';

const taskEvent = taskEnvelope({
  type: 'TASK_FAILED',
  state: 'ERROR',
  state_info: 'card declined',
  data: { fault: { exception: 'CardDeclined', exception_message: 'card declined' }, amount: 5 },
});

const executionEvent: EventEnvelope = {
  ...taskEvent,
  id: '01JD0000000000000000000002',
  type: 'WORKFLOW_SUCCEEDED',
  category: 'EXECUTION',
  task_id: null,
  task_name: null,
  state: 'SUCCESS',
  state_info: null,
  data: {},
};

const notification: EventEnvelope = {
  ...executionEvent,
  id: 'n-1',
  type: 'esi_leap.lease.fulfill.end',
  category: 'NOTIFICATION',
  workbook: null,
  workflow: null,
  execution_id: null,
  state: null,
  previous_state: null,
  sequence: null,
  source: 'esi-leap:host-1',
  data: { node_name: 'node-7' },
};

const withPriority = (e: EventEnvelope, priority: string | null): EventEnvelope => ({ ...e, priority });
const options = { hostname: 'relay-1', deliveryId: 'del-1' };

describe('oslo event_type', () => {
  it.each([
    ['WORKFLOW_SUCCEEDED', 'workflow.succeeded'],
    ['WORKFLOW_FAILED', 'workflow.failed'],
    ['TASK_FAILED', 'task.failed'],
    ['TASK_SKIPPED', 'task.skipped'],
    ['PING', 'ping'],
    ['ORDER_V2_CREATED', 'order.v2.created'],
  ])('%s → %s', (type, expected) => {
    expect(osloEventType(type)).toBe(expected);
  });

  it.each(['esi_leap.lease.fulfill.end', 'execution.cancel.start', 'task.rerun.error', 'relay.delivery.failed', 'myEvent', 'A__B', '_X', 'X_', 'ÄRGER'])(
    'leaves %s as it is',
    (type) => {
      expect(osloEventType(type)).toBe(type);
    },
  );
});

describe('oslo priority', () => {
  it.each([
    ['WORKFLOW_FAILED', 'ERROR'],
    ['TASK_FAILED', 'ERROR'],
    ['task.rerun.error', 'ERROR'],
    ['esi_leap.lease.fulfill.error', 'ERROR'],
    ['WORKFLOW_SUCCEEDED', 'INFO'],
    ['TASK_LAUNCHED', 'INFO'],
    ['PING', 'INFO'],
    ['task.rerun.end', 'INFO'],
    ['relay.delivery.failed', 'INFO'],
    ['esi_leap.lease.fulfill.ERROR', 'INFO'],
    ['TASK_FAILED_NOT', 'INFO'],
  ])('%s is %s', (type, expected) => {
    expect(osloPriority({ type })).toBe(expected);
  });

  it("prefers the event's own priority, upper case", () => {
    expect(osloPriority({ type: 'TASK_FAILED', priority: 'WARN' })).toBe('WARN');
    expect(osloPriority({ type: 'x.start', priority: 'error' })).toBe('ERROR');
    expect(osloPriority({ type: 'x.start', priority: ' critical ' })).toBe('CRITICAL');
  });

  it('falls back when the own priority is null, empty or not text', () => {
    expect(osloPriority({ type: 'TASK_FAILED', priority: null })).toBe('ERROR');
    expect(osloPriority({ type: 'TASK_FAILED', priority: '  ' })).toBe('ERROR');
    expect(osloPriority({ type: 'x.end', priority: 3 } as never)).toBe('INFO');
  });
});

describe('oslo routing key', () => {
  it('is <topic>.<priority in lower case>', () => {
    expect(osloRoutingKey('notifications', 'INFO')).toBe('notifications.info');
    expect(osloRoutingKey('esi_leap_versioned_notifications', 'ERROR')).toBe('esi_leap_versioned_notifications.error');
  });

  it("follows the event's priority unless the listener names its own key", () => {
    expect(routingKeyFor({ topic: 'notifications' }, { type: 'TASK_FAILED' })).toBe('notifications.error');
    expect(routingKeyFor({ topic: 'notifications', routing_key: null }, { type: 'x', priority: 'WARN' })).toBe('notifications.warn');
    expect(routingKeyFor({ topic: 'notifications', routing_key: 'mine' }, { type: 'TASK_FAILED' })).toBe('mine');
  });
});

describe('oslo timestamp', () => {
  it.each([
    ['2026-11-23T10:00:00.123Z', '2026-11-23 10:00:00.123000'],
    ['2026-11-23T10:00:00Z', '2026-11-23 10:00:00.000000'],
    ['2026-11-23T10:00:00.123456Z', '2026-11-23 10:00:00.123456'],
    ['2026-11-23T10:00:00.9999999Z', '2026-11-23 10:00:00.999999'],
    ['2026-11-23T10:00:00.5+01:00', '2026-11-23 09:00:00.500000'],
    ['2026-11-23T00:30:00.25-0230', '2026-11-23 03:00:00.250000'],
    ['2026-01-01T00:30:00+01:00', '2025-12-31 23:30:00.000000'],
    ['2026-11-23 10:00:00', '2026-11-23 10:00:00.000000'],
    ['2017-01-01 00:00:00.000000', '2017-01-01 00:00:00.000000'],
    ['2026-11-23t10:00:00,7z', '2026-11-23 10:00:00.700000'],
  ])('%s → %s', (occurredAt, expected) => {
    expect(osloTimestamp(occurredAt)).toBe(expected);
  });

  it('passes text that is no time through', () => {
    expect(osloTimestamp('yesterday')).toBe('yesterday');
    expect(osloTimestamp('2026-02-31T99:00:00+01:00')).toBe('2026-02-31T99:00:00+01:00');
  });
});

describe('ExceptionPayload', () => {
  const data = (v: ReturnType<typeof exceptionPayload>) => v?.['callback_relay_object.data'];

  it('is made from {exception, exception_message}', () => {
    const payload = exceptionPayload({ exception: 'CardDeclined', exception_message: 'card declined', extra: 1 });
    expect(payload).toEqual(versionedObject('ExceptionPayload', { exception: 'CardDeclined', exception_message: 'card declined' }));
  });

  it('takes a bare message, fills what is missing with null and writes other values as JSON', () => {
    expect(data(exceptionPayload('boom'))).toEqual({ exception: null, exception_message: 'boom' });
    expect(data(exceptionPayload({ exception: 'E' }))).toEqual({ exception: 'E', exception_message: null });
    expect(data(exceptionPayload({ exception: 42, exception_message: { a: 1 } }))).toEqual({ exception: '42', exception_message: '{"a":1}' });
  });

  it('is null without a fault', () => {
    for (const fault of [undefined, null, 7, true, ['a']]) expect(exceptionPayload(fault)).toBeNull();
  });
});

describe('oslo payload', () => {
  const versioned = (name: string, data: unknown) => ({
    'callback_relay_object.name': name,
    'callback_relay_object.namespace': 'callback_relay',
    'callback_relay_object.version': '1.0',
    'callback_relay_object.data': data,
  });

  it('wraps a task event as a TaskPayload with its execution and its fault, as Watcher does', () => {
    expect(osloPayload(taskEvent)).toEqual(
      versioned('TaskPayload', {
        ...taskEvent,
        fault: versioned('ExceptionPayload', { exception: 'CardDeclined', exception_message: 'card declined' }),
        execution: versioned('ExecutionPayload', { id: 'exec-1', workbook: 'billing', workflow: 'charge', state: null }),
      }),
    );
  });

  it('gives a task event of no execution a null execution', () => {
    const payload = osloPayload({ ...taskEvent, execution_id: null, data: {} });
    expect(payload['callback_relay_object.data'].execution).toBeNull();
    expect(payload['callback_relay_object.data'].fault).toBeNull();
  });

  it('wraps execution events as ExecutionPayload and everything else as EventPayload, with no nested execution', () => {
    const execution = osloPayload(executionEvent);
    expect(execution).toEqual(versioned('ExecutionPayload', { ...executionEvent, fault: null }));
    const other = osloPayload(notification);
    expect(other).toEqual(versioned('EventPayload', { ...notification, fault: null }));
    expect('execution' in other['callback_relay_object.data']).toBe(false);
  });

  it('carries priority, data_schema and source_format', () => {
    const extended: EventEnvelope = { ...notification, priority: 'WARN', data_schema: { namespace: 'x', name: 'Y', version: '1.0' }, source_format: null };
    const data = osloPayload(extended)['callback_relay_object.data'];
    expect(data.priority).toBe('WARN');
    expect(data.data_schema).toEqual({ namespace: 'x', name: 'Y', version: '1.0' });
    expect(data.source_format).toBeNull();
  });
});

describe('osloMessageId', () => {
  it('is a version 4 UUID, the same for one delivery every time and another for every other delivery', () => {
    const ids = ['01JD0000000000000000000001', '01JD0000000000000000000002', 'del-1'].map(osloMessageId);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Set(ids).size).toBe(3);
    expect(osloMessageId('del-1')).toBe(ids[2]);
    // From the SHA-256 of the id: e3b0c442… is the digest of nothing, with the version and variant bits set.
    expect(osloMessageId('')).toBe('e3b0c442-98fc-4c14-9afb-f4c8996fb924');
  });
});

describe('renderOslo', () => {
  it('is the messagingv2 envelope around the message as a JSON string', () => {
    const body = renderOslo(taskEvent, options);
    const outer = JSON.parse(body) as Record<string, unknown>;
    expect(Object.keys(outer).sort()).toEqual(['oslo.message', 'oslo.version']);
    expect(outer['oslo.version']).toBe('2.0');
    expect(typeof outer['oslo.message']).toBe('string');
    const message = JSON.parse(outer['oslo.message'] as string);
    expect(message).toEqual({
      message_id: osloMessageId('del-1'),
      publisher_id: 'callback-relay:relay-1',
      event_type: 'task.failed',
      priority: 'ERROR',
      payload: osloPayload(taskEvent),
      timestamp: '2026-11-23 10:00:00.123000',
    });
    expect(message).toEqual(osloMessage(taskEvent, options));
  });

  it("uses the event's own priority and leaves dotted types alone", () => {
    const message = osloMessage(withPriority(notification, 'WARN'), options);
    expect(message.priority).toBe('WARN');
    expect(message.event_type).toBe('esi_leap.lease.fulfill.end');
    expect(osloMessage(notification, options).priority).toBe('INFO');
    expect(osloMessage(executionEvent, options).event_type).toBe('workflow.succeeded');
  });

  it('forwards an original oslo message unchanged, whatever the envelope says', () => {
    const original = '{"oslo.version": "2.0", "oslo.message": "{\\"event_type\\": \\"a.b\\"}"}';
    expect(renderOslo(taskEvent, { ...options, original })).toBe(original);
    const bareV1 = '{"event_type":"a.b","payload":{}}';
    expect(renderOslo(taskEvent, { ...options, original: bareV1 })).toBe(bareV1);
  });

  it('forwards a kept oslo original, and builds from the envelope for a Mistral one', () => {
    const body = '{"oslo.version": "2.0", "oslo.message": "{}"}';
    expect(renderOslo(taskEvent, { ...options, original: { format: 'oslo', body } })).toBe(body);
    const mistral = renderOslo(taskEvent, { ...options, original: { format: 'mistral', body: '{"event": "TASK_FAILED"}' } });
    expect(mistral).toBe(renderOslo(taskEvent, options));
  });

  it('renders from the envelope when the original is null or absent', () => {
    expect(renderOslo(taskEvent, { ...options, original: null })).toBe(renderOslo(taskEvent, options));
    expect(JSON.parse(renderOslo(taskEvent, options))['oslo.version']).toBe('2.0');
  });

  it('keeps text that is not ASCII and JSON special characters intact through both layers', () => {
    const odd = { ...notification, data: { note: 'naïve "quoted" \\ back\nslash ✓' } };
    const message = JSON.parse(JSON.parse(renderOslo(odd, options))['oslo.message']);
    expect(message.payload['callback_relay_object.data'].data.note).toBe('naïve "quoted" \\ back\nslash ✓');
  });
});
