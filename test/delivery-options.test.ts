import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startReceiver, type ReceivedRequest, type Receiver } from './helpers/receiver.js';
import { waitUntil } from './helpers/relay-process.js';
import { startTestRelay, type TestRelay } from './helpers/relay.js';

/*
 * Listener delivery options end to end (DESIGN.md, "Listener delivery options"): a real relay
 * delivering to real receivers on 127.0.0.1.
 */

let relay: TestRelay | null = null;
let receiver: Receiver | null = null;
afterEach(async () => {
  await relay?.close();
  await receiver?.close();
  relay = null;
  receiver = null;
});

/** A small seeded generator (mulberry32): "random" failures that are the same on every run. */
function seeded(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function listener(r: TestRelay, body: Record<string, unknown>) {
  const res = await r.api('POST', '/v1/listeners', { workbook: '*', event_types: ['NOTIFICATION'], ...body });
  expect(res.status, res.text).toBe(201);
  return res.body as { id: string };
}

async function ingest(r: TestRelay, events: Array<Record<string, unknown>>) {
  for (let i = 0; i < events.length; i += 1000) {
    const res = await r.api('POST', '/v1/events', { events: events.slice(i, i + 1000) });
    expect(res.status, res.text).toBe(202);
  }
}

const bodyOf = (req: ReceivedRequest) => JSON.parse(req.text) as { execution_id: string; sequence: number; type: string; data: Record<string, unknown> };

/** Per execution, the sequences in the order their first successful receipt came. */
function firstSuccesses(successes: ReceivedRequest[]): Map<string, number[]> {
  const seen = new Set<string>();
  const out = new Map<string, number[]>();
  for (const req of successes) {
    const id = req.headers['webhook-id'] as string;
    if (seen.has(id)) continue;
    seen.add(id);
    const b = bodyOf(req);
    out.set(b.execution_id, [...(out.get(b.execution_id) ?? []), b.sequence]);
  }
  return out;
}

const inOrder = (seqs: number[]) => seqs.every((s, i) => i === 0 || seqs[i - 1] < s);

describe('ordering: "execution"', () => {
  it('delivers each execution in sequence order to an ordered listener through 30% random failures; an unordered one does not', async () => {
    receiver = await startReceiver();
    const random = seeded(42);
    const successes = new Map<string, ReceivedRequest[]>([['/ordered', []], ['/unordered', []]]);
    for (const path of successes.keys()) {
      receiver.respond(path, (req) => {
        if (random() < 0.3) return 503;
        successes.get(path)!.push(req);
        return 200;
      });
    }
    relay = await startTestRelay();
    const retry = { schedule_ms: Array(15).fill(10) };
    await listener(relay, { callback: { url: receiver.url('/ordered'), timeout_ms: 2000 }, retry, ordering: 'execution' });
    await listener(relay, { callback: { url: receiver.url('/unordered'), timeout_ms: 2000 }, retry });

    const EXECUTIONS = 50;
    const PER_EXECUTION = 6;
    const events = [];
    // Interleaved: every execution's first event, then every execution's second, and so on.
    for (let s = 1; s <= PER_EXECUTION; s++) {
      for (let e = 0; e < EXECUTIONS; e++) events.push({ type: 'step.done', execution_id: `ex-${e}`, data: { step: s } });
    }
    await ingest(relay, events);
    const total = EXECUTIONS * PER_EXECUTION;
    await receiver.waitFor(() => successes.get('/ordered')!.length >= total && successes.get('/unordered')!.length >= total, 60_000);

    const ordered = firstSuccesses(successes.get('/ordered')!);
    expect(ordered.size).toBe(EXECUTIONS);
    for (const [execution, seqs] of ordered) expect(seqs, execution).toEqual([1, 2, 3, 4, 5, 6]);
    // The same failures without ordering put some execution out of order: the check above can fail.
    const unordered = firstSuccesses(successes.get('/unordered')!);
    expect(unordered.size).toBe(EXECUTIONS);
    expect([...unordered.values()].filter((seqs) => !inOrder(seqs)).length).toBeGreaterThan(0);
  }, 90_000);

  it('after a head fails for good, the next delivery carries webhook-gap and the rest go on', async () => {
    receiver = await startReceiver();
    receiver.respond('/hook', (req) => (bodyOf(req).sequence === 2 || bodyOf(req).sequence === 3 ? 500 : 200));
    relay = await startTestRelay();
    // Only its own events: the relay says relay.delivery.failed about 2 and 3 as well.
    await listener(relay, { events: ['step.*'], callback: { url: receiver.url('/hook'), timeout_ms: 2000 }, retry: { schedule_ms: [10] }, ordering: 'execution' });
    await ingest(relay, [1, 2, 3, 4, 5].map((step) => ({ type: 'step.done', execution_id: 'ex-gap', data: { step } })));
    // Every delivery finished: 1, 4 and 5 once, 2 and 3 twice.
    const all = await receiver.waitForCount('/hook', 7, 20_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(receiver.requests('/hook')).toHaveLength(7);
    const bySeq = all.map((r) => [bodyOf(r).sequence, r.headers['webhook-attempt'], r.headers['webhook-gap'] ?? null]);
    // 1 ok; 2 twice (failed for good); 3 twice, carrying the gap of 2; 4 carries both skipped; 5 none.
    expect(bySeq).toEqual([
      [1, '1', null],
      [2, '1', null],
      [2, '2', null],
      [3, '1', '2'],
      [3, '2', '2'],
      [4, '1', '2,3'],
      [5, '1', null],
    ]);
  }, 30_000);

  it('replays one execution in sequence order, for an unordered listener too', async () => {
    receiver = await startReceiver();
    relay = await startTestRelay();
    const l = await listener(relay, { callback: { url: receiver.url('/hook'), timeout_ms: 2000 }, retry: { schedule_ms: [30] } });
    await ingest(relay, [1, 2, 3, 4, 5].map((step) => ({ type: 'step.done', execution_id: 'ex-r', data: { step } })));
    await receiver.waitForCount('/hook', 5, 10_000);
    // On the replay the first try of sequence 2 fails: without ordering 3, 4 and 5 would overtake its retry.
    let failedOnce = false;
    receiver.respond('/hook', (req) => (bodyOf(req).sequence === 2 && !failedOnce ? ((failedOnce = true), 503) : 200));
    const res = await relay.api('POST', `/v1/listeners/${l.id}/replay`, { execution_id: 'ex-r', from_sequence: 2 });
    expect(res.status, res.text).toBe(202);
    expect(res.body).toEqual({ count: 4, truncated: false });
    const replayed = (await receiver.waitForCount('/hook', 10, 10_000)).slice(5).map((r) => [bodyOf(r).sequence, r.headers['webhook-attempt']]);
    expect(replayed).toEqual([
      [2, '1'],
      [2, '2'],
      [3, '1'],
      [4, '1'],
      [5, '1'],
    ]);
  }, 30_000);
});

describe('endpoint health', () => {
  it('opens the circuit for a receiver that is down, probes after the cool-down, closes when it is back, and says so', async () => {
    receiver = await startReceiver();
    receiver.respond('/down', [503]);
    relay = await startTestRelay({
      RELAY_BREAKER_MIN_ATTEMPTS: '4',
      RELAY_BREAKER_FAILURE_RATIO: '0.7',
      RELAY_BREAKER_WINDOW_S: '60',
      RELAY_BREAKER_COOLDOWN_S: '2',
    });
    await listener(relay, {
      events: ['relay.circuit.opened', 'relay.circuit.closed'],
      callback: { url: receiver.url('/ops'), timeout_ms: 2000 },
      retry: { schedule_ms: [10] },
    });
    const down = await listener(relay, { events: ['work.*'], callback: { url: receiver.url('/down'), timeout_ms: 2000 }, retry: { schedule_ms: Array(20).fill(20) } });
    await ingest(relay, Array.from({ length: 8 }, (_, i) => ({ type: 'work.item', data: { i } })));

    const [opened] = await receiver.waitForCount('/ops', 1, 10_000);
    expect(bodyOf(opened)).toMatchObject({ type: 'relay.circuit.opened', category: 'NOTIFICATION', workbook: null, data: { listener_id: down.id } });
    const openedAt = opened.at;
    // Attempts stop while it is open: nothing reaches /down until the cool-down is over, then one probe.
    await new Promise((r) => setTimeout(r, 1500));
    const during = receiver.requests('/down').filter((r) => r.at > openedAt + 200);
    expect(during).toEqual([]);
    const health = await relay.api('GET', `/v1/listeners/${down.id}`);
    expect(health.body.health.state).toBe('open');

    receiver.respond('/down', [200]);
    await receiver.waitFor((reqs) => reqs.some((r) => r.path === '/ops' && bodyOf(r).type === 'relay.circuit.closed'), 10_000);
    const probeAndAfter = receiver.requests('/down').filter((r) => r.at > openedAt + 200);
    expect(probeAndAfter[0].at - openedAt).toBeGreaterThanOrEqual(1500);
    // Every delivery succeeds once the circuit has closed.
    let succeeded = 0;
    for (const until = Date.now() + 10_000; succeeded < 8 && Date.now() < until; await new Promise((r) => setTimeout(r, 100))) {
      succeeded = (await relay.api('GET', `/v1/deliveries?listener_id=${down.id}&status=succeeded`)).body.items.length;
    }
    expect(succeeded).toBe(8);
    expect((await relay.api('GET', `/v1/listeners/${down.id}`)).body.health.state).toBe('ok');
  }, 40_000);

  it('says relay.listener.disabled once when a 410 turns a listener off, however many of its attempts were in flight', async () => {
    receiver = await startReceiver();
    receiver.respond('/gone', [410]);
    relay = await startTestRelay();
    await listener(relay, { events: ['relay.listener.disabled'], callback: { url: receiver.url('/ops'), timeout_ms: 2000 } });
    const gone = await listener(relay, { events: ['work.*'], callback: { url: receiver.url('/gone'), timeout_ms: 2000 } });
    await ingest(relay, Array.from({ length: 8 }, (_, i) => ({ type: 'work.item', data: { i } })));

    const [said] = await receiver.waitForCount('/ops', 1, 10_000);
    expect(bodyOf(said)).toMatchObject({ type: 'relay.listener.disabled', data: { listener_id: gone.id, reason: expect.stringMatching(/410/) } });
    // Let every attempt that was in flight be recorded (each found the listener off), then count.
    for (const until = Date.now() + 10_000; Date.now() < until; await new Promise((r) => setTimeout(r, 100))) {
      const items = (await relay.api('GET', `/v1/deliveries?listener_id=${gone.id}&limit=100`)).body.items as Array<{ in_flight: boolean }>;
      if (items.every((d) => !d.in_flight)) break;
    }
    await new Promise((r) => setTimeout(r, 300));
    expect(receiver.requests('/gone').length).toBeGreaterThan(1);
    expect(receiver.requests('/ops')).toHaveLength(1);
    const events = (await relay.api('GET', '/v1/events?limit=100')).body.items as Array<{ type: string }>;
    expect(events.filter((e) => e.type === 'relay.listener.disabled')).toHaveLength(1);
  }, 30_000);

  it('sends a receiver that answered 410 nothing more than was in flight; what waited in the process is held with the backlog', async () => {
    receiver = await startReceiver();
    receiver.respond('/gone-now', [410]);
    relay = await startTestRelay();
    const gone = await listener(relay, { events: ['work.*'], max_in_flight: 4, callback: { url: receiver.url('/gone-now'), timeout_ms: 2000 } });
    await ingest(relay, Array.from({ length: 1000 }, (_, i) => ({ type: 'work.item', data: { i } })));

    const deliveries = async () => (await relay!.api('GET', `/v1/deliveries?listener_id=${gone.id}&limit=1000`)).body.items as Array<{ status: string; next_attempt_at: string | null; in_flight: boolean }>;
    let last: Awaited<ReturnType<typeof deliveries>> = [];
    await waitUntil(
      async () => (last = await deliveries()).every((d) => d.status === 'pending' && d.next_attempt_at === null && !d.in_flight),
      20_000,
      () => `not all held: ${JSON.stringify(last.filter((d) => d.next_attempt_at !== null || d.in_flight).slice(0, 3))}`,
    );
    expect(await deliveries()).toHaveLength(1000);
    expect((await relay.api('GET', `/v1/listeners/${gone.id}`)).body).toMatchObject({ enabled: false, disabled_reason: expect.stringMatching(/410/) });
    // At most its max_in_flight were on their way when the first 410 came back; nothing went after it.
    expect(receiver.requests('/gone-now').length).toBeGreaterThanOrEqual(1);
    expect(receiver.requests('/gone-now').length).toBeLessThanOrEqual(4);
  }, 30_000);

  it('keeps a listener with rate_limit_per_s 50 at 50 a second or less', async () => {
    receiver = await startReceiver();
    relay = await startTestRelay();
    await listener(relay, { callback: { url: receiver.url('/paced'), timeout_ms: 2000 }, rate_limit_per_s: 50 });
    await ingest(relay, Array.from({ length: 700 }, (_, i) => ({ type: 'work.item', data: { i } })));
    const reqs = await receiver.waitForCount('/paced', 600, 30_000);
    const start = reqs[0].at;
    const firstTenSeconds = reqs.filter((r) => r.at <= start + 10_000).length;
    // One second of burst (50) and then 50 a second: at most 550 in ten seconds, i.e. ≤ 55/s.
    expect(firstTenSeconds).toBeLessThanOrEqual(550);
    expect(firstTenSeconds).toBeGreaterThanOrEqual(400);
  }, 40_000);

  it('refuses a rate_limit_per_s below one attempt in 1,000 seconds, naming it, and changes nothing', async () => {
    relay = await startTestRelay();
    const r = relay;
    const tooLow = await r.api('POST', '/v1/listeners', { workbook: 'wb-rate', event_types: ['NOTIFICATION'], callback: { url: 'http://127.0.0.1:9/x' }, rate_limit_per_s: 0.0005 });
    expect(tooLow.status).toBe(400);
    expect(tooLow.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(tooLow.body.errors).toEqual([{ field: 'rate_limit_per_s', message: 'must be at least 0.001 (one attempt in 1000 seconds)' }]);
    expect((await r.api('GET', '/v1/listeners')).body.items).toEqual([]);

    const made = await listener(r, { callback: { url: 'http://127.0.0.1:9/x' }, rate_limit_per_s: 0.001 });
    const tiny = await r.api('PATCH', `/v1/listeners/${made.id}`, { rate_limit_per_s: 1e-300 });
    expect(tiny.status).toBe(400);
    expect(tiny.body.errors).toEqual([{ field: 'rate_limit_per_s', message: 'must be at least 0.001 (one attempt in 1000 seconds)' }]);
    expect((await r.api('GET', `/v1/listeners/${made.id}`)).body.rate_limit_per_s).toBe(0.001);
  });

  it("delivers a project's listeners while one of them answers slowly, and that one's backlog after", async () => {
    // Each receiver counts every request and the distinct deliveries it saw.
    const serve = (delayMs: number) => {
      const seen = new Set<string>();
      let total = 0;
      const server = http.createServer((req, res) => {
        req.resume();
        req.on('end', () => {
          setTimeout(() => {
            total++;
            seen.add(String(req.headers['webhook-id']));
            res.end('ok');
          }, delayMs);
        });
      });
      return { server, seen, total: () => total };
    };
    // Four requests at a time, a tenth of a second each: 40 a second at best.
    const slow = serve(100);
    const fast = serve(0);
    for (const s of [slow, fast]) await new Promise<void>((r) => s.server.listen(0, '127.0.0.1', r));
    try {
      // 56 deliveries in flight for one project: a backlog of the slow one's would fill them.
      relay = await startTestRelay({ RELAY_MAX_IN_FLIGHT: '64' });
      for (const [s, maxInFlight] of [[slow, 4], [fast, 32]] as const) {
        const url = `http://127.0.0.1:${(s.server.address() as AddressInfo).port}/hook`;
        await listener(relay, { callback: { url, timeout_ms: 5000 }, max_in_flight: maxInFlight });
      }
      const N = 400;
      await ingest(relay, Array.from({ length: N }, (_, i) => ({ type: 'work.item', data: { i } })));
      await waitUntil(() => fast.seen.size === N, 30_000, () => `the fast listener got ${fast.seen.size} of ${N}`);
      // The fast listener did not wait for the slow one's backlog: a process holds no more of a
      // listener's deliveries than its receiver answers in about a second.
      expect(slow.total()).toBeLessThan(N / 3);
      // Put off, not lost: the slow one gets every delivery, once.
      await waitUntil(() => slow.seen.size === N, 60_000, () => `the slow listener got ${slow.seen.size} of ${N}`);
      await new Promise((r) => setTimeout(r, 700));
      expect([slow.seen.size, slow.total(), fast.total()]).toEqual([N, N, N]);
    } finally {
      for (const s of [slow, fast]) {
        s.server.closeAllConnections();
        await new Promise((r) => s.server.close(r));
      }
    }
  }, 90_000);

  it('never has more than max_in_flight requests open at the receiver', async () => {
    let open = 0;
    let most = 0;
    let done = 0;
    const slow = http.createServer((req, res) => {
      open++;
      most = Math.max(most, open);
      req.resume();
      setTimeout(() => {
        open--;
        done++;
        res.end('ok');
      }, 30);
    });
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
    try {
      relay = await startTestRelay();
      const url = `http://127.0.0.1:${(slow.address() as AddressInfo).port}/slow`;
      await listener(relay, { callback: { url, timeout_ms: 2000 }, max_in_flight: 2 });
      await ingest(relay, Array.from({ length: 40 }, (_, i) => ({ type: 'work.item', data: { i } })));
      const deadline = Date.now() + 20_000;
      while (done < 40 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(done).toBe(40);
      expect(most).toBe(2);
    } finally {
      slow.closeAllConnections();
      await new Promise((r) => slow.close(r));
    }
  }, 30_000);
});
