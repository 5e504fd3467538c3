import os from 'node:os';
import type { ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { brokerConnectionPids, closeBrokerConnection, connectTestBroker, startBrokerProxy, uniqueName, type BrokerProxy, type TestBroker } from './interop/broker.js';
import { startTestRelay, type TestRelay } from './helpers/relay.js';

/*
 * The relay's own broker connection closed from the broker's side while it publishes (as an
 * operator or a restarting broker does): the failed attempts go back on the durable schedule,
 * the transport reconnects, and every event still arrives. Disturbs the shared broker: serial.
 */

let relay: TestRelay;
let broker: TestBroker;
let proxy: BrokerProxy;
const exchange = uniqueName('relay-reconnect-x');
const topic = uniqueName('relay-reconnect-t');
const queue = `${topic}.info`;

beforeAll(async () => {
  broker = await connectTestBroker();
  await broker.channel.assertExchange(exchange, 'topic', { durable: false, autoDelete: false });
  await broker.channel.assertQueue(queue, { durable: false, autoDelete: false });
  await broker.channel.bindQueue(queue, exchange, queue);
  // Between the relay and the broker: holds the broker's confirms back, so publishes are in
  // flight when the connection is closed.
  proxy = await startBrokerProxy();
  relay = await startTestRelay({ RELAY_SHUTDOWN_GRACE_MS: '500' });
});
afterAll(async () => {
  await relay?.close();
  await proxy?.close();
  await broker?.cleanUp({ exchanges: [exchange], queues: [queue] });
});

describe('the broker closes the relay connection mid-stream', () => {
  it('delivers every event once the transport has reconnected', async () => {
    const created = await relay.api('POST', '/v1/listeners', {
      workbook: '*',
      event_types: ['NOTIFICATION'],
      // Only the test's events, not the relay's own (a circuit opened and closed by the outage).
      events: ['reconnect.test'],
      callback: { transport: 'amqp', url: proxy.url, exchange, topic, format: 'json' },
      retry: { schedule_ms: [200, 500, 1000, 2000, 2000, 2000, 2000, 2000] },
    });
    expect(created.status, created.text).toBe(201);

    const seen = new Map<string, number>();
    const consumer = await broker.connection.createChannel();
    await consumer.consume(queue, (msg: ConsumeMessage | null) => {
      if (!msg) return;
      const id = JSON.parse(msg.content.toString()).id as string;
      seen.set(id, (seen.get(id) ?? 0) + 1);
    }, { noAck: true });

    const N = 300;
    const post = async (count: number) =>
      (await relay.api('POST', '/v1/events', { events: Array.from({ length: count }, (_, i) => ({ type: 'reconnect.test', data: { i } })) })).body.items.map((x: { id: string }) => x.id) as string[];
    // The first event opens the relay's connection; then the broker's confirms are held.
    const ids = await post(1);
    await vi.waitFor(() => expect(seen.size).toBe(1), { timeout: 10_000 });
    proxy.holdConfirms();
    ids.push(...(await post(N - 1)));
    // Published, not yet confirmed: these attempts are in flight when the broker closes the connection.
    await vi.waitFor(() => expect(seen.size).toBeGreaterThan(20), { timeout: 10_000 });
    const name = `callback-relay ${os.hostname()}:${process.pid}`;
    const pids = await brokerConnectionPids(name);
    for (const pid of pids) await closeBrokerConnection(pid, 'closed by the reconnect test');
    const closed = pids.length;
    expect(closed).toBeGreaterThan(0);
    await vi.waitFor(() => expect(seen.size).toBe(N), { timeout: 45_000, interval: 200 });
    expect([...seen.keys()].sort()).toEqual([...ids].sort());
    // At least once: what was published before the close may arrive twice, never not at all.
    expect([...seen.values()].every((n) => n >= 1)).toBe(true);
    await vi.waitFor(async () => {
      const pending = (await relay.api('GET', `/v1/deliveries?listener_id=${created.body.id}&status=pending`)).body.items;
      expect(pending).toHaveLength(0);
    }, { timeout: 10_000, interval: 100 });
    // The attempts the close cut off failed (CONNECTION_FORCED) and went out again.
    const retried = (await relay.api('GET', `/v1/deliveries?listener_id=${created.body.id}&limit=1000`)).body.items.filter((d: { attempt_count: number }) => d.attempt_count > 1);
    expect(retried.length).toBeGreaterThan(0);
    await consumer.close();
  }, 90_000);
});
