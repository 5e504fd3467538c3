import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { request, tempDir } from './helpers/relay.js';
import { killAllRelays, startRelayProcess, waitUntil, type RelayProcess } from './helpers/relay-process.js';
import { createEngineListener, eventsOf, oneToN, workbook, type Api } from './helpers/engine.js';

/*
 * kill -9 of a real relay process (`node dist/main.js`; run `npm run build` first) while
 * executions run std.http actions against a slow server. After a restart every execution ends
 * in a defined state, and the listener gets exactly the committed events, numbered without gaps.
 */

const TOKEN = 'engine-crash-token-0123456789';
const HOOK = '/hook';
const EXECUTIONS = 24;
const dirs: string[] = [];
const closers: Array<() => Promise<void>> = [];

afterAll(async () => {
  await killAllRelays();
  for (const close of closers) await close().catch(() => {});
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** Answers 200 after 100–400 ms, so a kill finds actions in flight. */
async function slowServer(): Promise<{ url: string; hits: () => number }> {
  let hits = 0;
  const server = http.createServer((req, res) => {
    hits++;
    req.resume();
    setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"slow":true}'), 100 + Math.random() * 300);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/work`, hits: () => hits };
}

const start = (dir: string) =>
  startRelayProcess({
    RELAY_PORT: '0',
    RELAY_DATA_DIR: dir,
    RELAY_TOKENS: `${TOKEN}=p1`,
    RELAY_LOG_LEVEL: 'info',
    RELAY_SHUTDOWN_GRACE_MS: '0',
  });

const apiOf = (relay: RelayProcess): Api => (method, pathname, body, opts = {}) => request(relay.url, method, pathname, body, { token: TOKEN, ...opts });

async function allExecutions(api: Api): Promise<any[]> {
  const res = await api('GET', '/v1/executions?workbook=crashy&limit=1000');
  return res.body.items;
}

describe('engine: kill -9 while actions run', () => {
  it('ends every execution in a defined state with its committed events delivered, gapless', async () => {
    const dir = tempDir('relay-engine-crash-');
    dirs.push(dir);
    const slow = await slowServer();
    const receiver: Receiver = await startReceiver();
    closers.push(() => receiver.close());

    let relay = await start(dir);
    let api = apiOf(relay);
    await createEngineListener(api, receiver.url(HOOK));
    const created = await api('POST', '/v1/workbooks', undefined, {
      headers: { 'content-type': 'application/yaml' },
      raw: workbook('crashy', `
first: {action: std.http, input: {url: "${slow.url}", method: POST, body: {step: 1}}, on-success: [second]}
second: {action: std.http, input: {url: "${slow.url}", method: POST, body: {step: 2}}, on-success: [done]}
done: {action: std.noop}`),
    });
    expect(created.status, created.text).toBe(201);
    const ids: string[] = [];
    for (let i = 0; i < EXECUTIONS; i++) {
      const res = await api('POST', '/v1/executions', { workbook: 'crashy', workflow: 'main' });
      expect(res.status, res.text).toBe(201);
      ids.push(res.body.id);
      await new Promise((resolve) => setTimeout(resolve, 15));
    }
    // Let some executions finish and catch the others with an action in flight.
    await waitUntil(() => slow.hits() >= EXECUTIONS, 10_000, () => `only ${slow.hits()} actions started`);
    const exit = await relay.kill9();
    expect(exit.signal).toBe('SIGKILL');

    relay = await start(dir);
    api = apiOf(relay);
    const finished = (await waitUntil(
      async () => {
        const list = await allExecutions(api);
        return list.length === EXECUTIONS && list.every((e) => e.state === 'SUCCESS' || e.state === 'ERROR') ? list : false;
      },
      20_000,
      () => 'executions did not all finish after the restart',
    )) as any[];
    let interrupted = 0;
    let httpTasks = 0;
    for (const execution of finished) {
      const tasks = (await api('GET', `/v1/executions/${execution.id}/tasks`)).body.items;
      httpTasks += tasks.filter((t: any) => t.action === 'std.http').length;
      expect(tasks.every((t: any) => t.state === 'SUCCESS' || t.state === 'ERROR')).toBe(true);
      if (execution.state === 'SUCCESS') {
        expect(tasks.map((t: any) => t.name)).toEqual(['first', 'second', 'done']);
        continue;
      }
      interrupted++;
      const failed = tasks.filter((t: any) => t.state === 'ERROR');
      expect(failed).toHaveLength(1);
      expect(failed[0].state_info).toBe('interrupted by restart');
      expect(execution.state_info).toBe(`task ${failed[0].name} failed: interrupted by restart`);
      expect(tasks[tasks.length - 1].id).toBe(failed[0].id);
    }
    expect(interrupted).toBeGreaterThan(0);
    // One call per std.http task at most (an interrupted one may not have reached the server): none repeated.
    expect(slow.hits()).toBeLessThanOrEqual(httpTasks);
    expect(slow.hits()).toBeGreaterThanOrEqual(httpTasks - interrupted);

    // Every committed event arrives, numbered 1..n per execution; no event that was not stored.
    // A delivery the killed process had claimed is given back as the restarted relay's
    // dispatcher starts (test/restart-leases.test.ts); the wait is a lease's length (the grace,
    // 0 here, 5 s and the callback's 15 s) with room to spare.
    for (const id of ids) {
      const stored = (await api('GET', `/v1/events?execution_id=${id}&limit=1000`)).body.items;
      const last = stored[stored.length - 1];
      expect(['WORKFLOW_SUCCEEDED', 'WORKFLOW_FAILED']).toContain(last.type);
      expect(stored.map((e: any) => e.sequence)).toEqual(oneToN(stored.length));
      await receiver.waitFor(() => eventsOf(receiver, HOOK, id).length >= stored.length, 40_000);
      const received = eventsOf(receiver, HOOK, id);
      expect(received.map((e) => e.id)).toEqual(stored.map((e: any) => e.id));
      expect(received.map((e) => e.sequence)).toEqual(oneToN(stored.length));
    }
    await relay.stop();
  }, 120_000);
});
