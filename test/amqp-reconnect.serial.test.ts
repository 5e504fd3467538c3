import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAmqpTransport } from '../src/transports/amqp.js';
import type { TransportOutcome } from '../src/transports/contract.js';
import {
  BROKER_URL,
  brokerConnectionPids,
  closeBrokerConnection,
  connectTestBroker,
  loopbackGuard,
  osloAttempt,
  startBrokerProxy,
  taskEnvelope,
  uniqueName,
  type TestBroker,
} from './interop/broker.js';

/*
 * Closes a connection from the broker's side while attempts are being published, as an
 * operator or a broker restart does. Serial: rabbitmqctl is slow, and other files' broker
 * connections must not see it.
 */

let broker: TestBroker;
const exchange = uniqueName('cr-reconnect-x');
const topic = uniqueName('cr-reconnect-t');
const queue = `${topic}.info`;
const heldTopic = uniqueName('cr-held-t');
const heldQueue = `${heldTopic}.info`;

beforeAll(async () => {
  broker = await connectTestBroker();
});

afterAll(async () => {
  await broker.cleanUp({ exchanges: [exchange], queues: [queue, heldQueue] });
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('amqp transport when the broker closes its connection', () => {
  it('delivers every one of 200 attempts, each retried until ok, across a broker-side close', async () => {
    const connectionName = uniqueName('callback-relay-reconnect');
    const transport = createAmqpTransport({ guard: loopbackGuard(), connectionName, reconnect: { baseMs: 50, maxMs: 500 } });
    const total = 200;
    const ids = Array.from({ length: total }, (_, i) => `del-${i}-${uniqueName('d')}`);
    const failures: TransportOutcome[] = [];
    let succeeded = 0;
    let okAfterClose = 0;
    let closed = false;
    let pidBefore: string | undefined;
    let closing: Promise<void> | null = null;

    const closeNow = async () => {
      [pidBefore] = await brokerConnectionPids(connectionName);
      expect(pidBefore).toBeDefined();
      await closeBrokerConnection(pidBefore!, 'closed by the reconnect test');
      closed = true;
    };

    // Retried until ok, as the durable schedule would: a new attempt number, signature and deadline each time.
    const deliver = async (i: number) => {
      for (let attemptNumber = 1; ; attemptNumber++) {
        const attempt = osloAttempt({
          deliveryId: ids[i],
          envelope: taskEnvelope(i),
          callback: { url: BROKER_URL, exchange, topic },
          attemptNumber,
          timeoutMs: 5_000,
        });
        const outcome = await transport.send(attempt);
        if (outcome.ok) break;
        failures.push(outcome);
        expect(attemptNumber).toBeLessThan(200);
        await sleep(25);
      }
      succeeded += 1;
      if (closed) okAfterClose += 1;
      if (succeeded === 50) closing = closeNow();
    };

    let next = 0;
    await Promise.all(
      Array.from({ length: 5 }, async () => {
        while (next < total) {
          const i = next++;
          // The last 50 wait for the close, so that some attempts surely go out after it.
          if (i >= total - 50) {
            while (closing === null) await sleep(10);
            await closing;
          }
          await deliver(i);
          await sleep(5);
        }
      }),
    );
    await closing;
    expect(succeeded).toBe(total);
    expect(okAfterClose).toBeGreaterThanOrEqual(50);
    for (const f of failures) expect(f.message).toContain('amqp://guest:***@127.0.0.1:5672/');
    console.log(`failed tries across the close: ${failures.length} (${[...new Set(failures.map((f) => f.error))].join(', ') || 'none'})`);

    // A new connection replaced the closed one.
    const pidsAfter = await brokerConnectionPids(connectionName);
    expect(pidsAfter).toHaveLength(1);
    expect(pidsAfter[0]).not.toBe(pidBefore);

    // Every delivery arrived at least once (a retry after a lost confirm may arrive twice).
    const seen = new Set<string>();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${seen.size} of ${total} distinct messages arrived`)), 15_000);
      void broker.channel.consume(
        queue,
        (msg) => {
          if (msg === null) return;
          seen.add(msg.properties.messageId as string);
          if (seen.size === total) {
            clearTimeout(timer);
            resolve();
          }
        },
        { noAck: true },
      );
    });
    expect([...seen].sort()).toEqual([...ids].sort());
    await transport.close();
  });

  it('retries publishes whose confirms were lost with the connection; each arrives, some twice', async () => {
    const proxy = await startBrokerProxy();
    const connectionName = uniqueName('callback-relay-held');
    const transport = createAmqpTransport({ guard: loopbackGuard(), connectionName, reconnect: { baseMs: 50, maxMs: 500 } });
    try {
      const ids = Array.from({ length: 30 }, (_, i) => `del-${i}-${uniqueName('d')}`);
      const send = (i: number, attemptNumber = 1) =>
        transport.send(
          osloAttempt({ deliveryId: ids[i], envelope: taskEnvelope(i), callback: { url: proxy.url, exchange, topic: heldTopic }, attemptNumber }),
        );
      for (let i = 0; i < 10; i++) expect(await send(i)).toEqual({ ok: true });

      // The next 20 reach the broker, but their confirms are held back until the broker closes the connection.
      proxy.holdConfirms();
      const inFlight = Array.from({ length: 20 }, (_, k) => send(10 + k));
      await sleep(200);
      const [pid] = await brokerConnectionPids(connectionName);
      await closeBrokerConnection(pid, 'closed with confirms outstanding');
      const lost = await Promise.all(inFlight);
      proxy.release();
      for (const outcome of lost) {
        expect(outcome.ok).toBe(false);
        expect(outcome.error).toBe('CONNECTION_FORCED');
        expect(outcome.message).toContain('amqp://guest:***@127.0.0.1:');
      }

      for (let k = 0; k < 20; k++) {
        let outcome = await send(10 + k, 2);
        for (let n = 3; !outcome.ok && n < 50; n++) {
          await sleep(25);
          outcome = await send(10 + k, n);
        }
        expect(outcome).toEqual({ ok: true });
      }

      const messages = await broker.drain(heldQueue, 50);
      const seen = new Set(messages.map((m) => m.properties.messageId as string));
      expect([...seen].sort()).toEqual([...ids].sort());
      // The broker had taken the 20 before the connection went: their retries are repeats,
      // which a consumer recognises by message_id (and webhook-id).
      const repeats = messages.length - seen.size;
      expect(repeats).toBe(20);
      for (const m of messages.filter((m) => m.properties.headers?.['webhook-attempt'] === '2')) {
        expect(ids.indexOf(m.properties.messageId as string)).toBeGreaterThanOrEqual(10);
      }
    } finally {
      await transport.close();
      await proxy.close();
    }
  });
});
