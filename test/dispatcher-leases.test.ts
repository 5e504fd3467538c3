import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createDispatcher, type Dispatcher } from '../src/dispatch/dispatcher.js';
import { createFanOut } from '../src/fanout/fanout.js';
import { createNetworkGuard } from '../src/net/network-guard.js';
import type { DeliveryQueue } from '../src/store/store.js';
import { openSqliteStore, type SqliteStore } from '../src/store/sqlite/index.js';
import { createHttpTransportModule } from '../src/transports/http-module.js';
import { createTransportRegistry } from '../src/transports/registry.js';
import { storedListener, taskEnvelope } from './helpers/envelopes.js';
import { tempDir } from './helpers/relay.js';

/*
 * A delivery may stay with its dispatcher longer than the lease it was claimed under (waiting
 * for its origin's slot behind a slow receiver): the dispatcher extends the lease in the store
 * before it ends there, and a renewal the store refused is tried again while the lease lasts,
 * so no other process takes over what this one still sends. A real SQLite store, whose
 * renewals fail once on purpose; a real HTTP receiver that answers slowly, one request at a time.
 */

const ANSWER_AFTER_MS = 1_800;

let store: SqliteStore | null = null;
let dispatcher: Dispatcher | null = null;
let server: http.Server | null = null;

afterEach(async () => {
  await dispatcher?.stop();
  store?.close();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  dispatcher = null;
  store = null;
  server = null;
});

describe('leases of deliveries a dispatcher holds', () => {
  it('are renewed before they end in the store, and a renewal that failed is tried again', async () => {
    server = http.createServer((req, res) => {
      req.resume();
      setTimeout(() => res.end('ok'), ANSWER_AFTER_MS);
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;

    const file = path.join(tempDir('relay-leases-'), 'relay.db');
    store = openSqliteStore({ path: file, durability: 'normal', busyTimeoutMs: 1000 });
    const s = store;
    await s.createListener(storedListener('l1', { callback: { transport: 'http', url, method: 'POST', headers: {}, format: 'json', timeout_ms: 2_000 } }));
    const routing = createFanOut();
    await s.appendEvents('p1', [1, 2, 3, 4].map((i) => ({ envelope: taskEnvelope({ id: `e${i}`, sequence: null }), original: null, bodyHash: `e${i}` })), routing, Date.now());

    // What the dispatcher asked of the store, and when; the first renewal is refused.
    const renewals: Array<{ at: number; ids: string[]; until: number; failed: boolean }> = [];
    const queue: DeliveryQueue = Object.create(s) as DeliveryQueue;
    queue.renewLeases = async (owner, ids, until) => {
      const failed = renewals.length === 0;
      renewals.push({ at: Date.now(), ids: [...ids], until, failed });
      if (failed) throw new Error('the database is restarting');
      return s.renewLeases(owner, ids, until);
    };

    const guard = createNetworkGuard({ allowNetworks: [], allowLoopback: true });
    dispatcher = createDispatcher({
      store: queue,
      transports: createTransportRegistry([createHttpTransportModule({ guard, connectionsPerOrigin: 1 })]),
      log: pino({ level: 'silent' }),
      // A lease of 5 s (no grace, the margin) and the listener's 2 s timeout: the fourth
      // delivery waits three answers (5.4 s) for the origin's one slot, then takes 1.8 s.
      shutdownGraceMs: 0,
      slotsPerOrigin: 1,
      routing,
    });
    const started = Date.now();
    dispatcher.start();

    // Read beside the store, as another process would see the queue (on SQLite a claim's lease
    // ends at the row's next_attempt_at).
    const reader = new Database(file, { readonly: true });
    const deadline = Date.now() + 20_000;
    let leaseEndedWhileHeld: string | null = null;
    try {
      for (;;) {
        const rows = reader.prepare("SELECT id, status, lease_owner, next_attempt_at AS leased_until FROM deliveries").all() as Array<{
          id: string;
          status: string;
          lease_owner: string | null;
          leased_until: number | null;
        }>;
        const now = Date.now();
        for (const d of rows) {
          if (d.status === 'pending' && d.lease_owner !== null && d.leased_until! < now) leaseEndedWhileHeld ??= `${d.id} at ${now - started} ms`;
        }
        if ((rows.length === 4 && rows.every((d) => d.status === 'succeeded')) || now > deadline) break;
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      reader.close();
    }
    expect((await s.listDeliveries('p1', { limit: 10 })).rows.map((d) => d.status)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded']);
    // The refused renewal was asked again within seconds, and then the store extended the lease.
    expect(renewals[0]?.failed).toBe(true);
    const again = renewals.find((r, i) => i > 0 && r.ids.some((id) => renewals[0].ids.includes(id)));
    expect(again, JSON.stringify(renewals)).toBeDefined();
    expect(again!.at - renewals[0].at).toBeLessThan(2_500);
    // And no lease held by the live dispatcher ended in the store while its delivery waited.
    expect(leaseEndedWhileHeld).toBeNull();
  }, 30_000);
});
