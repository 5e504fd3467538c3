import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { listenerAddBody } from '../src/cli/commands/listener-add.js';
import { renderPayload } from '../src/dispatch/formats.js';
import {
  compileTemplate,
  MIN_RENDERED_LIMIT_BYTES,
  renderLimitBytes,
  renderTemplateBody,
  TemplateTooLargeError,
  templateQuery,
  withTemplateQuery,
} from '../src/dispatch/template.js';
import { MAX_TEMPLATE_BYTES, templateProblem } from '../src/records/template.js';
import { connectTestBroker, BROKER_URL, uniqueName, type TestBroker } from './interop/broker.js';
import { taskEnvelope } from './helpers/envelopes.js';
import { httpDelivery } from './helpers/http-delivery.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { startTestRelay, type TestRelay } from './helpers/relay.js';

/*
 * The `template` payload format: rendering (pure, exhaustively), the callback's validation, and
 * end to end through a real relay to a real HTTP receiver and a real RabbitMQ.
 */

const event = taskEnvelope({
  id: 'evt-1',
  execution_id: 'ex-1',
  task_id: 't-1',
  data: {
    node_name: 'node-7',
    amount: 12.5,
    paid: true,
    properties: { vendor: 'dell', tags: ['a', 'b'] },
    hosts: [{ name: 'h0' }, { name: 'h1' }],
    'nova_object.data': { host: 'compute-1' },
  },
});

const LIMIT = MIN_RENDERED_LIMIT_BYTES;
const render = (template: unknown, envelope: unknown = event) => compileTemplate(template).render(envelope, LIMIT);

/** The Mistral listener sketch: a GET whose query names the execution, the task and the event. */
const MISTRAL_SKETCH = { execution_id: '<% $.execution_id %>', task_id: '<% $.task_id %>', event: '<% $.type %>' };

describe('rendering a template', () => {
  it('keeps the type of a string that is exactly one expression', () => {
    expect(render('<% $.sequence %>')).toBe(7);
    expect(render('<% $.data.paid %>')).toBe(true);
    expect(render('<% $.data.amount %>')).toBe(12.5);
    expect(render('<% $.state_info %>')).toBeNull();
    expect(render('<% $.data.properties %>')).toEqual({ vendor: 'dell', tags: ['a', 'b'] });
    expect(render('<% $.data.properties.tags %>')).toEqual(['a', 'b']);
    // Spaces around the one expression do not make it text, as in workbooks.
    expect(render('  <%$.sequence%>  ')).toBe(7);
  });

  it('interpolates expressions into text: strings as they are, anything else as JSON', () => {
    expect(render('Task <% $.task_name %> of <% $.execution_id %> is <% $.state %>')).toBe('Task charge_card of ex-1 is SUCCESS');
    expect(render('#<% $.sequence %> paid=<% $.data.paid %> <% $.data.properties.tags %>')).toBe('#7 paid=true ["a","b"]');
    expect(render('info: <% $.state_info %>')).toBe('info: null');
    expect(render('<% $.task_name %><% $.sequence %>')).toBe('charge_card7');
    expect(render('no expressions, 100% literal %>')).toBe('no expressions, 100% literal %>');
  });

  it('renders a missing path as null, wherever it stops', () => {
    expect(render('<% $.nothing %>')).toBeNull();
    expect(render('<% $.data.node_name.deeper %>')).toBeNull();
    expect(render('<% $.data.hosts.9.name %>')).toBeNull();
    expect(render({ missing: '<% $.data.absent %>' })).toEqual({ missing: null });
    // Own properties only: nothing reaches a prototype.
    expect(render('<% $.data.constructor %>')).toBeNull();
    expect(render('<% $.data.__proto__ %>')).toBeNull();
  });

  it('renders nested objects and arrays, keys as written, literals unchanged', () => {
    const template = {
      event: { id: '<% $.id %>', kind: '<% $.type %>', seq: '<% $.sequence %>' },
      '<% $.type %>': 'keys are not evaluated',
      targets: ['<% $.data.node_name %>', { host: '<% $.data.hosts.1.name %>' }, 3, null, false],
      note: 'plain',
      count: 2,
      nothing: null,
    };
    expect(render(template)).toEqual({
      event: { id: 'evt-1', kind: 'TASK_SUCCEEDED', seq: 7 },
      '<% $.type %>': 'keys are not evaluated',
      targets: ['node-7', { host: 'h1' }, 3, null, false],
      note: 'plain',
      count: 2,
      nothing: null,
    });
    expect(render([['<% $.sequence %>'], []])).toEqual([[7], []]);
    expect(render(42)).toBe(42);
    expect(render(null)).toBeNull();
  });

  it('reads paths as filters do: array indexes, bracketed keys, dotted keys, the whole envelope', () => {
    expect(render('<% $.data.hosts.0.name %>')).toBe('h0');
    expect(render('<% $.data["nova_object.data"].host %>')).toBe('compute-1');
    expect(render('<% $.data.nova_object.data.host %>')).toBe('compute-1');
    expect(render('<% $ %>')).toEqual(event);
  });

  it('sends a string as text and anything else as JSON', () => {
    expect(renderTemplateBody('Task <% $.task_name %> done', event, LIMIT)).toEqual({ body: 'Task charge_card done', contentType: 'text/plain; charset=utf-8' });
    expect(renderTemplateBody('<% $.data.properties %>', event, LIMIT)).toEqual({ body: '{"vendor":"dell","tags":["a","b"]}', contentType: 'application/json' });
    expect(renderTemplateBody({ id: '<% $.id %>' }, event, LIMIT)).toEqual({ body: '{"id":"evt-1"}', contentType: 'application/json' });
    expect(renderTemplateBody(['<% $.sequence %>'], event, LIMIT).body).toBe('[7]');
  });
});

describe('checking a template', () => {
  it('accepts the expressions a template may hold', () => {
    expect(templateProblem(MISTRAL_SKETCH)).toBeNull();
    expect(templateProblem({ a: ['<% $.data["a.b"].c %>', 'x <% $ %> y'], b: 1, c: null })).toBeNull();
    expect(templateProblem('literal text')).toBeNull();
  });

  it('names where an expression does not parse, and why', () => {
    expect(templateProblem({ body: { id: '<% $.id' } })).toBe('at body.id: unterminated expression "<% $.id" (missing %>)');
    expect(templateProblem({ list: ['ok', '<% $.a b %>'] })).toMatch(/^at list\[1\]: unsupported expression "<% \$\.a b %>"; a template reads the event with <% \$\.path %>/);
    expect(templateProblem({ 'x.y': '<% execution_id %>' })).toMatch(/^at \["x\.y"\]: unsupported expression/);
    expect(templateProblem("<% task('charge').result %>")).toMatch(/reads a workflow task's result; a callback template reads the event/);
    expect(templateProblem('<% $.data["a %>')).toMatch(/unsupported expression/);
    expect(templateProblem('<% $.data[x] %>')).toMatch(/unsupported expression/);
    expect(templateProblem('<% $.a + 1 %>')).toMatch(/unsupported expression/);
  });

  it('refuses a template over 16 KiB of JSON', () => {
    const big = { text: 'x'.repeat(MAX_TEMPLATE_BYTES) };
    expect(templateProblem(big)).toBe(`a template is at most 16384 bytes of JSON, this one is ${JSON.stringify(big).length}`);
    expect(templateProblem({ text: 'x'.repeat(MAX_TEMPLATE_BYTES - 12) })).toBeNull();
  });
});

describe('bounding a rendering', () => {
  it('stops a template that would copy the event over and over, without building it', () => {
    // A thousand "<% $.data %>" (15 KiB) over a 100 KiB payload would be about 100 MiB.
    const copies = Array.from({ length: 1000 }, () => '<% $.data %>');
    expect(templateProblem(copies)).toBeNull();
    const large = { ...event, data: { blob: 'y'.repeat(100 * 1024) } };
    const started = performance.now();
    expect(() => compileTemplate(copies).render(large, renderLimitBytes(JSON.stringify(large).length))).toThrow(TemplateTooLargeError);
    expect(() => compileTemplate(copies.join(' ')).render(large, LIMIT)).toThrow(/the rendered template is larger than 1 MiB/);
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('lets a template send an event larger than 1 MiB once', () => {
    const large = { ...event, data: { blob: 'z'.repeat(3 * 1024 * 1024) } };
    const limit = renderLimitBytes(JSON.stringify(large).length);
    expect(limit).toBeGreaterThan(MIN_RENDERED_LIMIT_BYTES);
    expect((compileTemplate('<% $.data %>').render(large, limit) as { blob: string }).blob).toHaveLength(3 * 1024 * 1024);
    expect(() => compileTemplate(['<% $.data %>', '<% $.data %>']).render(large, limit)).toThrow(TemplateTooLargeError);
  });
});

describe('a template as a query string (GET and DELETE)', () => {
  it('has one parameter per field: text as it is, nested values as JSON, null left out', () => {
    const params = templateQuery(
      { ...MISTRAL_SKETCH, seq: '<% $.sequence %>', paid: '<% $.data.paid %>', props: '<% $.data.properties %>', info: '<% $.state_info %>', gone: '<% $.nope %>', fixed: 'a b&c' },
      event,
      LIMIT,
    );
    expect([...params]).toEqual([
      ['execution_id', 'ex-1'],
      ['task_id', 't-1'],
      ['event', 'TASK_SUCCEEDED'],
      ['seq', '7'],
      ['paid', 'true'],
      ['props', '{"vendor":"dell","tags":["a","b"]}'],
      ['fixed', 'a b&c'],
    ]);
  });

  it('is appended after the receiver\'s own parameters, whose encoding stays', () => {
    expect(withTemplateQuery('https://hooks.example.com/wf?key=a%20b&flag', MISTRAL_SKETCH, event, LIMIT)).toBe(
      'https://hooks.example.com/wf?key=a%20b&flag&execution_id=ex-1&task_id=t-1&event=TASK_SUCCEEDED',
    );
    expect(withTemplateQuery('https://hooks.example.com/wf', { none: '<% $.state_info %>' }, event, LIMIT)).toBe('https://hooks.example.com/wf');
  });
});

describe('the template format', () => {
  const base = { envelope: event, project: 'p', url: 'https://hooks.example.com/wf' };

  it('renders an HTTP body with its content type', () => {
    const json = httpDelivery({ ...base, method: 'POST', format: 'template', template: { task: '<% $.task_name %>' } });
    expect(json).toEqual({ url: base.url, body: '{"task":"charge_card"}', headers: { 'content-type': 'application/json' } });
    const text = httpDelivery({ ...base, method: 'PUT', format: 'template', template: '<% $.type %> <% $.task_id %>' });
    expect(text).toEqual({ url: base.url, body: 'TASK_SUCCEEDED t-1', headers: { 'content-type': 'text/plain; charset=utf-8' } });
  });

  it('sends a GET or DELETE with the template in the query and no body', () => {
    for (const method of ['GET', 'DELETE']) {
      const out = httpDelivery({ ...base, method, format: 'template', template: MISTRAL_SKETCH });
      expect(out).toEqual({ url: `${base.url}?execution_id=ex-1&task_id=t-1&event=TASK_SUCCEEDED`, body: '', headers: {} });
    }
    // Other formats keep the envelope's scalar fields.
    expect(httpDelivery({ ...base, method: 'GET', format: 'json' }).url).toMatch(/\?id=evt-1&type=TASK_SUCCEEDED&/);
    expect(httpDelivery({ ...base, method: 'POST', format: 'template', template: MISTRAL_SKETCH }).url).toBe(base.url);
  });

  it('renders the same body for amqp', () => {
    const out = renderPayload({ envelope: event, project: 'p', format: 'template', transport: 'amqp', deliveryId: 'd-1', template: { node: '<% $.data.node_name %>' } });
    expect(out).toEqual({ body: '{"node":"node-7"}', query: null, contentType: 'application/json', headers: { 'content-type': 'application/json' } });
  });

  it('fails before sending when the rendering is too large, GET included', () => {
    const copies = Array.from({ length: 200 }, (_, i) => [`k${i}`, '<% $.data %>']);
    const large = { ...event, data: { blob: 'q'.repeat(64 * 1024) } };
    expect(() => renderPayload({ envelope: large, project: 'p', format: 'template', transport: 'http', bodyless: true, deliveryId: 'd', template: Object.fromEntries(copies) })).toThrow(TemplateTooLargeError);
  });
});

describe('listener-add --template', () => {
  it('sends the template with format template, for http and amqp', () => {
    expect(listenerAddBody('workbook', 'billing', 'https://hooks.example.com/m', { method: 'GET', template: MISTRAL_SKETCH }).callback).toEqual({
      url: 'https://hooks.example.com/m',
      method: 'GET',
      format: 'template',
      template: MISTRAL_SKETCH,
    });
    expect(listenerAddBody('workbook', 'billing', 'amqp://h/', { transport: 'amqp', topic: 'n', template: 'x' }).callback).toMatchObject({ format: 'template', template: 'x' });
    expect(() => listenerAddBody('workbook', 'billing', 'https://hooks.example.com/m', { format: 'json', template: {} })).toThrow('--template goes with --format template, not json');
  });
});

// ---- through a real relay ---------------------------------------------------------------

describe('templates through the relay', () => {
  let relay: TestRelay;
  let receiver: Receiver;
  let broker: TestBroker;
  const exchanges: string[] = [];
  const queues: string[] = [];

  beforeAll(async () => {
    broker = await connectTestBroker();
    receiver = await startReceiver();
    relay = await startTestRelay({ RELAY_SHUTDOWN_GRACE_MS: '500' });
  });
  afterAll(async () => {
    await relay?.close();
    await receiver?.close();
    await broker?.cleanUp({ exchanges, queues });
  });

  async function listener(workbook: string, callback: Record<string, unknown>) {
    return relay.api('POST', '/v1/listeners', { workbook, event_types: ['TASK'], callback, retry: { schedule_ms: [200] } });
  }

  async function ingest(body: Record<string, unknown>) {
    const res = await relay.api('POST', '/v1/events', body);
    expect(res.status, res.text).toBe(202);
    return res.body.items[0].id as string;
  }

  const taskEvent = (workbook: string) => ({
    type: 'TASK_SUCCEEDED',
    workbook,
    workflow: 'charge',
    execution_id: 'ex-42',
    task_id: 'task-9',
    task_name: 'charge_card',
    data: { node_name: 'node-7', amount: 5 },
  });

  it('calls a GET listener with the Mistral sketch\'s query, signed over the empty body', async () => {
    const workbook = uniqueName('tpl-get');
    const created = await listener(workbook, { url: receiver.url('/mistral?token=abc'), method: 'GET', format: 'template', template: MISTRAL_SKETCH });
    expect(created.status, created.text).toBe(201);
    expect(created.body.callback).toMatchObject({ method: 'GET', format: 'template', template: MISTRAL_SKETCH });
    await ingest(taskEvent(workbook));
    const [req] = await receiver.waitForCount('/mistral', 1);
    expect(req.method).toBe('GET');
    expect(req.url).toBe('/mistral?token=abc&execution_id=ex-42&task_id=task-9&event=TASK_SUCCEEDED');
    expect(req.text).toBe('');
    expect(req.headers['content-type']).toBeUndefined();
    const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
    expect(() => new Webhook(created.body.secret).verify('', headers)).not.toThrow();
  });

  it('posts an object template as that JSON, and a string template as text', async () => {
    const workbook = uniqueName('tpl-post');
    const json = await listener(workbook, {
      url: receiver.url('/json'),
      format: 'template',
      template: { text: 'node <% $.data.node_name %>', amount: '<% $.data.amount %>', ids: ['<% $.execution_id %>', '<% $.task_id %>'], info: '<% $.state_info %>' },
    });
    expect(json.status, json.text).toBe(201);
    const text = await listener(workbook, { url: receiver.url('/text'), method: 'PUT', format: 'template', template: '<% $.task_name %> <% $.type %>' });
    expect(text.status, text.text).toBe(201);
    await ingest(taskEvent(workbook));
    const [body] = await receiver.waitForCount('/json', 1);
    expect(body.headers['content-type']).toBe('application/json');
    expect(JSON.parse(body.text)).toEqual({ text: 'node node-7', amount: 5, ids: ['ex-42', 'task-9'], info: null });
    const headers = Object.fromEntries(Object.entries(body.headers).map(([k, v]) => [k, String(v)]));
    expect(() => new Webhook(json.body.secret).verify(body.text, headers)).not.toThrow();
    const [line] = await receiver.waitForCount('/text', 1);
    expect(line.method).toBe('PUT');
    expect(line.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(line.text).toBe('charge_card TASK_SUCCEEDED');
  });

  it('refuses a template that does not parse, naming callback.template', async () => {
    const res = await listener('*', { url: receiver.url('/bad'), format: 'template', template: { id: '<% $.execution_id' } });
    expect(res.status).toBe(400);
    expect(res.body.errors).toEqual([{ field: 'callback.template', message: 'at id: unterminated expression "<% $.execution_id" (missing %>)' }]);
    expect(res.body.detail).toContain('callback.template: at id: unterminated expression');
    const task = await listener('*', { url: receiver.url('/bad'), format: 'template', template: "<% task('a').result %>" });
    expect(task.status).toBe(400);
    expect(task.body.errors[0]).toMatchObject({ field: 'callback.template', message: expect.stringContaining("reads a workflow task's result") });
  });

  it('refuses a template without format template, format template without one, and a template too large', async () => {
    const stray = await listener('*', { url: receiver.url('/bad'), template: { a: 1 } });
    expect(stray.status).toBe(400);
    expect(stray.body.errors).toEqual([{ field: 'callback.template', message: expect.stringContaining('used only with format "template"') }]);
    const missing = await listener('*', { url: receiver.url('/bad'), format: 'template' });
    expect(missing.status).toBe(400);
    expect(missing.body.errors).toEqual([{ field: 'callback.template', message: expect.stringContaining('is required with format "template"') }]);
    const large = await listener('*', { url: receiver.url('/bad'), format: 'template', template: { a: 'x'.repeat(MAX_TEMPLATE_BYTES) } });
    expect(large.status).toBe(400);
    expect(large.body.errors[0]).toMatchObject({ field: 'callback.template', message: expect.stringContaining('at most 16384 bytes') });
    const getText = await listener('*', { url: receiver.url('/bad'), method: 'DELETE', format: 'template', template: 'text' });
    expect(getText.status).toBe(400);
    expect(getText.body.errors).toEqual([{ field: 'callback.template', message: 'must be an object with method DELETE: its fields become the query string' }]);
  });

  it('changes a listener to and from a template with a merge patch', async () => {
    const created = await listener(uniqueName('tpl-patch'), { url: receiver.url('/patched') });
    expect(created.status, created.text).toBe(201);
    const path = `/v1/listeners/${created.body.id}`;
    const on = await relay.api('PATCH', path, { callback: { format: 'template', template: { id: '<% $.id %>', n: 1 } } });
    expect(on.status, on.text).toBe(200);
    expect(on.body.callback).toMatchObject({ format: 'template', template: { id: '<% $.id %>', n: 1 } });
    // An object template merges field by field; null removes a field.
    const merged = await relay.api('PATCH', path, { callback: { template: { n: null, seq: '<% $.sequence %>' } } });
    expect(merged.body.callback.template).toEqual({ id: '<% $.id %>', seq: '<% $.sequence %>' });
    const stale = await relay.api('PATCH', path, { callback: { format: 'json' } });
    expect(stale.status).toBe(400);
    expect(stale.body.errors).toEqual([{ field: 'callback.template', message: expect.stringContaining('remove the template (null in a PATCH)') }]);
    const off = await relay.api('PATCH', path, { callback: { format: 'json', template: null } });
    expect(off.status, off.text).toBe(200);
    expect(off.body.callback).not.toHaveProperty('template');
    expect(off.body.callback.format).toBe('json');
  });

  it('refuses format template on another transport, naming callback.format', async () => {
    const res = await listener('*', { transport: 'exec', command: 'run.sh', format: 'template' });
    expect(res.status).toBe(400);
    expect(res.body.errors).toContainEqual({ field: 'callback.format', message: expect.stringContaining('only the http and amqp transports send a template') });
    const module = await listener('*', { transport: 'jsonfile', format: 'template', template: {} });
    expect(module.status).toBe(400);
    expect(module.body.errors).toContainEqual({ field: 'callback.format', message: expect.stringContaining('only the http and amqp transports send a template') });
  });

  it('publishes the rendered template to RabbitMQ, signed', async () => {
    const exchange = uniqueName('tpl-x');
    const topic = uniqueName('tpl');
    const queue = `${topic}.info`;
    exchanges.push(exchange);
    queues.push(queue);
    // Declared as an oslo.messaging notification listener declares them before it consumes.
    await broker.channel.assertExchange(exchange, 'topic', { durable: false, autoDelete: false });
    await broker.channel.assertQueue(queue, { durable: false, autoDelete: false });
    await broker.channel.bindQueue(queue, exchange, queue);
    const workbook = uniqueName('tpl-amqp');
    const created = await listener(workbook, {
      transport: 'amqp',
      url: BROKER_URL,
      exchange,
      topic,
      format: 'template',
      template: { node: '<% $.data.node_name %>', execution: '<% $.execution_id %>', event: '<% $.type %>' },
    });
    expect(created.status, created.text).toBe(201);
    const id = await ingest(taskEvent(workbook));
    const [message] = await broker.drain(queue, 1);
    const body = message.content.toString('utf8');
    expect(JSON.parse(body)).toEqual({ node: 'node-7', execution: 'ex-42', event: 'TASK_SUCCEEDED' });
    expect(message.properties.contentType).toBe('application/json');
    const headers = Object.fromEntries(Object.entries(message.properties.headers ?? {}).map(([k, v]) => [k, String(v)]));
    expect(() => new Webhook(created.body.secret).verify(body, headers)).not.toThrow();
    await vi.waitFor(async () => {
      const d = (await relay.api('GET', `/v1/deliveries?event_id=${id}`)).body.items[0];
      expect(d.status).toBe('succeeded');
    }, { timeout: 10_000, interval: 50 });
  });
});
