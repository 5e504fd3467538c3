import fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { request, tempDir } from './helpers/relay.js';
import { killAllRelays, Receiver, startRelayProcess, waitUntil, type RelayProcess } from './helpers/relay-process.js';

/*
 * Deliveries a killed relay had claimed are sent by the next relay that starts on the same
 * machine as soon as it starts, not when their leases end; a relay that is alive keeps its
 * own. Real processes (`node dist/main.js`; run `npm run build` first) on one data folder, on
 * the backend of this run (SQLite, or a PostgreSQL schema of that folder), and a real receiver
 * that holds every request open until the test lets it answer.
 */

const TOKEN = 'restart-leases-token-0123456789';
const EVENT_TYPE = 'leases.test';
// Fewer than a listener's max_in_flight and an origin's connection slots (32 each), so all are in flight at once.
const TOTAL = 30;
// The lease of a claimed delivery outlives its attempt's timeout (the grace, 5 s and this), so
// without a sweep at start nothing would be sent again for over a minute.
const TIMEOUT_MS = 60_000;

const receivers: Receiver[] = [];
const dirs: string[] = [];

afterAll(async () => {
  await killAllRelays();
  await Promise.all(receivers.map((r) => r.close().catch(() => {})));
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

const env = (dir: string) => ({
  RELAY_PORT: '0',
  RELAY_DATA_DIR: dir,
  RELAY_TOKENS: `${TOKEN}=p1`,
  RELAY_LOG_LEVEL: 'info',
  RELAY_SHUTDOWN_GRACE_MS: '0',
});
const api = (relay: RelayProcess, method: string, pathname: string, body?: unknown) => request(relay.url, method, pathname, body, { token: TOKEN });

describe('leases of a relay that died', () => {
  it('are given back at once to the next relay started on this machine, and a live relay keeps its own', async () => {
    const dir = tempDir('relay-leases-');
    dirs.push(dir);
    const rcv = await new Receiver({ delayMs: () => 0 }).listen();
    receivers.push(rcv);
    let openGate!: () => void;
    rcv.gate = new Promise((resolve) => (openGate = resolve));

    const first = await startRelayProcess(env(dir));
    const created = await api(first, 'POST', '/v1/listeners', {
      workbook: '*',
      event_types: ['NOTIFICATION'],
      events: [EVENT_TYPE],
      callback: { url: rcv.url, timeout_ms: TIMEOUT_MS },
    });
    expect(created.status, created.text).toBe(201);
    rcv.secret = created.body.secret;
    const ids = Array.from({ length: TOTAL }, (_, i) => `lease-${i}`);
    const posted = await api(first, 'POST', '/v1/events', { events: ids.map((id) => ({ id, type: EVENT_TYPE, workbook: 'leases', data: {} })) });
    expect(posted.status, posted.text).toBe(202);
    // Every delivery is in flight: claimed (or handed over) by the first relay, held open by the receiver.
    await waitUntil(() => rcv.byEventId.size === TOTAL, 15_000, () => `${rcv.byEventId.size} of ${TOTAL} arrived`);

    // A second relay on the same database while the first lives: it takes none of the first's deliveries.
    const second = await startRelayProcess(env(dir));
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(rcv.received.length).toBe(TOTAL);
    expect(second.logs.filter((l) => l.msg.startsWith('gave back deliveries'))).toEqual([]);
    await second.stop();

    await first.kill9();
    const before = rcv.received.length;
    openGate();
    const killedAt = Date.now();
    const third = await startRelayProcess(env(dir));
    const line = await third.waitForLog((l) => l.msg.startsWith('gave back deliveries'));
    expect(line.deliveries).toBe(TOTAL);
    expect(line.owners).toEqual([expect.stringMatching(new RegExp(`:${first.pid}:[0-9a-f]{12}$`))]);
    // Sent again well before any lease could have ended.
    await waitUntil(
      () => ids.every((id) => rcv.received.slice(before).some((r) => r.eventId === id)),
      20_000,
      () => `${new Set(rcv.received.slice(before).map((r) => r.eventId)).size} of ${TOTAL} sent again`,
    );
    const tookMs = Date.now() - killedAt;
    expect(tookMs).toBeLessThan(TIMEOUT_MS);
    expect(rcv.badSignatures).toEqual([]);
    // The same delivery, its webhook-id unchanged, on its first recorded attempt.
    for (const id of ids) expect(rcv.byEventId.get(id)?.size, id).toBe(1);
    await waitUntil(
      async () => {
        const res = await api(third, 'GET', `/v1/deliveries?listener_id=${created.body.id}&limit=100`);
        return res.body.items.length === TOTAL && res.body.items.every((d: { status: string; attempt_count: number }) => d.status === 'succeeded' && d.attempt_count === 1);
      },
      10_000,
      () => 'not every delivery succeeded on its first recorded attempt',
    );
    console.log(`restart after kill -9 on ${third.backend}: ${TOTAL} deliveries held by the killed relay sent again ${tookMs} ms after the kill`);
    await third.stop();
  }, 90_000);
});

describe('a relay started on a backlog', () => {
  it("sends a listener's 20,000 deliveries that waited for it, while it learns how fast the receiver answers", async () => {
    const dir = tempDir('relay-backlog-');
    dirs.push(dir);
    const rcv = await new Receiver({ delayMs: () => 0 }).listen();
    receivers.push(rcv);
    const BACKLOG = 20_000;
    // An api process stores them; nothing sends them yet.
    const writer = await startRelayProcess({ ...env(dir), RELAY_ROLE: 'api' });
    const created = await api(writer, 'POST', '/v1/listeners', { workbook: '*', event_types: ['NOTIFICATION'], events: [EVENT_TYPE], callback: { url: rcv.url } });
    expect(created.status, created.text).toBe(201);
    rcv.secret = created.body.secret;
    for (let from = 0; from < BACKLOG; from += 1000) {
      const events = Array.from({ length: 1000 }, (_, i) => ({ id: `backlog-${from + i}`, type: EVENT_TYPE, workbook: 'leases', data: {} }));
      const posted = await api(writer, 'POST', '/v1/events', { events });
      expect(posted.status, posted.text).toBe(202);
    }
    await writer.stop();
    expect(rcv.received).toHaveLength(0);

    // Until its receiver has answered, the relay holds two rounds of the listener's and puts the
    // rest off for a moment: that must not keep it from sending those two rounds.
    const startedAt = Date.now();
    const relay = await startRelayProcess(env(dir));
    await waitUntil(() => rcv.byEventId.size === BACKLOG, 60_000, () => `${rcv.byEventId.size} of ${BACKLOG} arrived`);
    expect(rcv.badSignatures).toEqual([]);
    console.log(`backlog on ${relay.backend}: ${BACKLOG} deliveries sent ${Date.now() - startedAt} ms after the relay started; ${rcv.received.length} requests`);
    await relay.stop();
  }, 120_000);
});
