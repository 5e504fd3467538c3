import fs from 'node:fs';
import { compileErrors, validate } from '@readme/openapi-parser';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createApp } from '../src/api/app.js';
import { tokenRegistry } from '../src/api/auth.js';
import { MAX_EVENTS_PER_REQUEST } from '../src/api/routes/events.js';
import { ACTIONS, parseWorkbook } from '../src/engine/workbook.js';
import { AttemptView, DeliveryView } from '../src/records/delivery.js';
import { ExecutionInput, ExecutionStateInput, ExecutionView, TaskStateInput, TaskView, WorkbookView } from '../src/records/engine.js';
import { EventEnvelope, EventInput } from '../src/records/event.js';
import { AmqpCallbackSchema, ExecCallbackSchema, HttpCallbackSchema, ModuleCallbackSchema } from '../src/records/callback.js';
import { ListenerInput, ListenerView } from '../src/records/listener.js';
import { HTTP_METHODS, OPENAPI_TEXT, openapi, validateResponse } from './helpers/openapi.js';
import { startTestRelay, type TestRelay } from './helpers/relay.js';

type Json = Record<string, any>;

/** "GET /v1/listeners/{id}" for every operation the document describes. */
function documentedOperations(): string[] {
  return Object.entries<Json>(openapi.paths).flatMap(([path, item]) =>
    HTTP_METHODS.filter((m) => item[m]).map((m) => `${m.toUpperCase()} ${path}`),
  );
}

describe('openapi.yaml', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    expect(openapi.openapi).toBe('3.1.0');
    // validate() dereferences in place; give it its own copy.
    const result = await validate(structuredClone(openapi) as Parameters<typeof validate>[0]);
    expect(result.valid, result.valid ? '' : compileErrors(result)).toBe(true);
  });

  it('names the package and its version', () => {
    const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    expect(openapi.info).toMatchObject({ title: pkg.name, version: pkg.version });
  });

  it('asks for a bearer token on every /v1 operation and on no other', () => {
    expect(openapi.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
    for (const op of documentedOperations()) {
      const [method, path] = op.split(' ');
      const operation = openapi.paths[path][method.toLowerCase()];
      const security = operation.security ?? openapi.security;
      if (path.startsWith('/v1/')) {
        expect(security, op).toEqual([{ bearerAuth: [] }]);
        expect(Object.keys(operation.responses), op).toContain('401');
      } else {
        expect(security ?? [], op).toEqual([]);
      }
    }
  });

  it('answers every error as application/problem+json with the Problem schema', () => {
    for (const op of documentedOperations()) {
      const [method, path] = op.split(' ');
      for (const [status, response] of Object.entries<Json>(openapi.paths[path][method.toLowerCase()].responses)) {
        if (Number(status) < 400) continue;
        const resolved = response.$ref ? openapi.components.responses[response.$ref.split('/').pop()] : response;
        expect(Object.keys(resolved.content), `${op} ${status}`).toEqual(['application/problem+json']);
        expect(resolved.content['application/problem+json'].schema, `${op} ${status}`).toEqual({
          $ref: '#/components/schemas/Problem',
        });
      }
    }
  });
});

/*
 * Reduces a JSON Schema to the facts the document and the zod schemas must agree on: at each
 * dotted path, the property names, the required ones, the enum values and the defaults.
 * Branches (anyOf, oneOf, allOf) are merged, `$ref`s followed, `[]` marks array items and `*`
 * map values.
 */
function schemaFacts(root: Json, resolve: (ref: string) => Json, ignore: string[] = []): Record<string, unknown> {
  const facts = new Map<string, unknown>();
  const union = (key: string, values: unknown[]) => {
    const all = new Set([...((facts.get(key) as unknown[]) ?? []), ...values]);
    facts.set(key, [...all].sort());
  };
  const visit = (node: unknown, path: string, refs: string[]) => {
    if (!node || typeof node !== 'object') return;
    if (ignore.some((p) => path === p || path.startsWith(`${p}.`) || path.startsWith(`${p}[]`))) return;
    const s = node as Json;
    const at = (suffix: string) => `${path || '(root)'} ${suffix}`;
    if ('default' in s) facts.set(at('default'), s.default);
    if (typeof s.$ref === 'string' && !refs.includes(s.$ref)) visit(resolve(s.$ref), path, [...refs, s.$ref]);
    for (const branch of [...(s.anyOf ?? []), ...(s.oneOf ?? []), ...(s.allOf ?? [])]) visit(branch, path, refs);
    if (s.properties) {
      union(at('properties'), Object.keys(s.properties));
      for (const [name, sub] of Object.entries(s.properties)) visit(sub, path ? `${path}.${name}` : name, refs);
    }
    if (Array.isArray(s.required) && s.required.length) union(at('required'), s.required);
    if (Array.isArray(s.enum)) union(at('enum'), s.enum);
    if ('const' in s) union(at('enum'), [s.const]);
    if (s.items && typeof s.items === 'object') visit(s.items, `${path}[]`, refs);
    if (s.additionalProperties && typeof s.additionalProperties === 'object') visit(s.additionalProperties, `${path}.*`, refs);
  };
  visit(root, '', []);
  return Object.fromEntries([...facts].sort(([a], [b]) => a.localeCompare(b)));
}

const fromDocument = (ref: string): Json =>
  ref
    .slice(2)
    .split('/')
    .reduce((node, part) => node[part.replace(/~1/g, '/').replace(/~0/g, '~')], openapi);

function fromZod(root: Json) {
  return (ref: string): Json => ref.slice(2).split('/').reduce((node, part) => node[part], root);
}

describe('openapi.yaml and the zod schemas', () => {
  it('describe the same listener input', () => {
    // The callback's schema picks a shape by its transport (a transform zod cannot describe);
    // the shapes are compared one by one below.
    const zod = z.toJSONSchema(ListenerInput, { io: 'input', unrepresentable: 'any' }) as Json;
    const documented = schemaFacts(openapi.components.schemas.ListenerInput, fromDocument, ['callback']);
    expect(documented).toEqual(schemaFacts(zod, fromZod(zod), ['callback']));
    expect(documented).toHaveProperty(['filter.* properties']);
  });

  for (const [transport, schema, component] of [
    ['http', HttpCallbackSchema, 'HttpCallbackInput'],
    ['amqp', AmqpCallbackSchema, 'AmqpCallbackInput'],
    ['exec', ExecCallbackSchema, 'ExecCallbackInput'],
    ['an operator module', ModuleCallbackSchema, 'ModuleCallbackInput'],
  ] as const) {
    it(`describe the same ${transport} callback`, () => {
      const zod = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Json;
      const documented = schemaFacts(openapi.components.schemas[component], fromDocument);
      expect(documented).toEqual(schemaFacts(zod, fromZod(zod)));
    });
  }

  it('list every callback shape under CallbackInput', () => {
    const refs = openapi.components.schemas.CallbackInput.oneOf.map((b: Json) => b.$ref);
    expect(refs).toEqual(['HttpCallbackInput', 'AmqpCallbackInput', 'ExecCallbackInput', 'ModuleCallbackInput'].map((n) => `#/components/schemas/${n}`));
    expect(schemaFacts(openapi.components.schemas.HttpCallbackInput, fromDocument)).toHaveProperty(['method enum'], ['DELETE', 'GET', 'PATCH', 'POST', 'PUT']);
  });

  it('describe the same listener view', () => {
    const zod = z.toJSONSchema(ListenerView, { unrepresentable: 'any' }) as Json;
    // The view's zod schema types `filter` as any record and header values as any string; the
    // document is more precise there (the Filter shape, values always "***").
    const ignore = ['filter', 'callback.headers'];
    expect(schemaFacts(openapi.components.schemas.Listener, fromDocument, ignore)).toEqual(
      schemaFacts(zod, fromZod(zod), ignore),
    );
  });

  it('describe the same event input', () => {
    const zod = z.toJSONSchema(EventInput, { io: 'input', unrepresentable: 'any' }) as Json;
    const documented = schemaFacts(openapi.components.schemas.EventInput, fromDocument);
    expect(documented).toEqual(schemaFacts(zod, fromZod(zod)));
    expect(documented).toHaveProperty(['(root) required'], ['type']);
    expect(documented).toHaveProperty(['category enum'], ['EXECUTION', 'NOTIFICATION', 'TASK']);
  });

  it('describe the same batch of event inputs as the route reads', () => {
    const batch = openapi.components.schemas.EventBatchInput;
    expect(batch.properties.events).toMatchObject({ minItems: 1, maxItems: MAX_EVENTS_PER_REQUEST, items: { $ref: '#/components/schemas/EventInput' } });
    expect(batch.required).toEqual(['events']);
  });

  for (const [name, schema, component] of [
    ['execution input', ExecutionInput, 'ExecutionInput'],
    ['execution state change', ExecutionStateInput, 'ExecutionStateChange'],
    ['task state change', TaskStateInput, 'TaskStateChange'],
  ] as const) {
    it(`describe the same ${name}`, () => {
      const zod = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Json;
      const documented = schemaFacts(openapi.components.schemas[component], fromDocument);
      expect(documented).toEqual(schemaFacts(zod, fromZod(zod)));
    });
  }

  it('describe the state changes a client may ask for', () => {
    expect(schemaFacts(openapi.components.schemas.ExecutionStateChange, fromDocument)).toHaveProperty(['state enum'], ['CANCELLED', 'PAUSED', 'RUNNING']);
    expect(schemaFacts(openapi.components.schemas.TaskStateChange, fromDocument)).toHaveProperty(['state enum'], ['RUNNING']);
    expect(schemaFacts(openapi.components.schemas.ExecutionInput, fromDocument)).toHaveProperty(['input default'], {});
  });

  // The document is more precise than the views' zod schemas in places (formats, minimums),
  // which the facts leave out; names, required fields and enums must agree.
  for (const [name, schema, component] of [
    ['event envelope', EventEnvelope, 'EventEnvelope'],
    ['delivery view', DeliveryView, 'Delivery'],
    ['attempt view', AttemptView, 'Attempt'],
    ['workbook view', WorkbookView, 'Workbook'],
    ['execution view', ExecutionView, 'Execution'],
    ['task view', TaskView, 'Task'],
  ] as const) {
    it(`describe the same ${name}`, () => {
      const zod = z.toJSONSchema(schema, { unrepresentable: 'any' }) as Json;
      const documented = schemaFacts(openapi.components.schemas[component], fromDocument);
      expect(documented).toEqual(schemaFacts(zod, fromZod(zod)));
      expect(documented['(root) required']).toEqual(Object.keys(schema.shape).sort());
    });
  }

  it('give workbook examples the engine accepts', () => {
    const created = openapi.paths['/v1/workbooks'].post;
    const fenced = /```yaml\n([\s\S]*?)```/.exec(created.description);
    expect(fenced, 'the create operation shows an example workbook').not.toBeNull();
    const example = parseWorkbook(fenced![1]);
    const actions = Object.values(example.workflows).flatMap((w) => Object.values(w.tasks).map((t) => t.action));
    expect(new Set(actions).size).toBeGreaterThanOrEqual(4);

    const body = openapi.components.requestBodies.WorkbookDefinition.content;
    expect(Object.keys(body).sort()).toEqual(['application/json', 'application/x-yaml', 'application/yaml', 'text/yaml']);
    expect(() => parseWorkbook(body['application/yaml'].example)).not.toThrow();
    const { workbook, wrapped } = body['application/json'].examples;
    expect(() => parseWorkbook(JSON.stringify(workbook.value), 'json')).not.toThrow();
    expect(() => parseWorkbook(wrapped.value.definition)).not.toThrow();
  });

  it('name every action and state the engine knows', () => {
    const schemas = openapi.components.schemas;
    expect(schemas.TaskDefinition.properties.action.enum).toEqual([...ACTIONS]);
    expect(schemas.ExecutionState.enum).toEqual(ExecutionView.shape.state.options);
    expect(schemas.TaskState.enum).toEqual(TaskView.shape.state.options);
    const stateParameter = openapi.paths['/v1/executions'].get.parameters.find((p: Json) => p.name === 'state');
    expect(stateParameter.schema).toEqual({ $ref: '#/components/schemas/ExecutionState' });
  });

  it('let a merge patch name every field of the input but the secret', () => {
    const input = openapi.components.schemas.ListenerInput.properties;
    const patch = openapi.components.schemas.ListenerPatch.properties;
    expect(Object.keys(patch).sort()).toEqual(Object.keys(input).filter((k) => k !== 'secret').sort());
    expect(Object.keys(patch.callback.properties).sort()).toEqual(
      Object.keys(openapi.components.schemas.HttpCallbackInput.properties).sort(),
    );
  });
});

interface RouterLayer {
  rawPath?: string | string[];
  route?: { path: string | string[]; methods: Record<string, boolean> };
  handle: { stack?: RouterLayer[] };
}

/** "GET /v1/listeners/{id}" for every route registered on the express app. */
function registeredRoutes(stack: RouterLayer[], prefix = ''): string[] {
  const join = (base: string, path: string) => (path === '/' ? base || '/' : base + path);
  return stack.flatMap((layer) => {
    if (layer.route) {
      const paths = [layer.route.path].flat();
      const methods = Object.keys(layer.route.methods);
      return paths.flatMap((p) =>
        methods.map((m) => `${m === '_all' ? 'ALL' : m.toUpperCase()} ${join(prefix, p).replace(/:(\w+)/g, '{$1}')}`),
      );
    }
    if (layer.handle.stack) {
      const mount = [layer.rawPath ?? '/'].flat();
      return mount.flatMap((m) => registeredRoutes(layer.handle.stack!, join(prefix, m) === '/' ? '' : join(prefix, m)));
    }
    return [];
  });
}

/*
 * Building the routers needs no working dependencies: anything a route factory touches while
 * registering gets an inert stand-in that answers every property and call with itself.
 */
const inert: any = new Proxy(function inert() {}, {
  get: (_target, key) => (key === 'then' ? undefined : inert),
  apply: () => inert,
  construct: () => inert,
});

function registeredOperations(): string[] {
  const deps = { log: pino({ level: 'silent' }), tokens: tokenRegistry(new Map()) };
  const app = createApp(new Proxy(deps, { get: (t, key) => (key in t ? t[key as keyof typeof t] : inert) }) as Parameters<typeof createApp>[0]);
  const registered = registeredRoutes((app.router as unknown as { stack: RouterLayer[] }).stack);
  expect(registered.length).toBeGreaterThan(0);
  return [...new Set(registered)].sort();
}

describe('openapi.yaml and the express app', () => {
  it('registers every documented operation', () => {
    const registered = registeredOperations();
    expect(documentedOperations().filter((op) => !registered.includes(op)), 'documented but not registered').toEqual([]);
  });

  it('documents every registered route', () => {
    const documented = documentedOperations();
    expect(registeredOperations().filter((op) => !documented.includes(op)), 'registered but not documented').toEqual([]);
  });

  describe('on a running relay', () => {
    let relay: TestRelay;
    beforeAll(async () => {
      relay = await startTestRelay();
    });
    afterAll(async () => {
      await relay.close();
    });

    const concrete = (path: string) => path.replace(/\{[^}]+\}/g, '01JPROBE0000000000000000ZZ');
    /** The answer of the catch-all handler for a request no route took. */
    const isRouteNotFound = (r: { status: number; body: any }, method: string, path: string) =>
      r.status === 404 && r.body?.type === '/problems/not-found' && r.body.detail === `${method} ${path} does not exist`;

    it('routes every documented operation', async () => {
      for (const op of documentedOperations()) {
        const [method, template] = op.split(' ');
        const path = concrete(template);
        const body = ['POST', 'PUT', 'PATCH'].includes(method) ? {} : undefined;
        // Each answer is also checked against the document by request().
        const r = await relay.api(method, path, body);
        expect(isRouteNotFound(r, method, path), `${op} answered ${r.status} ${r.text}`).toBe(false);
      }
    });

    it('routes no undocumented method on a documented path', async () => {
      for (const template of Object.keys(openapi.paths)) {
        const path = concrete(template);
        for (const method of ['get', 'put', 'post', 'patch', 'delete'].filter((m) => !openapi.paths[template][m])) {
          const r = await relay.api(method.toUpperCase(), path, method === 'get' || method === 'delete' ? undefined : {});
          expect(isRouteNotFound(r, method.toUpperCase(), path), `${method.toUpperCase()} ${template} answered ${r.status} ${r.text}`).toBe(true);
        }
      }
    });

    it('serves this document at GET /openapi.yaml', async () => {
      const r = await relay.api('GET', '/openapi.yaml', undefined, { token: null });
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toMatch(/^application\/yaml/);
      expect(r.text).toBe(OPENAPI_TEXT);
    });
  });
});

describe('validateResponse', () => {
  const listener = {
    id: '01JD8XQ4ZQ6T1V9W7Y3R5K2M8N',
    workbook: 'billing',
    event_types: ['TASK'],
    events: null,
    target: null,
    filter: { 'data.vendor': { $in: ['dell'] } },
    callback: { transport: 'http', url: 'https://hooks.example.com/', method: 'POST', headers: { 'X-Key': '***' }, format: 'json', timeout_ms: 15000 },
    retry: { schedule_ms: [5000] },
    enabled: true,
    disabled_reason: null,
    description: null,
    ordering: 'none',
    max_in_flight: 32,
    rate_limit_per_s: null,
    created_at: '2026-11-23T10:00:00.000Z',
    updated_at: '2026-11-23T10:00:00.000Z',
    health: { state: 'ok', success_rate_24h: null, p95_ms_24h: null, last_success_at: null, last_failure: null },
  };
  const secret = 'whsec_' + Buffer.alloc(32, 1).toString('base64');
  const json = 'application/json; charset=utf-8';
  const ok = (over: Partial<Parameters<typeof validateResponse>[0]>) => () =>
    validateResponse({ method: 'GET', path: `/v1/listeners/${listener.id}`, status: 200, contentType: json, body: listener, ...over });

  it('accepts what the document describes', () => {
    expect(ok({})).not.toThrow();
    expect(ok({ path: '/v1/listeners?limit=3&cursor=abc', body: { items: [listener], next_cursor: null } })).not.toThrow();
    expect(ok({ method: 'POST', path: '/v1/listeners', status: 201, body: { ...listener, secret }, headers: new Headers({ location: '/v1/listeners/x' }) })).not.toThrow();
    expect(ok({ method: 'DELETE', status: 204, contentType: null, body: undefined })).not.toThrow();
    expect(ok({ path: '/metrics', contentType: 'text/plain; version=0.0.4; charset=utf-8', body: '# HELP x\n' })).not.toThrow();
  });

  it('refuses drift', () => {
    expect(ok({ body: { ...listener, colour: 'red' } })).toThrow(/"colour" is not in the document/);
    expect(ok({ body: { ...listener, callback: { ...listener.callback, retries: 3 } } })).toThrow(/\/callback .*"retries"/);
    expect(ok({ body: { ...listener, secret } })).toThrow(/"secret" is not in the document/);
    expect(ok({ body: { ...listener, enabled: 'yes' } })).toThrow(/\/enabled must be boolean/);
    expect(ok({ status: 409 })).toThrow(/GET \/v1\/listeners\/\{id\} → 409: status 409 is not documented/);
    expect(ok({ contentType: 'text/html' })).toThrow(/content type text\/html is not documented/);
    expect(ok({ method: 'POST', path: '/v1/listeners', status: 201, body: { ...listener, secret }, headers: new Headers() })).toThrow(/required header Location/);
    expect(ok({ method: 'DELETE', status: 204, body: { deleted: true } })).toThrow(/documents no body/);
    expect(ok({ status: 404, contentType: 'application/problem+json', body: { type: '/problems/not-found', title: 'Not found', status: 404 } })).toThrow(/must have required property 'detail'/);
    expect(ok({ method: 'PUT', status: 200 })).toThrow(/no PUT operation/);
  });

  const envelope = {
    id: '01JD8XR2B7K4M9N3P5Q6S8T0VW',
    type: 'TASK_SUCCEEDED',
    category: 'TASK',
    workbook: 'billing',
    workflow: 'charge',
    execution_id: 'ex-1',
    task_id: 't-1',
    task_name: 'charge_card',
    state: 'SUCCESS',
    previous_state: 'RUNNING',
    state_info: null,
    sequence: 7,
    occurred_at: '2026-11-23T10:00:00.123Z',
    source: 'api',
    priority: null,
    data_schema: null,
    source_format: null,
    data: { anything: { goes: [1, 'two'] } },
  };
  const delivery = {
    id: '01JD8XS0C3D5E7F9G1H3J5K7M9',
    event_id: envelope.id,
    event_type: envelope.type,
    workbook: envelope.workbook,
    listener_id: listener.id,
    status: 'pending',
    attempt_count: 1,
    next_attempt_at: '2026-11-23T10:00:05.000Z',
    in_flight: false,
    last_error: 'HTTP 500 Internal Server Error',
    created_at: '2026-11-23T10:00:00.200Z',
    updated_at: '2026-11-23T10:00:00.400Z',
  };
  const attempt = { number: 1, started_at: '2026-11-23T10:00:00.300Z', duration_ms: 12, status_code: 500, error: 'HTTP_ERROR', response_excerpt: 'oops' };
  const event = { ...envelope, received_at: '2026-11-23T10:00:00.200Z' };
  const check = (method: string, path: string, status: number, body: unknown) => () =>
    validateResponse({ method, path, status, contentType: json, body });

  it('accepts the event, ingest and delivery answers the document describes', () => {
    expect(check('POST', '/v1/events', 202, { items: [{ id: 'e-1', duplicate: false }, { id: 'e-2', duplicate: true }] })).not.toThrow();
    expect(check('GET', '/v1/events?since=2026-11-23T00:00:00Z', 200, { items: [event], next_cursor: 'djE6Nw' })).not.toThrow();
    expect(check('GET', `/v1/events/${envelope.id}`, 200, { ...event, deliveries: [delivery], deliveries_next_cursor: null })).not.toThrow();
    expect(check('GET', "/v1/events/my:id(1)", 200, { ...event, sequence: null, execution_id: null, deliveries: [], deliveries_next_cursor: null })).not.toThrow();
    expect(check('POST', '/v1/ingest/mistral?workbook=x', 200, { stored: true, id: 'mistral-0123', duplicate: false })).not.toThrow();
    expect(check('POST', '/v1/ingest/mistral', 200, { stored: false, reason: 'notification has no event' })).not.toThrow();
    expect(check('GET', '/v1/deliveries?status=failed', 200, { items: [delivery], next_cursor: null })).not.toThrow();
    expect(check('GET', `/v1/deliveries/${delivery.id}`, 200, { ...delivery, attempts: [attempt] })).not.toThrow();
    expect(check('POST', `/v1/deliveries/${delivery.id}/retry`, 202, delivery)).not.toThrow();
    expect(check('POST', `/v1/listeners/${listener.id}/ping`, 202, { event_id: envelope.id })).not.toThrow();
    expect(check('POST', `/v1/listeners/${listener.id}/replay`, 202, { count: 3, truncated: false })).not.toThrow();
  });

  it('refuses drift in the event, ingest and delivery answers', () => {
    expect(check('GET', `/v1/events/${envelope.id}`, 200, { ...event, deliveries: [delivery], deliveries_next_cursor: null, colour: 'red' })).toThrow(/"colour" is not in the document/);
    expect(check('GET', `/v1/events/${envelope.id}`, 200, { ...event, deliveries: [{ ...delivery, colour: 'red' }], deliveries_next_cursor: null })).toThrow(/\/deliveries\/0 .*"colour"/);
    expect(check('GET', `/v1/events/${envelope.id}`, 200, event)).toThrow(/required property 'deliveries'/);
    expect(check('GET', '/v1/events', 200, { items: [envelope], next_cursor: null })).toThrow(/required property 'received_at'/);
    expect(check('GET', '/v1/events', 200, { items: [{ ...event, deliveries: [] }], next_cursor: null })).toThrow(/"deliveries" is not in the document/);
    expect(check('GET', `/v1/deliveries/${delivery.id}`, 200, { ...delivery, attempts: [{ ...attempt, retry_after: 5 }] })).toThrow(/"retry_after"/);
    expect(check('GET', '/v1/deliveries', 200, { items: [{ ...delivery, status: 'sent' }], next_cursor: null })).toThrow(/status must be equal to one of the allowed values/);
    expect(check('POST', '/v1/ingest/mistral', 200, { stored: true, reason: 'x' })).toThrow(/does not match/);
    expect(check('POST', '/v1/ingest/mistral', 201, { stored: true, id: 'mistral-0123', duplicate: false })).toThrow(/status 201 is not documented/);
    expect(check('POST', '/v1/events', 200, { items: [] })).toThrow(/status 200 is not documented/);
  });

  const workbookView = {
    name: 'billing',
    definition: "version: '2.0'\nname: billing\n",
    workflows: ['charge'],
    created_at: '2026-11-23T10:00:00.000Z',
    updated_at: '2026-11-23T10:00:00.000Z',
  };
  const execution = {
    id: '01JD8Y2C4E6G8J0K2M4N6P8R0T',
    workbook: 'billing',
    workflow: 'charge',
    input: { customer: 'ada', amount: 100 },
    state: 'RUNNING',
    state_info: null,
    created_at: '2026-11-23T10:00:00.000Z',
    updated_at: '2026-11-23T10:00:00.000Z',
  };
  const task = {
    id: '01JD8Y2C4E6G8J0K2M4N6P8R0V',
    execution_id: execution.id,
    name: 'charge_card',
    action: 'std.http',
    state: 'SUCCESS',
    state_info: null,
    result: { status: 200, body: { ok: true } },
    tries: 2,
    next_run_at: null,
    created_at: '2026-11-23T10:00:00.000Z',
    updated_at: '2026-11-23T10:00:01.000Z',
  };
  const created = (path: string, body: unknown, location: string | null) => () =>
    validateResponse({ method: 'POST', path, status: 201, contentType: json, body, headers: new Headers(location ? { location } : {}) });
  const problem = (status: number, line?: number) => ({
    type: '/problems/invalid-request',
    title: 'Invalid request',
    status,
    detail: 'x',
    errors: [{ field: 'workflows.charge.tasks.a.action', message: 'unknown action', ...(line === undefined ? {} : { line }) }],
  });

  it('accepts the engine answers the document describes', () => {
    expect(created('/v1/workbooks', workbookView, '/v1/workbooks/billing')).not.toThrow();
    expect(check('GET', '/v1/workbooks?limit=1', 200, { items: [workbookView], next_cursor: 'djE6Yg' })).not.toThrow();
    expect(check('PUT', '/v1/workbooks/billing', 200, workbookView)).not.toThrow();
    expect(ok({ method: 'DELETE', path: '/v1/workbooks/billing', status: 204, contentType: null, body: undefined })).not.toThrow();
    expect(created('/v1/executions', execution, `/v1/executions/${execution.id}`)).not.toThrow();
    expect(check('GET', '/v1/executions?workbook=billing&state=ERROR', 200, { items: [{ ...execution, state: 'ERROR', state_info: 'task a failed: boom' }], next_cursor: null })).not.toThrow();
    expect(check('PUT', `/v1/executions/${execution.id}`, 200, { ...execution, state: 'PAUSED' })).not.toThrow();
    expect(check('GET', `/v1/executions/${execution.id}/tasks`, 200, { items: [task, { ...task, result: 'text', state: 'RUNNING', next_run_at: '2026-11-23T10:00:05.000Z' }], next_cursor: null })).not.toThrow();
    expect(check('GET', `/v1/tasks/${task.id}`, 200, { ...task, result: null, state: 'ERROR', state_info: 'interrupted by restart' })).not.toThrow();
    expect(check('PUT', `/v1/tasks/${task.id}`, 200, { ...task, state: 'RUNNING', tries: 0, result: null })).not.toThrow();
    for (const [method, path, status] of [
      ['POST', '/v1/workbooks', 409],
      ['DELETE', '/v1/workbooks/billing', 409],
      ['PUT', `/v1/executions/${execution.id}`, 409],
      ['PUT', `/v1/tasks/${task.id}`, 409],
      ['PUT', '/v1/workbooks/billing', 415],
    ] as const) {
      expect(ok({ method, path, status, contentType: 'application/problem+json', body: problem(status) }), `${method} ${path} ${status}`).not.toThrow();
    }
    expect(ok({ method: 'POST', path: '/v1/workbooks', status: 400, contentType: 'application/problem+json', body: problem(400, 6) })).not.toThrow();
  });

  it('refuses drift in the engine answers', () => {
    expect(created('/v1/workbooks', { ...workbookView, spec: {} }, '/v1/workbooks/billing')).toThrow(/"spec" is not in the document/);
    expect(created('/v1/executions', execution, null)).toThrow(/required header Location/);
    expect(check('GET', `/v1/executions/${execution.id}`, 200, { ...execution, state: 'DONE' })).toThrow(/state must be equal to one of the allowed values/);
    expect(check('GET', `/v1/executions/${execution.id}`, 200, { ...execution, spec: {} })).toThrow(/"spec" is not in the document/);
    expect(check('GET', `/v1/tasks/${task.id}`, 200, { ...task, action_started_at: null })).toThrow(/"action_started_at" is not in the document/);
    const { result: _result, ...withoutResult } = task;
    expect(check('GET', `/v1/tasks/${task.id}`, 200, withoutResult)).toThrow(/required property 'result'/);
    expect(check('GET', `/v1/executions/${execution.id}/tasks`, 200, { items: [{ ...task, tries: 'two' }], next_cursor: null })).toThrow(/\/items\/0\/tries must be integer/);
    expect(check('GET', `/v1/tasks/${task.id}`, 409, problem(409))).toThrow(/status 409 is not documented/);
    expect(check('POST', '/v1/executions', 200, execution)).toThrow(/status 200 is not documented/);
    expect(ok({ method: 'POST', path: '/v1/workbooks', status: 400, contentType: 'application/problem+json', body: problem(400, 0) })).toThrow(/line must be >= 1/);
  });

  it('checks an undocumented method on a documented path as a problem, and skips unknown paths', () => {
    const problem = { type: '/problems/not-found', title: 'Not found', status: 404, detail: 'PUT /healthz does not exist' };
    expect(ok({ method: 'PUT', path: '/healthz', status: 404, contentType: 'application/problem+json', body: problem })).not.toThrow();
    expect(ok({ method: 'PUT', path: '/healthz', status: 404, contentType: json, body: problem })).toThrow(/application\/problem\+json/);
    expect(ok({ path: '/v1/nothing-here', status: 200, body: 'anything' })).not.toThrow();
  });
});
