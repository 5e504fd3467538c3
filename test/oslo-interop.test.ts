import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EventEnvelope } from '../src/records/event.js';
import { createAmqpTransport } from '../src/transports/amqp.js';
import type { TransportAttempt } from '../src/transports/contract.js';
import { osloMessageId, renderOslo } from '../src/dispatch/oslo-format.js';
import {
  BROKER_URL,
  RELAY_HOSTNAME,
  connectTestBroker,
  loopbackGuard,
  osloAttempt,
  taskEnvelope,
  uniqueName,
  type TestBroker,
} from './interop/broker.js';
import { createWorkbook, startExecution, workbook } from './helpers/engine.js';
import { startTestRelay } from './helpers/relay.js';

/*
 * The real oslo.messaging notification listener (Debian's python3-oslo.messaging, seen only
 * by /usr/bin/python3) consumes what the amqp transport publishes in the `oslo` format.
 */

const LISTENER = fileURLToPath(new URL('./interop/oslo_listener.py', import.meta.url));
const PYTHON = '/usr/bin/python3';

interface Received {
  priority: string;
  event_type: string;
  publisher_id: string;
  payload: unknown;
  message_id: string | null;
  timestamp: string | null;
}

interface RunningListener {
  lines: Received[];
  exited: Promise<{ code: number | null; stderr: string }>;
  /** Stops it if it still runs (a failed test): it would declare its queues again after the clean-up. */
  stop(): void;
}

async function startOsloListener(exchange: string, topic: string, count: number): Promise<RunningListener> {
  const child = spawn(PYTHON, [LISTENER, 'rabbit://guest:guest@127.0.0.1:5672/', exchange, topic, String(count), '20'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => child.on('close', (code) => resolve({ code, stderr })));
  const lines: Received[] = [];
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the oslo listener did not start: ${stderr}`)), 30_000);
    void exited.then(({ code }) => reject(new Error(`the oslo listener exited (${code}) before it was ready: ${stderr}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line === 'READY') {
        clearTimeout(timer);
        resolve();
      } else if (line.startsWith('{')) {
        lines.push(JSON.parse(line) as Received);
      }
    });
  });
  const stop = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  await ready.catch((err: unknown) => {
    stop();
    throw err;
  });
  return { lines, exited, stop };
}

let broker: TestBroker;
const exchange = uniqueName('cr-oslo-x');
const topic = uniqueName('cr-oslo-t');

beforeAll(async () => {
  broker = await connectTestBroker();
});

afterAll(async () => {
  await broker.cleanUp({ exchanges: [exchange], queues: [`${topic}.info`, `${topic}.error`] });
});

/** An event that came from an oslo publisher, with the message it arrived as. */
function osloOriginal(deliveryId: string): TransportAttempt {
  const payload = {
    'esi_leap_object.name': 'LeasePayload',
    'esi_leap_object.namespace': 'esi_leap',
    'esi_leap_object.version': '1.0',
    'esi_leap_object.data': { node_name: 'node-7', purpose: 'test', properties: { vendor: 'dell' } },
  };
  const original = JSON.stringify({
    'oslo.version': '2.0',
    'oslo.message': JSON.stringify({
      message_id: 'c5f0b1e2-4f9e-4a7a-9d4b-2f6a3f1f0a11',
      publisher_id: 'esi-leap:lease-host',
      event_type: 'esi_leap.lease.fulfill.end',
      priority: 'INFO',
      payload,
      timestamp: '2026-11-23 10:00:00.123456',
    }),
  });
  const envelope = {
    ...taskEnvelope(99),
    id: 'c5f0b1e2-4f9e-4a7a-9d4b-2f6a3f1f0a11',
    type: 'esi_leap.lease.fulfill.end',
    category: 'NOTIFICATION',
    workbook: null,
    priority: 'INFO',
    data: payload['esi_leap_object.data'],
  } as EventEnvelope;
  const attempt = osloAttempt({ deliveryId, envelope, callback: { url: BROKER_URL, exchange, topic } });
  return { ...attempt, body: renderOslo(envelope, { hostname: RELAY_HOSTNAME, deliveryId, original }) };
}

describe('oslo format read by the real oslo.messaging notification listener', () => {
  it('receives every notification with its priority, event_type, publisher and payload', async () => {
    const types = ['TASK_SUCCEEDED', 'TASK_FAILED', 'TASK_LAUNCHED', 'TASK_FAILED', 'TASK_SKIPPED', 'TASK_SUCCEEDED'];
    const attempts: TransportAttempt[] = types.map((type, i) =>
      osloAttempt({ deliveryId: `del-${i}-${uniqueName('d')}`, envelope: taskEnvelope(i, type), callback: { url: BROKER_URL, exchange, topic } }),
    );
    const workflowFailed = { ...taskEnvelope(50), type: 'WORKFLOW_FAILED', category: 'EXECUTION', task_id: null, task_name: null } as EventEnvelope;
    attempts.push(osloAttempt({ deliveryId: `del-wf-${uniqueName('d')}`, envelope: workflowFailed, callback: { url: BROKER_URL, exchange, topic } }));
    const triadError = { ...taskEnvelope(51), type: 'task.rerun.error', data: { fault: { exception: 'ActionError', exception_message: 'boom' } } };
    attempts.push(osloAttempt({ deliveryId: `del-rerun-${uniqueName('d')}`, envelope: triadError, callback: { url: BROKER_URL, exchange, topic } }));
    attempts.push(osloOriginal(`del-orig-${uniqueName('d')}`));

    const listener = await startOsloListener(exchange, topic, attempts.length);
    const transport = createAmqpTransport({ guard: loopbackGuard() });
    try {
      const outcomes = await Promise.all(attempts.map((a) => transport.send(a)));
      expect(outcomes).toEqual(attempts.map(() => ({ ok: true })));
      const { code, stderr } = await listener.exited;
      expect(code, stderr).toBe(0);
    } finally {
      listener.stop();
      await transport.close();
    }

    expect(listener.lines).toHaveLength(attempts.length);
    // message_id is a version 4 UUID, as oslo.messaging makes them (the forwarded original keeps its own).
    for (const line of listener.lines) expect(line.message_id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const byId = new Map(listener.lines.map((line) => [line.message_id, line]));
    for (const attempt of attempts) {
      const sent = JSON.parse(JSON.parse(attempt.body)['oslo.message']);
      const got = byId.get(sent.message_id);
      expect(got, `notification ${sent.message_id} (${attempt.envelope.type})`).toBeDefined();
      expect(got!.priority).toBe(sent.priority);
      expect(got!.event_type).toBe(sent.event_type);
      expect(got!.publisher_id).toBe(sent.publisher_id);
      expect(got!.payload).toEqual(sent.payload);
      expect(got!.timestamp).toBe(sent.timestamp);
    }

    const expected = (deliveryId: string) => byId.get(osloMessageId(deliveryId))!;
    const [first, second] = attempts;
    expect(expected(first.deliveryId)).toMatchObject({ priority: 'INFO', event_type: 'task.succeeded', publisher_id: `callback-relay:${RELAY_HOSTNAME}` });
    expect(expected(second.deliveryId)).toMatchObject({ priority: 'ERROR', event_type: 'task.failed' });
    expect(expected(attempts[6].deliveryId)).toMatchObject({ priority: 'ERROR', event_type: 'workflow.failed' });
    expect(expected(attempts[7].deliveryId)).toMatchObject({ priority: 'ERROR', event_type: 'task.rerun.error' });
    const failedPayload = expected(second.deliveryId).payload as Record<string, Record<string, unknown>>;
    expect(failedPayload['callback_relay_object.name']).toBe('TaskPayload');
    expect(failedPayload['callback_relay_object.data'].fault).toMatchObject({
      'callback_relay_object.name': 'ExceptionPayload',
      'callback_relay_object.data': { exception: 'CardDeclined', exception_message: 'declined 1' },
    });
    // The forwarded original keeps its publisher, id and payload.
    const original = byId.get('c5f0b1e2-4f9e-4a7a-9d4b-2f6a3f1f0a11')!;
    expect(original).toMatchObject({ priority: 'INFO', event_type: 'esi_leap.lease.fulfill.end', publisher_id: 'esi-leap:lease-host' });
    expect((original.payload as Record<string, unknown>)['esi_leap_object.data']).toEqual({
      node_name: 'node-7',
      purpose: 'test',
      properties: { vendor: 'dell' },
    });
  }, 60_000);
});

describe('the relay end to end, read by the real oslo.messaging notification listener', () => {
  it('delivers an execution of the embedded engine as notifications with the right priorities', async () => {
    const x = uniqueName('cr-oslo-relay-x');
    const t = uniqueName('cr-oslo-relay-t');
    const relay = await startTestRelay();
    // WORKFLOW_LAUNCHED, TASK_LAUNCHED, TASK_FAILED, WORKFLOW_FAILED.
    const listener = await startOsloListener(x, t, 4);
    try {
      const created = await relay.api('POST', '/v1/listeners', {
        workbook: 'oslo_e2e',
        event_types: ['EXECUTION', 'TASK'],
        callback: { transport: 'amqp', url: BROKER_URL, exchange: x, topic: t },
      });
      expect(created.status, created.text).toBe(201);
      await createWorkbook(relay.api, workbook('oslo_e2e', `boom: {action: std.fail, input: {error_message: "no luck"}}`));
      const executionId = await startExecution(relay.api, 'oslo_e2e');
      const { code, stderr } = await listener.exited;
      expect(code, stderr).toBe(0);
      const got = listener.lines.map((l) => [l.event_type, l.priority]);
      expect(got.sort()).toEqual(
        [
          ['task.failed', 'ERROR'],
          ['task.launched', 'INFO'],
          ['workflow.failed', 'ERROR'],
          ['workflow.launched', 'INFO'],
        ].sort(),
      );
      const failed = listener.lines.find((l) => l.event_type === 'task.failed')!.payload as Record<string, Record<string, any>>;
      expect(failed['callback_relay_object.data']).toMatchObject({
        execution_id: executionId,
        task_name: 'boom',
        execution: { 'callback_relay_object.name': 'ExecutionPayload', 'callback_relay_object.data': { id: executionId, workbook: 'oslo_e2e' } },
        // The engine's failure as Watcher sends one: an ExceptionPayload.
        fault: { 'callback_relay_object.name': 'ExceptionPayload', 'callback_relay_object.data': { exception: 'TaskFailed', exception_message: expect.stringContaining('no luck') } },
      });
      const workflowFailed = listener.lines.find((l) => l.event_type === 'workflow.failed')!.payload as Record<string, Record<string, any>>;
      expect(workflowFailed['callback_relay_object.data'].fault).toMatchObject({
        'callback_relay_object.name': 'ExceptionPayload',
        'callback_relay_object.data': { exception: 'WorkflowFailed', exception_message: expect.any(String) },
      });
    } finally {
      listener.stop();
      await relay.close();
      for (const q of [`${t}.info`, `${t}.error`]) await broker.onOwnChannel((ch) => ch.deleteQueue(q)).catch(() => undefined);
      await broker.onOwnChannel((ch) => ch.deleteExchange(x)).catch(() => undefined);
    }
  }, 60_000);
});
