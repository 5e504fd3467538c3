import { afterEach, describe, expect, it } from 'vitest';
import { REPLAY_CHUNK } from '../src/api/routes/listeners.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { waitUntil } from './helpers/relay-process.js';
import { startTestRelay, type TestRelay } from './helpers/relay.js';

/*
 * A replay call larger than one transaction's share (REPLAY_CHUNK): it commits a share at a time
 * and the process answers other requests between them. A real relay in this process on the
 * backend of this run, in role `api` (no dispatcher: what a replay makes stays where the test
 * can see it).
 */

let relay: TestRelay | null = null;
let receiver: Receiver | null = null;

afterEach(async () => {
  await relay?.close();
  await receiver?.close();
  relay = null;
  receiver = null;
});

async function storeEvents(r: TestRelay, total: number, type: string) {
  for (let b = 0; b * 1000 < total; b++) {
    const n = Math.min(1000, total - b * 1000);
    const res = await r.api('POST', '/v1/events', { events: Array.from({ length: n }, (_, i) => ({ id: `${type}-${b * 1000 + i}`, type, data: { i: b * 1000 + i } })) });
    expect(res.status, res.text).toBe(202);
  }
}

async function listener(r: TestRelay, type: string, over: Record<string, unknown> = {}) {
  const created = await r.api('POST', '/v1/listeners', {
    workbook: '*',
    event_types: ['NOTIFICATION'],
    events: [type],
    callback: { url: 'https://hooks.example.com/replay' },
    ...over,
  });
  expect(created.status, created.text).toBe(201);
  return created.body.id as string;
}

const deliveriesOf = async (r: TestRelay, listenerId: string, eventId: string) =>
  ((await r.api('GET', `/v1/deliveries?listener_id=${listenerId}&event_id=${eventId}`)).body.items as unknown[]).length;

describe('a replay call larger than one transaction', () => {
  it(`commits ${REPLAY_CHUNK} deliveries at a time and serves other requests meanwhile`, async () => {
    relay = await startTestRelay({ RELAY_ROLE: 'api' });
    const total = REPLAY_CHUNK * 30;
    const since = new Date(Date.now() - 1000).toISOString();
    await storeEvents(relay, total, 'replay.big');
    const id = await listener(relay, 'replay.big');

    let answered = false;
    const call = relay.api('POST', `/v1/listeners/${id}/replay`, { since }).finally(() => (answered = true));
    // While the call runs: the first event's delivery is made and the last one's not yet.
    const seen = { polls: 0, partway: 0 };
    while (!answered) {
      const [first, last] = [await deliveriesOf(relay, id, 'replay.big-0'), await deliveriesOf(relay, id, `replay.big-${total - 1}`)];
      if (answered) break;
      seen.polls++;
      if (first === 1 && last === 0) seen.partway++;
    }
    const res = await call;
    expect(res.status, res.text).toBe(202);
    expect(res.body).toEqual({ count: total, truncated: false });
    expect(seen.partway, JSON.stringify(seen)).toBeGreaterThan(0);
    expect([await deliveriesOf(relay, id, 'replay.big-0'), await deliveriesOf(relay, id, `replay.big-${total - 1}`)]).toEqual([1, 1]);
  }, 180_000);

  it('keeps the call\'s limit on events looked at across its transactions, and the next call goes on from there', async () => {
    const scanLimit = Math.round(REPLAY_CHUNK * 2.5);
    relay = await startTestRelay({ RELAY_ROLE: 'api', RELAY_REPLAY_SCAN_LIMIT: String(scanLimit) });
    const total = REPLAY_CHUNK * 4;
    const since = new Date(Date.now() - 1000).toISOString();
    await storeEvents(relay, total, 'replay.bounded');
    const id = await listener(relay, 'replay.bounded');

    const first = await relay.api('POST', `/v1/listeners/${id}/replay`, { since });
    expect(first.status, first.text).toBe(202);
    expect(first.body).toMatchObject({ count: scanLimit, truncated: true, next: { since, after: expect.any(String) } });
    expect([await deliveriesOf(relay, id, `replay.bounded-${scanLimit - 1}`), await deliveriesOf(relay, id, `replay.bounded-${scanLimit}`)]).toEqual([1, 0]);
    const second = await relay.api('POST', `/v1/listeners/${id}/replay`, first.body.next);
    expect(second.body).toEqual({ count: total - scanLimit, truncated: false });
    const third = await relay.api('POST', `/v1/listeners/${id}/replay`, { execution_id: 'none-such' });
    expect(third.body).toEqual({ count: 0, truncated: false });
    // Each event once.
    for (const i of [0, scanLimit - 1, scanLimit, total - 1]) expect(await deliveriesOf(relay, id, `replay.bounded-${i}`)).toBe(1);
  }, 180_000);

  it('re-queues failed deliveries over its transactions too, each once when the next call goes on', async () => {
    receiver = await startReceiver();
    receiver.respond('/failing', () => 500);
    const scanLimit = Math.round(REPLAY_CHUNK * 1.5);
    // (A breaker that opened on these failures would hold the tries this test counts.)
    relay = await startTestRelay({ RELAY_REPLAY_SCAN_LIMIT: String(scanLimit), RELAY_BREAKER_MIN_ATTEMPTS: '1000000' });
    const total = Math.round(REPLAY_CHUNK * 2.5);
    const since = new Date(Date.now() - 1000).toISOString();
    // No retries: each delivery fails for good on its first try.
    const id = await listener(relay, 'replay.failing', { callback: { url: receiver.url('/failing'), timeout_ms: 2000 }, retry: { schedule_ms: [] } });
    await storeEvents(relay, total, 'replay.failing');
    const pending = async () => ((await relay!.api('GET', `/v1/deliveries?listener_id=${id}&status=pending&limit=1`)).body.items as unknown[]).length;
    await waitUntil(async () => receiver!.requests('/failing').length >= total && (await pending()) === 0, 30_000, () => `${receiver!.requests('/failing').length} tries`);

    const first = await relay.api('POST', `/v1/listeners/${id}/replay`, { since, only_failed: true });
    expect(first.status, first.text).toBe(202);
    expect(first.body).toMatchObject({ count: scanLimit, truncated: true, next: { since, only_failed: true, after: expect.any(String) } });
    const second = await relay.api('POST', `/v1/listeners/${id}/replay`, first.body.next);
    expect(second.body).toEqual({ count: total - scanLimit, truncated: false });
    // Every delivery tried once more, none twice (they fail again meanwhile, and following next does not take them again).
    await waitUntil(() => receiver!.requests('/failing').length >= 2 * total, 30_000, () => `${receiver!.requests('/failing').length} tries`);
    await new Promise((r) => setTimeout(r, 300));
    expect(receiver.requests('/failing')).toHaveLength(2 * total);
    const tries = new Map<string, number>();
    for (const req of receiver.requests('/failing')) tries.set(req.headers['webhook-id'] as string, (tries.get(req.headers['webhook-id'] as string) ?? 0) + 1);
    expect(new Set(tries.values())).toEqual(new Set([2]));
  }, 120_000);
});
