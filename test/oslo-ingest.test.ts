import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { renderOslo } from '../src/dispatch/oslo-format.js';
import { bodyHash } from '../src/ingest/ingest.js';
import {
  MAX_NOTIFICATION_BYTES,
  fromOsloTimestamp,
  parseOsloNotification,
  unwrapVersioned,
  type OsloParseResult,
  type OsloRejectReason,
} from '../src/ingest/oslo.js';
import { EventInput, toEnvelope } from '../src/records/event.js';

/** A lease notification as esi-leap emits it through oslo.messaging. */
const LEASE_DATA = {
  id: 'lease-1',
  node_name: 'node-7',
  purpose: 'test',
  properties: { vendor: 'dell' },
  fulfill_time: '2026-11-23T10:00:00',
};
const LEASE_PAYLOAD = {
  'esi_leap_object.name': 'LeasePayload',
  'esi_leap_object.namespace': 'esi_leap',
  'esi_leap_object.version': '1.0',
  'esi_leap_object.data': LEASE_DATA,
};
const MESSAGE = {
  message_id: 'c5f0b1e2-4f9e-4a7a-9d4b-2f6a3f1f0a11',
  publisher_id: 'esi-leap.manager:lease-host',
  event_type: 'esi_leap.lease.fulfill.end',
  priority: 'INFO',
  payload: LEASE_PAYLOAD,
  timestamp: '2026-11-23 10:00:00.123456',
  _unique_id: '6b1b0d0e8f7c4f0c9d6d2a4f0e1b2c3d',
  _context_user: null,
  _context_request_id: 'req-1',
};

/** The messagingv2 envelope as the notifier publishes it. */
const v2 = (message: Record<string, unknown>) => Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(message) }));
/** The bare dict of the older `messaging` driver. */
const v1 = (message: Record<string, unknown>) => Buffer.from(JSON.stringify(message));

function event(body: Buffer) {
  const result = parseOsloNotification(body);
  if (result.kind !== 'event') throw new Error(`expected an event, got ${JSON.stringify(result)}`);
  expect(EventInput.safeParse(result.input).success).toBe(true);
  return result;
}

function rejected(body: Buffer, reason: OsloRejectReason): Extract<OsloParseResult, { kind: 'rejected' }> {
  const result = parseOsloNotification(body);
  expect(result).toMatchObject({ kind: 'rejected', reason });
  return result as Extract<OsloParseResult, { kind: 'rejected' }>;
}

const without = (key: string) => {
  const copy: Record<string, unknown> = { ...MESSAGE };
  delete copy[key];
  return copy;
};

describe('parseOsloNotification: the messagingv2 envelope', () => {
  it('maps the message to an event: id, type, source, time, priority, unwrapped data and its schema', () => {
    const { input } = event(v2(MESSAGE));
    expect(input).toEqual({
      id: 'c5f0b1e2-4f9e-4a7a-9d4b-2f6a3f1f0a11',
      type: 'esi_leap.lease.fulfill.end',
      workbook: null,
      source: 'esi-leap.manager:lease-host',
      occurred_at: '2026-11-23T10:00:00.123Z',
      priority: 'INFO',
      data_schema: { namespace: 'esi_leap', name: 'LeasePayload', version: '1.0' },
      data: LEASE_DATA,
    });
  });

  it('keeps the whole envelope as received as the original, so the oslo format forwards a messagingv2 envelope', () => {
    const body = v2(MESSAGE);
    const { input, original } = event(body);
    expect(original).toEqual({ format: 'oslo', body: body.toString('utf8') });
    const envelope = toEnvelope(input, Date.parse('2026-11-24T00:00:00Z'), 'amqp', original.format);
    const forwarded = renderOslo(envelope, { hostname: 'relay-host', deliveryId: 'delivery-1', original });
    expect(forwarded).toBe(body.toString('utf8'));
    const outer = JSON.parse(forwarded);
    expect(outer['oslo.version']).toBe('2.0');
    expect(JSON.parse(outer['oslo.message'])).toEqual(MESSAGE);
  });

  it('gives the envelope the fields every receiver sees: category by type, no workbook, source_format oslo', () => {
    const { input, original } = event(v2(MESSAGE));
    const envelope = toEnvelope(input, Date.now(), 'amqp', original.format);
    expect(envelope).toMatchObject({
      category: 'NOTIFICATION',
      workbook: null,
      execution_id: null,
      sequence: null,
      source_format: 'oslo',
      priority: 'INFO',
    });
    // A type with a fixed category keeps it, wherever it comes from.
    const task = event(v2({ ...MESSAGE, event_type: 'TASK_SUCCEEDED' }));
    expect(toEnvelope(task.input, Date.now(), 'amqp', 'oslo').category).toBe('TASK');
    const op = event(v2({ ...MESSAGE, event_type: 'execution.cancel.end' }));
    expect(toEnvelope(op.input, Date.now(), 'amqp', 'oslo').category).toBe('EXECUTION');
  });

  it('leaves the AMQP driver keys (_unique_id, _context_*) out of the event, so a republished message is the same event', () => {
    const first = event(v2(MESSAGE)).input;
    const again = event(v2({ ...MESSAGE, _unique_id: 'another', _context_request_id: 'req-2' })).input;
    expect(JSON.stringify(first)).not.toContain('_unique_id');
    expect(JSON.stringify(first)).not.toContain('_context');
    expect(bodyHash(again)).toBe(bodyHash(first));
    expect(bodyHash(event(v2({ ...MESSAGE, payload: { ...LEASE_PAYLOAD, 'esi_leap_object.data': { ...LEASE_DATA, purpose: 'prod' } } })).input)).not.toBe(
      bodyHash(first),
    );
  });

  it('takes an envelope whatever its key order and whitespace, and a leading byte order mark', () => {
    const inner = JSON.stringify(MESSAGE, null, 2);
    const body = Buffer.from(`  {\n "oslo.message" : ${JSON.stringify(inner)},\n "oslo.version": "2.0" }\n`);
    expect(event(body).input).toEqual(event(v2(MESSAGE)).input);
    const withBom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), v2(MESSAGE)]);
    const parsed = event(withBom);
    expect(parsed.input).toEqual(event(v2(MESSAGE)).input);
    expect(parsed.original.body.charCodeAt(0)).toBe(0x7b);
  });

  it('rejects an envelope of another version, or whose oslo.message is not a JSON object in a string', () => {
    const envelope = (version: unknown, message: unknown) => Buffer.from(JSON.stringify({ 'oslo.version': version, 'oslo.message': message }));
    expect(rejected(envelope('1.0', JSON.stringify(MESSAGE)), 'bad_envelope').detail).toContain('oslo.version "1.0"');
    rejected(envelope('3.0', JSON.stringify(MESSAGE)), 'bad_envelope');
    rejected(envelope(2, JSON.stringify(MESSAGE)), 'bad_envelope');
    expect(rejected(envelope('2.0', MESSAGE), 'bad_envelope').detail).toContain('JSON string');
    expect(rejected(envelope('2.0', '{"event_type": '), 'bad_envelope').detail).toContain('oslo.message is not valid JSON');
    expect(rejected(envelope('2.0', '["a"]'), 'bad_envelope').detail).toBe('oslo.message is not a JSON object');
    expect(rejected(envelope('2.0', 'null'), 'bad_envelope').detail).toBe('oslo.message is not a JSON object');
    const deep = '['.repeat(100) + ']'.repeat(100);
    expect(rejected(envelope('2.0', `{"event_type":"x","payload":{"a":${deep}}}`), 'bad_envelope').detail).toContain('deeper than');
    expect(event(envelope('2.0.1', JSON.stringify(MESSAGE))).input.id).toBe(MESSAGE.message_id);
  });
});

describe('parseOsloNotification: the bare v1 dict', () => {
  it('maps it to the same event as the envelope', () => {
    expect(event(v1(MESSAGE)).input).toEqual(event(v2(MESSAGE)).input);
  });

  it('keeps it wrapped in a messagingv2 envelope whose message is the text as received', () => {
    const body = v1(MESSAGE);
    const { input, original } = event(body);
    const outer = JSON.parse(original.body);
    expect(Object.keys(outer).sort()).toEqual(['oslo.message', 'oslo.version']);
    expect(outer['oslo.version']).toBe('2.0');
    expect(outer['oslo.message']).toBe(body.toString('utf8'));
    // What the oslo format forwards is read back as the same event.
    const forwarded = renderOslo(toEnvelope(input, Date.now(), 'amqp', 'oslo'), { hostname: 'h', deliveryId: 'd', original });
    expect(event(Buffer.from(forwarded)).input).toEqual(input);
  });

  it('treats a dict with only one of the envelope keys as a bare message', () => {
    const { input } = event(v1({ ...MESSAGE, 'oslo.version': '2.0' }));
    expect(input.type).toBe(MESSAGE.event_type);
    rejected(v1({ 'oslo.message': JSON.stringify(MESSAGE) }), 'no_event_type');
  });
});

describe('parseOsloNotification: id', () => {
  it('is a digest of the body when the message has no message_id (or a null one), the same for the same bytes', () => {
    const body = v2(without('message_id'));
    const { input } = event(body);
    expect(input.id).toBe(`oslo-${createHash('sha256').update(body).digest('hex')}`);
    expect(input.id.length).toBeLessThanOrEqual(200);
    expect(event(Buffer.from(body)).input.id).toBe(input.id);
    expect(event(v2({ ...MESSAGE, message_id: null })).input.id).toMatch(/^oslo-[0-9a-f]{64}$/);
    expect(event(v2({ ...without('message_id'), priority: 'ERROR' })).input.id).not.toBe(input.id);
  });

  it('rejects a message_id that cannot be an event id, naming message_id', () => {
    expect(rejected(v2({ ...MESSAGE, message_id: 'a/b' }), 'invalid_field').detail).toMatch(/^message_id: /);
    expect(rejected(v2({ ...MESSAGE, message_id: 'x'.repeat(201) }), 'invalid_field').detail).toMatch(/^message_id: /);
    expect(rejected(v2({ ...MESSAGE, message_id: '' }), 'invalid_field').detail).toMatch(/^message_id: /);
    expect(rejected(v2({ ...MESSAGE, message_id: 42 }), 'invalid_field').detail).toMatch(/^message_id: /);
    expect(event(v2({ ...MESSAGE, message_id: 'x'.repeat(200) })).input.id).toHaveLength(200);
  });
});

describe('parseOsloNotification: event_type, publisher_id, priority', () => {
  it('rejects a message without event_type (missing, null or empty) as no_event_type', () => {
    for (const bad of [without('event_type'), { ...MESSAGE, event_type: null }, { ...MESSAGE, event_type: '' }]) {
      expect(rejected(v2(bad), 'no_event_type').detail).toBe('the notification has no event_type');
      rejected(v1(bad), 'no_event_type');
    }
  });

  it('rejects an event_type that is no type, naming event_type', () => {
    expect(rejected(v2({ ...MESSAGE, event_type: 7 }), 'invalid_field').detail).toMatch(/^event_type: /);
    expect(rejected(v2({ ...MESSAGE, event_type: 'e'.repeat(201) }), 'invalid_field').detail).toMatch(/^event_type: /);
    expect(event(v2({ ...MESSAGE, event_type: 'e'.repeat(200) })).input.type).toHaveLength(200);
  });

  it('takes publisher_id as the source; without one the source is left to the ingest default', () => {
    expect(event(v2(without('publisher_id'))).input).not.toHaveProperty('source');
    expect(event(v2({ ...MESSAGE, publisher_id: null })).input).not.toHaveProperty('source');
    expect(toEnvelope(event(v2(without('publisher_id'))).input, Date.now(), 'amqp', 'oslo').source).toBe('amqp');
    expect(rejected(v2({ ...MESSAGE, publisher_id: 'p'.repeat(201) }), 'invalid_field').detail).toMatch(/^publisher_id: /);
    expect(rejected(v2({ ...MESSAGE, publisher_id: '' }), 'invalid_field').detail).toMatch(/^publisher_id: /);
    expect(rejected(v2({ ...MESSAGE, publisher_id: ['a'] }), 'invalid_field').detail).toMatch(/^publisher_id: /);
  });

  it('keeps the priority in upper case; without one it is null; one that is no level is rejected', () => {
    const priority = (p: unknown) => event(v2({ ...MESSAGE, priority: p })).input.priority;
    expect(priority('ERROR')).toBe('ERROR');
    expect(priority('info')).toBe('INFO');
    expect(priority('warning')).toBe('WARNING');
    expect(priority('sample')).toBe('SAMPLE');
    expect(priority(null)).toBeNull();
    expect(event(v2(without('priority'))).input.priority).toBeNull();
    expect(rejected(v2({ ...MESSAGE, priority: 'NOT A LEVEL' }), 'invalid_field').detail).toMatch(/^priority: /);
    expect(rejected(v2({ ...MESSAGE, priority: 3 }), 'invalid_field').detail).toMatch(/^priority: /);
  });
});

describe('parseOsloNotification: timestamp', () => {
  it('reads the time as UTC, with milliseconds; without one the relay assigns it', () => {
    expect(event(v2({ ...MESSAGE, timestamp: '2017-01-01 00:00:00.000000' })).input.occurred_at).toBe('2017-01-01T00:00:00.000Z');
    expect(event(v2({ ...MESSAGE, timestamp: '2017-01-01 00:00:00' })).input.occurred_at).toBe('2017-01-01T00:00:00.000Z');
    expect(event(v2(without('timestamp'))).input).not.toHaveProperty('occurred_at');
    expect(event(v2({ ...MESSAGE, timestamp: null })).input).not.toHaveProperty('occurred_at');
  });

  it('rejects a timestamp that is no time, naming timestamp', () => {
    for (const bad of ['yesterday', '2017-02-30 00:00:00', '2017-01-01 24:00:00', '', 1483228800]) {
      expect(rejected(v2({ ...MESSAGE, timestamp: bad }), 'invalid_field').detail).toMatch(/^timestamp: /);
    }
  });

  it.each([
    ['2017-01-01 00:00:00.000000', '2017-01-01T00:00:00.000Z'],
    ['2026-11-23 10:00:00.123456', '2026-11-23T10:00:00.123Z'],
    ['2026-11-23 10:00:00.999999', '2026-11-23T10:00:00.999Z'],
    ['2026-11-23 10:00:00.5', '2026-11-23T10:00:00.500Z'],
    ['2026-11-23 10:00:00', '2026-11-23T10:00:00.000Z'],
    ['2026-11-23T10:00:00.123456', '2026-11-23T10:00:00.123Z'],
    ['2026-11-23T10:00:00Z', '2026-11-23T10:00:00.000Z'],
    ['2026-11-23 10:00:00.123456+00:00', '2026-11-23T10:00:00.123Z'],
    ['2026-11-23 01:30:00+02:00', '2026-11-22T23:30:00.000Z'],
    ['2026-11-23 23:30:00-01:00', '2026-11-24T00:30:00.000Z'],
    ['2024-02-29 12:00:00', '2024-02-29T12:00:00.000Z'],
    ['2026-11-23 10:00:00.123456789', '2026-11-23T10:00:00.123Z'],
  ])('fromOsloTimestamp(%s) = %s', (text, iso) => {
    expect(fromOsloTimestamp(text)).toBe(iso);
  });

  it.each([
    ['2023-02-29 12:00:00'],
    ['2026-13-01 00:00:00'],
    ['2026-11-23 10:60:00'],
    ['2026-11-23 10:00'],
    ['2026-11-23'],
    ['2026-11-23 10:00:00.'],
    ['2026-11-23 10:00:00.1234567890'],
    ['2026-11-23 10:00:00 +02:00'],
    ['2026-11-23 10:00:00+0200'],
    ['23/11/2026 10:00:00'],
  ])('fromOsloTimestamp(%s) is null', (text) => {
    expect(fromOsloTimestamp(text)).toBeNull();
  });

  it('fromOsloTimestamp of what is not text is null', () => {
    expect(fromOsloTimestamp(1483228800)).toBeNull();
    expect(fromOsloTimestamp(null)).toBeNull();
    expect(fromOsloTimestamp({})).toBeNull();
  });
});

describe('parseOsloNotification: payload', () => {
  it('takes a plain payload as the data, with no schema', () => {
    const payload = { instance_id: 'i-1', state: 'active', nested: { a: [1, 2] } };
    const { input } = event(v2({ ...MESSAGE, payload }));
    expect(input.data).toEqual(payload);
    expect(input.data_schema).toBeNull();
  });

  it('unwraps a versioned payload one level: nested versioned objects stay as they are', () => {
    const audit = {
      'watcher_object.name': 'TerseAuditPayload',
      'watcher_object.namespace': 'watcher',
      'watcher_object.version': '1.2',
      'watcher_object.data': { uuid: 'a-1', state: 'ONGOING' },
    };
    const payload = {
      'watcher_object.name': 'ActionPlanCancelPayload',
      'watcher_object.namespace': 'watcher',
      'watcher_object.version': '1.1',
      'watcher_object.data': { uuid: 'p-1', audit, fault: null },
    };
    const { input } = event(v2({ ...MESSAGE, event_type: 'action_plan.cancel.start', payload }));
    expect(input.data).toEqual({ uuid: 'p-1', audit, fault: null });
    expect(input.data_schema).toEqual({ namespace: 'watcher', name: 'ActionPlanCancelPayload', version: '1.1' });
  });

  it('drops the object bookkeeping beside the data (<ns>_object.changes)', () => {
    const payload = { ...LEASE_PAYLOAD, 'esi_leap_object.changes': ['purpose'] };
    expect(event(v2({ ...MESSAGE, payload })).input.data).toEqual(LEASE_DATA);
  });

  it('gives an empty data object for a missing or null payload', () => {
    expect(event(v2(without('payload'))).input.data).toEqual({});
    expect(event(v2({ ...MESSAGE, payload: null })).input.data).toEqual({});
  });

  it('rejects a payload that is not a JSON object, naming payload', () => {
    for (const payload of [['a'], 'text', 7, true]) {
      expect(rejected(v2({ ...MESSAGE, payload }), 'invalid_field').detail).toBe('payload: must be a JSON object');
    }
  });

  it('rejects a versioned payload whose schema an event cannot hold, naming the payload key', () => {
    const payload = { ...LEASE_PAYLOAD, 'esi_leap_object.version': '1'.repeat(33) };
    expect(rejected(v2({ ...MESSAGE, payload }), 'invalid_field').detail).toMatch(/^payload\.esi_leap_object\.version: /);
  });

  describe('unwrapVersioned', () => {
    it('finds the namespace prefix from the data key', () => {
      expect(unwrapVersioned(LEASE_PAYLOAD)).toEqual({
        data: LEASE_DATA,
        schema: { namespace: 'esi_leap', name: 'LeasePayload', version: '1.0' },
        prefix: 'esi_leap_object.',
      });
      // The namespace value need not be the key prefix.
      const nova = { 'nova_object.name': 'InstanceActionPayload', 'nova_object.namespace': 'nova', 'nova_object.version': '1.8', 'nova_object.data': {} };
      expect(unwrapVersioned(nova)?.schema).toEqual({ namespace: 'nova', name: 'InstanceActionPayload', version: '1.8' });
    });

    it.each([
      ['a payload with keys of its own beside the object', { ...LEASE_PAYLOAD, node: 'n' }],
      ['two objects', { ...LEASE_PAYLOAD, 'other_object.data': {} }],
      ['no name', { 'x_object.namespace': 'x', 'x_object.version': '1.0', 'x_object.data': {} }],
      ['no namespace', { 'x_object.name': 'X', 'x_object.version': '1.0', 'x_object.data': {} }],
      ['no version', { 'x_object.name': 'X', 'x_object.namespace': 'x', 'x_object.data': {} }],
      ['a version that is a number', { 'x_object.name': 'X', 'x_object.namespace': 'x', 'x_object.version': 1, 'x_object.data': {} }],
      ['data that is not an object', { 'x_object.name': 'X', 'x_object.namespace': 'x', 'x_object.version': '1.0', 'x_object.data': [1] }],
      ['an empty namespace prefix', { '_object.name': 'X', '_object.namespace': 'x', '_object.version': '1.0', '_object.data': {} }],
      ['no data', { 'x_object.name': 'X', 'x_object.namespace': 'x', 'x_object.version': '1.0' }],
    ])('is null for %s, and such a payload stays the data as it is', (_what, payload) => {
      expect(unwrapVersioned(payload as Record<string, unknown>)).toBeNull();
      const { input } = event(v2({ ...MESSAGE, payload }));
      expect(input.data).toEqual(payload);
      expect(input.data_schema).toBeNull();
    });
  });
});

describe('parseOsloNotification: what is not a notification', () => {
  it('rejects a body that is not JSON, not UTF-8, or not an object as not_json', () => {
    expect(rejected(Buffer.from('hello'), 'not_json').detail).toContain('the message is not valid JSON');
    expect(rejected(Buffer.from(''), 'not_json').detail).toContain('not valid JSON');
    expect(rejected(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), 'not_json').detail).toBe('the message is not valid UTF-8');
    expect(rejected(Buffer.from('[1,2]'), 'not_json').detail).toBe('the message is not a JSON object');
    expect(rejected(Buffer.from('"text"'), 'not_json').detail).toBe('the message is not a JSON object');
    expect(rejected(Buffer.from('null'), 'not_json').detail).toBe('the message is not a JSON object');
    const deep = `{"event_type":"x","payload":{"a":${'['.repeat(100)}${']'.repeat(100)}}}`;
    expect(rejected(Buffer.from(deep), 'not_json').detail).toContain('deeper than 64 levels');
  });

  it('rejects a message holding a key named __proto__ as invalid_field, instead of dropping the key', () => {
    // Parsed as any other key, it vanished from the event's data (and a filter of it matched everything).
    const inPayload = `{"event_type":"x.y","message_id":"m-1","payload":{"__proto__":{"admin":true},"b":2}}`;
    expect(rejected(Buffer.from(inPayload), 'invalid_field').detail).toBe('the message: a key named __proto__ cannot be stored');
    const escaped = JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': '{"event_type":"x.y","payload":{"\\u005f_proto__":1}}' });
    expect(rejected(Buffer.from(escaped), 'invalid_field').detail).toBe('oslo.message: a key named __proto__ cannot be stored');
    // Keys that only look like it, and escapes elsewhere, are data as any other.
    expect(event(v2({ ...MESSAGE, payload: { constructor: 1, __proto: 2, text: 'caf\u00e9' } })).input.data).toEqual({ constructor: 1, __proto: 2, text: 'caf\u00e9' });
    expect(event(Buffer.from('{"event_type":"x.y","payload":{"t":"caf\\u00e9"}}')).input.data).toEqual({ t: 'café' });
  });

  it('rejects a number beyond a double as invalid_field, instead of storing it as null', () => {
    expect(rejected(Buffer.from('{"event_type":"x.y","payload":{"disk_gb":1e309}}'), 'invalid_field').detail).toBe(
      'the message: "disk_gb" is a number too large to store (beyond ±1.8e308)',
    );
    expect(rejected(Buffer.from(`{"event_type":"x.y","payload":{"n":-${'9'.repeat(400)}}}`), 'invalid_field').detail).toContain('"n" is a number too large');
    // Large exponents that a double holds, and the same text inside strings, are data as any other.
    const fine = event(Buffer.from(`{"event_type":"x.y","payload":{"a":1e308,"b":1E-400,"c":"1e999","d":"${'9'.repeat(400)}"}}`));
    expect(fine.input.data).toEqual({ a: 1e308, b: 0, c: '1e999', d: '9'.repeat(400) });
  });

  it('rejects a message over the size limit as too_large without reading it', () => {
    const body = Buffer.alloc(MAX_NOTIFICATION_BYTES + 1, 0x20);
    expect(rejected(body, 'too_large').detail).toContain(String(MAX_NOTIFICATION_BYTES + 1));
  });
});
