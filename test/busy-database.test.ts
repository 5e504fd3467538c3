import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { startRelay, type Relay } from '../src/relay.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { captureLog, request, startTestRelay, tempDir, TOKEN_A, type TestRelay } from './helpers/relay.js';

/*
 * Another process holding SQLite's write lock (here: a second connection in a transaction)
 * must not stall the relay: reads and /healthz go on, a write waits without blocking the event
 * loop and answers 503 with Retry-After when its wait runs out, and the dispatcher backs off.
 */

let relay: TestRelay | Relay | undefined;
let receiver: Receiver | undefined;
let holder: Database.Database | undefined;

afterEach(async () => {
  if (holder?.inTransaction) holder.exec('ROLLBACK');
  holder?.close();
  holder = undefined;
  await relay?.close();
  relay = undefined;
  await receiver?.close();
  receiver = undefined;
});

function holdWriteLock(databasePath: string) {
  holder = new Database(databasePath);
  holder.exec('BEGIN IMMEDIATE');
  return () => holder!.exec('COMMIT');
}

describe('a database locked by another process', () => {
  it('answers /healthz in milliseconds while a write waits, then the write answers 503 with Retry-After', async () => {
    const r = await startTestRelay({ RELAY_BUSY_TIMEOUT_MS: '1500' });
    relay = r;
    holdWriteLock(r.databasePath);
    const started = performance.now();
    const write = r.api('POST', '/v1/events', { type: 'x.y' });
    const health: number[] = [];
    for (let i = 0; i < 5; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const t = performance.now();
      const res = await fetch(`${r.url}/healthz`);
      expect(res.status).toBe(200);
      health.push(performance.now() - t);
    }
    // Reads go on too (WAL readers do not wait for the writer).
    expect((await r.api('GET', '/v1/events')).status).toBe(200);
    const res = await write;
    const waited = performance.now() - started;
    // A blocked event loop would hold each of these for the whole 1.5 s wait.
    expect(Math.max(...health)).toBeLessThan(500);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(waited).toBeGreaterThanOrEqual(1_400);
    // Nothing was stored; once the lock is gone the same request is stored.
    holder!.exec('ROLLBACK');
    expect((await r.api('GET', '/v1/events')).body.items).toHaveLength(0);
    expect((await r.api('POST', '/v1/events', { type: 'x.y' })).status).toBe(202);
  });

  it('lets a write through as soon as the lock is released within the wait', async () => {
    const r = await startTestRelay({ RELAY_BUSY_TIMEOUT_MS: '5000' });
    relay = r;
    const release = holdWriteLock(r.databasePath);
    setTimeout(release, 300);
    const started = performance.now();
    const res = await r.api('POST', '/v1/events', { type: 'x.y' });
    expect(res.status).toBe(202);
    expect(performance.now() - started).toBeGreaterThanOrEqual(250);
  });

  it('makes the dispatcher back off instead of retrying in a tight loop, and resume afterwards', async () => {
    receiver = await startReceiver();
    const { lines, log } = captureLog('info');
    const dataDir = tempDir();
    const config = loadConfig({
      RELAY_PORT: '0',
      RELAY_DATA_DIR: dataDir,
      RELAY_TOKENS: `${TOKEN_A}=project-a`,
      RELAY_BUSY_TIMEOUT_MS: '20',
      RELAY_SHUTDOWN_GRACE_MS: '500',
    });
    const r = await startRelay(config, log);
    relay = r;
    const created = await request(r.url, 'POST', '/v1/listeners', {
      workbook: '*',
      event_types: ['NOTIFICATION'],
      callback: { url: receiver.url('/hook') },
      retry: { schedule_ms: [100] },
    });
    expect(created.status).toBe(201);
    receiver.respond('/hook', [500, 200]);
    expect((await request(r.url, 'POST', '/v1/events', { type: 'x.y' })).status).toBe(202);
    await receiver.waitForCount('/hook', 1, 5_000);
    // The failed attempt waits to be recorded; the lock holds the dispatcher's write back.
    const release = holdWriteLock(config.databasePath);
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const failures = lines.filter((l) => l.msg.startsWith('recording attempts or claiming failed')).length;
    release();
    // Exponential backoff from 100 ms: about six tries in three seconds, not one per 20 ms.
    expect(failures).toBeGreaterThanOrEqual(2);
    expect(failures).toBeLessThanOrEqual(8);
    // Once the lock is gone the outcome is recorded and the retry goes out.
    await receiver.waitForCount('/hook', 2, 40_000);
    expect(lines.some((l) => l.msg.startsWith('the store answers again'))).toBe(true);
  }, 60_000);
});
