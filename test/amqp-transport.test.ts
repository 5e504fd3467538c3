import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Webhook } from 'standardwebhooks';
import { osloMessageId } from '../src/dispatch/oslo-format.js';
import { createNetworkGuard } from '../src/net/network-guard.js';
import { createAmqpTransport } from '../src/transports/amqp.js';
import type { TransportModule } from '../src/transports/contract.js';
import {
  BROKER_URL,
  RELAY_HOSTNAME,
  TEST_SECRET,
  brokerConnectionPids,
  connectTestBroker,
  freePort,
  loopbackGuard,
  startBrokerProxy,
  osloAttempt,
  taskEnvelope,
  uniqueName,
  type TestBroker,
} from './interop/broker.js';

let broker: TestBroker;
const exchanges: string[] = [];
const queues: string[] = [];
const transports: TransportModule[] = [];

function transport(options: Partial<Parameters<typeof createAmqpTransport>[0]> = {}): TransportModule {
  const t = createAmqpTransport({ guard: loopbackGuard(), ...options });
  transports.push(t);
  return t;
}

/** A fresh exchange and topic; the transport declares them, the test deletes them. */
function route() {
  const exchange = uniqueName('cr-x');
  const topic = uniqueName('cr-t');
  exchanges.push(exchange);
  queues.push(`${topic}.info`, `${topic}.error`, `${topic}.warn`);
  return { exchange, topic };
}

beforeAll(async () => {
  broker = await connectTestBroker();
});

afterEach(async () => {
  await Promise.all(transports.splice(0).map((t) => t.close()));
});

afterAll(async () => {
  await broker.cleanUp({ exchanges, queues });
});

describe('amqp transport against RabbitMQ', () => {
  it('publishes oslo notifications that a consumer reads exactly as the oslo envelope says', async () => {
    const t = transport();
    const { exchange, topic } = route();
    const n = 12;
    const attempts = Array.from({ length: n }, (_, i) =>
      osloAttempt({
        deliveryId: `del-${i}-${uniqueName('d')}`,
        envelope: taskEnvelope(i, i % 3 === 0 ? 'TASK_FAILED' : 'TASK_SUCCEEDED'),
        callback: { url: BROKER_URL, exchange, topic, routing_key: null, format: 'oslo', headers: { 'x-team': 'payments' } },
        listenerHeaders: { 'x-team': 'payments' },
        attemptNumber: (i % 2) + 1,
      }),
    );
    const before = Math.floor(Date.now() / 1000);
    const outcomes = await Promise.all(attempts.map((a) => t.send(a)));
    expect(outcomes).toEqual(attempts.map(() => ({ ok: true })));

    // Declared as oslo declares them: these succeed only when the flags are equal.
    await broker.onOwnChannel(async (ch) => {
      await ch.assertExchange(exchange, 'topic', { durable: false, autoDelete: false });
      await ch.assertQueue(`${topic}.info`, { durable: false, autoDelete: false });
      await ch.assertQueue(`${topic}.error`, { durable: false, autoDelete: false });
    });

    const errors = n / 3;
    const received = [...(await broker.drain(`${topic}.error`, errors)), ...(await broker.drain(`${topic}.info`, n - errors))];
    expect(received).toHaveLength(n);
    const byId = new Map(attempts.map((a) => [a.deliveryId, a]));
    for (const msg of received) {
      const attempt = byId.get(msg.properties.messageId)!;
      expect(attempt).toBeDefined();
      byId.delete(attempt.deliveryId);
      const failed = attempt.envelope.type === 'TASK_FAILED';

      expect(msg.fields.exchange).toBe(exchange);
      expect(msg.fields.routingKey).toBe(failed ? `${topic}.error` : `${topic}.info`);
      expect(msg.properties.deliveryMode).toBe(2);
      expect(msg.properties.contentType).toBe('application/json');
      expect(msg.properties.timestamp).toBeGreaterThanOrEqual(before);
      expect(msg.properties.timestamp).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));

      const body = msg.content.toString('utf8');
      expect(body).toBe(attempt.body);
      const outer = JSON.parse(body);
      expect(outer['oslo.version']).toBe('2.0');
      const message = JSON.parse(outer['oslo.message']);
      expect(message.message_id).toBe(osloMessageId(attempt.deliveryId));
      expect(message.publisher_id).toBe(`callback-relay:${RELAY_HOSTNAME}`);
      expect(message.event_type).toBe(failed ? 'task.failed' : 'task.succeeded');
      expect(message.priority).toBe(failed ? 'ERROR' : 'INFO');
      expect(message.timestamp).toMatch(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}$/);
      const payload = message.payload;
      expect(payload['callback_relay_object.name']).toBe('TaskPayload');
      expect(payload['callback_relay_object.namespace']).toBe('callback_relay');
      expect(payload['callback_relay_object.version']).toBe('1.0');
      const data = payload['callback_relay_object.data'];
      expect(data.id).toBe(attempt.envelope.id);
      expect(data.task_id).toBe(attempt.envelope.task_id);
      expect(data.execution['callback_relay_object.name']).toBe('ExecutionPayload');
      expect(data.execution['callback_relay_object.data'].id).toBe('exec-1');
      if (failed) expect(data.fault['callback_relay_object.data'].exception).toBe('CardDeclined');
      else expect(data.fault).toBeNull();

      const headers = msg.properties.headers!;
      expect(headers['webhook-id']).toBe(attempt.deliveryId);
      expect(headers['webhook-attempt']).toBe(String(attempt.attemptNumber));
      expect(headers['x-team']).toBe('payments');
      expect(headers['content-type']).toBeUndefined();
      // A receiver verifies the AMQP headers with the Standard Webhooks library unchanged.
      const verified = new Webhook(TEST_SECRET).verify(body, {
        'webhook-id': String(headers['webhook-id']),
        'webhook-timestamp': String(headers['webhook-timestamp']),
        'webhook-signature': String(headers['webhook-signature']),
      });
      expect(verified).toEqual(outer);
      expect(() =>
        new Webhook(TEST_SECRET).verify(body + ' ', {
          'webhook-id': String(headers['webhook-id']),
          'webhook-timestamp': String(headers['webhook-timestamp']),
          'webhook-signature': String(headers['webhook-signature']),
        }),
      ).toThrow();
    }
    expect(byId.size).toBe(0);
  });

  it('uses an existing exchange as it is, and a listener routing key as the queue and binding', async () => {
    const exchange = uniqueName('cr-durable');
    const routingKey = uniqueName('cr-rk');
    exchanges.push(exchange);
    queues.push(routingKey);
    // Durable: declaring it with oslo's flags would fail with PRECONDITION_FAILED.
    await broker.onOwnChannel((ch) => ch.assertExchange(exchange, 'topic', { durable: true }));
    const t = transport();
    const attempt = osloAttempt({
      deliveryId: uniqueName('del'),
      envelope: taskEnvelope(1, 'TASK_FAILED'),
      callback: { url: BROKER_URL, exchange, topic: 'ignored', routing_key: routingKey },
    });
    expect(await t.send(attempt)).toEqual({ ok: true });
    const [msg] = await broker.drain(routingKey, 1);
    expect(msg.fields.routingKey).toBe(routingKey);
    expect(msg.properties.messageId).toBe(attempt.deliveryId);
    await broker.onOwnChannel((ch) => ch.checkExchange(exchange));
  });

  it('uses an existing queue that was declared with other flags', async () => {
    const { exchange, topic } = route();
    await broker.onOwnChannel((ch) => ch.assertQueue(`${topic}.info`, { durable: true }));
    const t = transport();
    const attempt = osloAttempt({ deliveryId: uniqueName('del'), envelope: taskEnvelope(1), callback: { url: BROKER_URL, exchange, topic } });
    expect(await t.send(attempt)).toEqual({ ok: true });
    expect(await broker.drain(`${topic}.info`, 1)).toHaveLength(1);
  });

  it('reports UNROUTABLE when the broker returns the message, then declares the queue again', async () => {
    const { exchange, topic } = route();
    const t = transport();
    const send = (i: number) =>
      t.send(osloAttempt({ deliveryId: `del-${i}-${uniqueName('d')}`, envelope: taskEnvelope(i), callback: { url: BROKER_URL, exchange, topic } }));
    expect(await send(1)).toEqual({ ok: true });
    // The transport remembers the queue as declared on this connection; nobody is bound now.
    await broker.onOwnChannel((ch) => ch.deleteQueue(`${topic}.info`));
    const returned = await send(2);
    expect(returned.ok).toBe(false);
    expect(returned.error).toBe('UNROUTABLE');
    expect(returned.message).toContain('NO_ROUTE');
    expect(returned.message).toContain(`${topic}.info`);
    expect(returned.message).toContain('amqp://guest:***@127.0.0.1:5672/');
    // The retry sets the route up again and is delivered.
    expect(await send(3)).toEqual({ ok: true });
    const [msg] = await broker.drain(`${topic}.info`, 1);
    expect(msg.properties.messageId).toMatch(/^del-3-/);
  });

  it('reopens the confirm channel after the broker closed it, and sets the route up again', async () => {
    const { exchange, topic } = route();
    const t = transport();
    const send = (i: number) =>
      t.send(osloAttempt({ deliveryId: `del-${i}-${uniqueName('d')}`, envelope: taskEnvelope(i), callback: { url: BROKER_URL, exchange, topic } }));
    expect(await send(1)).toEqual({ ok: true });
    // Publishing to a missing exchange makes the broker close the channel (404).
    await broker.onOwnChannel((ch) => ch.deleteExchange(exchange));
    const lost = await send(2);
    expect(lost).toMatchObject({ ok: false, error: 'NOT_FOUND' });
    expect(lost.message).toContain(`no exchange '${exchange}'`);
    expect(await send(3)).toEqual({ ok: true });
    await broker.onOwnChannel((ch) => ch.checkExchange(exchange));
  });

  it('reports ECONNREFUSED quickly for a closed port, then fails fast while it backs off', async () => {
    const port = await freePort();
    const url = `amqp://guest:guest@127.0.0.1:${port}/`;
    const t = transport({ reconnect: { baseMs: 60_000, maxMs: 60_000 } });
    const attempt = osloAttempt({ deliveryId: 'del-refused', envelope: taskEnvelope(1), callback: { url, exchange: 'x', topic: 'notifications' } });
    const started = Date.now();
    const first = await t.send(attempt);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(first).toMatchObject({ ok: false, error: 'ECONNREFUSED' });
    expect(first.message).toContain(`amqp://guest:***@127.0.0.1:${port}/`);
    expect(first.message).not.toContain('guest@');

    const second = await t.send(attempt);
    expect(second).toMatchObject({ ok: false, error: 'ECONNREFUSED' });
    expect(second.message).toMatch(/next connection attempt in \d+ ms/);
  });

  it('connects again once the backoff delay has passed', async () => {
    const { exchange, topic } = route();
    const port = await freePort();
    const t = transport({ reconnect: { baseMs: 200, maxMs: 200 } });
    const down = osloAttempt({ deliveryId: 'del-a', envelope: taskEnvelope(1), callback: { url: `amqp://127.0.0.1:${port}/`, exchange, topic } });
    expect((await t.send(down)).error).toBe('ECONNREFUSED');
    expect((await t.send(down)).message).toMatch(/next connection attempt/);
    await new Promise((r) => setTimeout(r, 250));
    const third = await t.send(down);
    expect(third.error).toBe('ECONNREFUSED');
    expect(third.message).not.toMatch(/next connection attempt/);
  });

  it('reports ACCESS_REFUSED for a wrong password, with the password masked', async () => {
    const password = 'not-the-password-9f3';
    const url = `amqp://guest:${password}@127.0.0.1:5672/`;
    const t = transport();
    const outcome = await t.send(osloAttempt({ deliveryId: 'del-auth', envelope: taskEnvelope(1), callback: { url, exchange: 'x', topic: 'notifications' } }));
    expect(outcome).toMatchObject({ ok: false, error: 'ACCESS_REFUSED' });
    expect(outcome.message).toContain('amqp://guest:***@127.0.0.1:5672/');
    expect(outcome.message).not.toContain(password);
    expect(JSON.stringify(outcome)).not.toContain(password);
  });

  it('reports NOT_ALLOWED for a vhost that does not exist', async () => {
    const t = transport();
    const url = `amqp://guest:guest@127.0.0.1:5672/${uniqueName('no-vhost')}`;
    const outcome = await t.send(osloAttempt({ deliveryId: 'del-vhost', envelope: taskEnvelope(1), callback: { url, exchange: 'x', topic: 'n' } }));
    expect(outcome).toMatchObject({ ok: false, error: 'NOT_ALLOWED' });
  });

  it('reports TIMEOUT for a deadline that has passed or is too short to connect', async () => {
    const { exchange, topic } = route();
    const t = transport();
    const late = { ...osloAttempt({ deliveryId: 'del-late', envelope: taskEnvelope(1), callback: { url: BROKER_URL, exchange, topic } }), deadline: Date.now() - 1 };
    expect(await t.send(late)).toMatchObject({ ok: false, error: 'TIMEOUT' });
    const tiny = { ...late, deliveryId: 'del-tiny', deadline: Date.now() + 2 };
    const outcome = await t.send(tiny);
    expect(outcome).toMatchObject({ ok: false, error: 'TIMEOUT' });
    expect(outcome.message).toMatch(/not connected within 2 ms|within [12] ms/);
    // The connection the timed-out attempt started serves the next one.
    const next = osloAttempt({ deliveryId: 'del-next', envelope: taskEnvelope(2), callback: { url: BROKER_URL, exchange, topic } });
    expect(await t.send(next)).toEqual({ ok: true });
  });

  it('reports TIMEOUT when no confirm arrives before the deadline, and goes on after', async () => {
    const { exchange, topic } = route();
    const proxy = await startBrokerProxy();
    try {
      const t = transport();
      const send = (i: number, timeoutMs = 5_000) =>
        t.send(
          osloAttempt({ deliveryId: `del-${i}-${uniqueName('d')}`, envelope: taskEnvelope(i), callback: { url: proxy.url, exchange, topic }, timeoutMs }),
        );
      expect(await send(1)).toEqual({ ok: true });
      proxy.holdConfirms();
      const started = Date.now();
      const outcome = await send(2, 300);
      expect(Date.now() - started).toBeGreaterThanOrEqual(290);
      expect(outcome).toMatchObject({ ok: false, error: 'TIMEOUT' });
      expect(outcome.message).toBe('amqp://guest:***@127.0.0.1:' + new URL(proxy.url).port + '/: no confirm from the broker within 300 ms');
      proxy.release();
      expect(await send(3)).toEqual({ ok: true });
      // The late one reached the broker too: at least once.
      expect(await broker.drain(`${topic}.info`, 3)).toHaveLength(3);
      await t.close();
    } finally {
      await proxy.close();
    }
  });

  it('reports NACK when the broker refuses the message', async () => {
    const { exchange, topic } = route();
    // A full queue that refuses publishes: the broker nacks them.
    await broker.onOwnChannel((ch) =>
      ch.assertQueue(`${topic}.info`, { durable: false, autoDelete: false, arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish' } }),
    );
    const t = transport();
    const send = (i: number) =>
      t.send(osloAttempt({ deliveryId: `del-${i}-${uniqueName('d')}`, envelope: taskEnvelope(i), callback: { url: BROKER_URL, exchange, topic } }));
    expect(await send(1)).toEqual({ ok: true });
    const refused = await send(2);
    expect(refused).toMatchObject({ ok: false, error: 'NACK' });
    expect(refused.message).toContain('amqp://guest:***@127.0.0.1:5672/');
  });

  it('refuses blocked broker addresses at create and at connect time (EADDRBLOCKED)', async () => {
    const guard = createNetworkGuard({ allowNetworks: [], allowLoopback: false });
    const t = transport({ guard });
    const problems = await t.check!({ transport: 'amqp', url: BROKER_URL, topic: 'n' });
    expect(problems).toHaveLength(1);
    expect(problems[0].field).toBe('callback.url');
    expect(problems[0].message).toMatch(/loopback/);
    expect(await t.check!({ transport: 'amqp', url: 'amqp://0x7f.1/', topic: 'n' })).toHaveLength(1);
    expect(await t.check!({ transport: 'amqp', url: 'amqp://localhost/', topic: 'n' })).toHaveLength(1);

    for (const url of [BROKER_URL, 'amqp://guest:guest@localhost:5672/', 'amqp://[::ffff:127.0.0.1]:5672/']) {
      const outcome = await t.send(osloAttempt({ deliveryId: 'del-blocked', envelope: taskEnvelope(1), callback: { url, exchange: 'x', topic: 'n' } }));
      expect(outcome, url).toMatchObject({ ok: false, error: 'EADDRBLOCKED' });
    }
    expect(await transport().check!({ transport: 'amqp', url: BROKER_URL, topic: 'n' })).toEqual([]);
  });

  it('never throws, whatever the callback holds', async () => {
    const t = transport();
    const base = osloAttempt({ deliveryId: 'del-odd', envelope: taskEnvelope(1), callback: { url: BROKER_URL, topic: 'n' } });
    for (const callback of [{ url: 'http://x/' }, { url: 42 }, {}, { url: 'amqp:///' }]) {
      const outcome = await t.send({ ...base, callback: { transport: 'amqp', timeout_ms: 1000, ...callback } });
      expect(outcome).toMatchObject({ ok: false, error: 'BAD_URL' });
    }
  });

  it('shares one connection per broker URL and closes it on close; later sends say TRANSPORT_CLOSED', async () => {
    const { exchange, topic } = route();
    const name = uniqueName('callback-relay-conn');
    const t = createAmqpTransport({ guard: loopbackGuard(), connectionName: name });
    const attempts = Array.from({ length: 20 }, (_, i) =>
      osloAttempt({ deliveryId: `del-${i}-${uniqueName('d')}`, envelope: taskEnvelope(i), callback: { url: BROKER_URL, exchange, topic } }),
    );
    const sending = Promise.all(attempts.map((a) => t.send(a)));
    const closing = new Promise((r) => setTimeout(r, 5)).then(() => t.close());
    const outcomes = await sending;
    await closing;
    // Everything in flight when close began was waited for.
    expect(outcomes).toEqual(attempts.map(() => ({ ok: true })));
    expect(await broker.drain(`${topic}.info`, attempts.length)).toHaveLength(attempts.length);
    expect(await t.send(attempts[0])).toMatchObject({ ok: false, error: 'TRANSPORT_CLOSED' });
    await expect.poll(() => brokerConnectionPids(name), { timeout: 10_000, interval: 250 }).toEqual([]);
  });

  it('keeps one connection for many attempts to the same broker', async () => {
    const { exchange, topic } = route();
    const name = uniqueName('callback-relay-one');
    const t = transport({ connectionName: name });
    for (let round = 0; round < 3; round++) {
      const outcomes = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          t.send(osloAttempt({ deliveryId: `del-${round}-${i}-${uniqueName('d')}`, envelope: taskEnvelope(i), callback: { url: BROKER_URL, exchange, topic } })),
        ),
      );
      expect(outcomes.every((o) => o.ok)).toBe(true);
    }
    await expect.poll(() => brokerConnectionPids(name), { timeout: 10_000, interval: 250 }).toHaveLength(1);
  });

  it('publishes 2,000 confirmed messages with 50 in flight', async () => {
    const { exchange, topic } = route();
    const t = transport();
    const total = 2_000;
    const attempts = Array.from({ length: total }, (_, i) =>
      osloAttempt({ deliveryId: `del-${i}-${uniqueName('d')}`, envelope: taskEnvelope(i), callback: { url: BROKER_URL, exchange, topic } }),
    );
    await t.send(attempts[0]); // connected and declared before the clock starts
    let next = 1;
    let failed = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        while (next < total) {
          const outcome = await t.send(attempts[next++]);
          if (!outcome.ok) failed += 1;
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    console.log(`amqp transport: ${Math.round((total - 1) / seconds)} confirmed publishes/s (${total - 1} in ${seconds.toFixed(2)} s, 50 in flight)`);
    expect(failed).toBe(0);
    const { messageCount } = await broker.onOwnChannel((ch) => ch.checkQueue(`${topic}.info`));
    expect(messageCount).toBe(total);
  });
});
