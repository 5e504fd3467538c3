import { readFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { HTTP } from 'cloudevents';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startReceiver, type ReceivedRequest, type Receiver } from './helpers/receiver.js';
import { sql } from './helpers/backend.js';
import { rawRequest } from './helpers/raw-request.js';
import { request, startTestRelay, tempDir, TOKEN_A, TOKEN_B, type TestRelay } from './helpers/relay.js';
import { MISTRAL_TASK_BODY, MISTRAL_WORKFLOW_FIELDS } from './helpers/mistral-bodies.js';

const MISTRAL_WORKFLOW_BODY = JSON.stringify(MISTRAL_WORKFLOW_FIELDS);

/*
 * End to end: a real relay (SQLite file, dispatcher, undici) delivering to a real receiver on
 * 127.0.0.1. The relay binds to 127.0.0.1 too, which is what lets it call loopback receivers.
 */

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

const ALL_TYPES = ['EXECUTION', 'TASK', 'NOTIFICATION'];
const secretOf = (byte: number) => 'whsec_' + Buffer.alloc(32, byte).toString('base64');


// Small schedules and timeouts keep the suite fast; the shutdown grace bounds afterAll.
const RELAY_ENV = { RELAY_SHUTDOWN_GRACE_MS: '2000' };

// ---- helpers -------------------------------------------------------------------------------

interface ListenerOptions {
  workbook?: string;
  event_types?: string[];
  events?: string[];
  target?: { kind: 'execution' | 'task'; id: string };
  filter?: Record<string, unknown>;
  callback?: Record<string, unknown>;
  schedule?: number[];
  secret?: string;
}

async function createListener(relay: TestRelay, url: string, o: ListenerOptions = {}) {
  const res = await relay.api('POST', '/v1/listeners', {
    workbook: o.workbook ?? '*',
    event_types: o.event_types ?? ALL_TYPES,
    ...(o.events ? { events: o.events } : {}),
    ...(o.target ? { target: o.target } : {}),
    ...(o.filter ? { filter: o.filter } : {}),
    callback: { url, timeout_ms: 2000, ...o.callback },
    retry: { schedule_ms: o.schedule ?? [50, 50] },
    ...(o.secret ? { secret: o.secret } : {}),
  });
  expect(res.status, res.text).toBe(201);
  return res.body as { id: string; secret: string; [k: string]: any };
}

async function ingest(relay: TestRelay, events: Record<string, unknown>[]): Promise<string[]> {
  const res = await relay.api('POST', '/v1/events', events.length === 1 ? events[0] : { events });
  expect(res.status, res.text).toBe(202);
  return res.body.items.map((i: { id: string }) => i.id);
}

async function deliveriesOfEvent(relay: TestRelay, eventId: string) {
  const res = await relay.api('GET', `/v1/deliveries?event_id=${encodeURIComponent(eventId)}`);
  expect(res.status).toBe(200);
  return res.body.items as any[];
}

async function onlyDeliveryOf(relay: TestRelay, eventId: string) {
  const items = await deliveriesOfEvent(relay, eventId);
  expect(items).toHaveLength(1);
  return items[0];
}

/** Polls GET /v1/deliveries/{id} until `check` passes; returns the last read. */
async function deliveryWhen(relay: TestRelay, id: string, check: (d: any) => boolean, timeout = 5000) {
  return vi.waitFor(
    async () => {
      const res = await relay.api('GET', `/v1/deliveries/${id}`);
      expect(res.status).toBe(200);
      if (!check(res.body)) throw new Error(`delivery ${id} not there yet: ${res.text}`);
      return res.body;
    },
    { timeout, interval: 20 },
  );
}

const settled = (status: string) => (d: any) => d.status === status && !d.in_flight;

function verifySignature(secret: string, req: ReceivedRequest) {
  return new Webhook(secret).verify(req.text, req.headers as Record<string, string>);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let receiver: Receiver;
beforeAll(async () => {
  receiver = await startReceiver();
});
afterAll(async () => {
  await receiver.close();
});

describe('turning off a listener that only fails (RELAY_DISABLE_AFTER_HOURS)', () => {
  // 0.0005 hours: 1.8 s of nothing but failures. The breaker is kept out of the way.
  const AFTER_MS = 1800;
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startTestRelay({ ...RELAY_ENV, RELAY_DISABLE_AFTER_HOURS: '0.0005', RELAY_BREAKER_MIN_ATTEMPTS: '1000000' });
  });
  afterAll(async () => {
    await relay.close();
  });

  const listenerWhen = (id: string, check: (l: any) => boolean) =>
    vi.waitFor(
      async () => {
        const l = (await relay.api('GET', `/v1/listeners/${id}`)).body;
        if (!check(l)) throw new Error(`listener not there yet: ${JSON.stringify(l)}`);
        return l;
      },
      { timeout: 10_000, interval: 20 },
    );

  it('turns it off after failing that long; enabled again, it gets that long afresh', async () => {
    receiver.respond('/always-down', () => 500);
    const listener = await createListener(relay, receiver.url('/always-down'), { workbook: 'wb-always-down', schedule: Array(20).fill(200) });
    const [first] = await ingest(relay, [{ type: 'WORKFLOW_LAUNCHED', workbook: 'wb-always-down', execution_id: 'ex-down' }]);
    const delivery = await onlyDeliveryOf(relay, first);
    const off = await listenerWhen(listener.id, (l) => l.enabled === false);
    expect(off.disabled_reason).toMatch(/^every attempt failed for 1\.8 seconds \(since /);
    const held = await deliveryWhen(relay, delivery.id, (d) => !d.in_flight && d.next_attempt_at === null);

    const enabledAt = Date.now();
    expect((await relay.api('PATCH', `/v1/listeners/${listener.id}`, { enabled: true })).status).toBe(200);
    // Its held delivery goes out again and fails: the failures before it was turned off no longer count.
    await deliveryWhen(relay, delivery.id, (d) => d.attempt_count > held.attempt_count && !d.in_flight);
    expect((await relay.api('GET', `/v1/listeners/${listener.id}`)).body).toMatchObject({ enabled: true, disabled_reason: null });
    // Another delivery keeps it failing until it is turned off again.
    await ingest(relay, [{ type: 'WORKFLOW_FAILED', workbook: 'wb-always-down', execution_id: 'ex-down' }]);
    const again = await listenerWhen(listener.id, (l) => l.enabled === false);
    const since = Date.parse(/\(since (.+)\)$/.exec(again.disabled_reason)![1]);
    expect(since).toBeGreaterThanOrEqual(enabledAt - 50);
    expect(Date.now() - since).toBeGreaterThanOrEqual(AFTER_MS);
  }, 30_000);
});

describe('replay calls bounded by RELAY_REPLAY_SCAN_LIMIT', () => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startTestRelay({ ...RELAY_ENV, RELAY_REPLAY_SCAN_LIMIT: '3' });
  });
  afterAll(async () => {
    await relay.close();
  });

  /** Replays from `body` on, following each answer's `next`: the answers. */
  async function replayAll(listenerId: string, body: Record<string, unknown>) {
    const answers = [];
    for (let next: Record<string, unknown> | undefined = body; next; ) {
      const res = await relay.api('POST', `/v1/listeners/${listenerId}/replay`, next);
      expect(res.status, res.text).toBe(202);
      answers.push(res.body);
      next = res.body.next;
      expect(next === undefined).toBe(!res.body.truncated);
    }
    return answers;
  }

  it('a call looks at no more events than the limit and says where to go on; following it replays each once', async () => {
    const since = new Date(Date.now() - 1000).toISOString();
    const events = Array.from({ length: 8 }, (_, i) => ({ id: `bounded-${i}`, type: 'TASK_SUCCEEDED', workbook: i % 2 ? 'wb-bounded' : 'wb-other', execution_id: 'ex-bounded' }));
    for (const e of events) await ingest(relay, [e]);
    const listener = await createListener(relay, receiver.url('/bounded'), { workbook: 'wb-bounded' });

    const answers = await replayAll(listener.id, { since });
    // 8 events, 3 looked at per call: 3 calls, the first two cut short.
    expect(answers.map((a) => [a.count, a.truncated])).toEqual([[1, true], [2, true], [1, false]]);
    expect(answers[0].next).toEqual({ since, until: expect.any(String), after: expect.any(String) });
    expect(answers[1].next.until).toBe(answers[0].next.until);
    const got = await receiver.waitForCount('/bounded', 4);
    expect(got.map((r) => JSON.parse(r.text).id).sort()).toEqual(['bounded-1', 'bounded-3', 'bounded-5', 'bounded-7']);

    // An execution: the answer goes on from a sequence.
    const byExecution = await replayAll(listener.id, { execution_id: 'ex-bounded' });
    expect(byExecution.map((a) => [a.count, a.next?.from_sequence])).toEqual([[1, 4], [2, 7], [1, undefined]]);
    expect(byExecution[0].next).toEqual({ execution_id: 'ex-bounded', from_sequence: 4 });
    await receiver.waitForCount('/bounded', 8);
  });

  it('refuses an after that no answer gave, or one beside execution_id or only_failed', async () => {
    const listener = await createListener(relay, receiver.url('/bounded-bad'), { workbook: 'wb-bounded-bad' });
    const since = new Date(Date.now() - 60_000).toISOString();
    for (const [body, message] of [
      [{ since, after: '12' }, /not a position a replay answer gave/],
      [{ since, after: 'x'.repeat(41) }, /.+/],
      [{ execution_id: 'ex-1', after: '1.1' }, /without execution_id/],
      [{ since, only_failed: true, after: '1.1' }, /goes on with a replay of new deliveries: give only_failed as the answer's next does/],
      [{ since, after: 'f01JD3M5Q8X2W9Y7Z6V5T4S3R2Q' }, /goes on with a re-queue of failed deliveries/],
      [{ since, only_failed: true, after: 'f01jd3m5q8x2w9y7z6v5t4s3r2q' }, /not a position a replay answer gave/],
    ] as const) {
      const res = await relay.api('POST', `/v1/listeners/${listener.id}/replay`, body, { validate: false });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.errors, JSON.stringify(body)).toEqual([{ field: 'after', message: expect.stringMatching(message) }]);
    }
    expect((await relay.api('GET', `/v1/deliveries?listener_id=${listener.id}`)).body.items).toEqual([]);
  });
});

// ---- 1-7: one delivery's life ----------------------------------------------------------------

describe('delivering over HTTP', () => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startTestRelay(RELAY_ENV);
  });
  afterAll(async () => {
    await relay.close();
  });

  it('delivers a signed envelope with Standard Webhooks headers and per-execution sequence numbers', async () => {
    receiver.respond('/ok', [{ status: 200, body: 'thanks' }]);
    const listener = await createListener(relay, receiver.url('/ok'), {
      workbook: 'wb-ok',
      callback: { headers: { 'X-Api-Key': 'k-123', 'X-Trace': 'trace-1' } },
    });
    const before = Math.floor(Date.now() / 1000);
    const base = { workbook: 'wb-ok', workflow: 'charge' };
    const ids = await ingest(relay, [
      { ...base, type: 'WORKFLOW_LAUNCHED', execution_id: 'ex-ok-1', state: 'RUNNING', sequence: 99 },
      { ...base, type: 'TASK_LAUNCHED', execution_id: 'ex-ok-1', task_id: 't-1', task_name: 'charge_card', state: 'RUNNING' },
      { ...base, type: 'TASK_SUCCEEDED', execution_id: 'ex-ok-2', task_id: 't-9', task_name: 'other', state: 'SUCCESS' },
      {
        ...base,
        type: 'TASK_SUCCEEDED',
        execution_id: 'ex-ok-1',
        task_id: 't-1',
        task_name: 'charge_card',
        state: 'SUCCESS',
        previous_state: 'RUNNING',
        occurred_at: '2026-11-23T10:00:00.123Z',
        data: { amount: 12 },
      },
      { ...base, type: 'custom.audit' },
    ]);
    expect(ids).toHaveLength(5);

    const requests = await receiver.waitForCount('/ok', 5);
    expect(requests).toHaveLength(5);
    const byEvent = new Map(requests.map((r) => [JSON.parse(r.text).id as string, r]));
    expect([...byEvent.keys()].sort()).toEqual([...ids].sort());

    for (const id of ids) {
      const req = byEvent.get(id)!;
      const delivery = await onlyDeliveryOf(relay, id);
      expect(delivery.listener_id).toBe(listener.id);
      expect(req.method).toBe('POST');
      expect(req.headers['webhook-id']).toBe(delivery.id);
      expect(Number(req.headers['webhook-timestamp'])).toBeGreaterThanOrEqual(before);
      expect(Number(req.headers['webhook-timestamp'])).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000));
      expect(() => verifySignature(listener.secret, req)).not.toThrow();
      expect(() => verifySignature(secretOf(1), req)).toThrow();
      expect(req.headers['webhook-attempt']).toBe('1');
      expect(req.headers['user-agent']).toBe(`callback-relay/${version}`);
      expect(req.headers['content-type']).toBe('application/json');
      expect(req.headers['x-api-key']).toBe('k-123');
      expect(req.headers['x-trace']).toBe('trace-1');
    }

    // `sequence`: per execution, 1, 2, 3 in commit order, no gaps, a client's value ignored.
    const body = (i: number) => JSON.parse(byEvent.get(ids[i])!.text);
    expect([0, 1, 3].map((i) => body(i).sequence)).toEqual([1, 2, 3]);
    expect(body(2).sequence).toBe(1);
    expect(body(4).sequence).toBeNull();
    expect(body(3)).toEqual({
      id: ids[3],
      type: 'TASK_SUCCEEDED',
      category: 'TASK',
      workbook: 'wb-ok',
      workflow: 'charge',
      execution_id: 'ex-ok-1',
      task_id: 't-1',
      task_name: 'charge_card',
      state: 'SUCCESS',
      previous_state: 'RUNNING',
      state_info: null,
      sequence: 3,
      occurred_at: '2026-11-23T10:00:00.123Z',
      source: 'api',
      priority: null,
      data_schema: null,
      source_format: null,
      data: { amount: 12 },
    });
    expect(body(4)).toMatchObject({ category: 'NOTIFICATION', execution_id: null, occurred_at: expect.any(String) });

    const id = byEvent.get(ids[3])!.headers['webhook-id'] as string;
    const done = await deliveryWhen(relay, id, settled('succeeded'));
    expect(done).toMatchObject({ status: 'succeeded', attempt_count: 1, next_attempt_at: null, last_error: null, in_flight: false });
    expect(done.attempts).toEqual([
      {
        number: 1,
        started_at: expect.any(String),
        duration_ms: expect.any(Number),
        status_code: 200,
        error: null,
        response_excerpt: 'thanks',
      },
    ]);
    expect(done.attempts[0].duration_ms).toBeGreaterThanOrEqual(0);
  });

  it('retries after a 500 and a connection reset, with the same webhook-id and counting attempts', async () => {
    // The 500 closes its connection so the next attempt opens a fresh socket: a reset on a
    // reused keep-alive socket is retried once inside the same attempt by the transport.
    receiver.respond('/flaky', [{ status: 500, headers: { connection: 'close' } }, 'reset', 200]);
    await createListener(relay, receiver.url('/flaky'), { workbook: 'wb-flaky' });
    const [eventId] = await ingest(relay, [{ type: 'WORKFLOW_SUCCEEDED', workbook: 'wb-flaky', execution_id: 'ex-flaky' }]);

    const requests = await receiver.waitForCount('/flaky', 3);
    expect(requests).toHaveLength(3);
    const delivery = await onlyDeliveryOf(relay, eventId);
    expect(requests.map((r) => r.headers['webhook-id'])).toEqual([delivery.id, delivery.id, delivery.id]);
    expect(requests.map((r) => r.headers['webhook-attempt'])).toEqual(['1', '2', '3']);
    expect(new Set(requests.map((r) => r.text)).size).toBe(1);

    const done = await deliveryWhen(relay, delivery.id, settled('succeeded'));
    expect(done.attempt_count).toBe(3);
    expect(done.last_error).toBeNull();
    expect(done.attempts.map((a: any) => a.number)).toEqual([1, 2, 3]);
    expect(done.attempts[0]).toMatchObject({ status_code: 500, error: 'HTTP_ERROR' });
    expect(done.attempts[1].status_code).toBeNull();
    expect(['ECONNRESET', 'SOCKET_ERROR']).toContain(done.attempts[1].error);
    expect(done.attempts[2]).toMatchObject({ status_code: 200, error: null });
  });

  it('fails a delivery after the last try of its schedule', async () => {
    receiver.respond('/down', [500]);
    const listener = await createListener(relay, receiver.url('/down'), { workbook: 'wb-down', schedule: [50, 50] });
    const [eventId] = await ingest(relay, [{ type: 'TASK_FAILED', workbook: 'wb-down', execution_id: 'ex-down' }]);
    const { id } = await onlyDeliveryOf(relay, eventId);

    const done = await deliveryWhen(relay, id, settled('failed'));
    expect(done).toMatchObject({ status: 'failed', attempt_count: 3, next_attempt_at: null });
    expect(done.last_error).toMatch(/500/);
    expect(done.attempts.map((a: any) => [a.number, a.status_code, a.error])).toEqual([
      [1, 500, 'HTTP_ERROR'],
      [2, 500, 'HTTP_ERROR'],
      [3, 500, 'HTTP_ERROR'],
    ]);

    const failed = await relay.api('GET', `/v1/deliveries?status=failed&listener_id=${listener.id}`);
    expect(failed.status).toBe(200);
    expect(failed.body.items.map((d: any) => d.id)).toEqual([id]);
    expect(failed.body.items[0].last_error).toBe(done.last_error);
    // Schedule [50, 50] is three tries; nothing more comes after a while.
    await sleep(200);
    expect(receiver.requests('/down')).toHaveLength(3);
  });

  it('fails a delivery the relay cannot send after the last try of its schedule, not every minute for ever', async () => {
    // A stored event that no longer parses: the attempt fails before anything is sent, a
    // defect of the relay's (INTERNAL) rather than of the receiver. The receiver's 410 holds
    // the delivery while the event is broken.
    receiver.respond('/internal', [410]);
    const listener = await createListener(relay, receiver.url('/internal'), { workbook: 'wb-internal', schedule: [50, 50] });
    const [eventId] = await ingest(relay, [{ type: 'TASK_FAILED', workbook: 'wb-internal', execution_id: 'ex-internal' }]);
    const { id } = await onlyDeliveryOf(relay, eventId);
    await deliveryWhen(relay, id, (d) => d.attempt_count === 1 && d.next_attempt_at === null && !d.in_flight);
    const broken = '{"id": "cut off';
    if (relay.database.kind === 'postgres') await sql('UPDATE events SET envelope = $1 WHERE id = $2', [broken, eventId], relay.database.schema);
    else {
      const db = new Database(relay.databasePath);
      try {
        db.prepare('UPDATE events SET envelope = ? WHERE id = ?').run(broken, eventId);
      } finally {
        db.close();
      }
    }
    expect((await relay.api('PATCH', `/v1/listeners/${listener.id}`, { enabled: true })).status).toBe(200);

    const done = await deliveryWhen(relay, id, settled('failed'));
    expect(done).toMatchObject({ status: 'failed', attempt_count: 3, next_attempt_at: null });
    expect(done.last_error).toMatch(/^internal error: .*JSON/);
    expect(done.attempts.map((a: any) => [a.number, a.status_code, a.error])).toEqual([
      [1, 410, 'HTTP_ERROR'],
      [2, null, 'INTERNAL'],
      [3, null, 'INTERNAL'],
    ]);
    expect(receiver.requests('/internal')).toHaveLength(1);
  });

  it('turns a listener off on 410 Gone, holds its delivery, and sends it once re-enabled', async () => {
    receiver.respond('/gone', [410, 200]);
    const listener = await createListener(relay, receiver.url('/gone'), { workbook: 'wb-gone' });
    const [first] = await ingest(relay, [{ type: 'WORKFLOW_LAUNCHED', workbook: 'wb-gone', execution_id: 'ex-gone' }]);
    const delivery = await onlyDeliveryOf(relay, first);

    const off = await vi.waitFor(
      async () => {
        const res = await relay.api('GET', `/v1/listeners/${listener.id}`);
        if (res.body.enabled !== false) throw new Error('still enabled');
        return res.body;
      },
      { timeout: 5000, interval: 20 },
    );
    expect(off.disabled_reason).toMatch(/410/);
    const held = await deliveryWhen(relay, delivery.id, (d) => d.attempt_count === 1 && !d.in_flight);
    expect(held).toMatchObject({ status: 'pending', next_attempt_at: null, attempt_count: 1 });
    expect(held.attempts[0]).toMatchObject({ status_code: 410, error: 'HTTP_ERROR' });

    // A disabled listener gets no new deliveries.
    const [second] = await ingest(relay, [{ type: 'WORKFLOW_SUCCEEDED', workbook: 'wb-gone', execution_id: 'ex-gone' }]);
    expect(await deliveriesOfEvent(relay, second)).toEqual([]);
    const event = await relay.api('GET', `/v1/events/${second}`);
    expect(event.body.deliveries).toEqual([]);

    const on = await relay.api('PATCH', `/v1/listeners/${listener.id}`, { enabled: true });
    expect(on.status).toBe(200);
    expect(on.body).toMatchObject({ enabled: true, disabled_reason: null });

    const requests = await receiver.waitForCount('/gone', 2);
    expect(requests[1].headers['webhook-id']).toBe(delivery.id);
    expect(requests[1].headers['webhook-attempt']).toBe('2');
    const done = await deliveryWhen(relay, delivery.id, settled('succeeded'));
    expect(done.attempt_count).toBe(2);
    await sleep(100);
    expect(receiver.requests('/gone')).toHaveLength(2);
    expect(await deliveriesOfEvent(relay, second)).toEqual([]);
  });

  it('honours Retry-After on 429, clamped to twice the scheduled delay', async () => {
    // Schedule [200] with ±20% jitter is 160-240 ms; Retry-After: 1 (1000 ms) is clamped to
    // twice the jittered delay, 320-480 ms. Without Retry-After the wait stays 160-240 ms.
    receiver.respond('/slow-down', [{ status: 429, headers: { 'retry-after': '1' } }, 200]);
    receiver.respond('/plain-retry', [500, 200]);
    await createListener(relay, receiver.url('/slow-down'), { workbook: 'wb-429', schedule: [200] });
    await createListener(relay, receiver.url('/plain-retry'), { workbook: 'wb-500', schedule: [200] });
    const [eventId] = await ingest(relay, [{ type: 'WORKFLOW_FAILED', workbook: 'wb-429', execution_id: 'ex-429' }]);
    await ingest(relay, [{ type: 'WORKFLOW_FAILED', workbook: 'wb-500', execution_id: 'ex-500' }]);

    const [a, b] = await receiver.waitForCount('/slow-down', 2);
    const gap = b.at - a.at;
    expect(gap).toBeGreaterThanOrEqual(315);
    expect(gap).toBeLessThanOrEqual(480 + 250);

    const [c, d] = await receiver.waitForCount('/plain-retry', 2);
    const plainGap = d.at - c.at;
    expect(plainGap).toBeGreaterThanOrEqual(155);
    expect(plainGap).toBeLessThanOrEqual(240 + 250);

    const { id } = await onlyDeliveryOf(relay, eventId);
    const done = await deliveryWhen(relay, id, settled('succeeded'));
    expect(done.attempts.map((x: any) => x.status_code)).toEqual([429, 200]);
  });

  it('records TIMEOUT when the receiver does not answer within timeout_ms', async () => {
    receiver.respond('/hang', ['hang']);
    await createListener(relay, receiver.url('/hang'), { workbook: 'wb-hang', schedule: [], callback: { timeout_ms: 200 } });
    const [eventId] = await ingest(relay, [{ type: 'WORKFLOW_LAUNCHED', workbook: 'wb-hang' }]);
    const { id } = await onlyDeliveryOf(relay, eventId);
    const done = await deliveryWhen(relay, id, settled('failed'));
    expect(done.attempts).toHaveLength(1);
    expect(done.attempts[0]).toMatchObject({ error: 'TIMEOUT', status_code: null });
    expect(done.attempts[0].duration_ms).toBeGreaterThanOrEqual(190);
    expect(done.attempts[0].duration_ms).toBeLessThan(1500);
    expect(done.last_error).toMatch(/200 ms/);
    expect(receiver.requests('/hang')).toHaveLength(1);
  });

  it('does not follow redirects: a 302 is a failed attempt with REDIRECT', async () => {
    receiver.respond('/moved', [{ redirect: receiver.url('/moved-target'), status: 302 }]);
    await createListener(relay, receiver.url('/moved'), { workbook: 'wb-moved', schedule: [] });
    const [eventId] = await ingest(relay, [{ type: 'WORKFLOW_LAUNCHED', workbook: 'wb-moved' }]);
    const { id } = await onlyDeliveryOf(relay, eventId);
    const done = await deliveryWhen(relay, id, settled('failed'));
    expect(done.attempts).toHaveLength(1);
    expect(done.attempts[0]).toMatchObject({ error: 'REDIRECT', status_code: 302 });
    expect(done.last_error).toMatch(/redirect/i);
    expect(receiver.requests('/moved')).toHaveLength(1);
    expect(receiver.requests('/moved-target')).toHaveLength(0);
  });
});

// ---- 8: payload formats ----------------------------------------------------------------------

describe('payload formats', () => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startTestRelay(RELAY_ENV);
  });
  afterAll(async () => {
    await relay.close();
  });

  it('cloudevents: binary mode that the cloudevents SDK reads back', async () => {
    const listener = await createListener(relay, receiver.url('/ce'), { workbook: 'wb ce', callback: { format: 'cloudevents' } });
    const [eventId] = await ingest(relay, [
      {
        type: 'TASK_SUCCEEDED',
        workbook: 'wb ce',
        workflow: 'charge',
        execution_id: 'ex-ce',
        task_id: 't-ce',
        task_name: 'charge_card',
        state: 'SUCCESS',
        occurred_at: '2026-11-23T10:00:00.123Z',
        data: { vendor: 'dell' },
      },
    ]);
    const [req] = await receiver.waitForCount('/ce', 1);
    expect(() => verifySignature(listener.secret, req)).not.toThrow();
    expect(req.headers['ce-specversion']).toBe('1.0');

    const ce = HTTP.toEvent({ headers: req.headers, body: req.text });
    if (Array.isArray(ce)) throw new Error('expected one event');
    const envelope = JSON.parse(req.text);
    expect(envelope).toMatchObject({ id: eventId, sequence: 1, workbook: 'wb ce' });
    expect(ce.id).toBe(eventId);
    expect(ce.type).toBe('TASK_SUCCEEDED');
    expect(ce.source).toBe('/callback-relay/workbooks/wb%20ce');
    expect(decodeURIComponent(ce.source)).toBe('/callback-relay/workbooks/wb ce');
    expect(ce.subject).toBe('ex-ce');
    expect(new Date(ce.time!).toISOString()).toBe('2026-11-23T10:00:00.123Z');
    expect(ce.datacontenttype).toBe('application/json');
    expect(ce.data).toEqual(envelope);
  });

  it('mistral: a Mistral notification arrives byte for byte as Mistral posted it', async () => {
    const listener = await createListener(relay, receiver.url('/mistral-format'), {
      workbook: 'hello',
      event_types: ['TASK'],
      callback: { format: 'mistral' },
    });
    // As a real notifier posts: no Content-Type at all.
    const res = await rawRequest(relay.url, 'POST', '/v1/ingest/mistral', MISTRAL_TASK_BODY, { authorization: `Bearer ${TOKEN_A}` });
    expect(res.status, res.text).toBe(200);
    const [req] = await receiver.waitForCount('/mistral-format', 1);
    expect(req.body.equals(Buffer.from(MISTRAL_TASK_BODY, 'utf8'))).toBe(true);
    expect(req.headers['content-type']).toBe('application/json');
    expect(() => verifySignature(listener.secret, req)).not.toThrow();
    expect(req.headers['webhook-id']).toBe((await onlyDeliveryOf(relay, res.body.id)).id);
  });

  it('GET: no body, the envelope scalars in the query string, the signature over the empty body', async () => {
    const listener = await createListener(relay, receiver.url('/by-get?token=abc%2Fdef'), {
      workbook: 'wb-get',
      callback: { method: 'GET' },
    });
    const [eventId] = await ingest(relay, [
      { type: 'WORKFLOW_SUCCEEDED', workbook: 'wb-get', workflow: 'wf', execution_id: 'ex-get', state: 'SUCCESS', data: { x: 1 } },
    ]);
    const [req] = await receiver.waitForCount('/by-get', 1);
    expect(req.method).toBe('GET');
    expect(req.body.length).toBe(0);
    expect(req.headers['content-type']).toBeUndefined();
    expect(req.headers['content-length'] ?? '0').toBe('0');
    expect(() => new Webhook(listener.secret).verify('', req.headers as Record<string, string>)).not.toThrow();
    expect(req.headers['webhook-id']).toBe((await onlyDeliveryOf(relay, eventId)).id);
    const q = req.query;
    expect(q.get('token')).toBe('abc/def');
    expect(req.url).toContain('token=abc%2Fdef');
    expect(Object.fromEntries([...q].filter(([k]) => k !== 'token'))).toEqual({
      id: eventId,
      type: 'WORKFLOW_SUCCEEDED',
      category: 'EXECUTION',
      workbook: 'wb-get',
      workflow: 'wf',
      execution_id: 'ex-get',
      state: 'SUCCESS',
      sequence: '1',
      occurred_at: expect.any(String),
      source: 'api',
    });
  });
});

// ---- 9: fan-out ------------------------------------------------------------------------------

describe('filters and routing', () => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startTestRelay(RELAY_ENV);
  });
  afterAll(async () => {
    await relay.close();
  });

  it('sends each event only to the listeners whose workbook, events, target and filter match', async () => {
    const ET = ['EXECUTION', 'TASK'];
    const make = (name: string, o: ListenerOptions) => createListener(relay, receiver.url(`/route-${name}`), { event_types: ET, ...o });
    const L = {
      all: await make('all', { workbook: '*' }),
      billing: await make('billing', { workbook: 'billing' }),
      complete: await make('complete', { workbook: '*', event_types: ['TASK'], events: ['on-task-complete'] }),
      target: await make('target', { workbook: '*', target: { kind: 'execution', id: 'ex-target' } }),
      filtered: await make('filtered', {
        workbook: '*',
        filter: { 'data.vendor': { $in: ['dell', 'hp'] }, task_name: { $regex: '^charge_' } },
      }),
      purpose: await make('purpose', { workbook: '*', filter: { 'data.purpose': 'test' } }),
      notes: await make('notes', { workbook: '*', event_types: ['NOTIFICATION'] }),
    };
    type Name = keyof typeof L;

    const cases: Array<[Record<string, unknown>, Name[]]> = [
      [{ type: 'WORKFLOW_LAUNCHED', workbook: 'billing', execution_id: 'ex-1' }, ['all', 'billing']],
      [
        { type: 'TASK_SUCCEEDED', workbook: 'billing', execution_id: 'ex-target', task_name: 'charge_card', data: { vendor: 'dell' } },
        ['all', 'billing', 'complete', 'target', 'filtered'],
      ],
      [
        { type: 'TASK_LAUNCHED', workbook: 'shipping', execution_id: 'ex-target', task_name: 'charge_x', data: { vendor: 'hp', purpose: 'test' } },
        ['all', 'target', 'filtered', 'purpose'],
      ],
      [{ type: 'TASK_FAILED', workbook: 'shipping', execution_id: 'ex-2', task_name: 'ship', data: { vendor: 'dell' } }, ['all', 'complete']],
      [{ type: 'TASK_SUCCEEDED', workbook: 'shipping', execution_id: 'ex-3', task_name: 'charge_y', data: { vendor: 'ibm' } }, ['all', 'complete']],
      // A missing key never matches: no `data.purpose`, no `data.vendor`.
      [{ type: 'TASK_SKIPPED', workbook: 'shipping', execution_id: 'ex-4', task_name: 'charge_z' }, ['all', 'complete']],
      [{ type: 'custom.alert', workbook: 'billing', data: { purpose: 'test' } }, ['notes']],
    ];
    const ids = await ingest(relay, cases.map(([e]) => e));

    const expectedPerListener = new Map<Name, string[]>();
    for (const [i, [, names]] of cases.entries()) {
      const event = await relay.api('GET', `/v1/events/${ids[i]}`);
      expect(event.status).toBe(200);
      const got = event.body.deliveries.map((d: any) => d.listener_id).sort();
      expect(got, `event ${i} (${cases[i][0].type})`).toEqual(names.map((n) => L[n].id).sort());
      for (const n of names) expectedPerListener.set(n, [...(expectedPerListener.get(n) ?? []), ids[i]]);
    }

    const total = cases.reduce((n, [, names]) => n + names.length, 0);
    await receiver.waitFor((all) => all.filter((r) => r.path.startsWith('/route-')).length >= total);
    await sleep(100);
    for (const name of Object.keys(L) as Name[]) {
      const got = receiver.requests(`/route-${name}`).map((r) => JSON.parse(r.text).id).sort();
      expect(got, `listener ${name}`).toEqual((expectedPerListener.get(name) ?? []).sort());
    }
  });

  it('sends the very next event by each change of a listener among many, its callback and rule alike', async () => {
    const wb = 'wb-changes';
    const many = [];
    for (let i = 0; i < 12; i++) many.push(await createListener(relay, receiver.url(`/many-${i}`), { workbook: wb, filter: { 'data.n': i } }));
    const send = async (n: number) => (await ingest(relay, [{ type: 'WORKFLOW_LAUNCHED', workbook: wb, data: { n } }]))[0];
    const arrivedAt = async (path: string, eventId: string) =>
      receiver.waitFor((all) => all.some((r) => r.path === path && JSON.parse(r.text).id === eventId));

    await arrivedAt('/many-3', await send(3));
    // A new callback, the rule as it was: delivered at the new address from the very next event.
    let patched = await relay.api('PATCH', `/v1/listeners/${many[3].id}`, { callback: { url: receiver.url('/many-3-moved'), timeout_ms: 2000 } });
    expect(patched.status, patched.text).toBe(200);
    const moved = await send(3);
    await arrivedAt('/many-3-moved', moved);
    // A new rule: the next event routes by it, and the other listeners as before.
    patched = await relay.api('PATCH', `/v1/listeners/${many[3].id}`, { filter: { 'data.n': 103 } });
    expect(patched.status, patched.text).toBe(200);
    const [byOld, byNew, other] = [await send(3), await send(103), await send(7)];
    await arrivedAt('/many-3-moved', byNew);
    await arrivedAt('/many-7', other);
    const routedTo = async (eventId: string) => (await deliveriesOfEvent(relay, eventId)).map((d: any) => d.listener_id);
    expect(await routedTo(byOld)).not.toContain(many[3].id);
    expect(await routedTo(byNew)).toContain(many[3].id);
    expect(await routedTo(other)).toContain(many[7].id);
    expect(receiver.requests('/many-3').map((r) => JSON.parse(r.text).id)).not.toContain(moved);
  });
});

// ---- 10-11: ingest -----------------------------------------------------------------------------

describe('ingest API', () => {
  let relay: TestRelay;
  let listenerId: string;
  beforeAll(async () => {
    relay = await startTestRelay(RELAY_ENV);
    listenerId = (await createListener(relay, receiver.url('/ingest-sink'), { workbook: '*' })).id;
  });
  afterAll(async () => {
    await relay.close();
  });

  const eventCount = async () => {
    const res = await relay.api('GET', '/v1/events?limit=1000');
    expect(res.status).toBe(200);
    return res.body.items.length as number;
  };

  it('stores a resent event once and refuses the same id with another body', async () => {
    const event = { id: 'evt-dup-1', type: 'custom.thing', workbook: 'wb-dup', data: { a: 1, b: [1, 2] } };
    const first = await relay.api('POST', '/v1/events', event);
    expect(first.status).toBe(202);
    expect(first.body).toEqual({ items: [{ id: 'evt-dup-1', duplicate: false }] });

    const again = await relay.api('POST', '/v1/events', event);
    expect(again.status).toBe(202);
    expect(again.body).toEqual({ items: [{ id: 'evt-dup-1', duplicate: true }] });
    // Key order and whitespace do not make it another event.
    const reordered = `{"data":{"b":[1,2],"a":1},"workbook":"wb-dup","type":"custom.thing","id":"evt-dup-1"}`;
    const third = await relay.api('POST', '/v1/events', undefined, { raw: reordered, headers: { 'content-type': 'application/json' } });
    expect(third.body).toEqual({ items: [{ id: 'evt-dup-1', duplicate: true }] });

    const deliveries = await deliveriesOfEvent(relay, 'evt-dup-1');
    expect(deliveries).toHaveLength(1);
    expect(deliveries[0].listener_id).toBe(listenerId);
    const listed = await relay.api('GET', '/v1/events?workbook=wb-dup');
    expect(listed.body.items.map((e: any) => e.id)).toEqual(['evt-dup-1']);

    const before = await eventCount();
    const changed = await relay.api('POST', '/v1/events', { ...event, data: { a: 2 } });
    expect(changed.status).toBe(409);
    expect(changed.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(changed.body).toMatchObject({ status: 409, title: expect.any(String), detail: expect.stringContaining('evt-dup-1') });
    // In a batch, the conflict rejects the whole batch.
    const batch = await relay.api('POST', '/v1/events', { events: [{ id: 'evt-new-in-batch', type: 'custom.thing' }, { ...event, data: { a: 3 } }] });
    expect(batch.status).toBe(409);
    expect(await eventCount()).toBe(before);
    expect((await relay.api('GET', '/v1/events/evt-new-in-batch')).status).toBe(404);
    const stored = await relay.api('GET', '/v1/events/evt-dup-1');
    expect(stored.body.data).toEqual({ a: 1, b: [1, 2] });
    expect(await deliveriesOfEvent(relay, 'evt-dup-1')).toHaveLength(1);
  });

  it('rejects a whole batch for one bad event, naming events.<i>.<field>', async () => {
    const before = await eventCount();
    const res = await relay.api('POST', '/v1/events', {
      events: [
        { id: 'batch-good-1', type: 'custom.ok' },
        { id: 'batch-good-2', type: 'custom.ok' },
        { id: 'batch-bad', type: 'custom.ok', workbook: 42 },
      ],
    });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(res.body.errors).toEqual([{ field: 'events.2.workbook', message: expect.any(String) }]);
    expect(await eventCount()).toBe(before);
    expect((await relay.api('GET', '/v1/events/batch-good-1')).status).toBe(404);

    const missingType = await relay.api('POST', '/v1/events', { events: [{ type: 'custom.ok' }, { workbook: 'x' }] });
    expect(missingType.status).toBe(400);
    expect(missingType.body.errors.map((e: any) => e.field)).toEqual(['events.1.type']);
    expect(await eventCount()).toBe(before);
  });

  it('refuses more than 1000 events in one request', async () => {
    const before = await eventCount();
    const events = Array.from({ length: 1001 }, (_, i) => ({ id: `many-${i}`, type: 'custom.many' }));
    const res = await relay.api('POST', '/v1/events', { events });
    expect(res.status).toBe(400);
    expect(res.body.errors.map((e: any) => e.field)).toEqual(['events']);
    expect(await eventCount()).toBe(before);
  });

  it('refuses a category that disagrees with the type', async () => {
    const one = await relay.api('POST', '/v1/events', { type: 'TASK_SUCCEEDED', category: 'EXECUTION' });
    expect(one.status).toBe(400);
    expect(one.body.errors.map((e: any) => e.field)).toEqual(['category']);
    const inBatch = await relay.api('POST', '/v1/events', { events: [{ type: 'custom.x', category: 'TASK' }] });
    expect(inBatch.status).toBe(400);
    expect(inBatch.body.errors.map((e: any) => e.field)).toEqual(['events.0.category']);
    const agreeing = await relay.api('POST', '/v1/events', { type: 'TASK_SUCCEEDED', category: 'TASK', workbook: 'wb-cat' });
    expect(agreeing.status).toBe(202);
  });

  it('answers 415 for a body that is not JSON by its content type', async () => {
    const before = await eventCount();
    const res = await relay.api('POST', '/v1/events', undefined, {
      raw: JSON.stringify({ type: 'custom.x' }),
      headers: { 'content-type': 'text/plain' },
    });
    expect(res.status).toBe(415);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await eventCount()).toBe(before);
  });

  it('keeps events and their deliveries invisible to another project', async () => {
    const [id] = await ingest(relay, [{ id: 'evt-private', type: 'custom.private' }]);
    const delivery = await onlyDeliveryOf(relay, id);
    expect((await relay.api('GET', `/v1/events/${id}`, undefined, { token: TOKEN_B })).status).toBe(404);
    const listed = await relay.api('GET', `/v1/deliveries?event_id=${id}`, undefined, { token: TOKEN_B });
    expect(listed.status).toBe(200);
    expect(listed.body.items).toEqual([]);
    expect((await relay.api('GET', `/v1/deliveries/${delivery.id}`, undefined, { token: TOKEN_B })).status).toBe(404);
    expect((await relay.api('POST', `/v1/deliveries/${delivery.id}/retry`, undefined, { token: TOKEN_B })).status).toBe(404);
    const bEvents = await relay.api('GET', '/v1/events', undefined, { token: TOKEN_B });
    expect(bEvents.body.items.map((e: any) => e.id)).not.toContain(id);
    // Ids are unique per project: project B may use the same one for its own event.
    const own = await relay.api('POST', '/v1/events', { id: 'evt-private', type: 'custom.other' }, { token: TOKEN_B });
    expect(own.status).toBe(202);
    expect(own.body.items).toEqual([{ id: 'evt-private', duplicate: false }]);
    expect((await relay.api('GET', `/v1/events/${id}`)).body.type).toBe('custom.private');
  });
});

describe('Mistral ingest', () => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startTestRelay(RELAY_ENV);
  });
  afterAll(async () => {
    await relay.close();
  });

  const postMistral = (body: string | Buffer, query = '', headers: Record<string, string> = {}) =>
    rawRequest(relay.url, 'POST', `/v1/ingest/mistral${query}`, body, { authorization: `Bearer ${TOKEN_A}`, ...headers });
  const countOf = async (type: string) => (await relay.api('GET', `/v1/events?type=${type}&limit=1000`)).body.items.length as number;

  it('stores the INTEROP task body once, posted without a Content-Type', async () => {
    const first = await postMistral(MISTRAL_TASK_BODY);
    expect(first.status, first.text).toBe(200);
    expect(first.body).toEqual({ stored: true, id: expect.stringMatching(/^mistral-/), duplicate: false });
    const event = await relay.api('GET', `/v1/events/${first.body.id}`);
    expect(event.status).toBe(200);
    expect(event.body).toMatchObject({
      type: 'TASK_SUCCEEDED',
      category: 'TASK',
      workbook: 'hello',
      workflow: 'hello',
      execution_id: '26a6…',
      task_id: '6954…',
      task_name: 'first',
      state: 'SUCCESS',
      source: 'mistral',
      sequence: 1,
      occurred_at: '2026-11-23T01:43:39.000Z',
      data: JSON.parse(MISTRAL_TASK_BODY),
    });

    const second = await postMistral(MISTRAL_TASK_BODY);
    expect(second.status).toBe(200);
    expect(second.body).toEqual({ stored: true, id: first.body.id, duplicate: true });
    expect(await countOf('TASK_SUCCEEDED')).toBe(1);
  });

  it('stores a workflow body', async () => {
    const res = await postMistral(MISTRAL_WORKFLOW_BODY);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ stored: true, duplicate: false });
    const event = await relay.api('GET', `/v1/events/${res.body.id}`);
    expect(event.body).toMatchObject({
      type: 'WORKFLOW_FAILED',
      category: 'EXECUTION',
      workbook: 'hello',
      execution_id: 'c0ffee00-0000-4000-8000-000000000001',
      task_id: null,
      state: 'ERROR',
      state_info: 'Failure caused by error in tasks: first',
      source: 'mistral',
    });
  });

  it('answers 200 and stores nothing for a notification without an event', async () => {
    const before = (await relay.api('GET', '/v1/events?limit=1000')).body.items.length;
    const res = await postMistral(JSON.stringify({ ...JSON.parse(MISTRAL_WORKFLOW_BODY), event: null }));
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ stored: false });
    expect((await relay.api('GET', '/v1/events?limit=1000')).body.items.length).toBe(before);
  });

  it('takes the workbook from ?workbook=', async () => {
    const res = await postMistral(MISTRAL_TASK_BODY, '?workbook=billing');
    expect(res.status).toBe(200);
    expect(res.body.duplicate).toBe(false);
    const event = await relay.api('GET', `/v1/events/${res.body.id}`);
    expect(event.body.workbook).toBe('billing');
    const listed = await relay.api('GET', '/v1/events?workbook=billing');
    expect(listed.body.items.map((e: any) => e.id)).toEqual([res.body.id]);
  });

  it('refuses a query parameter it does not take, naming it, and stores nothing', async () => {
    const before = (await relay.api('GET', '/v1/events?limit=1000')).body.items.length;
    // A typo would otherwise store every notification of the subscription without its workbook.
    const res = await postMistral(MISTRAL_TASK_BODY, '?workbok=billing');
    expect(res.status, res.text).toBe(400);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body.errors).toEqual([{ field: 'workbok', message: expect.stringContaining('did you mean workbook?') }]);
    expect((await relay.api('GET', '/v1/events?limit=1000')).body.items.length).toBe(before);
  });

  it('refuses a body holding a key named __proto__ or a number beyond a double, naming the body, and stores nothing', async () => {
    const before = (await relay.api('GET', '/v1/events?limit=1000')).body.items.length;
    // Parsed as any other key, it vanished from the stored event's data without a word.
    const body = MISTRAL_TASK_BODY.replace(/^\{/, '{"__proto__": {"admin": true}, ');
    expect(JSON.parse(body)).toHaveProperty('__proto__');
    for (const raw of [body, body.replace('__proto__', '\\u005f_proto__')]) {
      const res = await postMistral(raw);
      expect(res.status, res.text).toBe(400);
      expect(res.body).toMatchObject({ errors: [{ field: '(body)', message: 'a key named __proto__ cannot be stored' }] });
    }
    // A number beyond a double was stored as null.
    const huge = await postMistral(MISTRAL_TASK_BODY.replace(/^\{/, '{"runtime_context": {"retries": 1e400}, '));
    expect(huge.status, huge.text).toBe(400);
    expect(huge.body).toMatchObject({ errors: [{ field: '(body)', message: '"retries" is a number too large to store (beyond ±1.8e308)' }] });
    expect((await relay.api('GET', '/v1/events?limit=1000')).body.items.length).toBe(before);
  });

  it('answers 400 with a problem for a body that is not JSON, and 401 without a token', async () => {
    const before = (await relay.api('GET', '/v1/events?limit=1000')).body.items.length;
    const bad = await postMistral('not json at all');
    expect(bad.status).toBe(400);
    expect(bad.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(bad.body).toMatchObject({ status: 400, errors: [{ field: '(body)', message: expect.any(String) }] });
    const anonymous = await rawRequest(relay.url, 'POST', '/v1/ingest/mistral', MISTRAL_TASK_BODY);
    expect(anonymous.status).toBe(401);
    expect((await relay.api('GET', '/v1/events?limit=1000')).body.items.length).toBe(before);
  });
});

// ---- 12-16: listener operations ----------------------------------------------------------------

describe('listener operations', () => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startTestRelay(RELAY_ENV);
  });
  afterAll(async () => {
    await relay.close();
  });

  it('ping sends a signed PING to that listener only', async () => {
    const one = await createListener(relay, receiver.url('/ping-1'), { workbook: 'wb-ping' });
    const two = await createListener(relay, receiver.url('/ping-2'), { workbook: 'wb-ping' });
    const res = await relay.api('POST', `/v1/listeners/${one.id}/ping`);
    expect(res.status).toBe(202);
    const eventId = res.body.event_id as string;

    const [req] = await receiver.waitForCount('/ping-1', 1);
    expect(() => verifySignature(one.secret, req)).not.toThrow();
    expect(() => verifySignature(two.secret, req)).toThrow();
    expect(JSON.parse(req.text)).toMatchObject({
      id: eventId,
      type: 'PING',
      category: 'NOTIFICATION',
      workbook: 'wb-ping',
      data: { listener_id: one.id },
    });
    const event = await relay.api('GET', `/v1/events/${eventId}`);
    expect(event.body.deliveries.map((d: any) => d.listener_id)).toEqual([one.id]);
    await deliveryWhen(relay, event.body.deliveries[0].id, settled('succeeded'));
    await sleep(100);
    expect(receiver.requests('/ping-2')).toHaveLength(0);
    expect((await relay.api('POST', '/v1/listeners/01NOSUCHLISTENER/ping')).status).toBe(404);
  });

  it('replay creates new deliveries of past events; only_failed re-queues the failed ones with the same id', async () => {
    const since = new Date(Date.now() - 1000).toISOString();
    const eventIds = await ingest(relay, [
      { type: 'WORKFLOW_LAUNCHED', workbook: 'wb-replay', execution_id: 'ex-r' },
      { type: 'TASK_LAUNCHED', workbook: 'wb-replay', execution_id: 'ex-r', task_id: 't-r' },
      { type: 'TASK_SUCCEEDED', workbook: 'wb-replay', execution_id: 'ex-r', task_id: 't-r' },
      { type: 'TASK_SUCCEEDED', workbook: 'wb-elsewhere', execution_id: 'ex-e' },
    ]);
    const listener = await createListener(relay, receiver.url('/replay'), { workbook: 'wb-replay' });
    const until = new Date(Date.now() + 1000).toISOString();

    const first = await relay.api('POST', `/v1/listeners/${listener.id}/replay`, { since, until });
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ count: 3 });
    const batch1 = await receiver.waitForCount('/replay', 3);
    expect(batch1.map((r) => JSON.parse(r.text).id).sort()).toEqual(eventIds.slice(0, 3).sort());
    const ids1 = batch1.map((r) => r.headers['webhook-id']);
    expect(new Set(ids1).size).toBe(3);

    const second = await relay.api('POST', `/v1/listeners/${listener.id}/replay`, { since, until });
    expect(second.body).toMatchObject({ count: 3 });
    const all = await receiver.waitForCount('/replay', 6);
    const ids2 = all.slice(3).map((r) => r.headers['webhook-id']);
    expect(new Set([...ids1, ...ids2]).size).toBe(6);
    expect(all.slice(3).every((r) => r.headers['webhook-attempt'] === '1')).toBe(true);
    const listed = await relay.api('GET', `/v1/deliveries?listener_id=${listener.id}`);
    expect(listed.body.items.map((d: any) => d.id).sort()).toEqual([...ids1, ...ids2].sort());

    // only_failed: the failed delivery comes back with its own id, once the receiver recovers.
    receiver.respond('/replay-failing', [500, 200]);
    const failing = await createListener(relay, receiver.url('/replay-failing'), { workbook: 'wb-replay-f', schedule: [] });
    const [failedEvent] = await ingest(relay, [{ type: 'WORKFLOW_FAILED', workbook: 'wb-replay-f' }]);
    const { id } = await onlyDeliveryOf(relay, failedEvent);
    await deliveryWhen(relay, id, settled('failed'));
    const requeued = await relay.api('POST', `/v1/listeners/${failing.id}/replay`, {
      since,
      until: new Date(Date.now() + 1000).toISOString(),
      only_failed: true,
    });
    expect(requeued.status).toBe(202);
    expect(requeued.body).toMatchObject({ count: 1 });
    const [, retried] = await receiver.waitForCount('/replay-failing', 2);
    expect(retried.headers['webhook-id']).toBe(id);
    expect(retried.headers['webhook-attempt']).toBe('2');
    const done = await deliveryWhen(relay, id, settled('succeeded'));
    expect(done.attempt_count).toBe(2);
    expect(await deliveriesOfEvent(relay, failedEvent)).toHaveLength(1);
  });

  it('manual retry re-queues a failed delivery with the same webhook-id', async () => {
    receiver.respond('/manual', [500, 200]);
    await createListener(relay, receiver.url('/manual'), { workbook: 'wb-manual', schedule: [] });
    const [eventId] = await ingest(relay, [{ type: 'WORKFLOW_FAILED', workbook: 'wb-manual' }]);
    const { id } = await onlyDeliveryOf(relay, eventId);
    await deliveryWhen(relay, id, settled('failed'));

    const res = await relay.api('POST', `/v1/deliveries/${id}/retry`);
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ id, status: 'pending' });
    const [, second] = await receiver.waitForCount('/manual', 2);
    expect(second.headers['webhook-id']).toBe(id);
    expect(second.headers['webhook-attempt']).toBe('2');
    const done = await deliveryWhen(relay, id, settled('succeeded'));
    expect(done.attempts.map((a: any) => a.status_code)).toEqual([500, 200]);

    const unknown = await relay.api('POST', '/v1/deliveries/01NOSUCHDELIVERY0000000000/retry');
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  });

  it('deleting a listener cancels its pending deliveries', async () => {
    receiver.respond('/deleted', [500]);
    const listener = await createListener(relay, receiver.url('/deleted'), { workbook: 'wb-delete', schedule: [60_000] });
    const [eventId] = await ingest(relay, [{ type: 'WORKFLOW_LAUNCHED', workbook: 'wb-delete' }]);
    const { id } = await onlyDeliveryOf(relay, eventId);
    const waiting = await deliveryWhen(relay, id, (d) => d.attempt_count === 1 && !d.in_flight);
    expect(waiting.status).toBe('pending');
    expect(Date.parse(waiting.next_attempt_at)).toBeGreaterThan(Date.now() + 30_000);

    const del = await relay.api('DELETE', `/v1/listeners/${listener.id}`);
    expect(del.status).toBe(204);
    const cancelled = await relay.api('GET', `/v1/deliveries/${id}`);
    expect(cancelled.body).toMatchObject({ status: 'cancelled', next_attempt_at: null, attempt_count: 1 });
    expect((await relay.api('GET', `/v1/listeners/${listener.id}`)).status).toBe(404);
    expect((await relay.api('POST', `/v1/deliveries/${id}/retry`)).status).toBe(409);
    expect(receiver.requests('/deleted')).toHaveLength(1);
  });

  it('signs with both the new and the old secret after a rotation', async () => {
    const oldSecret = secretOf(3);
    const listener = await createListener(relay, receiver.url('/rotated'), { workbook: 'wb-rotate', secret: oldSecret });
    expect(listener.secret).toBe(oldSecret);
    const rotated = await relay.api('POST', `/v1/listeners/${listener.id}/rotate-secret`);
    expect(rotated.status).toBe(200);
    const newSecret = rotated.body.secret as string;
    expect(newSecret).toMatch(/^whsec_/);
    expect(newSecret).not.toBe(oldSecret);

    await ingest(relay, [{ type: 'WORKFLOW_LAUNCHED', workbook: 'wb-rotate' }]);
    const [req] = await receiver.waitForCount('/rotated', 1);
    const signatures = String(req.headers['webhook-signature']).split(' ');
    expect(signatures).toHaveLength(2);
    expect(signatures.every((s) => s.startsWith('v1,'))).toBe(true);
    expect(() => verifySignature(newSecret, req)).not.toThrow();
    expect(() => verifySignature(oldSecret, req)).not.toThrow();
    expect(() => verifySignature(secretOf(4), req)).toThrow();
    // Each secret verifies on its own signature, not on the pair.
    for (const [secret, sig] of [
      [newSecret, signatures[0]],
      [oldSecret, signatures[1]],
    ]) {
      const single = { ...(req.headers as Record<string, string>), 'webhook-signature': sig };
      expect(() => new Webhook(secret).verify(req.text, single)).not.toThrow();
    }
  });
});

// ---- 17: the network guard at connect time ----------------------------------------------------

describe('network guard at connect time', () => {
  /*
   * A relay bound to loopback may call loopback receivers; one bound elsewhere may not. So the
   * listeners are created through a relay bound to 127.0.0.1 (which accepts them), and the
   * same database is then served by a relay bound to 0.0.0.0 (not loopback, RELAY_ALLOW_NETWORKS
   * unset), as when an operator moves the bind address. Its dispatcher must refuse both: the
   * literal 127.0.0.1 before connecting, and `localhost` when the name resolves at connect time
   * (the name passes the create-time check, where localhost names are not resolved).
   */
  const dataDir = tempDir();
  let relay: TestRelay | undefined;
  afterAll(async () => {
    await relay?.close();
  });

  it('refuses a loopback receiver with EADDRBLOCKED when the relay is not bound to loopback', async () => {
    const creator = await startTestRelay(RELAY_ENV, dataDir);
    const byName = await createListener(creator, `http://localhost:${receiver.port}/guard-name`, { workbook: 'wb-guard', schedule: [] });
    const byLiteral = await createListener(creator, receiver.url('/guard-literal'), { workbook: 'wb-guard', schedule: [] });
    const byMapped = await createListener(creator, `http://[::ffff:127.0.0.1]:${receiver.port}/guard-mapped`, {
      workbook: 'wb-guard',
      schedule: [],
    });
    await creator.close();

    relay = await startTestRelay({ ...RELAY_ENV, RELAY_HOST: '0.0.0.0' }, dataDir);
    const base = `http://127.0.0.1:${relay.port}`;
    const api = (method: string, path: string, body?: unknown) => request(base, method, path, body);

    // This relay would not accept such a listener at create either.
    const refused = await api('POST', '/v1/listeners', {
      workbook: 'x',
      event_types: ALL_TYPES,
      callback: { url: receiver.url('/guard-new') },
    });
    expect(refused.status).toBe(400);
    expect(refused.body.errors[0].field).toBe('callback.url');

    const posted = await api('POST', '/v1/events', { type: 'WORKFLOW_LAUNCHED', workbook: 'wb-guard' });
    expect(posted.status).toBe(202);
    const eventId = posted.body.items[0].id;
    const deliveries = (await api('GET', `/v1/deliveries?event_id=${eventId}`)).body.items as any[];
    expect(deliveries.map((d) => d.listener_id).sort()).toEqual([byName.id, byLiteral.id, byMapped.id].sort());

    for (const d of deliveries) {
      const done = await vi.waitFor(
        async () => {
          const res = await api('GET', `/v1/deliveries/${d.id}`);
          if (res.body.status !== 'failed') throw new Error(`not failed yet: ${res.text}`);
          return res.body;
        },
        { timeout: 5000, interval: 20 },
      );
      expect(done.attempts).toHaveLength(1);
      expect(done.attempts[0]).toMatchObject({ error: 'EADDRBLOCKED', status_code: null });
      expect(done.last_error).toMatch(/loopback/);
    }
    expect(receiver.requests('/guard-name')).toHaveLength(0);
    expect(receiver.requests('/guard-literal')).toHaveLength(0);
    expect(receiver.requests('/guard-mapped')).toHaveLength(0);
  });
});

// ---- 18: metrics --------------------------------------------------------------------------------

describe('metrics', () => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startTestRelay(RELAY_ENV);
  });
  afterAll(async () => {
    await relay.close();
  });

  it('exposes ingest, attempt and queue metrics without a token', async () => {
    receiver.respond('/metrics-later', [500]);
    await createListener(relay, receiver.url('/metrics-ok'), { workbook: 'wb-metrics' });
    await createListener(relay, receiver.url('/metrics-later'), { workbook: 'wb-metrics', schedule: [60_000] });
    const [eventId] = await ingest(relay, [{ type: 'WORKFLOW_LAUNCHED', workbook: 'wb-metrics' }]);
    for (const d of await deliveriesOfEvent(relay, eventId)) {
      await deliveryWhen(relay, d.id, (x) => x.attempt_count === 1 && !x.in_flight);
    }

    const res = await fetch(`${relay.url}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    const value = (series: string) => {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      expect(line, `${series} in /metrics`).toBeDefined();
      return Number(line!.slice(series.length + 1));
    };
    expect(value('relay_events_ingested_total{source="api"}')).toBe(1);
    expect(value('relay_delivery_attempts_total{outcome="succeeded"}')).toBe(1);
    expect(value('relay_delivery_attempts_total{outcome="retry"}')).toBe(1);
    expect(value('relay_delivery_attempt_duration_seconds_count')).toBe(2);
    expect(text).toMatch(/^relay_delivery_attempt_duration_seconds_bucket\{le="[^"]+"\} \d+$/m);
    expect(value('relay_deliveries_due')).toBe(0);
    expect(value('relay_deliveries_scheduled')).toBe(1);
    expect(value('relay_oldest_due_delivery_age_seconds')).toBe(0);
  });

  it('counts a delivery in flight as due, not as scheduled for a later try', async () => {
    // The gauges' own help: due is "Pending deliveries due now (in flight ones included)",
    // scheduled is "Pending deliveries waiting for a later try". An attempt in flight is not
    // waiting for a later try. (The previous test left one delivery scheduled 60 s ahead.)
    receiver.respond('/metrics-hang', ['hang']);
    await createListener(relay, receiver.url('/metrics-hang'), { workbook: 'wb-metrics-hang', schedule: [], callback: { timeout_ms: 1000 } });
    const [eventId] = await ingest(relay, [{ type: 'WORKFLOW_LAUNCHED', workbook: 'wb-metrics-hang' }]);
    await receiver.waitForCount('/metrics-hang', 1);
    const text = await (await fetch(`${relay.url}/metrics`)).text();
    const inFlight = await onlyDeliveryOf(relay, eventId);
    expect(inFlight.in_flight).toBe(true);
    const value = (series: string) => Number(text.split('\n').find((l) => l.startsWith(`${series} `))!.slice(series.length + 1));
    expect({ due: value('relay_deliveries_due'), scheduled: value('relay_deliveries_scheduled') }).toEqual({ due: 1, scheduled: 1 });
  });
});
