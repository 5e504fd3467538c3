import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { request, tempDir } from './helpers/relay.js';
import {
  killAllRelays,
  Receiver,
  ROOT,
  runToExit,
  startRelayProcess,
  waitUntil,
  type RelayProcess,
} from './helpers/relay-process.js';

/*
 * Crash and restart behaviour with real processes: `node dist/main.js` children that are
 * killed with SIGKILL or stopped with SIGTERM, and a receiver in this process. Run
 * `npm run build` first.
 */

const TOKEN = 'crash-test-token-0123456789';
const EVENT_TYPE = 'crash.test';

const receivers: Receiver[] = [];
const dirs: string[] = [];

afterAll(async () => {
  await killAllRelays();
  await Promise.all(receivers.map((r) => r.close().catch(() => {})));
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function dataDir(): string {
  const d = tempDir('relay-crash-');
  dirs.push(d);
  return d;
}

async function receiver(options?: ConstructorParameters<typeof Receiver>[0]): Promise<Receiver> {
  const r = await new Receiver(options).listen();
  receivers.push(r);
  return r;
}

function env(dir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    RELAY_PORT: '0',
    RELAY_DATA_DIR: dir,
    RELAY_TOKENS: `${TOKEN}=p1`,
    RELAY_LOG_LEVEL: 'info',
    RELAY_SHUTDOWN_GRACE_MS: '0',
    ...extra,
  };
}

const api = (relay: RelayProcess, method: string, pathname: string, body?: unknown, token: string | null = TOKEN) =>
  request(relay.url, method, pathname, body, { token });

/** Creates a listener for every NOTIFICATION to the receiver and gives the receiver its secret. */
async function createListener(relay: RelayProcess, rcv: Receiver, callback: Record<string, unknown> = {}): Promise<string> {
  const res = await api(relay, 'POST', '/v1/listeners', {
    workbook: '*',
    event_types: ['NOTIFICATION'],
    callback: { url: rcv.url, ...callback },
    // Short retries: a try that failed because of the test's own timing comes back soon.
    retry: { schedule_ms: [100, 200, 500, 1000, 1000, 1000, 1000, 1000, 1000, 1000] },
    description: 'crash test',
  });
  expect(res.status, res.text).toBe(201);
  expect(res.body.secret).toMatch(/^whsec_/);
  rcv.secret = res.body.secret;
  return res.body.id;
}

const eventsOf = (ids: string[]) => ({ events: ids.map((id, i) => ({ id, type: EVENT_TYPE, workbook: 'crash', data: { i } })) });

/** Every delivery of a listener, paged through the API. */
async function deliveriesOf(relay: RelayProcess, listenerId: string): Promise<Array<{ id: string; event_id: string; status: string }>> {
  const all: Array<{ id: string; event_id: string; status: string }> = [];
  let cursor: string | null = null;
  do {
    const q: string = `/v1/deliveries?listener_id=${listenerId}&limit=1000${cursor ? `&cursor=${cursor}` : ''}`;
    const res = await api(relay, 'GET', q);
    expect(res.status, res.text).toBe(200);
    all.push(...res.body.items);
    cursor = res.body.next_cursor;
  } while (cursor);
  return all;
}

const countBy = <T>(items: T[], key: (t: T) => string) =>
  items.reduce<Record<string, number>>((acc, t) => ((acc[key(t)] = (acc[key(t)] ?? 0) + 1), acc), {});

/** Waits until the API says every delivery of the listener succeeded and there are `expected` of them. */
async function waitAllSucceeded(relay: RelayProcess, listenerId: string, expected: number, timeoutMs = 30_000) {
  let last: Array<{ id: string; event_id: string; status: string }> = [];
  await waitUntil(
    async () => {
      last = await deliveriesOf(relay, listenerId);
      return last.length === expected && last.every((d) => d.status === 'succeeded');
    },
    timeoutMs,
    () => `expected ${expected} succeeded deliveries, have ${last.length}: ${JSON.stringify(countBy(last, (d) => d.status))}`,
    250,
  );
  return last;
}

/** Ids of the deliveries the database file says succeeded (read-only, with no relay running). */
function succeededIn(dir: string): Set<string> {
  const db = new Database(path.join(dir, 'relay.db'), { readonly: true, fileMustExist: true });
  try {
    return new Set(db.prepare("SELECT id FROM deliveries WHERE status = 'succeeded'").pluck().all() as string[]);
  } finally {
    db.close();
  }
}

/** Failed tries recorded in the database file, counted by error code. */
function attemptErrorsIn(dir: string): Record<string, number> {
  const db = new Database(path.join(dir, 'relay.db'), { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare('SELECT error, count(*) AS n FROM attempts WHERE error IS NOT NULL GROUP BY error').all() as Array<{ error: string; n: number }>;
    return Object.fromEntries(rows.map((r) => [r.error, r.n]));
  } finally {
    db.close();
  }
}

function missingEvents(rcv: Receiver, ids: string[]): string[] {
  return ids.filter((id) => !rcv.byEventId.has(id));
}

describe('crash safety with real processes', () => {
  it('kill -9 mid-delivery loses nothing: every event arrives after restart, all deliveries succeed', async () => {
    const TOTAL = 2000;
    const dir = dataDir();
    const rcv = await receiver();
    let relay = await startRelayProcess(env(dir));
    const listenerId = await createListener(relay, rcv, { timeout_ms: 1000 });

    // Hold the first answers until all events are in, so the kill lands mid-delivery rather
    // than mid-ingest (at most a connection pool's worth arrives meanwhile).
    let openGate!: () => void;
    rcv.gate = new Promise((resolve) => (openGate = resolve));
    let seenAtKill = -1;
    const first = relay;
    rcv.onReceive = () => {
      if (seenAtKill < 0 && rcv.byEventId.size >= Math.round(TOTAL / 3)) {
        seenAtKill = rcv.byEventId.size;
        first.signal('SIGKILL');
      }
    };

    const ids = Array.from({ length: TOTAL }, (_, i) => `kill9-${String(i).padStart(4, '0')}`);
    // The batches go out together so the gate is closed for as short a time as possible.
    const ingestStarted = Date.now();
    const answers = await Promise.all(
      Array.from({ length: TOTAL / 100 }, (_, b) => api(relay, 'POST', '/v1/events', eventsOf(ids.slice(b * 100, (b + 1) * 100)))),
    );
    const ingestMs = Date.now() - ingestStarted;
    for (const res of answers) {
      expect(res.status, res.text).toBe(202);
      expect(res.body.items).toHaveLength(100);
    }
    expect(seenAtKill).toBe(-1);
    openGate();

    const exit = await relay.exited;
    expect(exit.signal).toBe('SIGKILL');
    expect(seenAtKill).toBeGreaterThan(0);
    expect(seenAtKill).toBeLessThan(TOTAL);
    rcv.onReceive = null;
    // What the killed process had recorded as succeeded must never be sent again.
    const succeededBeforeKill = succeededIn(dir);
    const receivedBeforeRestart = rcv.received.length;

    relay = await startRelayProcess(env(dir));
    await waitUntil(
      () => missingEvents(rcv, ids).length === 0,
      60_000,
      () => `${missingEvents(rcv, ids).length} of ${TOTAL} events never reached the receiver`,
    );
    const deliveries = await waitAllSucceeded(relay, listenerId, TOTAL, 30_000);

    expect(rcv.badSignatures).toEqual([]);
    // One delivery per event, and its webhook-id is the same on every try.
    expect(new Set(deliveries.map((d) => d.event_id)).size).toBe(TOTAL);
    for (const id of ids) expect(rcv.byEventId.get(id)?.size, id).toBe(1);
    expect(new Set(deliveries.map((d) => d.id))).toEqual(new Set(rcv.byWebhookId.keys()));
    const failedTries = attemptErrorsIn(dir);
    const resent = rcv.received.slice(receivedBeforeRestart).filter((r) => succeededBeforeKill.has(r.webhookId));
    expect(resent).toEqual([]);
    console.log(
      `kill -9 mid-delivery: ingest took ${ingestMs} ms; killed after ${seenAtKill}/${TOTAL} events seen (${succeededBeforeKill.size} recorded as succeeded); ` +
        `${rcv.received.length} requests received, ${rcv.duplicateWebhookIds} webhook-ids seen more than once; ` +
        `failed tries recorded: ${JSON.stringify(failedTries)}`,
    );
    await relay.stop();
  }, 120_000);

  it('kill -9 during ingest: every acknowledged batch is delivered, the interrupted one is all or nothing', async () => {
    const dir = dataDir();
    const rcv = await receiver();
    let relay = await startRelayProcess(env(dir));
    const listenerId = await createListener(relay, rcv, { timeout_ms: 1000 });

    const batchIds = (b: number) => Array.from({ length: 100 }, (_, i) => `ingest-${b}-${String(i).padStart(3, '0')}`);
    const accepted: number[] = [];
    let interrupted: number | null = null;
    const KILL_AFTER = 5;
    for (let b = 0; b < 20; b++) {
      const sending = api(relay, 'POST', '/v1/events', eventsOf(batchIds(b))).then(
        (res) => res,
        (err: Error) => err,
      );
      if (b === KILL_AFTER) {
        // The next request is on its way (maybe parsed, maybe committing): kill now.
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 10));
        await relay.kill9();
      }
      const res = await sending;
      if (res instanceof Error) {
        interrupted = b;
        break;
      }
      expect(res.status, res.text).toBe(202);
      accepted.push(b);
      if (b > KILL_AFTER) throw new Error('the relay was killed, yet a later batch was accepted');
    }
    expect(relay.exit?.signal).toBe('SIGKILL');
    // Nothing was sent after the killed process: a later batch would be refused (ECONNREFUSED).
    expect(accepted.length).toBeGreaterThanOrEqual(KILL_AFTER);

    relay = await startRelayProcess(env(dir));
    const acceptedIds = accepted.flatMap(batchIds);
    let expected = acceptedIds.length;
    let interruptedStored = 'none';
    if (interrupted !== null) {
      const statuses = await Promise.all(batchIds(interrupted).map((id) => api(relay, 'GET', `/v1/events/${id}`).then((r) => r.status)));
      const counts = countBy(statuses, String);
      // All or nothing: either the whole batch is stored or none of it.
      expect(Object.keys(counts), JSON.stringify(counts)).toHaveLength(1);
      expect(['200', '404']).toContain(Object.keys(counts)[0]);
      if (counts['200'] === 100) {
        acceptedIds.push(...batchIds(interrupted));
        expected += 100;
        interruptedStored = 'all';
      }
    }
    await waitUntil(
      () => missingEvents(rcv, acceptedIds).length === 0,
      60_000,
      () => `${missingEvents(rcv, acceptedIds).length} acknowledged events never reached the receiver`,
    );
    const deliveries = await waitAllSucceeded(relay, listenerId, expected, 30_000);
    expect(new Set(deliveries.map((d) => d.event_id))).toEqual(new Set(acceptedIds));
    expect(rcv.badSignatures).toEqual([]);

    // The event log holds exactly the acknowledged batches (and the interrupted one if stored).
    const events = await api(relay, 'GET', '/v1/events?limit=1000');
    expect(events.status).toBe(200);
    expect(new Set(events.body.items.map((e: { id: string }) => e.id))).toEqual(new Set(acceptedIds));
    console.log(
      `kill -9 during ingest: ${accepted.length} batches acknowledged; interrupted batch: ` +
        `${interrupted === null ? 'none (its request had been answered)' : `#${interrupted}, stored: ${interruptedStored}`}; ` +
        `${rcv.duplicateWebhookIds} webhook-ids seen more than once`,
    );
    await relay.stop();
  }, 120_000);

  it('SIGTERM lets deliveries in flight finish within the grace, records them, and leaves no lease', async () => {
    const GRACE = 2000;
    const COUNT = 40;
    const dir = dataDir();
    const rcv = await receiver({ delayMs: () => 300 });
    const extra = { RELAY_SHUTDOWN_GRACE_MS: String(GRACE) };
    let relay = await startRelayProcess(env(dir, extra));
    const listenerId = await createListener(relay, rcv, { timeout_ms: 5000 });

    const ids = Array.from({ length: COUNT }, (_, i) => `graceful-${i}`);
    const res = await api(relay, 'POST', '/v1/events', eventsOf(ids));
    expect(res.status, res.text).toBe(202);
    await waitUntil(() => rcv.inFlight >= 10, 10_000, () => `only ${rcv.inFlight} requests in flight at the receiver`, 5);
    const inFlightAtTerm = rcv.inFlight;

    const t0 = Date.now();
    relay.signal('SIGTERM');
    const exit = await relay.exited;
    const took = Date.now() - t0;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(took).toBeLessThan(GRACE + 1500);
    expect(relay.logs.some((l) => l.msg === 'stopped')).toBe(true);
    expect(relay.logs.filter((l) => l.msg.startsWith('released deliveries'))).toEqual([]);

    // Straight from the file: what the receiver got is succeeded, and nothing holds a lease.
    const db = new Database(path.join(dir, 'relay.db'), { readonly: true, fileMustExist: true });
    try {
      const rows = db.prepare('SELECT id, status, lease_owner FROM deliveries').all() as Array<{ id: string; status: string; lease_owner: string | null }>;
      expect(rows).toHaveLength(COUNT);
      expect(rows.filter((r) => r.lease_owner !== null)).toEqual([]);
      const byId = new Map(rows.map((r) => [r.id, r.status]));
      for (const webhookId of rcv.byWebhookId.keys()) expect(byId.get(webhookId), webhookId).toBe('succeeded');
    } finally {
      db.close();
    }
    const seenAtExit = rcv.byWebhookId.size;

    relay = await startRelayProcess(env(dir, extra));
    await waitAllSucceeded(relay, listenerId, COUNT, 30_000);
    await new Promise((resolve) => setTimeout(resolve, 1000)); // anything re-sent would arrive now
    expect(rcv.badSignatures).toEqual([]);
    expect(rcv.byWebhookId.size).toBe(COUNT);
    expect([...rcv.byWebhookId.entries()].filter(([, n]) => n > 1)).toEqual([]);
    expect(missingEvents(rcv, ids)).toEqual([]);
    console.log(
      `SIGTERM: ${inFlightAtTerm} in flight at the receiver, exit 0 after ${took} ms, ${seenAtExit}/${COUNT} delivered before exit, ` +
        `${rcv.duplicateWebhookIds} webhook-ids seen more than once`,
    );
    await relay.stop();
  }, 60_000);

  it('SIGTERM with a receiver slower than the grace: exits soon after the grace and releases what is unfinished', async () => {
    const GRACE = 500;
    const COUNT = 5;
    const dir = dataDir();
    const rcv = await receiver({ delayMs: () => 4000 });
    const extra = { RELAY_SHUTDOWN_GRACE_MS: String(GRACE) };
    let relay = await startRelayProcess(env(dir, extra));
    const listenerId = await createListener(relay, rcv, { timeout_ms: 10_000 });
    const ids = Array.from({ length: COUNT }, (_, i) => `slow-${i}`);
    expect((await api(relay, 'POST', '/v1/events', eventsOf(ids))).status).toBe(202);
    await waitUntil(() => rcv.inFlight === COUNT, 10_000, () => `${rcv.inFlight} of ${COUNT} in flight at the receiver`, 5);

    const t0 = Date.now();
    relay.signal('SIGTERM');
    const exit = await relay.exited;
    const took = Date.now() - t0;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(relay.logs.some((l) => l.msg.startsWith('released deliveries still in flight'))).toBe(true);
    const db = new Database(path.join(dir, 'relay.db'), { readonly: true, fileMustExist: true });
    try {
      const rows = db.prepare('SELECT status, lease_owner FROM deliveries').all() as Array<{ status: string; lease_owner: string | null }>;
      expect(rows).toEqual(Array.from({ length: COUNT }, () => ({ status: 'pending', lease_owner: null })));
    } finally {
      db.close();
    }

    // Released, not leased: the next process sends them again at once.
    rcv.delayMs = () => 0;
    relay = await startRelayProcess(env(dir, extra));
    await waitAllSucceeded(relay, listenerId, COUNT, 10_000);
    expect(rcv.badSignatures).toEqual([]);
    console.log(`SIGTERM with a slow receiver: exit 0 after ${took} ms (grace ${GRACE} ms)`);
    await relay.stop();
    // The grace bounds the shutdown, not the slowest receiver's answer (4 s here).
    expect(took).toBeLessThan(GRACE + 1500);
  }, 60_000);

  it('a burst to a receiver that answers in 100 ms records no TIMEOUT for requests that were never sent', async () => {
    const COUNT = 100;
    const dir = dataDir();
    const rcv = await receiver({ delayMs: () => 100 });
    // 4 sockets to the receiver: 100 requests of 100 ms each need about 2.5 s in all, while
    // each single request is answered well within its 1 s timeout.
    const relay = await startRelayProcess(env(dir, { RELAY_CONNECTIONS_PER_ORIGIN: '4' }));
    const listenerId = await createListener(relay, rcv, { timeout_ms: 1000 });
    const ids = Array.from({ length: COUNT }, (_, i) => `burst-${i}`);
    expect((await api(relay, 'POST', '/v1/events', eventsOf(ids))).status).toBe(202);
    await waitAllSucceeded(relay, listenerId, COUNT, 30_000);
    await relay.stop();

    const failedTries = attemptErrorsIn(dir);
    const db = new Database(path.join(dir, 'relay.db'), { readonly: true, fileMustExist: true });
    const attempts = db.prepare('SELECT count(*) FROM attempts').pluck().get() as number;
    db.close();
    console.log(
      `burst of ${COUNT} to a 100 ms receiver over 4 sockets: ${rcv.received.length} requests received, ` +
        `${attempts} attempts recorded, failed tries: ${JSON.stringify(failedTries)}`,
    );
    // Every request the receiver got was answered 200 in about 100 ms, far inside the timeout:
    // an attempt that timed out while it waited for a socket inside the relay is not a failed try.
    expect(failedTries).toEqual({});
    expect(attempts).toBe(COUNT);
  }, 60_000);

  it('a restart keeps the records and applies each migration once', async () => {
    const dir = dataDir();
    const rcv = await receiver();
    const files = fs.readdirSync(path.join(ROOT, 'db', 'sqlite')).filter((f) => /^\d+_.+\.sql$/.test(f)).sort();
    expect(files.length).toBeGreaterThan(0);

    let relay = await startRelayProcess(env(dir));
    const migrated = await relay.waitForLog((l) => l.msg === 'database migrated');
    expect(migrated.migrations).toEqual(files);
    const listenerId = await createListener(relay, rcv);
    const before = await api(relay, 'GET', `/v1/listeners/${listenerId}`);
    expect(before.status).toBe(200);
    expect(await relay.stop()).toEqual({ code: 0, signal: null });

    relay = await startRelayProcess(env(dir));
    const upToDate = await relay.waitForLog((l) => l.msg.startsWith('database'));
    expect(upToDate.msg).toBe('database up to date');
    expect(upToDate.migrations).toEqual([]);
    const after = await api(relay, 'GET', `/v1/listeners/${listenerId}`);
    expect(after.status).toBe(200);
    expect(after.body).toEqual(before.body);
    const list = await api(relay, 'GET', '/v1/listeners');
    expect(list.body.items.map((l: { id: string }) => l.id)).toEqual([listenerId]);
    expect(await relay.stop()).toEqual({ code: 0, signal: null });

    const db = new Database(path.join(dir, 'relay.db'), { readonly: true, fileMustExist: true });
    try {
      const rows = db.prepare('SELECT version, name FROM schema_migrations ORDER BY version').all() as Array<{ version: number; name: string }>;
      expect(rows.map((r) => r.name)).toEqual(files);
      expect(rows.map((r) => r.version)).toEqual(files.map((f) => Number.parseInt(f, 10)));
    } finally {
      db.close();
    }
  }, 60_000);

  it.concurrent.each([
    ['RELAY_PORT', 'abc'],
    ['RELAY_DURABILITY', 'fast'],
    ['RELAY_TOKENS', 'short=p'],
    ['RELAY_ALLOW_NETWORKS', '10.0.0.0/33'],
    ['RELAY_HEAP_GROWING_PERCENT', '0'],
  ])('refuses to start with %s=%s: exit code 2 and one line on stderr naming it', async (name, value) => {
    const dir = dataDir();
    const relay = await runToExit(env(dir, { [name]: value }));
    expect(relay.exit).toEqual({ code: 2, signal: null });
    const lines = relay.stderr.split('\n').filter((l) => l.trim() !== '');
    expect(lines, relay.stderr).toHaveLength(1);
    expect(lines[0]).toContain(name);
    expect(relay.stdoutLines.filter((l) => l.trim() !== '')).toEqual([]);
  }, 30_000);

  it('first start without RELAY_TOKENS creates admin.token (0600), names its path, never prints the token', async () => {
    const dir = dataDir();
    const noTokens = { RELAY_PORT: '0', RELAY_DATA_DIR: dir, RELAY_LOG_LEVEL: 'info' };
    const file = path.join(dir, 'admin.token');

    let relay = await startRelayProcess(noTokens);
    expect(fs.existsSync(file)).toBe(true);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const token = fs.readFileSync(file, 'utf8').trim();
    expect(token.length).toBeGreaterThanOrEqual(16);
    const named = relay.logs.filter((l) => Object.values(l).some((v) => typeof v === 'string' && v.includes(file)));
    expect(named.length).toBeGreaterThan(0);

    const without = await api(relay, 'GET', '/v1/listeners', undefined, null);
    expect(without.status).toBe(401);
    const wrong = await api(relay, 'GET', '/v1/listeners', undefined, 'not-the-admin-token-0123456789');
    expect(wrong.status).toBe(401);
    const withToken = await api(relay, 'GET', '/v1/listeners', undefined, token);
    expect(withToken.status).toBe(200);
    expect(await relay.stop()).toEqual({ code: 0, signal: null });
    expect(relay.output).not.toContain(token);

    relay = await startRelayProcess(noTokens);
    expect(fs.readFileSync(file, 'utf8').trim()).toBe(token);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect((await api(relay, 'GET', '/v1/listeners', undefined, token)).status).toBe(200);
    expect((await api(relay, 'GET', '/v1/listeners', undefined, null)).status).toBe(401);
    expect(await relay.stop()).toEqual({ code: 0, signal: null });
    expect(relay.output).not.toContain(token);
    expect(relay.logs.some((l) => Object.values(l).some((v) => typeof v === 'string' && v.includes(file)))).toBe(true);
  }, 60_000);
});
