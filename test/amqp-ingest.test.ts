import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';
import { startRelay } from '../src/relay.js';
import { captureLog, request, startTestRelay, tempDir, TOKEN_A, type TestRelay } from './helpers/relay.js';
import { costlyFilter, LONG, SHORT } from './helpers/costly-filter.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { waitUntil } from './helpers/relay-process.js';
import { BROKER_URL, connectTestBroker, freePort, startBrokerProxy, uniqueName, type TestBroker } from './interop/broker.js';

/*
 * The relay consuming OpenStack notifications from the real RabbitMQ: published with amqplib
 * exactly as an oslo notifier publishes them, and by the real oslo.messaging Notifier.
 */

const NOTIFY = fileURLToPath(new URL('./interop/oslo_notify.py', import.meta.url));
const PYTHON = '/usr/bin/python3';

let broker: TestBroker;
let relay: TestRelay;
let receiver: Receiver;
const exchange = uniqueName('cr-ingest-x');
const topic = uniqueName('cr-ingest-t');
const queues = [`${topic}.info`, `${topic}.error`];
const otherRelays: TestRelay[] = [];

const ingestEnv = (extra: Record<string, string> = {}) => ({
  RELAY_AMQP_INGEST_URL: BROKER_URL,
  RELAY_AMQP_INGEST_QUEUES: queues.join(','),
  RELAY_AMQP_INGEST_EXCHANGE: exchange,
  RELAY_AMQP_INGEST_PROJECT: 'project-a',
  ...extra,
});

beforeAll(async () => {
  broker = await connectTestBroker();
  receiver = await startReceiver();
  relay = await startTestRelay(ingestEnv());
  await waitUntil(async () => (await relay.api('GET', '/readyz')).status === 200, 15_000, () => 'the consumer did not connect');
});

afterAll(async () => {
  await Promise.allSettled(otherRelays.map((r) => r.close()));
  await relay?.close();
  await receiver?.close();
  await broker.cleanUp({ exchanges: [exchange], queues });
});

interface Notification {
  message_id?: string;
  publisher_id?: string;
  event_type?: string;
  priority?: string;
  payload?: unknown;
  timestamp?: string;
}

const leasePayload = (data: Record<string, unknown>) => ({
  'esi_leap_object.name': 'LeasePayload',
  'esi_leap_object.namespace': 'esi_leap',
  'esi_leap_object.version': '1.0',
  'esi_leap_object.data': data,
});

let counter = 0;
/** A notification as oslo writes one; `_unique_id` as its AMQP driver adds. */
function notification(fields: Notification = {}): Notification & Record<string, unknown> {
  counter += 1;
  return {
    message_id: uniqueName(`msg-${counter}`),
    publisher_id: 'esi-leap.manager:lease-host',
    event_type: 'esi_leap.lease.fulfill.end',
    priority: 'INFO',
    payload: leasePayload({ node_name: `node-${counter}`, purpose: 'test' }),
    timestamp: '2026-11-23 10:00:00.123456',
    _unique_id: uniqueName('u'),
    ...fields,
  };
}

/** The messagingv2 envelope, to the routing key <topic>.<priority>, as the notifier publishes it. */
function publish(message: Record<string, unknown> | Buffer, priority = 'info'): void {
  const body = Buffer.isBuffer(message) ? message : Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(message) }));
  broker.channel.publish(exchange, `${topic}.${priority}`, body, { contentType: 'application/json', contentEncoding: 'utf-8' });
}

async function eventsOfType(r: TestRelay, type: string): Promise<any[]> {
  const all: any[] = [];
  let cursor: string | null = null;
  do {
    const res = await r.api('GET', `/v1/events?type=${encodeURIComponent(type)}&limit=1000${cursor ? `&cursor=${cursor}` : ''}`);
    expect(res.status, res.text).toBe(200);
    all.push(...res.body.items);
    cursor = res.body.next_cursor;
  } while (cursor);
  return all;
}

const waitForEvents = async (type: string, count: number, timeoutMs = 10_000): Promise<any[]> =>
  (await waitUntil(
    async () => {
      const events = await eventsOfType(relay, type);
      return events.length >= count ? events : null;
    },
    timeoutMs,
    () => `fewer than ${count} events of type ${type}`,
  ))!;

async function metric(r: TestRelay, name: string, label: string): Promise<number> {
  const res = await r.api('GET', '/metrics');
  const line = res.text.split('\n').find((l) => l.startsWith(`${name}{${label}}`));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

describe('notifications from RabbitMQ become events', () => {
  it('stores each with type, category, source, time, priority, unwrapped data, data_schema and source_format oslo', async () => {
    const type = uniqueName('esi_leap.lease.fulfill');
    const info = notification({ event_type: type, payload: leasePayload({ node_name: 'node-7', purpose: 'test', properties: { vendor: 'dell' } }) });
    const error = notification({
      event_type: type,
      priority: 'ERROR',
      publisher_id: 'esi-leap.manager:other-host',
      timestamp: '2026-11-23 10:00:01',
      payload: { node_name: 'node-8', fault: { exception: 'NodeBusy', exception_message: 'node-8 is busy' } },
    });
    publish(info);
    publish(error, 'error');

    const events = await waitForEvents(type, 2);
    const byId = new Map(events.map((e) => [e.id, e]));
    expect(byId.get(info.message_id)).toMatchObject({
      id: info.message_id,
      type,
      category: 'NOTIFICATION',
      workbook: null,
      execution_id: null,
      sequence: null,
      source: 'esi-leap.manager:lease-host',
      occurred_at: '2026-11-23T10:00:00.123Z',
      priority: 'INFO',
      data: { node_name: 'node-7', purpose: 'test', properties: { vendor: 'dell' } },
      data_schema: { namespace: 'esi_leap', name: 'LeasePayload', version: '1.0' },
      source_format: 'oslo',
    });
    expect(byId.get(error.message_id)).toMatchObject({
      source: 'esi-leap.manager:other-host',
      occurred_at: '2026-11-23T10:00:01.000Z',
      priority: 'ERROR',
      data: { node_name: 'node-8', fault: { exception: 'NodeBusy', exception_message: 'node-8 is busy' } },
      data_schema: null,
      source_format: 'oslo',
    });
    // Events of another project's token are not these.
    const other = await relay.api('GET', `/v1/events?type=${encodeURIComponent(type)}`, undefined, { token: 'token-project-b-0123456789' });
    expect(other.body.items).toEqual([]);
  });

  it('delivers exactly the matching ones to a listener with an events pattern and a data filter', async () => {
    const path = `/hook-${uniqueName('l')}`;
    const purpose = uniqueName('test');
    const created = await relay.api('POST', '/v1/listeners', {
      workbook: '*',
      event_types: ['NOTIFICATION'],
      events: ['esi_leap.lease.*.end'],
      filter: { 'data.purpose': { $regex: `^${purpose}` } },
      callback: { url: receiver.url(path) },
    });
    expect(created.status, created.text).toBe(201);

    const matching = [
      notification({ event_type: 'esi_leap.lease.fulfill.end', payload: leasePayload({ node_name: 'n1', purpose }) }),
      notification({ event_type: 'esi_leap.lease.delete.end', payload: leasePayload({ node_name: 'n2', purpose: `${purpose}-more` }) }),
    ];
    const others = [
      notification({ event_type: 'esi_leap.lease.fulfill.start', payload: leasePayload({ purpose }) }),
      notification({ event_type: 'esi_leap.lease.fulfill.end', payload: leasePayload({ purpose: `prod-${purpose}` }) }),
      notification({ event_type: 'esi_leap.offer.create.end', payload: leasePayload({ purpose }) }),
      notification({ event_type: 'esi_leap.lease.fulfill.error', priority: 'ERROR', payload: leasePayload({ purpose }) }),
      notification({ event_type: 'esi_leap.lease.fulfill.end', payload: { purpose: 7 } }),
    ];
    for (const m of [...matching, ...others]) publish(m, m.priority!.toLowerCase());

    // Deliveries commit with their events: once every event is in, the deliveries are all there.
    await waitUntil(
      async () => {
        for (const m of [...matching, ...others]) if ((await relay.api('GET', `/v1/events/${m.message_id}`)).status !== 200) return false;
        return true;
      },
      10_000,
      () => 'not every notification became an event',
    );
    const deliveries = await relay.api('GET', `/v1/deliveries?listener_id=${created.body.id}`);
    expect(deliveries.body.items.map((d: any) => d.event_id).sort()).toEqual(matching.map((m) => m.message_id).sort());

    const requests = await receiver.waitForCount(path, 2);
    const bodies = requests.map((r) => JSON.parse(r.text));
    expect(bodies.map((b) => b.id).sort()).toEqual(matching.map((m) => m.message_id).sort());
    for (const b of bodies) {
      expect(b.source_format).toBe('oslo');
      expect(b.data.purpose.startsWith(purpose)).toBe(true);
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(receiver.requests(path)).toHaveLength(2);
  });

  it('stores a message given twice (same id, same body) once', async () => {
    const type = uniqueName('dup.test');
    const before = await metric(relay, 'relay_amqp_messages_consumed_total', `queue="${topic}.info"`);
    const message = notification({ event_type: type });
    publish(message);
    publish(message);
    // The same message republished by the driver (a new _unique_id) is the same event too.
    publish({ ...message, _unique_id: uniqueName('again') });
    await waitUntil(
      async () => (await metric(relay, 'relay_amqp_messages_consumed_total', `queue="${topic}.info"`)) >= before + 3,
      10_000,
      () => 'the three messages were not all acknowledged',
    );
    const events = await eventsOfType(relay, type);
    expect(events.map((e) => e.id)).toEqual([message.message_id]);
  });

  it('rejects what is not a notification (not JSON, no event_type, an id reused with another body), counts it, and goes on', async () => {
    const reasons = ['not_json', 'no_event_type', 'bad_envelope', 'id_conflict'];
    const before = Object.fromEntries(
      await Promise.all(reasons.map(async (r) => [r, await metric(relay, 'relay_amqp_messages_rejected_total', `reason="${r}"`)] as const)),
    );
    const type = uniqueName('after.rejects');
    const first = notification({ event_type: type });
    publish(first);
    await waitForEvents(type, 1);

    publish(Buffer.from('this is not JSON at all'));
    publish({ message_id: uniqueName('no-type'), payload: {}, priority: 'INFO' });
    publish(Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': { event_type: 'x' } })));
    publish({ ...first, payload: leasePayload({ purpose: 'changed' }) }, 'error');
    const after = notification({ event_type: type });
    publish(after);

    await waitForEvents(type, 2);
    await waitUntil(
      async () => {
        for (const r of reasons) if ((await metric(relay, 'relay_amqp_messages_rejected_total', `reason="${r}"`)) !== before[r] + 1) return false;
        return true;
      },
      10_000,
      () => 'the rejections were not counted',
    );
    expect((await eventsOfType(relay, type)).map((e) => e.id).sort()).toEqual([first.message_id, after.message_id].sort());
    expect((await relay.api('GET', `/v1/events/${first.message_id}`)).body.data).toEqual(
      (first.payload as Record<string, unknown>)['esi_leap_object.data'],
    );
    // Rejected without requeue: nothing waits in the queues, nothing is given again.
    for (const q of queues) {
      const { messageCount } = await broker.onOwnChannel((ch) => ch.checkQueue(q));
      expect(messageCount, q).toBe(0);
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    for (const r of reasons) expect(await metric(relay, 'relay_amqp_messages_rejected_total', `reason="${r}"`)).toBe(before[r] + 1);
  });

  it('rejects a notification whose matching against the project\'s listeners would hold the relay, and goes on', async () => {
    // Four listeners of the consuming project whose filters take tenths of a second on each
    // long value: one notification of three such values would take seconds to match.
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await relay.api('POST', '/v1/listeners', { workbook: '*', event_types: ['NOTIFICATION'], filter: costlyFilter, callback: { url: receiver.url('/amqp-costly') } });
      expect(res.status, res.text).toBe(201);
      ids.push(res.body.id);
    }
    try {
      const before = await metric(relay, 'relay_amqp_messages_rejected_total', 'reason="filter_budget"');
      const type = uniqueName('costly.notification');
      const heavy = notification({ event_type: type, payload: leasePayload({ s: LONG, t: LONG, u: LONG }) });
      const light = notification({ event_type: type, payload: leasePayload({ s: SHORT, t: SHORT, u: SHORT }) });
      const started = Date.now();
      publish(heavy);
      publish(light);
      await waitForEvents(type, 1);
      await waitUntil(
        async () => (await metric(relay, 'relay_amqp_messages_rejected_total', 'reason="filter_budget"')) === before + 1,
        10_000,
        () => 'the rejection was not counted',
      );
      // Unmetered, this one message held the relay for seconds.
      expect(Date.now() - started).toBeLessThan(5_000);
      expect((await eventsOfType(relay, type)).map((e) => e.id)).toEqual([light.message_id]);
      for (const q of queues) {
        const { messageCount } = await broker.onOwnChannel((ch) => ch.checkQueue(q));
        expect(messageCount, q).toBe(0);
      }
      // The light one reached every listener whose filter it matches.
      expect((await receiver.waitForCount('/amqp-costly', 4)).map((r) => JSON.parse(r.text).id)).toEqual(Array(4).fill(light.message_id));
    } finally {
      for (const id of ids) await relay.api('DELETE', `/v1/listeners/${id}`);
    }
  }, 30_000);

  it('stores what the real oslo.messaging Notifier publishes, with the right fields', async () => {
    const type = uniqueName('esi_leap.lease.delete');
    const sent = Array.from({ length: 5 }, (_, i) => ({
      priority: i % 2 === 0 ? 'INFO' : 'ERROR',
      event_type: `${type}.${i % 2 === 0 ? 'end' : 'error'}`,
      publisher_id: `esi-leap.manager:host-${i}`,
      payload: leasePayload({ node_name: `node-${i}`, purpose: 'test', n: i }),
    }));
    const startedAt = Date.now();
    const child = spawn(PYTHON, [NOTIFY, 'rabbit://guest:guest@127.0.0.1:5672/', exchange, topic], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.stdin.end(JSON.stringify(sent));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code, err).toBe(0);
    expect(out.trim()).toBe('SENT 5');

    const stored = [...(await waitForEvents(`${type}.end`, 3)), ...(await waitForEvents(`${type}.error`, 2))];
    for (const [i, s] of sent.entries()) {
      const e = stored.find((x) => x.source === s.publisher_id);
      expect(e, s.publisher_id).toBeDefined();
      expect(e.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(e).toMatchObject({
        type: s.event_type,
        category: 'NOTIFICATION',
        workbook: null,
        priority: s.priority,
        data: { node_name: `node-${i}`, purpose: 'test', n: i },
        data_schema: { namespace: 'esi_leap', name: 'LeasePayload', version: '1.0' },
        source_format: 'oslo',
      });
      // oslo's timestamp is the publisher's UTC clock, to the microsecond; the event keeps milliseconds.
      expect(e.occurred_at).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
      expect(Math.abs(Date.parse(e.occurred_at) - startedAt)).toBeLessThan(60_000);
    }
  });
});

describe('a queue deleted under the consumer', () => {
  it('is declared again, and the notifications published to it afterwards are stored', async () => {
    const ownQueue = `${uniqueName('cr-ingest-del-t')}.info`;
    queues.push(ownQueue);
    const own = await startTestRelay(ingestEnv({ RELAY_AMQP_INGEST_QUEUES: ownQueue }));
    otherRelays.push(own);
    await waitUntil(async () => (await own.api('GET', '/readyz')).status === 200, 10_000, () => 'not ready');
    await broker.onOwnChannel((ch) => ch.deleteQueue(ownQueue));
    // The broker cancels the consumer; the relay connects again and declares the queue.
    await waitUntil(
      async () => (await broker.onOwnChannel((ch) => ch.checkQueue(ownQueue)).catch(() => null))?.consumerCount === 1,
      10_000,
      () => 'the queue was not declared and consumed again',
    );
    const message = notification({ event_type: uniqueName('after.delete') });
    broker.channel.publish(exchange, ownQueue, Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(message) })));
    await waitUntil(async () => (await own.api('GET', `/v1/events/${message.message_id}`)).status === 200, 10_000, () => 'not stored');
  });
});

describe('a database that cannot take the write', () => {
  it('leaves the message unacknowledged and gives it back to the queue after a wait, until it is stored', async () => {
    const busyTopic = uniqueName('cr-ingest-busy-t');
    const busyQueue = `${busyTopic}.info`;
    queues.push(busyQueue);
    const { lines, log } = captureLog('info');
    const dataDir = tempDir();
    const config = loadConfig({
      RELAY_PORT: '0',
      RELAY_DATA_DIR: dataDir,
      RELAY_TOKENS: `${TOKEN_A}=project-a`,
      RELAY_BUSY_TIMEOUT_MS: '300',
      ...ingestEnv({ RELAY_AMQP_INGEST_QUEUES: busyQueue }),
    });
    const busy = await startRelay(config, log);
    const api = (method: string, path: string) => request(busy.url, method, path);
    try {
      await waitUntil(async () => (await api('GET', '/readyz')).status === 200, 10_000, () => 'not ready');
      const holder = new Database(config.databasePath);
      holder.exec('BEGIN IMMEDIATE');
      const message = notification({ event_type: uniqueName('busy.test') });
      broker.channel.publish(exchange, busyQueue, Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(message) })));

      const refused = () => lines.filter((l) => l.msg === 'database cannot take the notification now: it goes back to the queue');
      await waitUntil(() => refused().length >= 2, 10_000, () => 'the message was not tried again');
      expect(refused()[0].queue).toBe(busyQueue);
      expect((await api('GET', `/v1/events/${message.message_id}`)).status).toBe(404);
      const consumed = async () => {
        const line = (await api('GET', '/metrics')).text.split('\n').find((l) => l.startsWith(`relay_amqp_messages_consumed_total{queue="${busyQueue}"}`));
        return line === undefined ? 0 : Number(line.split(' ').pop());
      };
      expect(await consumed()).toBe(0);

      holder.exec('COMMIT');
      holder.close();
      await waitUntil(async () => (await api('GET', `/v1/events/${message.message_id}`)).status === 200, 15_000, () => 'not stored after the lock went');
      await waitUntil(async () => (await consumed()) === 1, 5_000, () => 'not acknowledged after it was stored');
      const { messageCount } = await broker.onOwnChannel((ch) => ch.checkQueue(busyQueue));
      expect(messageCount).toBe(0);
    } finally {
      await busy.close();
    }
  });
});

describe('readiness of the consumer', () => {
  it('answers /readyz 200 while connected, 503 naming the consumer and the broker (password masked) while not', async () => {
    expect((await relay.api('GET', '/readyz')).status).toBe(200);

    const port = await freePort();
    const down = await startTestRelay(ingestEnv({ RELAY_AMQP_INGEST_URL: `amqp://guest:s3cret-pw@127.0.0.1:${port}/` }));
    otherRelays.push(down);
    const res = await down.api('GET', '/readyz');
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(res.body.detail).toContain('amqp notification consumer');
    expect(res.body.detail).toContain(`amqp://guest:***@127.0.0.1:${port}/`);
    expect(res.text).not.toContain('s3cret-pw');
    await waitUntil(async () => (await down.api('GET', '/readyz')).body.detail.includes('ECONNREFUSED'), 10_000, () => 'no ECONNREFUSED in the detail');
    // The API itself still serves.
    expect((await down.api('GET', '/v1/events')).status).toBe(200);
  });

  it('turns 503 when the connection to the broker is lost', async () => {
    const proxy = await startBrokerProxy();
    const through = await startTestRelay(ingestEnv({ RELAY_AMQP_INGEST_URL: proxy.url }));
    otherRelays.push(through);
    await waitUntil(async () => (await through.api('GET', '/readyz')).status === 200, 10_000, () => 'not ready through the proxy');
    await proxy.close();
    const res = await waitUntil(
      async () => {
        const r = await through.api('GET', '/readyz');
        return r.status === 503 ? r : null;
      },
      10_000,
      () => 'still ready after the broker went away',
    );
    expect(res!.body.detail).toContain('amqp notification consumer is not connected');
  });

  it('runs no consumer in a dispatcher-only process', async () => {
    const port = await freePort();
    const dispatcherOnly = await startRelay(
      loadConfig({ RELAY_PORT: '0', RELAY_DATA_DIR: tempDir(), RELAY_LOG_LEVEL: 'silent', ...ingestEnv({ RELAY_AMQP_INGEST_URL: `amqp://127.0.0.1:${port}/` }) }),
      pino({ level: 'silent' }),
      { role: 'dispatcher' },
    );
    try {
      const res = await fetch(`${dispatcherOnly.url}/readyz`);
      expect(res.status).toBe(200);
    } finally {
      await dispatcherOnly.close();
    }
  });
});

describe('configuration of the consumer', () => {
  const base = { RELAY_DATA_DIR: '/tmp/unused' };
  const configError = (env: Record<string, string>) => {
    try {
      loadConfig({ ...base, ...env });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return err as ConfigError;
    }
    throw new Error('expected a ConfigError');
  };

  it('is off without RELAY_AMQP_INGEST_URL, with the documented defaults when on', () => {
    expect(loadConfig(base).amqpIngest).toBeNull();
    expect(loadConfig({ ...base, RELAY_AMQP_INGEST_QUEUES: 'a.info' }).amqpIngest).toBeNull();
    expect(loadConfig({ ...base, RELAY_AMQP_INGEST_URL: 'amqp://u:p@rabbit:5672/vh', RELAY_AMQP_INGEST_QUEUES: ' a.info, a.error ,,a.info' }).amqpIngest).toEqual({
      url: 'amqp://u:p@rabbit:5672/vh',
      queues: ['a.info', 'a.error'],
      exchange: 'openstack',
      project: 'default',
      prefetch: 64,
    });
  });

  it('names the variable of a bad value, never showing the password', () => {
    let err = configError({ RELAY_AMQP_INGEST_URL: 'amqp://u:topsecret@rabbit/' });
    expect(err.variable).toBe('RELAY_AMQP_INGEST_QUEUES');
    expect(err.message).toContain('required when RELAY_AMQP_INGEST_URL is set');
    err = configError({ RELAY_AMQP_INGEST_URL: 'http://u:topsecret@rabbit/', RELAY_AMQP_INGEST_QUEUES: 'q' });
    expect(err.variable).toBe('RELAY_AMQP_INGEST_URL');
    expect(err.message).not.toContain('topsecret');
    expect(err.message).toContain('u:***@rabbit');
    err = configError({ RELAY_AMQP_INGEST_URL: 'not a url topsecret', RELAY_AMQP_INGEST_QUEUES: 'q' });
    expect(err.variable).toBe('RELAY_AMQP_INGEST_URL');
    const on = { RELAY_AMQP_INGEST_URL: 'amqps://rabbit/', RELAY_AMQP_INGEST_QUEUES: 'q' };
    expect(configError({ ...on, RELAY_AMQP_INGEST_QUEUES: 'amq.gen-1' }).variable).toBe('RELAY_AMQP_INGEST_QUEUES');
    expect(configError({ ...on, RELAY_AMQP_INGEST_QUEUES: 'q'.repeat(256) }).variable).toBe('RELAY_AMQP_INGEST_QUEUES');
    expect(configError({ ...on, RELAY_AMQP_INGEST_EXCHANGE: 'has space' }).variable).toBe('RELAY_AMQP_INGEST_EXCHANGE');
    expect(configError({ ...on, RELAY_AMQP_INGEST_PROJECT: 'a/b' }).variable).toBe('RELAY_AMQP_INGEST_PROJECT');
    expect(configError({ ...on, RELAY_AMQP_INGEST_PREFETCH: '0' }).variable).toBe('RELAY_AMQP_INGEST_PREFETCH');
    expect(configError({ ...on, RELAY_AMQP_INGEST_PREFETCH: 'many' }).variable).toBe('RELAY_AMQP_INGEST_PREFETCH');
  });
});
