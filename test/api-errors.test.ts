import fs from 'node:fs';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closestName, editDistance } from '../src/closest-name.js';
import { likelyEventName } from '../src/fanout/match.js';
import { createWorkbook } from './helpers/engine.js';
import { startTestRelay, type TestRelay } from './helpers/relay.js';

/*
 * What a client reads when a request is refused: a missing field says "required", an unknown
 * one names the field it looks like, a mistyped event name names the event it looks like, and
 * an unknown workflow lists the workbook's workflows. Through the real API (answers checked
 * against openapi.yaml).
 */

let relay: TestRelay;

beforeAll(async () => {
  relay = await startTestRelay();
});

afterAll(async () => {
  await relay.close();
  fs.rmSync(relay.dataDir, { recursive: true, force: true });
});

const listener = (extra: Record<string, unknown> = {}) => ({
  workbook: 'billing',
  event_types: ['TASK'],
  callback: { url: 'http://127.0.0.1:9/hook' },
  ...extra,
});

async function refused(method: string, path: string, body: unknown) {
  const res = await relay.api(method, path, body);
  expect(res.status, res.text).toBe(400);
  expect(res.headers.get('content-type')).toContain('application/problem+json');
  return res.body as { detail: string; errors: Array<{ field: string; message: string }> };
}

describe('missing fields', () => {
  it('say "required", at any depth and for any type of field', async () => {
    const { workbook: _w, event_types: _e, ...rest } = listener();
    const top = await refused('POST', '/v1/listeners', rest);
    expect(top.errors).toEqual(
      expect.arrayContaining([
        { field: 'workbook', message: 'required' },
        { field: 'event_types', message: 'required' },
      ]),
    );
    expect(top.detail).toContain('workbook: required');

    const nested = await refused('POST', '/v1/listeners', listener({ target: { kind: 'execution' }, retry: {} }));
    expect(nested.errors).toEqual(
      expect.arrayContaining([
        { field: 'target.id', message: 'required' },
        { field: 'retry.schedule_ms', message: 'required' },
      ]),
    );

    // An enum with nothing given is missing too, not "an invalid option".
    expect((await refused('PUT', '/v1/executions/01ZZZZZZZZZZZZZZZZZZZZZZZZ', {})).errors).toEqual([{ field: 'state', message: 'required' }]);
    expect((await refused('POST', '/v1/executions', { workbook: 'billing' })).errors).toEqual([{ field: 'workflow', message: 'required' }]);
    expect((await refused('POST', '/v1/events', { workbook: 'billing' })).errors).toEqual([{ field: 'type', message: 'required' }]);
  });

  it('keep the message of a value that is there but wrong', async () => {
    const wrong = await refused('POST', '/v1/listeners', listener({ workbook: 7 }));
    expect(wrong.errors).toEqual([{ field: 'workbook', message: 'Invalid input: expected string, received number' }]);
  });
});

describe('unknown fields', () => {
  it('suggest the closest field the object has', async () => {
    const { workbook: _w, ...rest } = listener();
    const body = await refused('POST', '/v1/listeners', { ...rest, wrkbook: 'billing', colour: 'red' });
    expect(body.errors).toEqual(
      expect.arrayContaining([
        { field: 'wrkbook', message: 'unknown field; did you mean `workbook`?' },
        { field: 'colour', message: 'unknown field' },
        { field: 'workbook', message: 'required' },
      ]),
    );

    const execution = await refused('POST', '/v1/executions', { workbook: 'billing', workflow: 'main', inputs: {} });
    expect(execution.errors).toEqual([{ field: 'inputs', message: 'unknown field; did you mean `input`?' }]);
  });

  it('suggest within nested objects, one message per key', async () => {
    const body = await refused(
      'POST',
      '/v1/listeners',
      listener({ callback: { url: 'http://127.0.0.1:9/hook', methd: 'POST', timeout: 5000 }, retry: { shedule_ms: [1000] } }),
    );
    expect(body.errors).toEqual(
      expect.arrayContaining([
        { field: 'callback.methd', message: 'unknown field; did you mean `method`?' },
        { field: 'callback.timeout', message: 'unknown field' },
        { field: 'retry.shedule_ms', message: 'unknown field; did you mean `schedule_ms`?' },
      ]),
    );
  });
});

describe('listener events', () => {
  it('suggest the known event name or alias a mistyped one is close to', async () => {
    const body = await refused('POST', '/v1/listeners', listener({ events: ['TASK_SUCEEDED', 'on-task-completed', 'task_failed'] }));
    expect(body.errors).toEqual([
      {
        field: 'events.0',
        message: 'TASK_SUCEEDED is not a known event name, and as a NOTIFICATION type it is not in event_types (TASK); did you mean TASK_SUCCEEDED?',
      },
      { field: 'events.1', message: expect.stringMatching(/^on-task-completed is not a known event name, .*; did you mean on-task-complete\?$/) },
      { field: 'events.2', message: expect.stringMatching(/; did you mean TASK_FAILED\?$/) },
    ]);
  });

  it('keep the plain message for a name close to nothing, and accept close names where NOTIFICATION is listed', async () => {
    const far = await refused('POST', '/v1/listeners', listener({ events: ['compute.instance.create.end'] }));
    expect(far.errors).toEqual([
      { field: 'events.0', message: 'compute.instance.create.end is not in any of event_types (TASK); add its category or remove it' },
    ]);
    const accepted = await relay.api('POST', '/v1/listeners', listener({ event_types: ['TASK', 'NOTIFICATION'], events: ['TASK_SUCEEDED'] }));
    expect(accepted.status, accepted.text).toBe(201);
    expect(accepted.body.events).toEqual(['TASK_SUCEEDED']);
  });
});

describe('executions', () => {
  it('list the workbook\'s workflows for an unknown one, with the closest first', async () => {
    await createWorkbook(
      relay.api,
      "version: '2.0'\nname: shop\nworkflows:\n  charge:\n    tasks:\n      a: {action: std.noop}\n  refund:\n    tasks:\n      a: {action: std.noop}\n",
    );
    const close = await refused('POST', '/v1/executions', { workbook: 'shop', workflow: 'chrage' });
    expect(close.errors).toEqual([{ field: 'workflow', message: 'workbook shop has no workflow chrage; did you mean charge? (its workflows: charge, refund)' }]);
    const far = await refused('POST', '/v1/executions', { workbook: 'shop', workflow: 'main' });
    expect(far.errors).toEqual([{ field: 'workflow', message: 'workbook shop has no workflow main (its workflows: charge, refund)' }]);
    // An inherited property is not a workflow.
    const proto = await refused('POST', '/v1/executions', { workbook: 'shop', workflow: 'constructor' });
    expect(proto.errors[0].field).toBe('workflow');
  });
});

describe('closest names', () => {
  it.each([
    ['workbook', 'wrkbook', 1],
    ['workbook', 'wokrbook', 1],
    ['TASK_SUCCEEDED', 'TASK_SUCEEDED', 1],
    ['abc', 'abc', 0],
    ['', 'abc', 3],
    ['kitten', 'sitting', 3],
  ])('editDistance(%s, %s) = %i', (a, b, d) => {
    expect(editDistance(a, b)).toBe(d);
    expect(editDistance(b, a)).toBe(d);
  });

  it('stops at a limit with limit + 1, and agrees with the whole table below it', () => {
    expect(editDistance('kitten', 'sitting', 2)).toBe(3);
    expect(editDistance('kitten', 'sitting', 3)).toBe(3);
    expect(editDistance('a'.repeat(5000), 'b'.repeat(5000), 3)).toBe(4);
    expect(editDistance('ab'.repeat(50), 'ba'.repeat(50), 3)).toBe(2);
    // Pairs from a small alphabet, so that transpositions and near misses are common.
    let seed = 7;
    const random = (n: number) => (seed = (seed * 48271) % 2147483647) % n;
    const word = () => Array.from({ length: random(9) }, () => 'abc'[random(3)]).join('');
    for (let k = 0; k < 2000; k++) {
      const [a, b, limit] = [word(), word(), random(5)];
      expect(editDistance(a, b, limit)).toBe(Math.min(editDistance(a, b), limit + 1));
    }
  });

  it('picks the nearest within a distance that grows with the word, ignoring case', () => {
    expect(closestName('evnts', ['event_types', 'events'])).toBe('events');
    expect(closestName('URL', ['url', 'method'])).toBe('url');
    expect(closestName('id', ['kind', 'url'])).toBeNull();
    expect(closestName('url', ['url'])).toBeNull();
    expect(closestName('descriptoin', ['description'])).toBe('description');
  });

  it('takes only NOTIFICATION names as typos of events', () => {
    expect(likelyEventName('TASK_SUCEEDED')).toBe('TASK_SUCCEEDED');
    expect(likelyEventName('WORKFLOW_FAILD')).toBe('WORKFLOW_FAILED');
    expect(likelyEventName('execution.cancel.strat')).toBe('execution.cancel.start');
    expect(likelyEventName('TASK_SUCCEEDED')).toBeNull();
    expect(likelyEventName('on-task-complete')).toBeNull();
    expect(likelyEventName('TASK.*')).toBeNull();
    expect(likelyEventName('PING')).toBeNull();
    expect(likelyEventName('compute.instance.create.end')).toBeNull();
  });
});

describe('query parameters', () => {
  it('refuses one a list or the stats do not take, naming it and the one it looks like', async () => {
    const created = await relay.api('POST', '/v1/listeners', listener());
    expect(created.status).toBe(201);
    // The filter mistyped would otherwise answer the whole list as if it matched.
    const typo = await refused('GET', '/v1/deliveries?listenr_id=x', undefined);
    expect(typo.errors).toEqual([
      { field: 'listenr_id', message: 'unknown query parameter (did you mean listener_id?); this route takes limit, cursor, order, listener_id, event_id, status' },
    ]);
    expect((await refused('GET', '/v1/events?exection_id=e1', undefined)).errors[0]).toMatchObject({ field: 'exection_id', message: expect.stringContaining('(did you mean execution_id?)') });
    expect((await refused('GET', '/v1/executions?stat=RUNNING', undefined)).errors[0]).toMatchObject({ field: 'stat', message: expect.stringContaining('(did you mean state?)') });
    // order is taken by events, deliveries and executions only.
    expect((await refused('GET', '/v1/listeners?order=desc', undefined)).errors).toEqual([{ field: 'order', message: 'unknown query parameter; this route takes limit, cursor, workbook' }]);
    expect((await refused('GET', '/v1/workbooks?workbook=x', undefined)).errors[0].field).toBe('workbook');
    expect((await refused('GET', '/v1/executions/x/tasks?order=asc', undefined)).errors[0].field).toBe('order');
    expect((await refused('GET', '/v1/stats?windw=1h', undefined)).errors).toEqual([
      { field: 'windw', message: 'unknown query parameter (did you mean window?); this route takes window, bucket' },
    ]);
    expect((await refused('GET', `/v1/listeners/${created.body.id}/stats?buckets=1m`, undefined)).errors[0]).toMatchObject({ field: 'buckets' });
    // Those it takes still work.
    for (const path of ['/v1/deliveries?listener_id=x&status=failed&order=desc&limit=5', '/v1/events?workbook=w&type=T&order=desc', '/v1/listeners?workbook=billing&limit=1', '/v1/stats?window=1h&bucket=1m']) {
      expect((await relay.api('GET', path)).status, path).toBe(200);
    }
  });
});

describe('a path that is not percent-encoded UTF-8', () => {
  it('is a 400 naming the path on every route that takes an id or a name, not a 500', async () => {
    const bad = '%E0%A4%A';
    const routes: Array<[string, string, unknown?]> = [
      ['GET', `/v1/listeners/${bad}`],
      ['PATCH', `/v1/listeners/${bad}`, { enabled: false }],
      ['DELETE', `/v1/listeners/${bad}`],
      ['POST', `/v1/listeners/${bad}/ping`, {}],
      ['GET', `/v1/events/${bad}`],
      ['GET', `/v1/deliveries/${bad}`],
      ['POST', `/v1/deliveries/${bad}/retry`, {}],
      ['GET', `/v1/workbooks/${bad}`],
      ['DELETE', `/v1/workbooks/${bad}`],
      ['GET', `/v1/executions/${bad}`],
      ['GET', `/v1/tasks/${bad}`],
      ['GET', '/v1/events/%FF'],
    ];
    for (const [method, path, body] of routes) {
      const { detail, errors } = await refused(method, path, body);
      expect(errors, `${method} ${path}`).toEqual([{ field: '(path)', message: 'not valid percent-encoded UTF-8' }]);
      expect(detail).toMatch(/^the URL path is not valid percent-encoded UTF-8 \(Failed to decode param '%/);
    }
    // Without a token it is a 401 as any other /v1 request.
    expect((await relay.api('GET', `/v1/listeners/${bad}`, undefined, { token: null })).status).toBe(401);
  });
});

describe('a key named __proto__', () => {
  it('is refused wherever it is in a JSON body, instead of vanishing from what is stored', async () => {
    const json = { headers: { 'content-type': 'application/json' } };
    const bodies: Array<[string, string]> = [
      // Dropped, it made data lose a key, and a filter of it match every event.
      ['/v1/events', '{"type":"proto.event","id":"proto-1","data":{"__proto__":{"admin":true},"x":1}}'],
      ['/v1/events', '{"type":"proto.event","id":"proto-2","data":{"\\u005f_proto__":1}}'],
      ['/v1/listeners', '{"workbook":"*","event_types":["TASK"],"filter":{"__proto__":{"$regex":"a"}},"callback":{"url":"http://127.0.0.1:9/hook"}}'],
    ];
    // Checked on the bytes as they are parsed: after a Content-Encoding is undone, past a byte order mark.
    const zipped = { headers: { ...json.headers, 'content-encoding': 'gzip' } };
    const requests: Array<[string, string | Buffer, typeof json]> = [
      ...bodies.map(([path, raw]): [string, string, typeof json] => [path, raw, json]),
      ['/v1/events', zlib.gzipSync('{"type":"proto.event","id":"proto-4","data":{"__proto__":1}}'), zipped],
      ['/v1/events', '\ufeff{"type":"proto.event","id":"proto-5","data":{"__proto__":1}}', json],
    ];
    const listenersBefore = (await relay.api('GET', '/v1/listeners?limit=1000')).body.items.length;
    for (const [path, raw, options] of requests) {
      const res = await relay.api('POST', path, undefined, { raw, ...options });
      expect(res.status, res.text).toBe(400);
      expect(res.body).toMatchObject({
        detail: 'the body is refused: a key named __proto__ cannot be stored',
        errors: [{ field: '(body)', message: 'a key named __proto__ cannot be stored' }],
      });
    }
    for (const id of ['proto-1', 'proto-4', 'proto-5']) expect((await relay.api('GET', `/v1/events/${id}`)).status).toBe(404);
    expect((await relay.api('GET', '/v1/listeners?limit=1000')).body.items).toHaveLength(listenersBefore);
    // Keys that only look like it are data as any other.
    const fine = await relay.api('POST', '/v1/events', undefined, { raw: '{"type":"proto.event","id":"proto-3","data":{"constructor":1,"__proto":2}}', ...json });
    expect(fine.status, fine.text).toBe(202);
    expect((await relay.api('GET', '/v1/events/proto-3')).body.data).toEqual({ constructor: 1, __proto: 2 });
  });
});

describe('a number beyond what a double holds', () => {
  it('is refused naming its key, instead of being stored as null', async () => {
    const json = { headers: { 'content-type': 'application/json' } };
    const cases: Array<[string, string, string]> = [
      ['/v1/events', '{"type":"big.event","id":"big-1","data":{"bytes":1e309}}', '"bytes"'],
      ['/v1/events', `{"type":"big.event","id":"big-2","data":{"n":[-${'9'.repeat(320)}]}}`, 'item 0 of an array'],
      ['/v1/listeners', '{"workbook":"*","event_types":["TASK"],"filter":{"data.size":{"$gt":1E+999}},"callback":{"url":"http://127.0.0.1:9/hook"}}', '"$gt"'],
    ];
    const listenersBefore = (await relay.api('GET', '/v1/listeners?limit=1000')).body.items.length;
    for (const [path, raw, key] of cases) {
      const res = await relay.api('POST', path, undefined, { raw, ...json });
      expect(res.status, res.text).toBe(400);
      const message = `${key} is a number too large to store (beyond ±1.8e308)`;
      expect(res.body).toMatchObject({ detail: `the body is refused: ${message}`, errors: [{ field: '(body)', message }] });
    }
    for (const id of ['big-1', 'big-2']) expect((await relay.api('GET', `/v1/events/${id}`)).status).toBe(404);
    expect((await relay.api('GET', '/v1/listeners?limit=1000')).body.items).toHaveLength(listenersBefore);
    // What a double holds, and the same text in a string, is stored as sent (a tiny one is 0, as in any JSON reader).
    const fine = await relay.api('POST', '/v1/events', undefined, { raw: '{"type":"big.event","id":"big-3","data":{"a":1.7e308,"b":1e-400,"c":"1e999"}}', ...json });
    expect(fine.status, fine.text).toBe(202);
    expect((await relay.api('GET', '/v1/events/big-3')).body.data).toEqual({ a: 1.7e308, b: 0, c: '1e999' });
  });
});
