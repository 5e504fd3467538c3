import { afterEach, describe, expect, it } from 'vitest';
import { BACKLOG_WINDOW } from '../src/store/store.js';
import { startTestRelay, type TestRelay } from './helpers/relay.js';
import { waitUntil } from './helpers/relay-process.js';

/*
 * Disabling, enabling and deleting a listener with more waiting deliveries than one window: the
 * change answers with the first window moved, and the relay that serves the API moves the rest
 * by itself. A real relay in this process on the backend of this run, in role `api` (no
 * dispatcher, so the deliveries stay waiting where the test can count them).
 */

let relay: TestRelay | null = null;

afterEach(async () => {
  await relay?.close();
  relay = null;
});

const TOTAL = Math.round(BACKLOG_WINDOW * 2.5);

async function deliveries(r: TestRelay, listenerId: string) {
  const all: Array<{ status: string; next_attempt_at: string | null }> = [];
  let cursor: string | null = null;
  do {
    const res = await r.api('GET', `/v1/deliveries?listener_id=${listenerId}&limit=1000${cursor ? `&cursor=${cursor}` : ''}`);
    expect(res.status, res.text).toBe(200);
    all.push(...res.body.items);
    cursor = res.body.next_cursor;
  } while (cursor);
  return {
    total: all.length,
    held: all.filter((d) => d.status === 'pending' && d.next_attempt_at === null).length,
    due: all.filter((d) => d.status === 'pending' && d.next_attempt_at !== null).length,
    cancelled: all.filter((d) => d.status === 'cancelled').length,
  };
}

describe('a listener\'s backlog follows it', () => {
  it(`moves the first ${BACKLOG_WINDOW} with the change and the rest in the background, on disable, enable and delete`, async () => {
    relay = await startTestRelay({ RELAY_ROLE: 'api' });
    const created = await relay.api('POST', '/v1/listeners', {
      workbook: '*',
      event_types: ['NOTIFICATION'],
      callback: { url: 'https://hooks.example.com/backlog' },
    });
    expect(created.status, created.text).toBe(201);
    const id = created.body.id as string;
    for (let b = 0; b * 1000 < TOTAL; b++) {
      const n = Math.min(1000, TOTAL - b * 1000);
      const res = await relay.api('POST', '/v1/events', { events: Array.from({ length: n }, (_, i) => ({ type: 'backlog.test', data: { i: b * 1000 + i } })) });
      expect(res.status, res.text).toBe(202);
    }
    expect(await deliveries(relay, id)).toEqual({ total: TOTAL, held: 0, due: TOTAL, cancelled: 0 });

    const off = await relay.api('PATCH', `/v1/listeners/${id}`, { enabled: false });
    expect(off.status, off.text).toBe(200);
    // Read at once, the first window may be all that moved; the rest follows by itself.
    expect((await deliveries(relay, id)).held).toBeGreaterThanOrEqual(BACKLOG_WINDOW);
    await waitUntil(async () => (await deliveries(relay!, id)).held === TOTAL, 20_000, () => 'the backlog was not all held');

    const on = await relay.api('PATCH', `/v1/listeners/${id}`, { enabled: true });
    expect(on.status, on.text).toBe(200);
    expect((await deliveries(relay, id)).due).toBeGreaterThanOrEqual(BACKLOG_WINDOW);
    await waitUntil(async () => (await deliveries(relay!, id)).due === TOTAL, 20_000, () => 'the backlog was not all due again');

    const gone = await relay.api('DELETE', `/v1/listeners/${id}`);
    expect(gone.status, gone.text).toBe(204);
    expect((await deliveries(relay, id)).cancelled).toBeGreaterThanOrEqual(BACKLOG_WINDOW);
    await waitUntil(async () => (await deliveries(relay!, id)).cancelled === TOTAL, 20_000, () => 'the backlog was not all cancelled');
  }, 90_000);
});
