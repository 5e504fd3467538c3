import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { categoryOf } from '../src/records/event.js';
import { MISTRAL_TASK_BODY } from './helpers/mistral-bodies.js';
import { startTestRelay, type TestRelay } from './helpers/relay.js';

/* The envelope additions through the ingest API: priority, data_schema, source_format, fixed categories. */

let relay: TestRelay;
beforeAll(async () => {
  relay = await startTestRelay();
});
afterAll(async () => {
  await relay.close();
});

describe('fixed categories', () => {
  it.each([
    ['WORKFLOW_FAILED', 'EXECUTION'],
    ['execution.cancel.start', 'EXECUTION'],
    ['execution.pause.error', 'EXECUTION'],
    ['execution.resume.end', 'EXECUTION'],
    ['TASK_SKIPPED', 'TASK'],
    ['task.rerun.end', 'TASK'],
    ['task.rerun.start.extra', 'NOTIFICATION'],
    ['execution.stop.start', 'NOTIFICATION'],
    ['PING', 'NOTIFICATION'],
    ['esi_leap.lease.fulfill.end', 'NOTIFICATION'],
  ])('%s is %s', (type, category) => {
    expect(categoryOf(type)).toBe(category);
  });

  it('refuses a client category that disagrees with an operation type', async () => {
    const res = await relay.api('POST', '/v1/events', { type: 'execution.cancel.start', category: 'NOTIFICATION' });
    expect(res.status).toBe(400);
    expect(res.body.errors).toEqual([{ field: 'category', message: 'execution.cancel.start is in category EXECUTION, not NOTIFICATION' }]);
  });
});

describe('priority, data_schema and source_format', () => {
  it('keeps what a client sends and fills null otherwise', async () => {
    const sent = await relay.api('POST', '/v1/events', {
      events: [
        { id: 'with-extras', type: 'node.power.end', priority: 'WARN', data_schema: { namespace: 'ironic', name: 'NodePayload', version: '1.3' }, data: { power: 'on' } },
        { id: 'plain', type: 'node.power.end' },
      ],
    });
    expect(sent.status, sent.text).toBe(202);
    const withExtras = (await relay.api('GET', '/v1/events/with-extras')).body;
    expect(withExtras).toMatchObject({ priority: 'WARN', data_schema: { namespace: 'ironic', name: 'NodePayload', version: '1.3' }, source_format: null });
    expect((await relay.api('GET', '/v1/events/plain')).body).toMatchObject({ priority: null, data_schema: null, source_format: null });
  });

  it('names the field of a bad value', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ type: 'x.y', priority: 'warn' }, 'priority'],
      [{ type: 'x.y', priority: 'TOO_LONG_FOR_A_PRIORITY' }, 'priority'],
      [{ type: 'x.y', data_schema: { namespace: 'a', name: 'b' } }, 'data_schema.version'],
      [{ type: 'x.y', source_format: 'xml' }, 'source_format'],
    ];
    for (const [event, field] of cases) {
      const res = await relay.api('POST', '/v1/events', event);
      expect(res.status, JSON.stringify(event)).toBe(400);
      expect(res.body.errors.map((e: { field: string }) => e.field)).toContain(field);
    }
  });

  it("takes a received envelope back unchanged: a client's source_format is ignored, as its sequence is", async () => {
    const received = { id: 'posted-back', type: 'node.power.end', execution_id: 'x-back', sequence: 7, priority: 'INFO', data_schema: null, source_format: 'oslo', data: {} };
    const first = await relay.api('POST', '/v1/events', received);
    expect(first.status, first.text).toBe(202);
    expect((await relay.api('GET', '/v1/events/posted-back')).body).toMatchObject({ source_format: null, sequence: 1, priority: 'INFO' });
    // The same event without the two fields the relay assigns is the same body: a duplicate, not a conflict.
    const { sequence: _s, source_format: _f, ...plain } = received;
    const again = await relay.api('POST', '/v1/events', { ...plain, source_format: null });
    expect(again.status, again.text).toBe(202);
    expect(again.body.items).toEqual([{ id: 'posted-back', duplicate: true }]);
  });

  it('marks a Mistral notification as keeping its original', async () => {
    const res = await relay.api('POST', '/v1/ingest/mistral', undefined, { raw: MISTRAL_TASK_BODY });
    expect(res.status).toBe(200);
    const event = (await relay.api('GET', `/v1/events/${res.body.id}`)).body;
    expect(event).toMatchObject({ source: 'mistral', source_format: 'mistral', priority: null });
  });

  it('lets a filter read the new fields', async () => {
    const created = await relay.api('POST', '/v1/listeners', {
      workbook: '*',
      event_types: ['NOTIFICATION'],
      filter: { priority: 'ERROR', 'data_schema.name': { $regex: '^Lease' } },
      callback: { url: 'http://127.0.0.1:9/never' },
    });
    expect(created.status, created.text).toBe(201);
  });
});
