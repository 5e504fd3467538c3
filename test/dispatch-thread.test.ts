import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { request, tempDir } from './helpers/relay.js';
import { killAllRelays, Receiver, runToExit, startRelayProcess, waitUntil, type RelayProcess } from './helpers/relay-process.js';

/*
 * `node dist/main.js` in role `all` dispatches in a worker thread of its own, with its own
 * database connection (RELAY_DISPATCH_THREAD=on, the default); off keeps one thread. Real
 * processes, a real receiver; run `npm run build` first.
 */

const TOKEN = 'dispatch-thread-token-0123456789';
const receivers: Receiver[] = [];
const dirs: string[] = [];

afterAll(async () => {
  await killAllRelays();
  await Promise.all(receivers.map((r) => r.close().catch(() => {})));
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function env(extra: Record<string, string> = {}): Record<string, string> {
  const dir = tempDir('relay-thread-');
  dirs.push(dir);
  return { RELAY_PORT: '0', RELAY_DATA_DIR: dir, RELAY_TOKENS: `${TOKEN}=p1`, RELAY_LOG_LEVEL: 'debug', RELAY_SHUTDOWN_GRACE_MS: '2000', ...extra };
}

const api = (relay: RelayProcess, method: string, pathname: string, body?: unknown) => request(relay.url, method, pathname, body, { token: TOKEN });

async function receiver(): Promise<Receiver> {
  const r = await new Receiver().listen();
  receivers.push(r);
  return r;
}

/** A listener for every NOTIFICATION, then `count` events; resolves once the receiver has them all. */
async function deliverTo(relay: RelayProcess, rcv: Receiver, count: number, callback: Record<string, unknown> = { url: rcv.url }) {
  const created = await api(relay, 'POST', '/v1/listeners', { workbook: '*', event_types: ['NOTIFICATION'], callback });
  expect(created.status, created.text).toBe(201);
  rcv.secret = created.body.secret;
  const events = Array.from({ length: count }, (_, i) => ({ type: 'thread.test', data: { i } }));
  const res = await api(relay, 'POST', '/v1/events', { events });
  expect(res.status, res.text).toBe(202);
  return created.body.id as string;
}

/** One series' value in a Prometheus text page (every line of that series, so a repeat shows). */
function series(text: string, name: string): number[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name} `))
    .map((l) => Number(l.slice(name.length + 1)));
}

async function metricsOf(relay: RelayProcess): Promise<string> {
  const res = await fetch(`${relay.url}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

describe('the dispatch thread', () => {
  it('sends from its own thread; /metrics of the main thread counts its attempts once; SIGTERM stops both', async () => {
    const rcv = await receiver();
    const relay = await startRelayProcess(env());
    expect(relay.logs.some((l) => l.msg === 'the dispatcher runs in its own thread')).toBe(true);
    await deliverTo(relay, rcv, 30);
    await waitUntil(() => rcv.byWebhookId.size === 30, 15_000, () => `${rcv.byWebhookId.size}/30 arrived`);
    expect(rcv.badSignatures).toEqual([]);

    // The dispatcher's lines come from the thread (its logger's binding), the API's from the main thread.
    const attempts = await relay.waitForLog((l) => l.msg === 'attempt finished');
    expect(attempts).toMatchObject({ thread: 'dispatch', component: 'dispatcher' });
    expect(relay.logs.filter((l) => l.msg.startsWith('callback-relay listening')).every((l) => l.thread === undefined)).toBe(true);

    // Attempts are counted as they finish and recorded (no longer due) by a later cycle: wait
    // until the page shows both.
    let text = '';
    await waitUntil(
      async () => {
        text = await metricsOf(relay);
        return series(text, 'relay_delivery_attempts_total{outcome="succeeded"}')[0] === 30 && series(text, 'relay_deliveries_due')[0] === 0;
      },
      10_000,
      () => `metrics: ${text.split('\n').filter((l) => /^relay_(delivery_attempts_total|deliveries_due) /.test(l) || l.startsWith('relay_delivery_attempts_total{')).join(' | ')}`,
    );
    expect(series(text, 'relay_delivery_attempts_total{outcome="succeeded"}')).toEqual([30]);
    expect(series(text, 'relay_delivery_attempt_duration_seconds_count')).toEqual([30]);
    expect(series(text, 'relay_events_ingested_total{source="api"}')).toEqual([30]);
    // The main thread's own series once each, not summed with a second copy from the thread.
    expect(series(text, 'relay_deliveries_due')).toEqual([0]);
    expect(series(text, 'relay_process_resident_memory_bytes')).toHaveLength(1);

    const ready = await fetch(`${relay.url}/readyz`);
    expect(ready.status).toBe(200);

    relay.signal('SIGTERM');
    expect(await relay.exited).toEqual({ code: 0, signal: null });
    expect(relay.logs.some((l) => l.msg === 'stopped')).toBe(true);
    expect(relay.logs.filter((l) => l.level >= 50)).toEqual([]);
  }, 60_000);

  it('hands what the main thread commits to the thread as it commits, each sent once; the first to a listener goes through the claim', async () => {
    const rcv = await receiver();
    const relay = await startRelayProcess(env());
    // Hand-overs are taken once the dispatcher's first claim has shown nothing due waiting,
    // which may come after the first requests of a test: one event delivered to a listener of
    // its own (removed after) shows that claim has run. The counters are read from there on.
    const warmUp = await receiver();
    const first = await deliverTo(relay, warmUp, 1, { url: warmUp.url });
    await waitUntil(() => warmUp.byWebhookId.size === 1, 10_000, () => `${warmUp.byWebhookId.size}/1 warm-up arrived`);
    expect((await api(relay, 'DELETE', `/v1/listeners/${first}`)).status).toBe(204);
    const before = await metricsOf(relay);
    const counted = (text: string, outcome: string) => {
      const name = `relay_deliveries_handed_over_total{outcome="${outcome}"}`;
      return (series(text, name)[0] ?? 0) - (series(before, name)[0] ?? 0);
    };
    const created = await api(relay, 'POST', '/v1/listeners', { workbook: '*', event_types: ['NOTIFICATION'], callback: { url: rcv.url } });
    expect(created.status, created.text).toBe(201);
    rcv.secret = created.body.secret;
    // One event at a time, each awaited at the receiver: the dispatcher has room and nothing waits in the queue.
    for (let i = 1; i <= 11; i++) {
      const res = await api(relay, 'POST', '/v1/events', { events: [{ type: 'thread.test', data: { i } }] });
      expect(res.status, res.text).toBe(202);
      await waitUntil(() => rcv.byWebhookId.size === i, 10_000, () => `${rcv.byWebhookId.size}/${i} arrived`);
    }
    expect(rcv.received).toHaveLength(11);
    expect(rcv.badSignatures).toEqual([]);
    let text = '';
    await waitUntil(
      async () => series((text = await metricsOf(relay)), 'relay_delivery_attempts_total{outcome="succeeded"}')[0] === 12,
      10_000,
      () => `attempt metrics: ${text.split('\n').filter((l) => l.startsWith('relay_delivery')).join(' | ')}`,
    );
    // The first delivery to a listener whose circuit the dispatcher has not seen yet goes back
    // to the queue, for the claim's gate; the rest go out as they were handed over.
    expect(series(text, 'relay_deliveries_handed_over_total{outcome="queued"}')).toHaveLength(1);
    expect(counted(text, 'queued')).toBe(1);
    expect(counted(text, 'sent')).toBe(10);
    // The counter moves when an attempt ends; its outcome is recorded by the next cycle.
    const outcomes = async () =>
      ((await api(relay, 'GET', `/v1/deliveries?listener_id=${created.body.id}&limit=50`)).body.items as Array<{ status: string; attempt_count: number }>).map((d) => [d.status, d.attempt_count]);
    let seen: unknown[] = [];
    await waitUntil(async () => (seen = await outcomes()).every(([status]) => status !== 'pending'), 10_000, () => `outcomes: ${JSON.stringify(seen)}`);
    expect(seen).toEqual(Array(11).fill(['succeeded', 1]));
    await relay.stop();
  }, 60_000);

  it('kill -9 while handed-over deliveries are in flight loses none: the next process sends them when their leases end', async () => {
    const rcv = await receiver();
    const e = env({ RELAY_SHUTDOWN_GRACE_MS: '500' });
    const relay = await startRelayProcess(e);
    const created = await api(relay, 'POST', '/v1/listeners', {
      workbook: '*',
      event_types: ['NOTIFICATION'],
      callback: { url: rcv.url, timeout_ms: 1000 },
      retry: { schedule_ms: [100, 100, 100] },
    });
    expect(created.status, created.text).toBe(201);
    rcv.secret = created.body.secret;
    const first = await api(relay, 'POST', '/v1/events', { events: [{ type: 'thread.test', data: { i: 0 } }] });
    expect(first.status, first.text).toBe(202);
    await waitUntil(() => rcv.byWebhookId.size === 1, 10_000, () => `${rcv.byWebhookId.size}/1 arrived`);
    // The receiver holds what comes next; the relay is killed while sending it.
    let open!: () => void;
    rcv.gate = new Promise<void>((resolve) => (open = resolve));
    const res = await api(relay, 'POST', '/v1/events', { events: Array.from({ length: 5 }, (_, i) => ({ type: 'thread.test', data: { i: i + 1 } })) });
    expect(res.status, res.text).toBe(202);
    await waitUntil(() => rcv.received.length >= 6, 10_000, () => `${rcv.received.length}/6 requests`);
    const text = await metricsOf(relay);
    expect(series(text, 'relay_deliveries_handed_over_total{outcome="sent"}')[0]).toBeGreaterThanOrEqual(1);
    await relay.kill9();
    open();

    const held = rcv.received.slice(1).map((r) => r.webhookId);
    const again = await startRelayProcess(e);
    let statuses: string[] = [];
    await waitUntil(
      async () => {
        const list = await api(again, 'GET', '/v1/deliveries?limit=50');
        statuses = list.body.items.map((d: { status: string }) => d.status);
        return statuses.length === 6 && statuses.every((status) => status === 'succeeded');
      },
      30_000,
      () => `deliveries: ${statuses.join(', ')}`,
    );
    // Each held one was sent again, with the same webhook-id.
    expect(held.map((id) => rcv.byWebhookId.get(id)! >= 2)).toEqual(Array(5).fill(true));
    await again.stop();
  }, 60_000);

  it('RELAY_DISPATCH_THREAD=off sends from the main thread, with the same metrics', async () => {
    const rcv = await receiver();
    const relay = await startRelayProcess(env({ RELAY_DISPATCH_THREAD: 'off' }));
    expect(relay.logs.some((l) => l.msg === 'the dispatcher runs in its own thread')).toBe(false);
    await deliverTo(relay, rcv, 10);
    await waitUntil(() => rcv.byWebhookId.size === 10, 15_000, () => `${rcv.byWebhookId.size}/10 arrived`);
    const attempts = await relay.waitForLog((l) => l.msg === 'attempt finished');
    expect(attempts.component).toBe('dispatcher');
    expect(attempts.thread).toBeUndefined();
    let text = '';
    await waitUntil(
      async () => series((text = await metricsOf(relay)), 'relay_delivery_attempts_total{outcome="succeeded"}')[0] === 10,
      10_000,
      () => `attempt metrics: ${text.split('\n').filter((l) => l.startsWith('relay_delivery_attempts_total')).join(' | ')}`,
    );
    await relay.stop();
  }, 60_000);

  it('a dispatch thread that dies stops the process: exit code 70 and a fatal line saying so', async () => {
    // An operator's transport module with a bug that throws outside any promise, in the thread.
    const dir = tempDir('relay-thread-module-');
    dirs.push(dir);
    const module = path.join(dir, 'broken.mjs');
    fs.writeFileSync(
      module,
      `export default {
  name: 'broken',
  validate: () => [],
  async send() {
    setImmediate(() => { throw new Error('a bug in the broken transport'); });
    return { ok: true, statusCode: 200 };
  },
  async close() {},
};
`,
    );
    const relay = await startRelayProcess(env({ RELAY_TRANSPORT_MODULES: module }));
    const created = await api(relay, 'POST', '/v1/listeners', { workbook: '*', event_types: ['NOTIFICATION'], callback: { transport: 'broken' } });
    expect(created.status, created.text).toBe(201);
    const res = await api(relay, 'POST', '/v1/events', { events: [{ type: 'thread.test' }] });
    expect(res.status, res.text).toBe(202);
    const exit = await Promise.race([relay.exited, new Promise<null>((r) => setTimeout(() => r(null), 15_000))]);
    expect(exit).toEqual({ code: 70, signal: null });
    const fatal = relay.logs.find((l) => l.level === 60);
    expect(fatal?.msg).toBe('the dispatch thread stopped: the relay stops rather than run without its dispatcher');
    expect(JSON.stringify(fatal?.err)).toContain('a bug in the broken transport');
  }, 60_000);

  it('refuses RELAY_DISPATCH_THREAD=maybe: exit code 2, one line naming the variable', async () => {
    const relay = await runToExit(env({ RELAY_DISPATCH_THREAD: 'maybe' }));
    expect(relay.exit).toEqual({ code: 2, signal: null });
    expect(relay.stderr).toContain('RELAY_DISPATCH_THREAD');
  });
});
