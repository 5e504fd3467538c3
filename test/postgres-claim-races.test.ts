import pg from 'pg';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { admitCandidates, DEFAULT_BREAKER, initialGateState, judgeAttempts, type ListenerGateState } from '../src/dispatch/listener-gate.js';
import { createDispatcher, type Dispatcher } from '../src/dispatch/dispatcher.js';
import { createFanOut } from '../src/fanout/fanout.js';
import { createNetworkGuard } from '../src/net/network-guard.js';
import type { AttemptResult, ClaimedDelivery, ClaimOptions, NewEvent, RecordJudge, Store } from '../src/store/store.js';
import { openPostgresStore } from '../src/store/postgres/index.js';
import { createHttpTransportModule } from '../src/transports/http-module.js';
import { createTransportRegistry } from '../src/transports/registry.js';
import { createTestSchema, sql, TEST_DATABASE_URL, type TestSchema } from './helpers/backend.js';
import { storedListener, taskEnvelope } from './helpers/envelopes.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { waitUntil } from './helpers/relay-process.js';

/*
 * What a PostgreSQL claim or prune meets from transactions beside it, which SQLite's one writer
 * rules out: an event removed under a delivery (a replay racing the pruner: no foreign key joins
 * them), a listener enabled between the claim's pick and its settle, and a finished delivery
 * re-queued while the pruner is removing it, two dispatchers judging one new listener at once,
 * a claim that meets a listener's gate held by another dispatcher's cycle.
 * The local server, a schema of its own, the store's own statements.
 */

const P = 'p1';
let schema: TestSchema | null = null;
let store: Store | null = null;
let dispatcher: Dispatcher | null = null;
let receiver: Receiver | null = null;

afterEach(async () => {
  await dispatcher?.stop();
  await receiver?.close();
  dispatcher = null;
  receiver = null;
  await store?.close();
  await schema?.drop();
  store = null;
  schema = null;
});

const event = (id: string): NewEvent => ({ envelope: taskEnvelope({ id, sequence: null }), original: null, bodyHash: id });

function claimAll(now: number): ClaimOptions {
  return {
    owner: 'races-test',
    now,
    leaseMs: 60_000,
    transports: ['http'],
    allot: (due) => new Map(due.map((p) => [p, 100])),
    admit: (candidates) => ({ take: candidates.map((c) => c.id), defer: new Map(), changed: new Map() }),
  };
}

async function openStore(): Promise<Store> {
  schema = await createTestSchema('races');
  store = await openPostgresStore({ url: TEST_DATABASE_URL, schema: schema.schema, pool: 3, log: pino({ level: 'silent' }) });
  return store;
}

const deliveryRows = (s: TestSchema) =>
  sql<{ event_id: string; status: string; lease_owner: string | null; next_attempt_at: string | null; last_error: string | null }>(
    'SELECT e.id AS event_id, d.status, d.lease_owner, d.next_attempt_at, d.last_error FROM deliveries d LEFT JOIN events e ON e.seq = d.event_seq ORDER BY d.id',
    [],
    s.schema,
  );

/** Another session of the schema, in a transaction it has begun: `end` rolls back what it left open. */
async function otherSession(s: TestSchema): Promise<pg.Client> {
  const other = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await other.connect();
  await other.query(`SET search_path TO "${s.schema}"`);
  await other.query('BEGIN');
  return other;
}

/** Waits (up to 5 s) until a statement like `pattern` waits for a lock, or `settled()`; says whether one waits. */
async function waitsForLock(pattern: string, settled: () => boolean): Promise<boolean> {
  const waiting = async () => (await sql(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1`, [pattern])).length > 0;
  for (let i = 0; i < 200 && !settled() && !(await waiting()); i++) await new Promise((r) => setTimeout(r, 25));
  return waiting();
}

const pidOf = async (session: pg.Client) => (await session.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;

/**
 * How many sessions wait for session `pid`, or for a session that waits for it: polled (up to
 * 5 s) until `count` do.
 */
async function heldBy(pid: number, count: number): Promise<number> {
  const held = async () => {
    const [{ n }] = await sql<{ n: number }>(`WITH direct AS (SELECT pid FROM pg_stat_activity WHERE pg_blocking_pids(pid) && ARRAY[$1]::int[])
      SELECT (SELECT count(*) FROM direct)::int + (SELECT count(*) FROM pg_stat_activity
        WHERE pid NOT IN (SELECT pid FROM direct) AND pg_blocking_pids(pid) && ARRAY(SELECT pid FROM direct))::int AS n`, [pid]);
    return n;
  };
  for (let i = 0; i < 200 && (await held()) < count; i++) await new Promise((r) => setTimeout(r, 25));
  return held();
}

/** The store's one delivery failed a month ago, of an event received then: the pruner's to remove. */
async function failedLongAgo(s: Store) {
  await s.createListener(storedListener('l1', { project: P }));
  await s.appendEvents(P, [event('old')], createFanOut(), Date.now());
  const long = Date.now() - 30 * 86_400_000;
  await sql(`UPDATE deliveries SET status = 'failed', next_attempt_at = NULL, updated_at = $1`, [long], schema!.schema);
  await sql(`UPDATE events SET received_at = $1`, [long], schema!.schema);
  return long;
}

describe('PostgreSQL claims, prunes and re-queues beside other transactions', () => {
  it('cancels a delivery whose event is gone and sends the others of its batch', async () => {
    const s = await openStore();
    await s.createListener(storedListener('l1', { project: P }));
    await s.appendEvents(P, [event('gone'), event('kept')], createFanOut(), Date.now());
    // What the pruner leaves when a replay made a delivery of the event it was removing.
    await sql(`DELETE FROM events WHERE id = 'gone'`, [], schema!.schema);

    const now = Date.now();
    const { claimed } = await s.recordAndClaim('races-test', [], claimAll(now), now);
    expect(claimed.map((d) => JSON.parse(d.envelopeJson).id)).toEqual(['kept']);
    const rows = await deliveryRows(schema!);
    expect(rows).toHaveLength(2);
    const orphan = rows.find((r) => r.event_id === null)!;
    expect(orphan).toMatchObject({ status: 'cancelled', lease_owner: null, last_error: 'its event was pruned before it was sent' });
    expect(rows.find((r) => r.event_id === 'kept')).toMatchObject({ status: 'pending', lease_owner: 'races-test' });
  });

  it('leaves a delivery due when its listener is enabled while a claim that saw it disabled is settling', async () => {
    const s = await openStore();
    await s.createListener(storedListener('l1', { project: P }));
    await s.appendEvents(P, [event('retry')], createFanOut(), Date.now());
    // Disabled while its delivery was in flight: the delivery came back pending with its next
    // try set (disabling holds only what waits unleased).
    await sql(`UPDATE listeners SET enabled = false`, [], schema!.schema);

    // Another session enables it and has not committed yet.
    const other = await otherSession(schema!);
    try {
      await other.query('UPDATE listeners SET enabled = true');

      const now = Date.now();
      let settled = false;
      const claiming = s.recordAndClaim('races-test', [], claimAll(now), now).finally(() => (settled = true));
      // The claim picks the delivery of a listener it reads as disabled, then decides its hold
      // on the listener as it is: a row being changed is skipped, not waited for (a PATCH that
      // disables waits for the claim's deliveries), so the claim settles before the commit.
      for (let i = 0; i < 200 && !settled; i++) await new Promise((r) => setTimeout(r, 25));
      expect(settled).toBe(true);
      await other.query('COMMIT');
      const { claimed } = await claiming;
      expect(claimed).toEqual([]);
    } finally {
      await other.end();
    }
    // The enabling session released nothing (its delivery was not held when it looked), so the
    // delivery must still be due: held now, nothing would ever send it.
    const [row] = await deliveryRows(schema!);
    expect(row).toMatchObject({ event_id: 'retry', status: 'pending', lease_owner: null });
    expect(row.next_attempt_at).not.toBeNull();
    const later = Date.now();
    const { claimed } = await s.recordAndClaim('races-test', [], claimAll(later), later);
    expect(claimed.map((d) => JSON.parse(d.envelopeJson).id)).toEqual(['retry']);
  });

  it('holds a due delivery of a disabled listener, unscheduled, until the listener is enabled', async () => {
    const s = await openStore();
    await s.createListener(storedListener('l1', { project: P }));
    await s.appendEvents(P, [event('waits')], createFanOut(), Date.now());
    await sql(`UPDATE listeners SET enabled = false`, [], schema!.schema);

    const now = Date.now();
    const { claimed } = await s.recordAndClaim('races-test', [], claimAll(now), now);
    expect(claimed).toEqual([]);
    const [row] = await deliveryRows(schema!);
    expect(row).toMatchObject({ event_id: 'waits', status: 'pending', lease_owner: null, next_attempt_at: null });
  });

  it('keeps a finished delivery that a retry re-queued while the pruner was removing it', async () => {
    const s = await openStore();
    await failedLongAgo(s);

    // A manual retry (retry in deliveries.ts: the row locked, re-queued) that has not committed.
    const other = await otherSession(schema!);
    try {
      await other.query(`SELECT id FROM deliveries FOR UPDATE`);
      await other.query(`UPDATE deliveries SET status = 'pending', next_attempt_at = $1, updated_at = $1`, [Date.now()]);
      let done = false;
      // The cutoff is after the delivery was made (its id, a ULID, bounds what the pruner reads).
      const pruning = s.pruneFinished(Date.now() + 1_000, 100).finally(() => (done = true));
      // The pruner read the delivery as finished and waits for the retry's row lock.
      expect(await waitsForLock('%DELETE FROM deliveries%', () => done)).toBe(true);
      await other.query('COMMIT');
      expect(await pruning).toEqual({ deliveries: 0, events: 0, rollups: 0 });
    } finally {
      await other.end();
    }
    // The retry was answered 202: the delivery must be there, due, and its event with it.
    const [row] = await deliveryRows(schema!);
    expect(row).toMatchObject({ event_id: 'old', status: 'pending', lease_owner: null });
    const later = Date.now();
    const { claimed } = await s.recordAndClaim('races-test', [], claimAll(later), later);
    expect(claimed.map((d) => JSON.parse(d.envelopeJson).id)).toEqual(['old']);
  });

  it('leaves a delivery alone that a retry re-queued and a dispatcher leased while a replay of failed ones was re-queueing it', async () => {
    const s = await openStore();
    const long = await failedLongAgo(s);

    // Retried and claimed already (what a retry and the next claim leave), not committed yet.
    const other = await otherSession(schema!);
    try {
      await other.query(`SELECT id FROM deliveries FOR UPDATE`);
      await other.query(`UPDATE deliveries SET status = 'pending', lease_owner = 'sender', leased_until = $1, updated_at = $2`, [Date.now() + 60_000, Date.now()]);
      let done = false;
      const window = { since: long - 1_000, until: Date.now(), onlyFailed: true, after: null, limit: 100, scanLimit: 1_000 };
      const replaying = s.replay(P, 'l1', window, Object.assign(() => ['l1'], {}), Date.now()).finally(() => (done = true));
      expect(await waitsForLock('%UPDATE deliveries SET status%', () => done)).toBe(true);
      await other.query('COMMIT');
      expect((await replaying).count).toBe(0);
    } finally {
      await other.end();
    }
    // Still the sender's: re-queued over its lease, it would be sent twice at once.
    const [row] = await deliveryRows(schema!);
    expect(row).toMatchObject({ event_id: 'old', status: 'pending', lease_owner: 'sender' });
  });

  it('has two dispatchers judging a new listener\'s first attempts at once take turns, the second judging from the first\'s state', async () => {
    const a = await openStore();
    const b = await openPostgresStore({ url: TEST_DATABASE_URL, schema: schema!.schema, pool: 3, log: pino({ level: 'silent' }) });
    try {
      await a.createListener(storedListener('l1', { project: P }));
      await a.appendEvents(P, [event('e1'), event('e2')], createFanOut(), Date.now());
      const now = Date.now();
      const one = (owner: string): ClaimOptions => ({ ...claimAll(now), owner, allot: (due) => new Map(due.map((p) => [p, 1])) });
      const [da] = (await a.recordAndClaim('a', [], one('a'), now)).claimed;
      const [db] = (await b.recordAndClaim('b', [], one('b'), now)).claimed;
      expect([da, db].map((d) => d?.listenerId)).toEqual(['l1', 'l1']);

      const seen: Array<ListenerGateState | undefined> = [];
      const judge: RecordJudge = {
        routing: createFanOut(),
        judge(attempts, states, at) {
          seen.push(states.get('l1'));
          const j = judgeAttempts(attempts, states, at, DEFAULT_BREAKER);
          return { changed: j.changed, disable: j.disable, events: [] };
        },
        turnedOff: () => {
          throw new Error('nothing is turned off here');
        },
      };
      const succeeded = (d: ClaimedDelivery): AttemptResult => ({
        deliveryId: d.id, listenerId: d.listenerId, project: P, eventId: 'e', eventType: 'TASK_SUCCEEDED',
        attempt: { number: 1, started_at: now, duration_ms: 5, status_code: 200, error: null, response_excerpt: null },
        status: 'succeeded', nextAttemptAt: null, lastError: null, disableListener: null,
      });

      // Both cycles are held after their first statement (the rollups they write next wait for
      // this session's lock) until both have started: then neither has committed yet.
      const other = await otherSession(schema!);
      try {
        const pid = await pidOf(other);
        await other.query('LOCK TABLE listener_rollups IN EXCLUSIVE MODE');
        const recording = Promise.all([a.recordAndClaim('a', [succeeded(da)], null, now + 10, judge), b.recordAndClaim('b', [succeeded(db)], null, now + 10, judge)]);
        expect(await heldBy(pid, 2)).toBe(2);
        await other.query('ROLLBACK');
        await recording;
      } finally {
        await other.end();
      }
      // The second judged the first's attempt: both count in the breaker's window.
      expect(seen).toHaveLength(2);
      expect(seen[0]).toEqual(initialGateState(now + 10));
      expect(seen[1]).toMatchObject({ breaker: 'closed', window_attempts: 1, window_failures: 0 });
      expect((await a.listenerGates(P, ['l1'])).get('l1')).toMatchObject({ breaker: 'closed', window_attempts: 2, window_failures: 0 });
    } finally {
      await b.close();
    }
  });

  it('lets two dispatchers claiming a new rate-limited listener at once take one bucket between them', async () => {
    const a = await openStore();
    const b = await openPostgresStore({ url: TEST_DATABASE_URL, schema: schema!.schema, pool: 3, log: pino({ level: 'silent' }) });
    try {
      // One a second: a bucket of one token.
      await a.createListener(storedListener('l1', { project: P, rate_limit_per_s: 1 }));
      await a.appendEvents(P, ['e1', 'e2', 'e3', 'e4'].map(event), createFanOut(), Date.now());
      const now = Date.now();
      const gated = (owner: string): ClaimOptions => ({
        ...claimAll(now),
        owner,
        allot: (due) => new Map(due.map((p) => [p, 2])),
        admit: (candidates, listeners, at) => admitCandidates(candidates, listeners, at, DEFAULT_BREAKER),
      });
      // Both claims are held before they pick (its rollups wait for this session's lock), then go together.
      const other = await otherSession(schema!);
      let claimed: ClaimedDelivery[];
      try {
        const pid = await pidOf(other);
        await other.query('LOCK TABLE listener_rollups IN EXCLUSIVE MODE');
        const claiming = Promise.all([a.recordAndClaim('a', [], gated('a'), now), b.recordAndClaim('b', [], gated('b'), now)]);
        expect(await heldBy(pid, 2)).toBe(2);
        await other.query('ROLLBACK');
        claimed = (await claiming).flatMap((c) => c.claimed);
      } finally {
        await other.end();
      }
      expect(claimed).toHaveLength(1);
      expect((await a.listenerGates(P, ['l1'])).get('l1')).toMatchObject({ tokens: 0 });
    } finally {
      await b.close();
    }
  });

  it('leaves the deliveries of a listener whose gate another dispatcher holds due, and says how many it left', async () => {
    const s = await openStore();
    await s.createListener(storedListener('l1', { project: P }));
    await s.createListener(storedListener('l2', { project: P }));
    await s.appendEvents(P, [event('e1'), event('e2')], createFanOut(), Date.now());
    const now = Date.now();
    const gated: ClaimOptions = { ...claimAll(now), admit: (candidates, listeners, at) => admitCandidates(candidates, listeners, at, DEFAULT_BREAKER) };
    // Another dispatcher's cycle, between recording for l1 and its commit.
    const other = await otherSession(schema!);
    try {
      await other.query(`SELECT 1 FROM listener_gates WHERE listener_id = 'l1' FOR UPDATE`);
      const first = await s.recordAndClaim('races-test', [], gated, now);
      expect(first.claimed.map((d) => d.listenerId)).toEqual(['l2', 'l2']);
      expect(first.contended).toBe(2);
    } finally {
      await other.query('ROLLBACK');
      await other.end();
    }
    const second = await s.recordAndClaim('races-test', [], { ...gated, now: now + 1 }, now + 1);
    expect(second.claimed.map((d) => d.listenerId)).toEqual(['l1', 'l1']);
    expect(second.contended).toBe(0);
  });

  it('has a dispatcher whose claim met a gate held by another dispatcher look again at once, not at its next poll', async () => {
    receiver = await startReceiver();
    const s = await openStore();
    const callback = { transport: 'http' as const, url: receiver.url('/hook'), method: 'POST', headers: {}, format: 'json' as const, timeout_ms: 5_000 };
    await s.createListener(storedListener('l1', { project: P, callback }));
    await s.appendEvents(P, ['e1', 'e2', 'e3'].map(event), createFanOut(), Date.now());
    // What the dispatcher's claims met, observed beside the store.
    const contended: number[] = [];
    const queue = Object.create(s) as Store;
    queue.recordAndClaim = async (...args) => {
      const outcome = await s.recordAndClaim(...args);
      contended.push(outcome.contended);
      return outcome;
    };
    const other = await otherSession(schema!);
    let released = 0;
    try {
      await other.query(`SELECT 1 FROM listener_gates WHERE listener_id = 'l1' FOR UPDATE`);
      dispatcher = createDispatcher({
        store: queue,
        transports: createTransportRegistry([createHttpTransportModule({ guard: createNetworkGuard({ allowNetworks: [], allowLoopback: true }) })]),
        log: pino({ level: 'silent' }),
        shutdownGraceMs: 0,
        // No commit wakes it (the other transaction rolls back): without a look soon after,
        // the backlog would wait for this poll.
        idlePollMs: 60_000,
        routing: createFanOut(),
      });
      dispatcher.start();
      await waitUntil(() => contended.some((n) => n === 3), 10_000, () => `claims met ${JSON.stringify(contended)} held deliveries`);
      expect(receiver.requests()).toHaveLength(0);
    } finally {
      await other.query('ROLLBACK');
      released = Date.now();
      await other.end();
    }
    const requests = await receiver.waitForCount('/hook', 3, 10_000);
    expect(requests.map((r) => JSON.parse(r.text).id).sort()).toEqual(['e1', 'e2', 'e3']);
    expect(Math.max(...requests.map((r) => r.at)) - released).toBeLessThan(5_000);
  });
});
