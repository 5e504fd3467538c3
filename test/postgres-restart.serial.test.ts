import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestSchema } from './helpers/backend.js';
import { countBy, deliveriesOf, groupBy, HookReceiver, killAllRelayChildren, sleep, startRelayChild } from './helpers/multiprocess.js';
import { tempDir } from './helpers/relay.js';
import { waitUntil } from './helpers/relay-process.js';

/*
 * The shared PostgreSQL server (127.0.0.1:5432) restarted, then stopped for a while and started,
 * under a real relay process (`node dist/main.js`; run `npm run build` first) that is ingesting
 * all along. Serial: it takes the server away from every other test.
 */

const run = promisify(execFile);

// The cluster's version is the one folder of /etc/postgresql (Debian's layout).
const versions = fs.readdirSync('/etc/postgresql').filter((d) => /^\d+$/.test(d));
if (versions.length !== 1) throw new Error(`expected one PostgreSQL cluster version in /etc/postgresql, found ${JSON.stringify(versions)}`);
const VERSION = versions[0];

/** True between a stop this file asked for and the start after it. */
let serverDown = false;

async function pgctl(action: 'restart' | 'stop' | 'start'): Promise<void> {
  if (action === 'stop') serverDown = true;
  try {
    await run('pg_ctlcluster', ['--skip-systemctl-redirect', VERSION, 'main', action], { timeout: 60_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`pg_ctlcluster ${VERSION} main ${action} failed: ${e.stderr || e.message}`, { cause: err });
  }
  if (action !== 'stop') serverDown = false;
}

async function waitPgReady(timeoutMs = 60_000): Promise<void> {
  await waitUntil(
    () => run('pg_isready', ['-h', '127.0.0.1', '-p', '5432', '-t', '1']).then(() => true, () => false),
    timeoutMs,
    () => 'pg_isready: the server does not accept connections',
    200,
  );
}

const dirs: string[] = [];
const receivers: HookReceiver[] = [];

afterAll(async () => {
  // Whatever failed, the server is up again before this file ends (and before its schema is dropped).
  if (serverDown) await pgctl('start');
  await waitPgReady();
  await killAllRelayChildren();
  await Promise.all(receivers.map((r) => r.close().catch(() => {})));
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

interface Answer {
  ids: string[];
  /** The HTTP status, or what went wrong instead of an answer. */
  status: number | string;
  retryAfter: string | null;
  duplicates: number;
  started: number;
  ended: number;
}

const events = (ids: string[]) => ({ events: ids.map((id, i) => ({ id, type: 'restart.test', workbook: 'restart', data: { i } })) });

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms))),
  ]);
}

describe('PostgreSQL restarted under a running relay', () => {
  it('ingest answers only 202 or 503 with Retry-After, /readyz follows the database, every acknowledged event arrives', async () => {
    const schema = await createTestSchema('pg_restart');
    const dir = tempDir('relay-pg-restart-');
    dirs.push(dir);
    const relay = await startRelayChild({ ...schema.env, RELAY_DATA_DIR: dir });
    const rcv = await new HookReceiver(() => [relay.pid]).listen();
    receivers.push(rcv);
    const created = await relay.api('POST', '/v1/listeners', {
      workbook: '*',
      event_types: ['NOTIFICATION'],
      callback: { url: rcv.url('/hook'), timeout_ms: 2000 },
      retry: { schedule_ms: [100, 200, 500, 1000, 1000, 1000, 1000, 1000, 1000, 1000] },
    });
    expect(created.status, created.text).toBe(201);
    rcv.secret = created.body.secret;

    const post = async (ids: string[]): Promise<Answer> => {
      const started = Date.now();
      const res = await withTimeout(relay.api('POST', '/v1/events', events(ids)), 15_000).catch((err: Error) => err);
      if (res instanceof Error) return { ids, status: `failed: ${res.message}`, retryAfter: null, duplicates: 0, started, ended: Date.now() };
      let duplicates = 0;
      if (res.status === 202) {
        expect(res.body.items.map((i: { id: string }) => i.id)).toEqual(ids);
        duplicates = res.body.items.filter((i: { duplicate: boolean }) => i.duplicate).length;
      }
      return { ids, status: res.status, retryAfter: res.headers.get('retry-after'), duplicates, started, ended: Date.now() };
    };

    // Two clients post batches of 10 all along; a 503 does not stop them (they probe on).
    const answers: Answer[] = [];
    let ingesting = true;
    let batch = 0;
    const client = async () => {
      while (ingesting) {
        const b = batch++;
        const answer = await post(Array.from({ length: 10 }, (_, i) => `restart-${String(b).padStart(5, '0')}-${i}`));
        answers.push(answer);
        if (answer.status !== 202) await sleep(50);
      }
    };
    const probes: Array<{ status: number | string; started: number; ended: number }> = [];
    const prober = async () => {
      while (ingesting) {
        const started = Date.now();
        const status = await withTimeout(relay.api('GET', '/readyz'), 10_000).then(
          (r) => r.status,
          (err: Error) => `failed: ${err.message}`,
        );
        probes.push({ status, started, ended: Date.now() });
        await sleep(25);
      }
    };
    const running = Promise.all([client(), client(), prober()]);
    const acceptedSince = (t: number) => answers.some((a) => a.status === 202 && a.started >= t);

    await sleep(1000);
    // A restart: the relay's connections are terminated under it.
    const restartStarted = Date.now();
    await pgctl('restart');
    const restartEnded = Date.now();
    await waitPgReady();
    await waitUntil(() => acceptedSince(restartEnded), 30_000, () => `no batch accepted after the restart (last: ${JSON.stringify(answers.at(-1)?.status)})`, 100);

    // Then down for three seconds, so the answers while it is unreachable can be told apart.
    await pgctl('stop');
    const downFrom = Date.now();
    // Meanwhile /metrics still answers, its queue gauges NaN, and a read is a 503 that says no
    // more than that (it had nothing to store).
    const [metrics, read] = await Promise.all([
      withTimeout(relay.api('GET', '/metrics'), 10_000),
      withTimeout(relay.api('GET', '/v1/listeners'), 10_000),
      sleep(3000),
    ]);
    const downUntil = Date.now();
    await pgctl('start');
    const upAt = Date.now();
    await waitPgReady();
    await waitUntil(() => acceptedSince(upAt), 30_000, () => `no batch accepted after the server came back (last: ${JSON.stringify(answers.at(-1)?.status)})`, 100);
    await waitUntil(() => probes.some((p) => p.status === 200 && p.started >= upAt), 30_000, () => `/readyz did not answer 200 after the server came back (last: ${JSON.stringify(probes.at(-1))})`, 100);
    await sleep(500);
    ingesting = false;
    await running;
    expect(relay.exit).toBeNull();

    // Every POST was answered, 202 or 503 (with Retry-After), nothing else.
    expect(answers.filter((a) => a.status !== 202 && a.status !== 503)).toEqual([]);
    expect(answers.filter((a) => a.status === 503 && !/^[1-9]\d*$/.test(a.retryAfter ?? ''))).toEqual([]);
    const whileDown = answers.filter((a) => a.started >= downFrom && a.ended <= downUntil);
    expect(whileDown.length).toBeGreaterThanOrEqual(3);
    expect(whileDown.filter((a) => a.status !== 503)).toEqual([]);
    // /readyz: 503 for as long as the server is unreachable, 200 again afterwards.
    expect(probes.filter((p) => p.status !== 200 && p.status !== 503)).toEqual([]);
    const probesDown = probes.filter((p) => p.started >= downFrom && p.ended <= downUntil);
    expect(probesDown.length).toBeGreaterThanOrEqual(10);
    expect(probesDown.filter((p) => p.status !== 503)).toEqual([]);
    expect((await relay.api('GET', '/readyz')).status).toBe(200);
    expect(metrics.status, metrics.text).toBe(200);
    // prom-client writes NaN as `Nan`, which Prometheus reads as NaN (its parser ignores case).
    expect(metrics.text.split('\n').filter((l) => l.startsWith('relay_deliveries_due'))).toEqual(['relay_deliveries_due Nan']);
    expect(metrics.text).toMatch(/^relay_events_ingested_total\{source="api"\} \d+$/m);
    expect(read.status, read.text).toBe(503);
    expect(read.body.detail).toMatch(/try again$/);
    expect(read.body.detail).not.toMatch(/nothing was stored/);
    expect(answers.find((a) => a.status === 503)).toBeDefined();

    // A client sends a refused batch again: accepted now, and marked duplicate where the refused
    // request had in fact been stored (a 503 promises nothing either way; a 202 promises storage).
    const refused = answers.filter((a) => a.status === 503);
    const resent = await Promise.all(refused.map((a) => post(a.ids)));
    expect(resent.filter((a) => a.status !== 202)).toEqual([]);
    const storedDespite503 = resent.reduce((n, a) => n + a.duplicates, 0);

    const acked = new Set([...answers, ...resent].filter((a) => a.status === 202).flatMap((a) => a.ids));
    const posted = new Set(answers.flatMap((a) => a.ids));
    expect(acked).toEqual(posted);
    await waitUntil(
      () => rcv.missing(acked).length === 0,
      90_000,
      () => `${rcv.missing(acked).length} of ${acked.size} acknowledged events never arrived`,
      250,
    );
    let deliveries = await deliveriesOf(relay, created.body.id);
    await waitUntil(
      async () => (deliveries = await deliveriesOf(relay, created.body.id)).every((d) => d.status === 'succeeded'),
      30_000,
      () => `deliveries not all succeeded: ${JSON.stringify(countBy(deliveries, (d) => d.status))}`,
      250,
    );
    // One delivery per event: nothing stored twice by a request answered 503 and sent again.
    expect(deliveries).toHaveLength(acked.size);
    expect(new Set(deliveries.map((d) => d.event_id))).toEqual(acked);
    expect(rcv.eventIds).toEqual(acked);
    for (const [eventId, hits] of groupBy(rcv.hits, (h) => h.eventId)) expect(new Set(hits.map((h) => h.webhookId)).size, eventId).toBe(1);
    expect(rcv.badSignatures).toEqual([]);

    // Each part that lost the database says, once it is back, that it carries on.
    const messages = () => relay.stdoutLines.map((line) => (line.startsWith('{') ? JSON.parse(line).msg : line));
    const resumed = ['the store answers again; dispatching resumes', 'listening for notifications again', 'the store answers again; the engine claims tasks again'];
    await waitUntil(() => resumed.every((m) => messages().includes(m)), 30_000, () => `not logged: ${resumed.filter((m) => !messages().includes(m)).join(' | ')}`, 100);

    const around = (from: number, to: number) => countBy(answers.filter((a) => a.ended >= from && a.started <= to), (a) => String(a.status));
    console.log(
      `PostgreSQL ${VERSION} restart took ${restartEnded - restartStarted} ms (POSTs overlapping it: ${JSON.stringify(around(restartStarted, restartEnded))}); ` +
        `down ${downUntil - downFrom} ms (POSTs: ${JSON.stringify(around(downFrom, downUntil))}, /readyz: ${JSON.stringify(countBy(probesDown, (p) => String(p.status)))}); ` +
        `${answers.length} POSTs in all (${JSON.stringify(countBy(answers, (a) => String(a.status)))}), ${refused.length} re-sent, ` +
        `${storedDespite503} events had been stored despite a 503; ${acked.size} events delivered`,
    );
    await relay.stop();
    await schema.drop();
  }, 240_000);
});
