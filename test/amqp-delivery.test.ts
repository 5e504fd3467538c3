import net from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { BROKER_URL, connectTestBroker, freePort, uniqueName, type TestBroker } from './interop/broker.js';
import { osloMessageId } from '../src/dispatch/oslo-format.js';
import { startTestRelay, type TestRelay } from './helpers/relay.js';

/*
 * The amqp transport end to end: listeners created through the API, events ingested, the
 * dispatcher publishing to the real RabbitMQ, a consumer reading what an oslo notification
 * listener would.
 */

let relay: TestRelay;
let broker: TestBroker;
const exchanges: string[] = [];
const queues: string[] = [];

beforeAll(async () => {
  broker = await connectTestBroker();
  // The replays below fail fast while the transport reconnects; a circuit breaker would hold them a cool-down.
  relay = await startTestRelay({ RELAY_SHUTDOWN_GRACE_MS: '500', RELAY_BREAKER_MIN_ATTEMPTS: '1000000' });
});
afterAll(async () => {
  await relay?.close();
  await broker?.cleanUp({ exchanges, queues });
});

async function amqpListener(body: Record<string, unknown>) {
  const res = await relay.api('POST', '/v1/listeners', {
    workbook: '*',
    event_types: ['EXECUTION', 'TASK', 'NOTIFICATION'],
    retry: { schedule_ms: [200, 200] },
    ...body,
  });
  return res;
}

/** A topic and exchange of this test's own, with the queues oslo would consume declared up front. */
async function topology(priorities = ['info', 'error', 'warn']) {
  const exchange = uniqueName('relay-x');
  const topic = uniqueName('notifications');
  exchanges.push(exchange);
  // Declared as an oslo.messaging notification listener declares them before it consumes.
  await broker.channel.assertExchange(exchange, 'topic', { durable: false, autoDelete: false });
  for (const p of priorities) {
    const queue = `${topic}.${p}`;
    queues.push(queue);
    await broker.channel.assertQueue(queue, { durable: false, autoDelete: false });
    await broker.channel.bindQueue(queue, exchange, queue);
  }
  return { exchange, topic };
}


describe('the amqp transport through the relay', () => {
  it('publishes oslo notifications a consumer reads as oslo.messaging sends them, signed', async () => {
    const { exchange, topic } = await topology();
    const created = await amqpListener({ callback: { transport: 'amqp', url: BROKER_URL, exchange, topic } });
    expect(created.status, created.text).toBe(201);
    expect(created.body.callback).toEqual({
      transport: 'amqp',
      url: 'amqp://guest:***@127.0.0.1:5672/',
      exchange,
      topic,
      routing_key: null,
      format: 'oslo',
      headers: {},
      timeout_ms: 15000,
    });
    const secret = created.body.secret;
    const events = [
      { type: 'TASK_SUCCEEDED', workbook: 'billing', execution_id: 'ex-1', task_id: 't-1', task_name: 'charge', data: { amount: 5 } },
      { type: 'TASK_FAILED', workbook: 'billing', execution_id: 'ex-1', task_id: 't-2', task_name: 'refund', data: { fault: { exception: 'Declined', exception_message: 'no' } } },
      { type: 'esi_leap.lease.fulfill.end', priority: 'WARN', data: { node: 'n1' } },
    ];
    const ids = (await relay.api('POST', '/v1/events', { events })).body.items.map((i: { id: string }) => i.id);
    const info = await broker.drain(`${topic}.info`, 1);
    const error = await broker.drain(`${topic}.error`, 1);
    const warn = await broker.drain(`${topic}.warn`, 1);
    const all = [...info, ...error, ...warn];
    const messages = all.map((m) => {
      const outer = JSON.parse(m.content.toString('utf8'));
      expect(Object.keys(outer).sort()).toEqual(['oslo.message', 'oslo.version']);
      expect(outer['oslo.version']).toBe('2.0');
      // The signature covers the body as published, with the listener's secret.
      const headers = Object.fromEntries(Object.entries(m.properties.headers ?? {}).map(([k, v]) => [k, String(v)]));
      new Webhook(secret).verify(m.content.toString('utf8'), headers);
      expect(m.properties.messageId).toBe(headers['webhook-id']);
      expect(m.properties.deliveryMode).toBe(2);
      const message = JSON.parse(outer['oslo.message']);
      // The message's own id is a UUID made from the delivery's id: the same on every retry.
      expect(message.message_id).toBe(osloMessageId(m.properties.messageId));
      return { routingKey: m.fields.routingKey, message };
    });
    const byType = Object.fromEntries(messages.map((m) => [m.message.event_type, m]));
    expect(byType['task.succeeded'].routingKey).toBe(`${topic}.info`);
    expect(byType['task.succeeded'].message).toMatchObject({
      priority: 'INFO',
      publisher_id: expect.stringMatching(/^callback-relay:/),
      payload: {
        'callback_relay_object.name': 'TaskPayload',
        'callback_relay_object.namespace': 'callback_relay',
        'callback_relay_object.version': '1.0',
        'callback_relay_object.data': { id: ids[0], type: 'TASK_SUCCEEDED', data: { amount: 5 } },
      },
    });
    expect(byType['task.failed'].routingKey).toBe(`${topic}.error`);
    expect(byType['task.failed'].message.priority).toBe('ERROR');
    expect(byType['task.failed'].message.payload['callback_relay_object.data'].fault).toMatchObject({
      'callback_relay_object.name': 'ExceptionPayload',
    });
    expect(byType['esi_leap.lease.fulfill.end']).toMatchObject({ routingKey: `${topic}.warn`, message: { priority: 'WARN' } });
    // The delivery record says the broker confirmed each one.
    for (const id of ids) {
      await vi.waitFor(async () => {
        const d = (await relay.api('GET', `/v1/deliveries?event_id=${id}`)).body.items[0];
        expect(d.status).toBe('succeeded');
      }, { timeout: 10_000, interval: 50 });
    }
    expect(new Set(messages.map((m) => m.message.message_id)).size).toBe(3);
  });

  it('keeps the password behind a masked URL on the same broker, and asks for it on another', async () => {
    const { exchange, topic } = await topology();
    const created = await amqpListener({ callback: { transport: 'amqp', url: BROKER_URL, exchange, topic, headers: { 'X-Team': 'ops' } } });
    const id = created.body.id;
    const shown = (await relay.api('GET', `/v1/listeners/${id}`)).body.callback;
    expect(shown.url).toBe('amqp://guest:***@127.0.0.1:5672/');
    expect(shown.headers).toEqual({ 'X-Team': '***' });
    // Sent back as read: nothing changes, and deliveries still authenticate.
    const same = await relay.api('PATCH', `/v1/listeners/${id}`, { callback: { ...shown, timeout_ms: 5000 } });
    expect(same.status, same.text).toBe(200);
    await relay.api('POST', '/v1/events', { type: 'after.patch' });
    const [msg] = await broker.drain(`${topic}.info`, 1);
    expect(msg.properties.headers?.['X-Team']).toBe('ops');
    const moved = await relay.api('PATCH', `/v1/listeners/${id}`, { callback: { url: 'amqp://guest:***@localhost:5673/' } });
    expect(moved.status).toBe(400);
    expect(moved.body.errors).toEqual([{ field: 'callback.url', message: expect.stringMatching(/send the URL with its password/) }]);
  });

  it('replaces the callback whole when a patch changes its transport', async () => {
    const created = await relay.api('POST', '/v1/listeners', {
      workbook: '*',
      event_types: ['NOTIFICATION'],
      callback: { url: 'http://127.0.0.1:9/hook', method: 'PUT', headers: { 'X-Key': 'k' } },
    });
    const { exchange, topic } = await topology();
    const patched = await relay.api('PATCH', `/v1/listeners/${created.body.id}`, {
      callback: { transport: 'amqp', url: BROKER_URL, exchange, topic },
    });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.body.callback).toMatchObject({ transport: 'amqp', headers: {}, format: 'oslo' });
    expect(patched.body.callback).not.toHaveProperty('method');
  });

  it('refuses callbacks the amqp shape does not allow, naming the field', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ transport: 'amqp', url: 'http://127.0.0.1:5672/', topic: 't' }, 'callback.url'],
      [{ transport: 'amqp', url: BROKER_URL }, 'callback.topic'],
      [{ transport: 'amqp', url: BROKER_URL, topic: 'a.*' }, 'callback.topic'],
      [{ transport: 'amqp', url: BROKER_URL, topic: 't', format: 'mistral' }, 'callback.format'],
      [{ transport: 'amqp', url: BROKER_URL, topic: 't', method: 'POST' }, 'callback.method'],
      [{ transport: 'amqp', url: 'amqp://guest:guest@169.254.169.254/', topic: 't' }, 'callback.url'],
      [{ transport: 'pigeon', url: 'http://127.0.0.1:9/' }, 'callback.transport'],
      [{ transport: 'exec', command: 'notify.sh' }, 'callback.transport'],
      [{ transport: 'exec', command: '../bin/sh' }, 'callback.command'],
    ];
    for (const [callback, field] of cases) {
      const res = await amqpListener({ callback });
      expect(res.status, `${JSON.stringify(callback)}: ${res.text}`).toBe(400);
      expect(res.body.errors.map((e: { field: string }) => e.field)).toContain(field);
    }
  });
});

/** A TCP forwarder to the broker on a fixed port that the test turns on and off: a broker that is down, then back. */
function brokerOnPort(port: number) {
  let server: net.Server | null = null;
  const sockets = new Set<net.Socket>();
  return {
    url: `amqp://guest:guest@127.0.0.1:${port}/`,
    async up() {
      server = net.createServer((client) => {
        const upstream = net.connect(5672, '127.0.0.1');
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('error', () => undefined);
          s.on('close', () => sockets.delete(s));
        }
        client.pipe(upstream).pipe(client);
      });
      await new Promise<void>((resolve) => server!.listen(port, '127.0.0.1', resolve));
    },
    async down() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
      server = null;
    },
  };
}

describe('a broker that is down', () => {
  it('fails attempts with ECONNREFUSED on the schedule, and a replay delivers once the broker is back', async () => {
    const port = await freePort();
    const gateway = brokerOnPort(port);
    const { exchange, topic } = await topology();
    // Only its own events: the relay says relay.delivery.failed about these failures too.
    const created = await amqpListener({ events: ['down.*'], callback: { transport: 'amqp', url: gateway.url, exchange, topic }, retry: { schedule_ms: [100, 100] } });
    expect(created.status, created.text).toBe(201);
    const since = new Date(Date.now() - 1000).toISOString();
    const ids = (await relay.api('POST', '/v1/events', { events: [{ type: 'down.one' }, { type: 'down.two' }] })).body.items.map((i: { id: string }) => i.id);
    const failed = await vi.waitFor(
      async () => {
        const items = (await relay.api('GET', `/v1/deliveries?listener_id=${created.body.id}&status=failed`)).body.items;
        expect(items).toHaveLength(2);
        return items;
      },
      { timeout: 15_000, interval: 100 },
    );
    const detail = (await relay.api('GET', `/v1/deliveries/${failed[0].id}`)).body;
    expect(detail.attempts).toHaveLength(3);
    expect(detail.attempts.every((a: { error: string }) => a.error === 'ECONNREFUSED')).toBe(true);
    expect(detail.last_error).not.toContain('guest:guest');

    await gateway.up();
    try {
      // The transport waits out its reconnect backoff before it dials the broker again, failing
      // attempts at once meanwhile: an operator's replay may need to be repeated until then.
      const replay = await relay.api('POST', `/v1/listeners/${created.body.id}/replay`, { since, only_failed: true });
      expect(replay.body.count).toBe(2);
      await vi.waitFor(
        async () => {
          await relay.api('POST', `/v1/listeners/${created.body.id}/replay`, { since, only_failed: true });
          const items = (await relay.api('GET', `/v1/deliveries?listener_id=${created.body.id}&status=succeeded`)).body.items;
          expect(items).toHaveLength(2);
        },
        { timeout: 40_000, interval: 500 },
      );
      const got = await broker.drain(`${topic}.info`, 2, 20_000);
      expect(got.map((m) => JSON.parse(JSON.parse(m.content.toString())['oslo.message']).payload['callback_relay_object.data'].id).sort()).toEqual([...ids].sort());
    } finally {
      await gateway.down();
    }
  }, 60_000);
});
