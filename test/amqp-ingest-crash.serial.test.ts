import fs from 'node:fs';
import { hostname } from 'node:os';
import type { ConfirmChannel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request, tempDir } from './helpers/relay.js';
import { killAllRelays, runToExit, startRelayProcess, waitUntil, type RelayProcess } from './helpers/relay-process.js';
import { BROKER_URL, brokerConnectionPids, closeBrokerConnection, connectTestBroker, uniqueName, type TestBroker } from './interop/broker.js';

/*
 * The consumer in a real relay process (`node dist/main.js`; run `npm run build` first):
 * killed with SIGKILL and stopped with SIGTERM while notifications arrive, and cut off by the
 * broker. Serial: closing connections from the broker's side must not reach other files.
 */

const TOKEN = 'amqp-ingest-crash-token-0123456789';
const PROJECT = 'p1';

let broker: TestBroker;
let confirm: ConfirmChannel;
const exchanges: string[] = [];
const queues: string[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  broker = await connectTestBroker();
  confirm = await broker.connection.createConfirmChannel();
});

afterAll(async () => {
  await killAllRelays();
  await broker.cleanUp({ exchanges, queues });
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

interface Setup {
  exchange: string;
  queue: string;
  type: string;
  dir: string;
  env: Record<string, string>;
}

function setup(prefetch?: number): Setup {
  const exchange = uniqueName('cr-ingest-crash-x');
  const topic = uniqueName('cr-ingest-crash-t');
  const queue = `${topic}.info`;
  exchanges.push(exchange);
  queues.push(queue);
  const dir = tempDir('relay-amqp-ingest-');
  dirs.push(dir);
  return {
    exchange,
    queue,
    type: uniqueName('crash.notification'),
    dir,
    env: {
      RELAY_PORT: '0',
      RELAY_DATA_DIR: dir,
      RELAY_TOKENS: `${TOKEN}=${PROJECT}`,
      RELAY_LOG_LEVEL: 'info',
      RELAY_AMQP_INGEST_URL: BROKER_URL,
      RELAY_AMQP_INGEST_QUEUES: queue,
      RELAY_AMQP_INGEST_EXCHANGE: exchange,
      RELAY_AMQP_INGEST_PROJECT: PROJECT,
      ...(prefetch ? { RELAY_AMQP_INGEST_PREFETCH: String(prefetch) } : {}),
    },
  };
}

const messageId = (s: Setup, i: number) => `${s.type}-${i}`;

/** The messagingv2 envelope of notification `i`, as an oslo notifier publishes it. */
function body(s: Setup, i: number): Buffer {
  const message = {
    message_id: messageId(s, i),
    publisher_id: 'crash-test:host',
    event_type: s.type,
    priority: 'INFO',
    payload: { n: i },
    timestamp: '2026-11-23 10:00:00.000000',
    _unique_id: uniqueName('u'),
  };
  return Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(message) }));
}

async function publish(s: Setup, from: number, to: number, pauseEvery = 0, pauseMs = 5): Promise<void> {
  for (let i = from; i < to; i++) {
    confirm.publish(s.exchange, s.queue, body(s, i), { contentType: 'application/json' });
    if (pauseEvery > 0 && i % pauseEvery === 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
  await confirm.waitForConfirms();
}

/** The exchange and queue as the notifier declares them, for messages published before any relay runs. */
async function declareAsNotifier(s: Setup): Promise<void> {
  await broker.onOwnChannel(async (ch) => {
    await ch.assertExchange(s.exchange, 'topic', { durable: false, autoDelete: false });
    await ch.assertQueue(s.queue, { durable: false, autoDelete: false });
    await ch.bindQueue(s.queue, s.exchange, s.queue);
  });
}

/** Every event of the test's type, paged through the API with next_cursor. */
async function eventIds(relay: RelayProcess, type: string): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  do {
    const res = await request(relay.url, 'GET', `/v1/events?type=${encodeURIComponent(type)}&limit=100${cursor ? `&cursor=${cursor}` : ''}`, undefined, { token: TOKEN });
    expect(res.status, res.text).toBe(200);
    ids.push(...res.body.items.map((e: { id: string }) => e.id));
    cursor = res.body.next_cursor;
  } while (cursor);
  return ids;
}

const queueDepth = async (queue: string) => (await broker.onOwnChannel((ch) => ch.checkQueue(queue))).messageCount;

const consumerConnected = (relay: RelayProcess) => relay.waitForLog((l) => l.msg === 'amqp notification consumer connected');

describe('consumer in a relay process', () => {
  it('loses no notification and stores none twice when SIGKILLed while 300 arrive', async () => {
    const s = setup();
    const total = 300;
    // Commits at most every 100 ms, so that the kill finds messages delivered and not yet committed.
    const env = { ...s.env, RELAY_COMMIT_INTERVAL_MS: '100' };
    let relay = await startRelayProcess(env);
    await consumerConnected(relay);

    // Killed while the messages pour in: some stored, some being stored, some not yet delivered.
    // They come in over more than half a second (a pause of 10 ms every 5), so that a backend
    // that commits a whole burst at once (PostgreSQL's group commit), or a first commit that is
    // late on a busy machine, still leaves some to take.
    const publishing = publish(s, 0, total, 5, 10);
    const storedAtKill = await waitUntil(async () => (await eventIds(relay, s.type)).length, 10_000, () => 'nothing was stored before the kill', 5);
    await relay.kill9();
    await publishing;
    expect(storedAtKill).toBeLessThan(total);

    relay = await startRelayProcess(env);
    const ids = await waitUntil(
      async () => {
        const found = await eventIds(relay, s.type);
        return found.length >= total ? found : null;
      },
      30_000,
      () => `not all ${total} notifications became events`,
    );
    expect(ids).toHaveLength(total);
    expect(new Set(ids).size).toBe(total);
    expect(new Set(ids)).toEqual(new Set(Array.from({ length: total }, (_, i) => messageId(s, i))));
    await waitUntil(async () => (await queueDepth(s.queue)) === 0, 10_000, () => 'messages left in the queue');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await eventIds(relay, s.type)).toHaveLength(total);
    await relay.stop();
  });

  it('on SIGTERM stops consuming, exits 0, and has stored every message it acknowledged; the rest stay in the queue', async () => {
    const s = setup(8);
    const total = 2000;
    await declareAsNotifier(s);
    await publish(s, 0, total);
    expect(await queueDepth(s.queue)).toBe(total);

    // Commits at most every 100 ms: the stop finds messages being stored, and lets them finish.
    const relay = await startRelayProcess({ ...s.env, RELAY_COMMIT_INTERVAL_MS: '100' });
    await consumerConnected(relay);
    const exit = await relay.stop();
    expect(exit.code).toBe(0);
    expect(relay.logs.some((l) => l.msg === 'amqp notification consumer stopped')).toBe(true);

    // What the broker still holds was not acknowledged; everything else must be an event.
    const left = await queueDepth(s.queue);
    const inQueue = new Set(
      (await broker.drain(s.queue, left)).map((m) => JSON.parse(JSON.parse(m.content.toString())['oslo.message']).message_id as string),
    );
    const reader = await startRelayProcess({ ...s.env, RELAY_AMQP_INGEST_URL: '' });
    const stored = new Set(await eventIds(reader, s.type));
    await reader.stop();

    expect(stored.size, 'some messages were consumed before the stop').toBeGreaterThan(0);
    expect(inQueue.size, 'some messages were still waiting at the stop').toBeGreaterThan(0);
    const acknowledged = Array.from({ length: total }, (_, i) => messageId(s, i)).filter((id) => !inQueue.has(id));
    expect(acknowledged.filter((id) => !stored.has(id))).toEqual([]);
    // The messages being stored at the stop were finished and acknowledged, not left to be given again.
    expect([...inQueue].filter((id) => stored.has(id))).toEqual([]);
    expect(stored.size + inQueue.size).toBe(total);
  });

  it('stores every message when the broker closes the consumer connection mid-stream', async () => {
    const s = setup();
    const total = 300;
    const relay = await startRelayProcess(s.env);
    await consumerConnected(relay);
    const connectionName = `callback-relay ingest ${hostname()}:${relay.pid}`;

    await publish(s, 0, 100, 5);
    await waitUntil(async () => (await eventIds(relay, s.type)).length > 0, 10_000, () => 'nothing was stored before the close');
    const rest = publish(s, 100, total, 5);
    const [pid] = await brokerConnectionPids(connectionName);
    expect(pid, `no broker connection named ${connectionName}`).toBeDefined();
    await closeBrokerConnection(pid, 'closed by the ingest reconnect test');
    await rest;

    await relay.waitForLog((l) => l.msg === 'amqp notification consumer lost its connection');
    await relay.waitForLog((l) => l.msg === 'amqp notification consumer connected again');
    const ids = await waitUntil(
      async () => {
        const found = await eventIds(relay, s.type);
        return found.length >= total ? found : null;
      },
      30_000,
      () => `not all ${total} notifications became events`,
    );
    expect(new Set(ids)).toEqual(new Set(Array.from({ length: total }, (_, i) => messageId(s, i))));
    expect(ids).toHaveLength(total);
    expect((await brokerConnectionPids(connectionName)).filter((p) => p !== pid)).toHaveLength(1);

    // A rejected message is logged with its queue and a short excerpt.
    confirm.publish(s.exchange, s.queue, Buffer.from(`not json ${'x'.repeat(500)}`));
    await confirm.waitForConfirms();
    const line = await relay.waitForLog((l) => l.msg.startsWith('notification rejected'));
    expect(line).toMatchObject({ queue: s.queue, reason: 'not_json', excerpt: `not json ${'x'.repeat(191)}` });
    await relay.stop();
  });

  it('refuses to start with a broker URL but no queues (exit 2, naming the variable)', async () => {
    const s = setup();
    const relay = await runToExit({ ...s.env, RELAY_AMQP_INGEST_QUEUES: '' });
    expect(relay.exit?.code).toBe(2);
    expect(relay.stderr).toContain('RELAY_AMQP_INGEST_QUEUES');
  });
});
