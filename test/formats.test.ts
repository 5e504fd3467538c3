import { describe, it, expect } from 'vitest';
import { HTTP } from 'cloudevents';
import { readFileSync } from 'node:fs';
import type { EventEnvelope } from '../src/records/event.js';
import { taskEnvelope } from './helpers/envelopes.js';
import {
  renderPayload,
  toMistralTime,
  withEnvelopeQuery,
  USER_AGENT,
  userAgent,
} from '../src/dispatch/formats.js';
import { osloMessageId } from '../src/dispatch/oslo-format.js';
import { httpDelivery } from './helpers/http-delivery.js';
import { MISTRAL_TASK_BODY as MISTRAL_SAMPLE } from './helpers/mistral-bodies.js';

const taskEvent = taskEnvelope();

const workflowEvent: EventEnvelope = {
  ...taskEvent,
  id: '01JD0000000000000000000002',
  type: 'WORKFLOW_LAUNCHED',
  category: 'EXECUTION',
  task_id: null,
  task_name: null,
  state: 'RUNNING',
  previous_state: 'IDLE',
  sequence: 1,
  data: {},
};


const TASK_KEYS = [
  'id', 'name', 'workflow_execution_id', 'workflow_name', 'workflow_namespace', 'workflow_id', 'state',
  'state_info', 'type', 'project_id', 'created_at', 'updated_at', 'started_at', 'finished_at', 'event',
];
const WORKFLOW_KEYS = [
  'id', 'name', 'workflow_name', 'workflow_namespace', 'workflow_id', 'state', 'state_info', 'project_id',
  'task_execution_id', 'root_execution_id', 'created_at', 'updated_at', 'event',
];
const MISTRAL_TIME = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/;

const post = { method: 'POST', url: 'https://hooks.example.com/wf', project: 'default' } as const;

describe('json format', () => {
  it('sends the envelope as JSON', () => {
    const out = httpDelivery({ ...post, envelope: taskEvent, format: 'json' });
    expect(out.url).toBe(post.url);
    expect(out.headers).toEqual({ 'content-type': 'application/json' });
    expect(JSON.parse(out.body)).toEqual(taskEvent);
  });

  it('reuses an already serialised envelope', () => {
    const envelopeJson = JSON.stringify(taskEvent, null, 1);
    const out = httpDelivery({ ...post, envelope: taskEvent, envelopeJson, format: 'json' });
    expect(out.body).toBe(envelopeJson);
  });
});

describe('cloudevents format', () => {
  it('is read by the cloudevents SDK as a binary-mode event', () => {
    const out = httpDelivery({ ...post, envelope: taskEvent, format: 'cloudevents' });
    expect(out.headers['content-type']).toBe('application/json');
    expect(out.headers['ce-specversion']).toBe('1.0');
    const event = HTTP.toEvent({ headers: out.headers, body: out.body });
    if (Array.isArray(event)) throw new Error('expected one event');
    expect(event.specversion).toBe('1.0');
    expect(event.id).toBe(taskEvent.id);
    expect(event.type).toBe('TASK_SUCCEEDED');
    expect(event.source).toBe('/callback-relay/workbooks/billing');
    expect(event.subject).toBe('exec-1');
    expect(event.time).toBe('2026-11-23T10:00:00.123Z');
    expect(event.datacontenttype).toBe('application/json');
    expect(event.data).toEqual(taskEvent);
  });

  it('encodes the workbook, omits the subject without an execution, and falls back without a workbook', () => {
    const named = httpDelivery({ ...post, envelope: { ...taskEvent, workbook: 'a b/c' }, format: 'cloudevents' });
    expect(named.headers['ce-source']).toBe('/callback-relay/workbooks/a%20b%2Fc');

    const bare = { ...taskEvent, workbook: null, execution_id: null, category: 'NOTIFICATION' as const, type: 'PING' };
    const out = httpDelivery({ ...post, envelope: bare, format: 'cloudevents' });
    expect(out.headers['ce-source']).toBe('/callback-relay');
    expect(out.headers).not.toHaveProperty('ce-subject');
    const event = HTTP.toEvent({ headers: out.headers, body: out.body });
    if (Array.isArray(event)) throw new Error('expected one event');
    expect(event.source).toBe('/callback-relay');
    expect(event.subject).toBeUndefined();
    expect(event.type).toBe('PING');
  });

  it('percent-encodes attribute values that are not valid in a header', () => {
    const out = httpDelivery({ ...post, envelope: { ...taskEvent, execution_id: 'ex 1\r\n"é"' }, format: 'cloudevents' });
    expect(out.headers['ce-subject']).toBe('ex%201%0D%0A%22%C3%A9%22');
  });
});

describe('mistral format', () => {
  it('sends the original body of a Mistral event byte for byte', () => {
    const out = httpDelivery({ ...post, envelope: taskEvent, format: 'mistral', original: { format: 'mistral', body: MISTRAL_SAMPLE } });
    expect(out.body).toBe(MISTRAL_SAMPLE);
    expect(out.headers).toEqual({ 'content-type': 'application/json' });
  });

  it('builds a task body with exactly the Mistral task keys', () => {
    const envelope = { ...taskEvent, data: { workflow_id: 'wf-def-1' } };
    const out = httpDelivery({ ...post, envelope, format: 'mistral', original: null });
    const body = JSON.parse(out.body);
    expect(Object.keys(body)).toEqual(TASK_KEYS);
    expect(Object.keys(body)).toEqual(Object.keys(JSON.parse(MISTRAL_SAMPLE)));
    expect(body).toEqual({
      id: 'task-1',
      name: 'charge_card',
      workflow_execution_id: 'exec-1',
      workflow_name: 'charge',
      workflow_namespace: '',
      workflow_id: 'wf-def-1',
      state: 'SUCCESS',
      state_info: null,
      type: 'ACTION',
      project_id: 'default',
      created_at: '2026-11-23 10:00:00',
      updated_at: '2026-11-23 10:00:00',
      started_at: '2026-11-23 10:00:00',
      finished_at: '2026-11-23 10:00:00',
      event: 'TASK_SUCCEEDED',
    });
  });

  it('takes task times from data when present and leaves finished_at empty for a running task', () => {
    const envelope: EventEnvelope = {
      ...taskEvent,
      type: 'TASK_LAUNCHED',
      state: 'RUNNING',
      data: { created_at: '2026-11-23T09:59:58Z', started_at: '2026-11-23 09:59:59' },
    };
    const body = JSON.parse(httpDelivery({ ...post, envelope, format: 'mistral' }).body);
    expect(Object.keys(body)).toEqual(TASK_KEYS);
    expect(body.created_at).toBe('2026-11-23 09:59:58');
    expect(body.started_at).toBe('2026-11-23 09:59:59');
    expect(body.updated_at).toBe('2026-11-23 10:00:00');
    expect(body.finished_at).toBeNull();
    expect(body.workflow_id).toBeNull();
    expect(body.event).toBe('TASK_LAUNCHED');
  });

  it('builds a workflow body with exactly the Mistral workflow keys', () => {
    const body = JSON.parse(httpDelivery({ ...post, envelope: workflowEvent, format: 'mistral' }).body);
    expect(Object.keys(body)).toEqual(WORKFLOW_KEYS);
    expect(body).toEqual({
      id: 'exec-1',
      name: 'charge',
      workflow_name: 'charge',
      workflow_namespace: '',
      workflow_id: null,
      state: 'RUNNING',
      state_info: null,
      project_id: 'default',
      task_execution_id: null,
      root_execution_id: null,
      created_at: '2026-11-23 10:00:00',
      updated_at: '2026-11-23 10:00:00',
      event: 'WORKFLOW_LAUNCHED',
    });
  });

  it('uses the workflow body for notifications, with the event id when there is no execution', () => {
    const envelope: EventEnvelope = {
      ...workflowEvent,
      type: 'PING',
      category: 'NOTIFICATION',
      execution_id: null,
      workflow: null,
      state: null,
      occurred_at: '2026-11-23T12:30:45+02:00',
    };
    const body = JSON.parse(httpDelivery({ ...post, envelope, format: 'mistral' }).body);
    expect(Object.keys(body)).toEqual(WORKFLOW_KEYS);
    expect(body.id).toBe(envelope.id);
    expect(body.event).toBe('PING');
    expect(body.created_at).toBe('2026-11-23 10:30:45');
    expect(body.created_at).toMatch(MISTRAL_TIME);
  });

  it('formats times as Mistral does', () => {
    expect(toMistralTime('2026-11-23T10:00:00.999Z')).toBe('2026-11-23 10:00:00');
    expect(toMistralTime('2026-11-23 01:43:39')).toBe('2026-11-23 01:43:39');
    expect(toMistralTime('not a time')).toBeNull();
  });
});

describe('GET and DELETE', () => {
  it('send no body and put the scalar envelope fields in the query string', () => {
    for (const method of ['GET', 'DELETE', 'get']) {
      const out = httpDelivery({ ...post, method, envelope: taskEvent, format: 'json' });
      expect(out.body).toBe('');
      expect(out.headers).toEqual({});
      const url = new URL(out.url);
      expect(url.origin + url.pathname).toBe(post.url);
      expect(Object.fromEntries(url.searchParams)).toEqual({
        id: taskEvent.id,
        type: 'TASK_SUCCEEDED',
        category: 'TASK',
        workbook: 'billing',
        workflow: 'charge',
        execution_id: 'exec-1',
        task_id: 'task-1',
        task_name: 'charge_card',
        state: 'SUCCESS',
        previous_state: 'RUNNING',
        sequence: '7',
        occurred_at: '2026-11-23T10:00:00.123Z',
        source: 'engine',
      });
    }
  });

  it("keeps the callback URL's own query parameters as they were", () => {
    const out = withEnvelopeQuery('https://hooks.example.com/wf?key=a%20b&flag#frag', taskEvent);
    expect(out.startsWith('https://hooks.example.com/wf?key=a%20b&flag&id=')).toBe(true);
    const url = new URL(out);
    expect(url.searchParams.get('key')).toBe('a b');
    expect(url.searchParams.get('sequence')).toBe('7');
    expect(url.searchParams.has('state_info')).toBe(false);
    expect(url.searchParams.has('data')).toBe(false);
  });

  it('encodes values and keeps the ce-* headers for cloudevents, without a content type', () => {
    const envelope = { ...taskEvent, task_name: 'a&b=c d' };
    const out = httpDelivery({ ...post, method: 'GET', envelope, format: 'cloudevents' });
    expect(new URL(out.url).searchParams.get('task_name')).toBe('a&b=c d');
    expect(out.headers['ce-id']).toBe(taskEvent.id);
    expect(out.headers).not.toHaveProperty('content-type');
  });

  it('use the envelope for the query even when a Mistral original body exists', () => {
    const out = httpDelivery({ ...post, method: 'DELETE', envelope: taskEvent, format: 'mistral', original: { format: 'mistral', body: MISTRAL_SAMPLE } });
    expect(out.body).toBe('');
    expect(new URL(out.url).searchParams.get('execution_id')).toBe('exec-1');
  });
});

describe('user agent', () => {
  it('names the package version', () => {
    const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    expect(USER_AGENT).toBe(`callback-relay/${version}`);
    expect(userAgent()).toBe(USER_AGENT);
  });
});

describe('originals and the formats that forward them', () => {
  const oslo = JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify({ message_id: 'm-1', event_type: 'x.y', priority: 'INFO', payload: {}, publisher_id: 'svc:host', timestamp: '2026-11-23 10:00:00.000000' }) });
  const base = { envelope: taskEvent, project: 'default', deliveryId: 'd-1', hostname: 'h' };

  it('forwards an oslo original unchanged in the oslo format, and only there', () => {
    expect(renderPayload({ ...base, format: 'oslo', transport: 'amqp', original: { format: 'oslo', body: oslo } }).body).toBe(oslo);
    // The mistral format never sends an oslo original: it builds Mistral's body from the envelope.
    const mistral = JSON.parse(renderPayload({ ...base, format: 'mistral', transport: 'http', original: { format: 'oslo', body: oslo } }).body);
    expect(mistral).toMatchObject({ id: 'task-1', event: 'TASK_SUCCEEDED', workflow_execution_id: 'exec-1' });
  });

  it('builds the oslo message from the envelope for a Mistral original', () => {
    const out = renderPayload({ ...base, format: 'oslo', transport: 'amqp', original: { format: 'mistral', body: MISTRAL_SAMPLE } });
    const message = JSON.parse(JSON.parse(out.body)['oslo.message']);
    expect(message).toMatchObject({ message_id: osloMessageId('d-1'), event_type: 'task.succeeded', publisher_id: 'callback-relay:h' });
  });

  it('carries cloudevents in binary mode over http and structured elsewhere', () => {
    const http = renderPayload({ ...base, format: 'cloudevents', transport: 'http' });
    expect(http.headers['ce-type']).toBe('TASK_SUCCEEDED');
    expect(http.contentType).toBe('application/json');
    const amqp = renderPayload({ ...base, format: 'cloudevents', transport: 'amqp' });
    expect(amqp.contentType).toBe('application/cloudevents+json');
    expect(JSON.parse(amqp.body)).toMatchObject({ specversion: '1.0', type: 'TASK_SUCCEEDED', data: { id: taskEvent.id } });
  });
});
