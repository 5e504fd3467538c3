import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import * as amqp from 'amqplib';
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { generateSecret, signatureHeaders } from '../../src/dispatch/signing.js';
import { renderOslo } from '../../src/dispatch/oslo-format.js';
import type { EventEnvelope } from '../../src/records/event.js';
import type { TransportAttempt } from '../../src/transports/contract.js';
import { createNetworkGuard } from '../../src/net/network-guard.js';

/** The RabbitMQ every AMQP test talks to. */
export const BROKER_URL = 'amqp://guest:guest@127.0.0.1:5672/';
export const RELAY_HOSTNAME = 'relay-test-host';

export const loopbackGuard = () => createNetworkGuard({ allowNetworks: [], allowLoopback: true });

/** A name no other test (or run) uses: exchanges, topics and queues are per test. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${randomUUID().slice(0, 8)}`;
}

/** A port nothing listens on (taken, then released). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export function taskEnvelope(n: number, type = 'TASK_SUCCEEDED'): EventEnvelope {
  return {
    id: `evt-${n}`,
    type,
    category: 'TASK',
    workbook: 'billing',
    workflow: 'charge',
    execution_id: 'exec-1',
    task_id: `task-${n}`,
    task_name: 'charge_card',
    state: type === 'TASK_FAILED' ? 'ERROR' : 'SUCCESS',
    previous_state: 'RUNNING',
    state_info: null,
    sequence: n,
    occurred_at: new Date(Date.UTC(2026, 10, 23, 10, 0, 0, n)).toISOString(),
    source: 'engine',
    priority: null,
    data_schema: null,
    source_format: null,
    data: type === 'TASK_FAILED' ? { fault: { exception: 'CardDeclined', exception_message: `declined ${n}` } } : { n },
  };
}

export interface AttemptSpec {
  deliveryId: string;
  envelope: EventEnvelope;
  callback: Record<string, unknown>;
  secret?: string;
  attemptNumber?: number;
  timeoutMs?: number;
  listenerHeaders?: Record<string, string>;
}

export const TEST_SECRET = generateSecret();

/** An attempt as the dispatcher builds one for the `oslo` format: body, signature and listener headers. */
export function osloAttempt(spec: AttemptSpec): TransportAttempt {
  const body = renderOslo(spec.envelope, { hostname: RELAY_HOSTNAME, deliveryId: spec.deliveryId });
  const attemptNumber = spec.attemptNumber ?? 1;
  const headers = {
    ...(spec.listenerHeaders ?? {}),
    ...signatureHeaders({
      deliveryId: spec.deliveryId,
      timestamp: Math.floor(Date.now() / 1000),
      body,
      secrets: [spec.secret ?? TEST_SECRET],
    }),
    'webhook-attempt': String(attemptNumber),
    'content-type': 'application/json',
  };
  const timeoutMs = spec.timeoutMs ?? 15_000;
  return {
    deliveryId: spec.deliveryId,
    attemptNumber,
    query: null,
    listenerId: 'listener-1',
    project: 'default',
    callback: { transport: 'amqp', timeout_ms: timeoutMs, ...spec.callback },
    envelope: spec.envelope,
    body,
    contentType: 'application/json',
    headers,
    gap: null,
    deadline: Date.now() + timeoutMs,
  };
}

/** The test's own connection to the broker, for setting up, reading and cleaning up. */
export interface TestBroker {
  connection: ChannelModel;
  channel: Channel;
  /** Every message in `queue` (waits until `count` have arrived, or fails after `timeoutMs`). */
  drain(queue: string, count: number, timeoutMs?: number): Promise<ConsumeMessage[]>;
  /** Runs `work` on a channel of its own: a failed passive check closes only that one. */
  onOwnChannel<T>(work: (channel: Channel) => Promise<T>): Promise<T>;
  /** Deletes these exchanges and queues (missing ones are fine) and closes the connection. */
  cleanUp(names: { exchanges?: string[]; queues?: string[] }): Promise<void>;
}

export async function connectTestBroker(): Promise<TestBroker> {
  const connection = await amqp.connect(BROKER_URL, { clientProperties: { connection_name: `callback-relay-test-consumer ${process.pid}` } });
  const channel = await connection.createChannel();

  async function onOwnChannel<T>(work: (channel: Channel) => Promise<T>): Promise<T> {
    const ch = await connection.createChannel();
    ch.on('error', () => undefined);
    try {
      return await work(ch);
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  async function drain(queue: string, count: number, timeoutMs = 10_000): Promise<ConsumeMessage[]> {
    const received: ConsumeMessage[] = [];
    const ch = await connection.createChannel();
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`only ${received.length} of ${count} messages arrived in ${queue}`)), timeoutMs);
        void ch.consume(
          queue,
          (msg) => {
            if (msg === null) return;
            received.push(msg);
            if (received.length === count) {
              clearTimeout(timer);
              resolve();
            }
          },
          { noAck: true },
        );
        if (count === 0) {
          clearTimeout(timer);
          resolve();
        }
      });
    } finally {
      await ch.close().catch(() => undefined);
    }
    return received;
  }

  async function cleanUp({ exchanges = [], queues = [] }: { exchanges?: string[]; queues?: string[] }): Promise<void> {
    for (const q of queues) await onOwnChannel((ch) => ch.deleteQueue(q)).catch(() => undefined);
    for (const x of exchanges) await onOwnChannel((ch) => ch.deleteExchange(x)).catch(() => undefined);
    await connection.close().catch(() => undefined);
  }

  return { connection, channel, drain, onOwnChannel, cleanUp };
}

const run = promisify(execFile);

/** `rabbitmqctl list_connections`: the Erlang pid of each connection whose connection_name is `name`. */
export async function brokerConnectionPids(name: string): Promise<string[]> {
  const { stdout } = await run('rabbitmqctl', ['list_connections', 'pid', 'client_properties', '-q', '--no-table-headers']);
  return stdout
    .split('\n')
    .filter((line) => line.includes(`{"connection_name","${name}"}`))
    .map((line) => line.split('\t')[0]);
}

/** Closes a connection from the broker's side, as an operator (or a broker going down) would. */
export async function closeBrokerConnection(pid: string, reason = 'test'): Promise<void> {
  await run('rabbitmqctl', ['close_connection', pid, reason]);
}

/**
 * A TCP relay in front of the broker that can hold back the broker's confirms (basic.ack
 * frames) on the connections open now, passing every other frame: publishes then stay in
 * flight for as long as the test wants, while the connection itself works (a broker-side
 * close still reaches the client). What is held when the connection goes is dropped.
 */
export interface BrokerProxy {
  url: string;
  holdConfirms(): void;
  release(): void;
  close(): Promise<void>;
}

const FRAME_METHOD = 1;
const BASIC_CLASS = 60;
const BASIC_ACK = 80;

export async function startBrokerProxy(): Promise<BrokerProxy> {
  interface Pair {
    held: Buffer[] | null;
    client: net.Socket;
  }
  const pairs = new Set<Pair>();
  const server = net.createServer((client) => {
    const upstream = net.connect(5672, '127.0.0.1');
    const pair: Pair = { held: null, client };
    pairs.add(pair);
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
    client.on('data', (chunk) => upstream.write(chunk));
    // AMQP 0-9-1 frames: type (1 byte), channel (2), size (4), payload, 0xCE.
    let buffered = Buffer.alloc(0);
    upstream.on('data', (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 7) {
        const size = buffered.readUInt32BE(3);
        if (buffered.length < size + 8) break;
        const frame = buffered.subarray(0, size + 8);
        buffered = buffered.subarray(size + 8);
        const isAck = frame[0] === FRAME_METHOD && size >= 4 && frame.readUInt16BE(7) === BASIC_CLASS && frame.readUInt16BE(9) === BASIC_ACK;
        if (isAck && pair.held !== null) pair.held.push(frame);
        else client.write(frame);
      }
    });
    upstream.on('close', () => {
      pair.held = null;
      pairs.delete(pair);
      client.destroy();
    });
    client.on('close', () => {
      pairs.delete(pair);
      upstream.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `amqp://guest:guest@127.0.0.1:${port}/`,
    holdConfirms() {
      for (const pair of pairs) pair.held ??= [];
    },
    release() {
      for (const pair of pairs) {
        const held = pair.held ?? [];
        pair.held = null;
        for (const frame of held) pair.client.write(frame);
      }
    },
    async close() {
      for (const pair of pairs) pair.client.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
