import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestSchema, TEST_DATABASE_URL, type TestSchema } from './helpers/backend.js';
import { workbook } from './helpers/engine.js';
import {
  countBy,
  deliveriesOf,
  groupBy,
  HookReceiver,
  killAllRelayChildren,
  sleep,
  startRelayChild,
  type DeliveryItem,
  type Hit,
  type RelayChild,
} from './helpers/multiprocess.js';
import { tempDir } from './helpers/relay.js';
import { ROOT, waitUntil } from './helpers/relay-process.js';

/*
 * Several real relay processes (`node dist/main.js`; run `npm run build` first) sharing one
 * queue in one PostgreSQL schema (the local server, database `test`; each test its own schema),
 * and a receiver in this process that knows which process sent each request.
 */

const dirs: string[] = [];
const receivers: HookReceiver[] = [];

afterAll(async () => {
  // Before the schemas are dropped (backend.ts's own afterAll runs after this one).
  await killAllRelayChildren();
  await Promise.all(receivers.map((r) => r.close().catch(() => {})));
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function dataDir(): string {
  const d = tempDir('relay-mp-');
  dirs.push(d);
  return d;
}

/** Two relays (role all) on one schema; `hosts` puts each in a UTS namespace with that hostname. */
async function twoRelays(schema: TestSchema, env: Record<string, string> = {}, hosts: [string, string] | [] = []): Promise<[RelayChild, RelayChild]> {
  const start = (i: 0 | 1) => startRelayChild({ ...schema.env, RELAY_DATA_DIR: dataDir(), ...env }, { host: hosts[i] });
  // One after the other: migrations racing is the business of its own test below.
  const a = await start(0);
  const b = await start(1);
  return [a, b];
}

async function receiverFor(relays: RelayChild[]): Promise<HookReceiver> {
  const r = await new HookReceiver(() => relays.map((x) => x.pid)).listen();
  receivers.push(r);
  return r;
}

const EVENT_TYPE = 'mp.test';
const events = (ids: string[], workbook = 'mp') => ({ events: ids.map((id, i) => ({ id, type: EVENT_TYPE, workbook, data: { i } })) });
const idsOf = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(5, '0')}`);

async function createListener(relay: RelayChild, rcv: HookReceiver, over: Record<string, unknown> = {}): Promise<{ id: string; secret: string }> {
  const res = await relay.api('POST', '/v1/listeners', {
    workbook: '*',
    event_types: ['NOTIFICATION'],
    // Not the relay's own events (a circuit opened by slow answers): only what the test posts.
    events: [EVENT_TYPE],
    callback: { url: rcv.url('/hook'), timeout_ms: 1000 },
    retry: { schedule_ms: [100, 200, 500, 1000, 1000, 1000, 1000, 1000, 1000, 1000] },
    ...over,
  });
  expect(res.status, res.text).toBe(201);
  return { id: res.body.id, secret: res.body.secret };
}

/**
 * Posts `ids` in batches of 100 through the relays in turn, four requests at a time. A batch
 * whose relay was killed with the request on its way goes to a live one with the same ids, as
 * a client would send it again. Resolves with the acknowledged ids and how many were re-sent.
 */
async function ingest(relays: RelayChild[], ids: string[], killed: () => RelayChild | null = () => null) {
  const batches = Array.from({ length: Math.ceil(ids.length / 100) }, (_, b) => ids.slice(b * 100, (b + 1) * 100));
  const acked: string[] = [];
  let resent = 0;
  let next = 0;
  const worker = async () => {
    while (next < batches.length) {
      const b = next++;
      let target = relays[b % relays.length];
      for (;;) {
        const res = await target.api('POST', '/v1/events', events(batches[b])).catch((err: Error) => err);
        if (res instanceof Error) {
          // Only the process this test killed may leave a request unanswered.
          if (killed() !== target) throw new Error(`POST /v1/events to relay ${target.pid} failed: ${res.message}`, { cause: res });
          target = relays.find((r) => r !== target)!;
          resent++;
          continue;
        }
        expect(res.status, res.text).toBe(202);
        expect(res.body.items.map((i: { id: string }) => i.id)).toEqual(batches[b]);
        acked.push(...batches[b]);
        break;
      }
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  return { acked, resent };
}

async function waitAllSucceeded(relay: RelayChild, listenerId: string, expected: number, timeoutMs: number): Promise<DeliveryItem[]> {
  let last: DeliveryItem[] = [];
  await waitUntil(
    async () => {
      last = await deliveriesOf(relay, listenerId);
      return last.length === expected && last.every((d) => d.status === 'succeeded');
    },
    timeoutMs,
    () => {
      const twice = [...groupBy(last, (d) => d.event_id)].filter(([, ds]) => ds.length > 1);
      return (
        `expected ${expected} succeeded deliveries, have ${last.length}: ${JSON.stringify(countBy(last, (d) => d.status))}` +
        (twice.length ? `; ${twice.length} events have several: ${JSON.stringify(twice.slice(0, 5))}` : '')
      );
    },
    500,
  );
  return last;
}

/**
 * Every request among `hits` that repeats a delivery sent before and is not explained: a retry
 * (a higher attempt number after one the relay recorded as failed) is the contract, and so is
 * a take-over when `takeOver` accepts the pair (a process that died had sent the earlier one).
 * Anything else is a delivery two processes held at once, or one sent again by mistake.
 */
async function unexplainedRepeats(hits: Hit[], relay: RelayChild, takeOver: (earlier: Hit, later: Hit) => boolean = () => false): Promise<string[]> {
  const problems: string[] = [];
  for (const [id, sent] of groupBy(hits, (h) => h.webhookId)) {
    if (sent.length === 1) continue;
    const record = await relay.api('GET', `/v1/deliveries/${id}`);
    expect(record.status, record.text).toBe(200);
    const recorded = new Map<number, { status_code: number | null; error: string | null }>(record.body.attempts.map((a: any) => [a.number, a]));
    const failed = (n: number) => {
      const a = recorded.get(n);
      return a !== undefined && (a.error !== null || a.status_code === null || a.status_code < 200 || a.status_code > 299);
    };
    const ordered = [...sent].sort((x, y) => x.at - y.at);
    for (let k = 1; k < ordered.length; k++) {
      const [earlier, later] = [ordered[k - 1], ordered[k]];
      if ((later.attempt > earlier.attempt && failed(earlier.attempt)) || takeOver(earlier, later)) continue;
      problems.push(
        `${id}: attempt ${later.attempt} from pid ${later.sender} at ${later.at} after attempt ${earlier.attempt} from pid ${earlier.sender} ` +
          `at ${earlier.at}, recorded as ${JSON.stringify(recorded.get(earlier.attempt) ?? 'missing')}`,
      );
    }
  }
  return problems;
}

/** The relays' warnings and errors, for a failure message. */
const loggedBy = (relays: Record<string, RelayChild>) =>
  Object.entries(relays)
    .map(([name, r]) => `logged by ${name}: ${JSON.stringify(r.troubles())}`)
    .join('; ');

describe('PostgreSQL: several relay processes share one queue', () => {
  it('two processes deliver 20,000 events with no double sends while both live; after kill -9 of one the other finishes its leased work', async () => {
    const PHASE = 10_000;
    const TIMEOUT_MS = 3000;
    const schema = await createTestSchema('mp_queue');
    const [a, b] = await twoRelays(schema);
    const rcv = await receiverFor([a, b]);
    rcv.delayMs = () => Math.random() * 5;
    // A short attempt timeout keeps the deliveries' leases (timeout + 5 s) short; long enough
    // that a loaded machine rarely turns a slow answer into a retry (a retry is allowed anyway).
    const listener = await createListener(a, rcv, { callback: { url: rcv.url('/hook'), timeout_ms: TIMEOUT_MS } });
    rcv.secret = listener.secret;

    // Phase 1: both live; every delivery is sent by exactly one of them.
    const t1 = Date.now();
    const first = idsOf('p1', PHASE);
    const phase1 = await ingest([a, b], first);
    expect(phase1.resent).toBe(0);
    await waitUntil(
      () => rcv.missing(first).length === 0,
      240_000,
      () => `${rcv.missing(first).length} of ${PHASE} events not received`,
      500,
    );
    await waitAllSucceeded(a, listener.id, PHASE, 60_000);
    const phase1Ms = Date.now() - t1;
    const phase1Hits = [...rcv.hits];
    expect(new Set(phase1Hits.map((h) => h.eventId))).toEqual(new Set(first));
    expect(await unexplainedRepeats(phase1Hits, a), loggedBy({ a, b })).toEqual([]);
    const senders1 = countBy(phase1Hits, (h) => String(h.sender));
    // Both dispatch. A request whose sender had already given up on it when the receiver took
    // the connection shows no sender: that try failed, so the delivery must have come again.
    expect(senders1[a.pid]).toBeGreaterThan(0);
    expect(senders1[b.pid]).toBeGreaterThan(0);
    const unknown = phase1Hits.filter((h) => h.sender !== a.pid && h.sender !== b.pid);
    expect(unknown.filter((h) => !phase1Hits.some((x) => x.webhookId === h.webhookId && x.at > h.at)).map((h) => `${h.webhookId} from ${h.sender}`)).toEqual([]);

    // Phase 2: slower answers keep deliveries in flight; kill -9 b once a third has arrived.
    rcv.delayMs = () => 50 + Math.random() * 100;
    const second = idsOf('p2', PHASE);
    const secondSet = new Set(second);
    const seen2 = new Set<string>();
    let killAt = 0;
    let inFlightAtKill: Hit[] = [];
    rcv.onHit = (hit) => {
      if (secondSet.has(hit.eventId)) seen2.add(hit.eventId);
      if (killAt !== 0 || seen2.size < PHASE / 3) return;
      const victims = rcv.inFlight().filter((h) => h.sender === b.pid);
      if (victims.length < 5) return;
      killAt = Date.now();
      inFlightAtKill = victims.map((h) => ({ ...h }));
      void b.kill9();
    };
    const t2 = Date.now();
    const phase2 = await ingest([a, b], second, () => (killAt ? b : null));
    await waitUntil(() => killAt > 0, 120_000, () => `b was never caught with 5 deliveries in flight (${seen2.size} phase-2 events seen)`, 100);
    expect((await b.exited).signal).toBe('SIGKILL');
    rcv.onHit = null;

    const acked = [...phase1.acked, ...phase2.acked];
    expect(new Set(acked)).toEqual(new Set([...first, ...second]));
    await waitUntil(
      () => rcv.missing(second).length === 0,
      240_000,
      () => `${rcv.missing(second).length} of ${PHASE} phase-2 events not received (b killed at ${killAt})`,
      500,
    );
    const deliveries = await waitAllSucceeded(a, listener.id, 2 * PHASE, 60_000);
    const phase2Ms = Date.now() - t2;

    // Every acknowledged event arrived, each as one delivery whose webhook-id is its id.
    expect(rcv.eventIds).toEqual(new Set(acked));
    const webhookIdsByEvent = groupBy(rcv.hits, (h) => h.eventId);
    const manyIds = [...webhookIdsByEvent].filter(([, hs]) => new Set(hs.map((h) => h.webhookId)).size !== 1).map(([e]) => e);
    expect(manyIds).toEqual([]);
    expect(new Set(deliveries.map((d) => d.id))).toEqual(new Set(rcv.hits.map((h) => h.webhookId)));
    expect(rcv.badSignatures).toEqual([]);

    // While both lived, nothing was sent twice.
    expect(await unexplainedRepeats(rcv.hits.filter((h) => h.at < killAt), a), loggedBy({ a, b })).toEqual([]);
    // Afterwards only what b had sent (and not recorded) comes again, from a, and not before b's
    // attempt could have timed out: a lease outlives the attempt it covers. (What b wrote just
    // before the signal reached it may arrive a moment after killAt.)
    const takeOver = (earlier: Hit, later: Hit) => earlier.sender === b.pid && later.sender === a.pid && later.at - earlier.at >= TIMEOUT_MS;
    expect(await unexplainedRepeats(rcv.hits, a, takeOver), loggedBy({ a })).toEqual([]);
    // b's deliveries that were in flight when it died were unrecorded: a sent each again.
    expect(inFlightAtKill.length).toBeGreaterThanOrEqual(5);
    for (const h of inFlightAtKill) {
      expect(rcv.hits.some((x) => x.webhookId === h.webhookId && x.sender === a.pid && x.at > killAt), h.webhookId).toBe(true);
    }

    const repeated = [...groupBy(rcv.hits, (h) => h.webhookId).values()].filter((hs) => hs.length > 1).length;
    console.log(
      `20,000 events over two processes: phase 1 ${phase1Ms} ms (sent by pid: ${JSON.stringify(senders1)}); phase 2 ${phase2Ms} ms, ` +
        `b killed after ${seen2.size} phase-2 events with ${inFlightAtKill.length} of its deliveries in flight; ` +
        `${phase2.resent} batches re-sent to a; ${rcv.hits.length} requests, ${repeated} webhook-ids more than once`,
    );
    await a.stop();
    await schema.drop();
  }, 600_000);

  it('a receiver that answers slowly, yet within the timeout, gets each delivery once from two live processes', async () => {
    const COUNT = 400;
    const TIMEOUT_MS = 3000;
    const schema = await createTestSchema('mp_slow');
    const [a, b] = await twoRelays(schema);
    const rcv = await receiverFor([a, b]);
    // Every answer takes most of the timeout: deliveries wait for connection slots after their
    // claim, and finished attempts wait for the next record; the lease must cover both.
    rcv.delayMs = () => 1500 + Math.random() * 700;
    const listener = await createListener(a, rcv, { callback: { url: rcv.url('/hook'), timeout_ms: TIMEOUT_MS } });
    rcv.secret = listener.secret;
    const ids = idsOf('slow', COUNT);
    const { acked } = await ingest([a, b], ids);
    await waitUntil(() => rcv.missing(acked).length === 0, 120_000, () => `${rcv.missing(acked).length} of ${COUNT} events not received`, 250);
    await waitAllSucceeded(a, listener.id, COUNT, 60_000);
    expect(await unexplainedRepeats(rcv.hits, a), loggedBy({ a, b })).toEqual([]);
    expect(rcv.badSignatures).toEqual([]);
    console.log(`slow receiver: ${COUNT} events, ${rcv.hits.length} requests, sent by pid ${JSON.stringify(countBy(rcv.hits, (h) => String(h.sender)))}`);
    await Promise.all([a.stop(), b.stop()]);
    await schema.drop();
  }, 240_000);

  it('a listener created, changed or deleted through one process routes the very next event on the other', async () => {
    const schema = await createTestSchema('mp_listeners');
    const [a, b] = await twoRelays(schema);
    const rcv = await receiverFor([a, b]);
    const deliveryListeners = async (relay: RelayChild, eventId: string) => {
      const res = await relay.api('GET', `/v1/events/${eventId}`);
      expect(res.status, res.text).toBe(200);
      return res.body.deliveries.map((d: { listener_id: string }) => d.listener_id);
    };
    const post = async (relay: RelayChild, id: string, wb: string) => {
      const res = await relay.api('POST', '/v1/events', events([id], wb));
      expect(res.status, res.text).toBe(202);
    };
    const SECRET = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
    rcv.secret = SECRET;
    const expected = new Set<string>(); // events that must arrive
    for (let round = 0; round < 6; round++) {
      // Odd rounds the other way round.
      const [writer, reader] = round % 2 === 0 ? [a, b] : [b, a];
      const wb = `wb-${round}`;
      // The reader has routed an event of the project already, so it holds compiled listeners.
      await post(reader, `warm-${round}`, wb);
      expect(await deliveryListeners(reader, `warm-${round}`)).toEqual([]);

      // One secret for all rounds: a late retry of an earlier round's delivery still verifies.
      const listener = await createListener(writer, rcv, { workbook: wb, secret: SECRET });
      await post(reader, `created-${round}`, wb);
      expect(await deliveryListeners(reader, `created-${round}`)).toEqual([listener.id]);
      expected.add(`created-${round}`);

      const patched = await writer.api('PATCH', `/v1/listeners/${listener.id}`, { workbook: `${wb}-moved` });
      expect(patched.status, patched.text).toBe(200);
      await post(reader, `patched-old-${round}`, wb);
      await post(reader, `patched-new-${round}`, `${wb}-moved`);
      expect(await deliveryListeners(reader, `patched-old-${round}`)).toEqual([]);
      expect(await deliveryListeners(reader, `patched-new-${round}`)).toEqual([listener.id]);
      expected.add(`patched-new-${round}`);

      // Wait for this listener's deliveries before its deletion cancels what is pending.
      await waitUntil(
        () => [`created-${round}`, `patched-new-${round}`].every((id) => rcv.hits.some((h) => h.eventId === id)),
        15_000,
        () => `round ${round}: deliveries not received`,
      );
      const deleted = await writer.api('DELETE', `/v1/listeners/${listener.id}`);
      expect(deleted.status, deleted.text).toBe(204);
      await post(reader, `deleted-${round}`, `${wb}-moved`);
      expect(await deliveryListeners(reader, `deleted-${round}`)).toEqual([]);
    }
    await sleep(500); // anything routed by mistake would arrive now
    expect(rcv.eventIds).toEqual(expected);
    for (const [eventId, hits] of groupBy(rcv.hits, (h) => h.eventId)) {
      expect(new Set(hits.map((h) => h.webhookId)).size, eventId).toBe(1);
    }
    expect(rcv.badSignatures).toEqual([]);
    await Promise.all([a.stop(), b.stop()]);
    await schema.drop();
  }, 120_000);

  it('two processes started together on an empty schema both come up, each migration applied once', async () => {
    const files = fs.readdirSync(path.join(ROOT, 'db', 'postgres')).filter((f) => /^\d+_.+\.sql$/.test(f)).sort();
    expect(files.length).toBeGreaterThan(0);
    for (let round = 0; round < 3; round++) {
      const schema = await createTestSchema('mp_migrate');
      const relays = await Promise.all([0, 1].map(() => startRelayChild({ ...schema.env, RELAY_DATA_DIR: dataDir() })));
      for (const relay of relays) {
        const ready = await relay.api('GET', '/readyz');
        expect(ready.status, ready.text).toBe(200);
      }
      const applied = await Promise.all(
        relays.map(async (r) => (await r.waitForLog((l) => l.msg === 'database migrated' || l.msg === 'database up to date')).migrations as string[]),
      );
      // Between them they applied every migration, and none twice.
      expect([...applied[0], ...applied[1]].sort()).toEqual(files);
      const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await client.connect();
      try {
        const { rows } = await client.query(`SELECT version, name FROM "${schema.schema}".schema_migrations ORDER BY version`);
        expect(rows.map((r) => r.name)).toEqual(files);
        expect(rows.map((r) => r.version)).toEqual(files.map((f) => Number.parseInt(f, 10)));
      } finally {
        await client.end();
      }
      await Promise.all(relays.map((r) => r.stop()));
      await schema.drop();
    }
  }, 120_000);

  it('executions run on both processes; a killed engine loses only its own tasks, and only when their leases end', async () => {
    const LEASE_MS = 2000;
    const schema = await createTestSchema('mp_engine');
    // Each process on a "host" of its own: a dead process on this host is recovered at once by
    // its pid, so only a process that looks remote shows the lease (as a second machine would).
    const [a, b] = await twoRelays(schema, { RELAY_TASK_LEASE_MS: String(LEASE_MS) }, ['relay-host-a', 'relay-host-b']);
    const rcv = await receiverFor([a, b]);

    const createWorkbook = async (source: string) => {
      const res = await a.api('POST', '/v1/workbooks', undefined, { raw: source, headers: { 'content-type': 'application/yaml' } });
      expect(res.status, res.text).toBe(201);
    };
    const launch = async (relay: RelayChild, wb: string, tag: string): Promise<string> => {
      const res = await relay.api('POST', '/v1/executions', { workbook: wb, workflow: 'main', input: { tag } });
      expect(res.status, res.text).toBe(201);
      return res.body.id;
    };
    const tasksOf = async (relay: RelayChild, executionId: string): Promise<any[]> => {
      const res = await relay.api('GET', `/v1/executions/${executionId}/tasks?limit=1000`);
      expect(res.status, res.text).toBe(200);
      return res.body.items;
    };
    const executionOf = async (relay: RelayChild, id: string) => (await relay.api('GET', `/v1/executions/${id}`)).body;

    // Part 1: short executions started through both processes all finish, each task once.
    await createWorkbook(
      workbook('quick', `
first: {action: std.noop, on-success: [second]}
second: {action: std.echo, input: {output: "<% $.tag %>"}, on-success: [third]}
third: {action: std.noop}`, ['tag']),
    );
    const quick = new Map<string, string>(); // execution id → tag
    await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        const tag = `quick-${i}`;
        quick.set(await launch(i % 2 === 0 ? a : b, 'quick', tag), tag);
      }),
    );
    await waitUntil(
      async () => (await Promise.all([...quick.keys()].map((id) => executionOf(b, id)))).every((e) => e.state === 'SUCCESS'),
      30_000,
      () => 'the quick executions did not all succeed',
      200,
    );
    for (const [id, tag] of quick) {
      const tasks = await tasksOf(a, id);
      expect(tasks.map((t) => [t.name, t.state, t.result, t.tries])).toEqual([
        ['first', 'SUCCESS', null, 1],
        ['second', 'SUCCESS', tag, 1],
        ['third', 'SUCCESS', null, 1],
      ]);
      const stored = (await b.api('GET', `/v1/events?execution_id=${id}&limit=1000`)).body.items.sort((x: any, y: any) => x.sequence - y.sequence);
      expect(stored.map((e: any) => (e.task_name ? `${e.type} ${e.task_name}` : e.type))).toEqual([
        'WORKFLOW_LAUNCHED',
        'TASK_LAUNCHED first',
        'TASK_SUCCEEDED first',
        'TASK_LAUNCHED second',
        'TASK_SUCCEEDED second',
        'TASK_LAUNCHED third',
        'TASK_SUCCEEDED third',
        'WORKFLOW_SUCCEEDED',
      ]);
      expect(stored.map((e: any) => e.sequence)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    }

    // Part 2: each task's std.http call is held by the receiver, so tasks stay in flight. Which
    // process runs a task is the process whose socket the call came on (read from /proc): exact,
    // whichever runner claimed it.
    rcv.hold();
    await createWorkbook(
      workbook('held', `
hold: {action: std.http, input: {url: "${rcv.url('/hold')}", method: POST, body: {tag: "<% $.tag %>"}, timeout: 120}, on-success: [after]}
after: {action: std.echo, input: {output: "<% $.tag %>"}}`, ['tag']),
    );
    const held = new Map<string, string>(); // tag → execution id
    const holdHits = () => rcv.hits.filter((h) => h.path === '/hold');
    const runBy = (pid: number) => holdHits().filter((h) => h.sender === pid);
    // Launched in pairs, one through each process, until each process runs at least two.
    for (let round = 0; round < 10 && (runBy(a.pid).length < 2 || runBy(b.pid).length < 2); round++) {
      for (const [relay, name] of [[a, 'a'], [b, 'b']] as const) {
        const tag = `held-${round}-${name}`;
        held.set(tag, await launch(relay, 'held', tag));
      }
      await waitUntil(() => holdHits().length === held.size, 10_000, () => `${holdHits().length} of ${held.size} held calls arrived`);
    }
    const hits = holdHits();
    expect(hits.every((h) => h.sender === a.pid || h.sender === b.pid), JSON.stringify(hits.map((h) => h.sender))).toBe(true);
    const tagsOf = (pid: number) => new Set(runBy(pid).map((h) => h.body.tag as string));
    const ofA = tagsOf(a.pid);
    const ofB = tagsOf(b.pid);
    expect(ofA.size).toBeGreaterThanOrEqual(2);
    expect(ofB.size).toBeGreaterThanOrEqual(2);
    expect(ofA.size + ofB.size).toBe(held.size);
    const holdTask = async (tag: string) => (await tasksOf(b, held.get(tag)!)).find((t) => t.name === 'hold');
    const statesOf = async (tags: Set<string>) => Promise.all([...tags].map(async (tag) => (await holdTask(tag)).state as string));

    // Both alive for longer than a lease: each renews its own, neither recovers the other's.
    await sleep(LEASE_MS * 1.5);
    expect(await statesOf(new Set(held.keys()))).toEqual([...held.keys()].map(() => 'RUNNING'));

    const killAt = Date.now();
    expect((await a.kill9()).signal).toBe('SIGKILL');
    // Renewed every third of the lease while a lived (50 ms for a late timer): no lease of a's could end before this.
    const earliestEnd = killAt + LEASE_MS - Math.floor(LEASE_MS / 3) - 50;
    await sleep(earliestEnd - 200 - Date.now());
    expect(await statesOf(ofA)).toEqual([...ofA].map(() => 'RUNNING'));

    await waitUntil(
      async () => (await statesOf(ofA)).every((s) => s === 'ERROR'),
      15_000,
      () => `a's tasks were not recovered within 15 s of the kill`,
      100,
    );
    const recoveredMs = Date.now() - killAt;
    for (const tag of ofA) {
      const task = await holdTask(tag);
      expect(task.state_info).toBe('interrupted by restart');
      expect(Date.parse(task.updated_at), `${tag} recovered ${Date.parse(task.updated_at) - killAt} ms after the kill`).toBeGreaterThanOrEqual(earliestEnd);
      const execution = await executionOf(b, held.get(tag)!);
      expect([execution.state, execution.state_info]).toEqual(['ERROR', 'task hold failed: interrupted by restart']);
      expect((await tasksOf(b, held.get(tag)!)).map((t) => t.name)).toEqual(['hold']);
    }
    // b's tasks go on: still waiting for their calls, untouched by the recovery.
    expect(await statesOf(ofB)).toEqual([...ofB].map(() => 'RUNNING'));
    const recovered = b.logs.filter((l) => l.msg.startsWith('tasks whose runner stopped')).reduce((n, l) => n + Number(l.interrupted), 0);
    expect(recovered).toBe(ofA.size);

    rcv.release();
    for (const tag of ofB) {
      const id = held.get(tag)!;
      await waitUntil(async () => (await executionOf(b, id)).state === 'SUCCESS', 15_000, () => `execution ${tag} did not succeed`, 100);
      expect((await tasksOf(b, id)).map((t) => [t.name, t.state, t.tries])).toEqual([
        ['hold', 'SUCCESS', 1],
        ['after', 'SUCCESS', 1],
      ]);
    }
    // No call was made again: the interrupted ones are not repeated, the live ones ran once.
    expect(countBy(holdHits(), (h) => h.body.tag)).toEqual(Object.fromEntries([...held.keys()].map((tag) => [tag, 1])));
    console.log(
      `engine on two hosts: ${quick.size} quick executions succeeded; ${ofA.size} tasks of the killed process recovered ` +
        `${recoveredMs} ms after the kill (lease ${LEASE_MS} ms), ${ofB.size} of the other finished`,
    );
    await b.stop();
    await schema.drop();
  }, 120_000);
});
