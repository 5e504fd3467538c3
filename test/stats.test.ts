import fs from 'node:fs';
import YAML from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LATENCY_BOUNDS_MS } from '../src/store/store.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { startTestRelay, tempDir, TOKEN_A, TOKEN_B, type TestRelay } from './helpers/relay.js';
import { boundCli, eventually, fieldsOf, okJson } from './helpers/spawn-relay.js';

// Endpoint health and delivery stats against a real relay and a real receiver: attempts that
// succeed, fail and are retried, and fail for good, read back from the rollups the dispatcher
// keeps; the CLI (the built bin, `npm run build` first) prints them.
const T = 60_000;

let relay: TestRelay;
let receiver: Receiver;
const dataDir = tempDir('relay-stats-');
const cli = boundCli(() => ({ relay: { url: relay.url, token: TOKEN_A }, workDir: dataDir }));

interface Totals {
  succeeded: number;
  failed: number;
  retried: number;
}
const totals = (series: Totals[]): Totals =>
  series.reduce((t, p) => ({ succeeded: t.succeeded + p.succeeded, failed: t.failed + p.failed, retried: t.retried + p.retried }), {
    succeeded: 0,
    failed: 0,
    retried: 0,
  });

/** The listeners of the first test: always 200; 500 once, then 200; always 500. One retry each. */
const ids = { ok: '', flaky: '', broken: '' };

async function createListener(path: string): Promise<string> {
  const r = await relay.api('POST', '/v1/listeners', {
    workbook: 'stats',
    event_types: ['NOTIFICATION'],
    callback: { url: receiver.url(path) },
    retry: { schedule_ms: [50] },
  });
  expect(r.status, r.text).toBe(201);
  return r.body.id;
}

async function finished(listenerId: string, count: number): Promise<boolean> {
  const r = await relay.api('GET', `/v1/deliveries?listener_id=${listenerId}`);
  return r.body.items.length === count && r.body.items.every((d: { status: string; in_flight: boolean }) => d.status !== 'pending' && !d.in_flight);
}

beforeAll(async () => {
  receiver = await startReceiver();
  relay = await startTestRelay({}, dataDir);
});

afterAll(async () => {
  await relay?.close();
  await receiver?.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe('health and stats of real deliveries', () => {
  it('count succeeded, retried and finally failed attempts per listener and for the project', async () => {
    receiver.respond('/flaky', [500, 200]);
    receiver.respond('/broken', [{ status: 500, body: 'down' }]);
    ids.ok = await createListener('/ok');
    ids.flaky = await createListener('/flaky');
    ids.broken = await createListener('/broken');

    const created = await relay.api('GET', `/v1/listeners/${ids.ok}`);
    expect(created.body.health).toEqual({ state: 'ok', success_rate_24h: null, p95_ms_24h: null, last_success_at: null, last_failure: null });

    const before = Date.now();
    const published = await relay.api('POST', '/v1/events', { events: [1, 2].map((n) => ({ id: `stats-${n}`, type: 'stats.tick', workbook: 'stats' })) });
    expect(published.status).toBe(202);
    for (const id of Object.values(ids)) await eventually(() => finished(id, 2), 20_000, `the deliveries of ${id} to finish`);
    const after = Date.now();

    // ok: 2 succeeded. flaky: its first request answers 500 (retried), the other two 200.
    // broken: each event is tried twice, both 500: one retried, then failed for good.
    const expected = {
      ok: { succeeded: 2, failed: 0, retried: 0 },
      flaky: { succeeded: 2, failed: 0, retried: 1 },
      broken: { succeeded: 0, failed: 2, retried: 2 },
    };
    const health: Record<keyof typeof ids, any> = Object.fromEntries(
      await Promise.all(Object.entries(ids).map(async ([name, id]) => [name, (await relay.api('GET', `/v1/listeners/${id}`)).body.health])),
    );
    expect(health.ok).toMatchObject({ state: 'ok', success_rate_24h: 1, last_failure: null });
    expect(health.flaky).toMatchObject({ state: 'ok', success_rate_24h: 0.6667, last_failure: { status_code: 500 } });
    expect(health.broken).toMatchObject({ state: 'ok', success_rate_24h: 0, last_success_at: null, last_failure: { status_code: 500 } });
    for (const h of Object.values(health)) expect(LATENCY_BOUNDS_MS).toContain(h.p95_ms_24h);
    for (const at of [health.ok.last_success_at, health.flaky.last_success_at, health.flaky.last_failure.at, health.broken.last_failure.at]) {
      expect(Date.parse(at)).toBeGreaterThanOrEqual(before);
      expect(Date.parse(at)).toBeLessThanOrEqual(after);
    }

    // The list shows each item's own health, the same as a read of one.
    const listed = await relay.api('GET', '/v1/listeners?workbook=stats');
    expect(Object.fromEntries(listed.body.items.map((l: { id: string; health: unknown }) => [l.id, l.health]))).toEqual({
      [ids.ok]: health.ok,
      [ids.flaky]: health.flaky,
      [ids.broken]: health.broken,
    });

    for (const [name, id] of Object.entries(ids) as Array<[keyof typeof ids, string]>) {
      const stats = await relay.api('GET', `/v1/listeners/${id}/stats?window=1h&bucket=1m`);
      expect(stats.status).toBe(200);
      expect(stats.body).toMatchObject({ window: '1h', bucket: '1m' });
      expect(stats.body.series).toHaveLength(60);
      expect([name, totals(stats.body.series)]).toEqual([name, expected[name]]);
      for (const p of stats.body.series) {
        if (p.succeeded + p.failed + p.retried === 0) expect(p).toMatchObject({ p50_ms: null, p95_ms: null });
        else expect([LATENCY_BOUNDS_MS.includes(p.p50_ms), LATENCY_BOUNDS_MS.includes(p.p95_ms)]).toEqual([true, true]);
      }
    }

    // The project's series sums its listeners; the default window is a day in 5-minute buckets.
    const project = await relay.api('GET', '/v1/stats');
    expect(project.status).toBe(200);
    expect(project.body).toMatchObject({ window: '24h', bucket: '5m' });
    expect(project.body.series).toHaveLength(288);
    expect(totals(project.body.series)).toEqual({ succeeded: 4, failed: 2, retried: 3 });
    const ats = project.body.series.map((p: { at: string }) => Date.parse(p.at));
    expect(ats.every((at: number, i: number) => at % 300_000 === 0 && (i === 0 || at - ats[i - 1] === 300_000))).toBe(true);
    expect(ats[287]).toBeLessThanOrEqual(Date.now());
    expect(ats[287] + 300_000).toBeGreaterThan(after);

    // Buckets of whole hours are summed from the hourly rollups, to the same totals.
    const week = await relay.api('GET', '/v1/stats?window=7d');
    expect(week.body).toMatchObject({ window: '7d', bucket: '1h' });
    expect(week.body.series).toHaveLength(168);
    expect(totals(week.body.series)).toEqual({ succeeded: 4, failed: 2, retried: 3 });
    expect(week.body.series.every((p: { at: string }) => Date.parse(p.at) % 3_600_000 === 0)).toBe(true);
    for (const [name, id] of Object.entries(ids) as Array<[keyof typeof ids, string]>) {
      const hourly = await relay.api('GET', `/v1/listeners/${id}/stats?window=30d&bucket=1d`);
      expect([name, hourly.body.series.length, totals(hourly.body.series)]).toEqual([name, 30, expected[name]]);
    }

    // Another project sees none of it.
    const other = await relay.api('GET', '/v1/stats?window=1h', undefined, { token: TOKEN_B });
    expect(totals(other.body.series)).toEqual({ succeeded: 0, failed: 0, retried: 0 });
  }, T);

  it('keep a deleted listener\'s attempts in the project\'s stats: its history, not its health', async () => {
    const created = await relay.api('POST', '/v1/listeners', { workbook: 'stats-deleted', event_types: ['NOTIFICATION'], callback: { url: receiver.url('/ok') } });
    expect(created.status, created.text).toBe(201);
    const id = created.body.id;
    const projectTotals = async () => totals((await relay.api('GET', '/v1/stats?window=1h&bucket=1m')).body.series);
    const before = await projectTotals();
    expect((await relay.api('POST', '/v1/events', { id: 'stats-deleted-1', type: 'stats.tick', workbook: 'stats-deleted' })).status).toBe(202);
    await eventually(() => finished(id, 1), 20_000, 'the delivery to finish');
    const counted = await projectTotals();
    expect(counted).toEqual({ ...before, succeeded: before.succeeded + 1 });

    expect((await relay.api('DELETE', `/v1/listeners/${id}`)).status).toBe(204);
    expect(await projectTotals()).toEqual(counted);
    expect((await relay.api('GET', `/v1/listeners/${id}/stats`)).status).toBe(404);
  }, T);

  it('answer 404 for another project\'s listener or an unknown one', async () => {
    for (const [path, token] of [
      [`/v1/listeners/${ids.ok}/stats`, TOKEN_B],
      ['/v1/listeners/01JD8XQ4ZQ6T1V9W7Y3R5K2M8N/stats', TOKEN_A],
    ] as const) {
      const r = await relay.api('GET', path, undefined, { token });
      expect(r.status).toBe(404);
      expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    }
    expect((await relay.api('GET', `/v1/listeners/${ids.ok}`, undefined, { token: TOKEN_B })).status).toBe(404);
  });

  it('refuse a bad window or bucket with a 400 naming it', async () => {
    const cases: Array<[string, 'window' | 'bucket', RegExp]> = [
      ['window=1w', 'window', /whole number and a unit/],
      ['window=24', 'window', /whole number and a unit/],
      ['window=31d', 'window', /at most 30d/],
      ['window=', 'window', /give one value/],
      ['window=1h&window=2h', 'window', /give one value/],
      ['bucket=30s', 'bucket', /whole number and a unit/],
      ['bucket=1.5h', 'bucket', /whole number and a unit/],
      ['window=1h&bucket=2h', 'bucket', /not be longer than the window/],
      ['window=30d&bucket=1m', 'bucket', /43200 points, more than 1440/],
      ['window=25h&bucket=1m', 'bucket', /1500 points/],
    ];
    for (const path of ['/v1/stats', `/v1/listeners/${ids.ok}/stats`]) {
      for (const [query, field, message] of cases) {
        const r = await relay.api('GET', `${path}?${query}`);
        expect([query, r.status, r.headers.get('content-type')]).toEqual([query, 400, 'application/problem+json; charset=utf-8']);
        expect(r.body.errors).toEqual([{ field, message: expect.stringMatching(message) }]);
        expect(r.body.detail).toMatch(new RegExp(`^${field}: `));
      }
    }
    const most = await relay.api('GET', '/v1/stats?window=24h&bucket=1m');
    expect(most.body.series).toHaveLength(1440);
    const month = await relay.api('GET', '/v1/stats?window=30d');
    expect(month.body).toMatchObject({ window: '30d', bucket: '3h' });
    expect(month.body.series).toHaveLength(240);
  });

  it('keep health read-only: a create or a patch that sends it is a 400 naming health', async () => {
    const health = { state: 'ok', success_rate_24h: 1, p95_ms_24h: 10, last_success_at: null, last_failure: null };
    const created = await relay.api('POST', '/v1/listeners', { workbook: 'stats', event_types: ['NOTIFICATION'], callback: { url: receiver.url('/x') }, health }, { validate: false });
    expect(created.status).toBe(400);
    expect(created.body.errors).toEqual([{ field: 'health', message: expect.stringMatching(/read-only/) }]);
    for (const patch of [{ health }, { health: null }, { description: 'x', health: { state: 'disabled' } }]) {
      const r = await relay.api('PATCH', `/v1/listeners/${ids.ok}`, patch, { validate: false });
      expect(r.status).toBe(400);
      expect(r.body.errors).toEqual([{ field: 'health', message: expect.stringMatching(/read-only/) }]);
    }
    expect((await relay.api('GET', `/v1/listeners/${ids.ok}`)).body.description).toBeNull();
  });

  it('prints the health and the series from the CLI', async () => {
    const table = await cli(['listener-stats', ids.flaky, '--window', '2h', '--bucket', '30m']);
    expect(table.stderr).toBe('');
    expect(table.code).toBe(0);
    const fields = Object.fromEntries([...table.stdout.matchAll(/^([a-z0-9_]+):\s+(.*)$/gm)].map((m) => [m[1], m[2]]));
    expect(fields).toMatchObject({ state: 'ok', success_rate_24h: '66.67%', window: '2h', bucket: '30m', p95_ms_24h: expect.stringMatching(/^\d+$/) });
    expect(fields.last_failure).toMatch(/^\d{4}-\d\d-\d\dT\S+Z \(.+\): .*500/);
    const lines = table.stdout.trim().split('\n');
    const header = lines.findIndex((l) => l.startsWith('AT'));
    expect(lines[header]).toMatch(/^AT\s+SUCCEEDED\s+FAILED\s+RETRIED\s+P50 MS\s+P95 MS$/);
    const rows = lines.slice(header + 1).map((l) => l.split(/\s+/));
    expect(rows).toHaveLength(4);
    expect(rows.every((r) => /^\d{4}-\d\d-\d\dT\d\d:[03]0Z$/.test(r[0]))).toBe(true);
    expect(totals(rows.map((r) => ({ succeeded: Number(r[1]), failed: Number(r[2]), retried: Number(r[3]) })))).toEqual({ succeeded: 2, failed: 0, retried: 1 });

    const json = okJson(await cli(['listener-stats', ids.broken, '-f', 'json', '--window', '1h']));
    expect(json).toMatchObject({ listener_id: ids.broken, health: { success_rate_24h: 0, last_failure: { status_code: 500 } }, window: '1h', bucket: '5m' });
    expect(json.series).toHaveLength(12);
    expect(totals(json.series)).toEqual({ succeeded: 0, failed: 2, retried: 2 });

    const csv = await cli(['listener-stats', ids.ok, '-f', 'csv', '-c', 'at', '-c', 'SUCCEEDED', '--window', '10m', '--bucket', '5m']);
    expect(csv.code).toBe(0);
    const csvLines = csv.stdout.trim().split('\n');
    expect(csvLines[0]).toBe('"at","succeeded"');
    expect(csvLines).toHaveLength(3);
    expect(csvLines.slice(1).reduce((n, l) => n + Number(l.split(',')[1]), 0)).toBe(2);

    const picked = await cli(['listener-stats', ids.ok, '-f', 'yaml', '-c', 'failed', '--window', '10m', '--bucket', '5m']);
    expect(picked.code).toBe(0);
    const doc = YAML.parse(picked.stdout);
    expect(doc).toMatchObject({ listener_id: ids.ok, health: { state: 'ok' }, window: '10m', bucket: '5m' });
    expect(doc.series).toEqual([{ failed: 0 }, { failed: 0 }]);

    // Usage mistakes are exit 2 before any request; the relay's refusals exit 1 naming the field.
    const badSpan = await cli(['listener-stats', ids.ok, '--bucket', '30s']);
    expect(badSpan).toMatchObject({ code: 2, stdout: '' });
    expect(badSpan.stderr).toMatch(/--bucket.*whole number and a unit/);
    const tooLong = await cli(['listener-stats', ids.ok, '--window', '31d']);
    expect(tooLong).toMatchObject({ code: 1, stdout: '' });
    expect(tooLong.stderr).toMatch(/^error: 400 .*window: at most 30d/);
    const missing = await cli(['listener-stats', '01JD8XQ4ZQ6T1V9W7Y3R5K2M8N']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^error: 404 /);
    const help = await cli(['listener-stats', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--window <span>/);
    expect(help.stdout).toMatch(/--bucket <span>/);

    const shown = await cli(['listener-show', ids.flaky]);
    expect(fieldsOf(shown.stdout).health).toMatch(/^ok; 66\.67% succeeded in 24 h; p95 \d+ ms; last failure .* \(.*500.*\)$/);
  }, T);

  it('say disabled for a listener turned off, and no_transport once its transport is not enabled', async () => {
    const off = await relay.api('PATCH', `/v1/listeners/${ids.broken}`, { enabled: false });
    expect(off.body.health).toMatchObject({ state: 'disabled', success_rate_24h: 0 });
    const before = (await relay.api('GET', `/v1/listeners/${ids.flaky}`)).body.health;

    // The same database under a relay that enables amqp only: the http listeners cannot be sent.
    await relay.close();
    relay = await startTestRelay({ RELAY_TRANSPORTS: 'amqp' }, dataDir);
    const listed = await relay.api('GET', '/v1/listeners?workbook=stats');
    const states = Object.fromEntries(listed.body.items.map((l: { id: string; health: { state: string } }) => [l.id, l.health.state]));
    expect(states).toEqual({ [ids.ok]: 'no_transport', [ids.flaky]: 'no_transport', [ids.broken]: 'disabled' });
    // What the rollups and outcomes say outlives the restart.
    expect((await relay.api('GET', `/v1/listeners/${ids.flaky}`)).body.health).toEqual({ ...before, state: 'no_transport' });
  }, T);
});
