import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DASHBOARD_CSP } from '../src/api/ui.js';
import { duration, percent, toLocalInput } from '../ui/format.js';
import { toColumns, totals } from '../ui/series.js';
import { createWorkbook, startExecution, workbook } from './helpers/engine.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { startTestRelay, TOKEN_A, type TestRelay } from './helpers/relay.js';

/*
 * The dashboard in a real headless Chromium (Debian's, driven by playwright-core) against a
 * real relay on port 0 and real receivers. Every page load is watched for CSP violations,
 * script errors and requests to any other origin. Screenshots of the main pages land in
 * test/artifacts/ (git-ignored) for a look after the run.
 */

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));
const BUILD_UI = fileURLToPath(new URL('../scripts/build-ui.mjs', import.meta.url));
// Pages poll every 3 s; a change shows within one or two turns.
const SEEN = { timeout: 15_000 };

let relay: TestRelay;
let receiver: Receiver;
let browser: Browser;
let context: BrowserContext;
let page: Page;
/** What went wrong in the page: CSP reports, uncaught errors, requests elsewhere. */
let problems: string[];
/** The test at hand expects a 404 from the API (the browser logs it as an error). */
let expectNotFound = false;
/** The test at hand expects a 400 from the API. */
let expectBadRequest = false;

// One workbook for the tests' events: a listener of `*` would also get the relay's own `relay.*` events.
const WORKBOOK = 'dashboard';

async function createListener(body: Record<string, unknown>): Promise<string> {
  const res = await relay.api('POST', '/v1/listeners', { workbook: WORKBOOK, event_types: ['NOTIFICATION'], ...body });
  expect(res.status, res.text).toBe(201);
  return res.body.id;
}

async function publish(type: string, data: Record<string, unknown> = {}): Promise<string> {
  const res = await relay.api('POST', '/v1/events', { type, workbook: WORKBOOK, data });
  expect(res.status, res.text).toBe(202);
  return res.body.items[0].id;
}

/** Polls the API until `check` holds for the listener's deliveries. */
async function deliveriesOf(listenerId: string, check: (items: any[]) => boolean, timeoutMs = 15_000): Promise<any[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await relay.api('GET', `/v1/deliveries?listener_id=${listenerId}`);
    if (check(res.body.items)) return res.body.items;
    if (Date.now() > deadline) throw new Error(`deliveries of ${listenerId} never matched: ${JSON.stringify(res.body.items)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function submitToken(token: string): Promise<void> {
  await page.goto(`${relay.url}/ui/`);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Use this token' }).click();
}

/** Signs in with project A's token and waits until the page is past the form. */
async function signIn(): Promise<void> {
  await submitToken(TOKEN_A);
  await page.getByRole('button', { name: 'Forget token' }).waitFor(SEEN);
}

const shot = (name: string) => page.screenshot({ path: `${ARTIFACTS}${name}.png`, fullPage: true });

beforeAll(async () => {
  // The bundle the relay serves is built from ui/ now, so this file never tests a stale build.
  execFileSync(process.execPath, [BUILD_UI], { stdio: 'inherit' });
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)`);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  receiver = await startReceiver();
  relay = await startTestRelay();
});

afterAll(async () => {
  await browser?.close();
  await relay?.close();
  await receiver?.close();
});

describe('dashboard helpers', () => {
  it('puts a stats answer on a full grid of buckets, a missing bucket as zero', () => {
    const minute = 60_000;
    const at = (m: number) => new Date(m * minute).toISOString();
    const point = (m: number, succeeded: number, failed: number, retried: number) => ({ at: at(m), succeeded, failed, retried, p50_ms: 10, p95_ms: 50 });
    const stats = { window: '5m', bucket: '1m', series: [point(101, 3, 1, 2), point(103, 1, 0, 0)] };
    expect(toColumns(stats, 104 * minute + 30_000)).toEqual([
      [100, 101, 102, 103, 104].map((m) => (m * minute) / 1000),
      [0, 3, 0, 1, 0],
      [0, 1, 0, 0, 0],
      [0, 2, 0, 0, 0],
    ]);
    expect(totals(stats)).toBe('4 succeeded, 1 failed, 2 retried');
  });

  it('writes durations and rates for people', () => {
    expect([0, 75.4, 1000, 2500, 12_345, 60_000, 61_000, 299_999, 5 * 3_600_000, 9_000_000].map(duration)).toEqual([
      '0 ms', '75 ms', '1 s', '2.5 s', '12.3 s', '1 min', '1 min 1 s', '5 min', '5 h', '2 h 30 min',
    ]);
    expect([null, 0, 1, 0.98765].map(percent)).toEqual(['no attempts', '0 %', '100 %', '98.8 %']);
  });
});

describe('dashboard files', () => {
  it('serves /ui, its client routes and its assets without a token, under a strict CSP and nothing inline', async () => {
    for (const path of ['/ui', '/ui/', '/ui/listeners/01JD8XQ4ZQ6T1V9W7Y3R5K2M8N', '/ui/events']) {
      const res = await fetch(relay.url + path);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/html/);
      expect(res.headers.get('content-security-policy')).toBe(DASHBOARD_CSP);
      expect(res.headers.get('cache-control')).toBe('no-cache');
      const html = await res.text();
      expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
      expect(html).not.toMatch(/\sstyle=|<style/);
    }
    const html = await (await fetch(`${relay.url}/ui`)).text();
    const assets = [...html.matchAll(/(?:src|href)="(\/ui\/assets\/[^"]+)"/g)].map((m) => m[1]);
    expect(assets.map((a) => a.split('.').pop()).sort()).toEqual(['css', 'js']);
    for (const asset of assets) {
      const res = await fetch(relay.url + asset);
      expect(res.status, asset).toBe(200);
      expect(res.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
      expect(res.headers.get('content-security-policy')).toBe(DASHBOARD_CSP);
    }
    const missing = await fetch(`${relay.url}/ui/assets/main-NOTHERE.js`);
    expect(missing.status).toBe(404);
    expect(missing.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  });
});

describe('dashboard in Chromium', { timeout: 60_000 }, () => {
  beforeEach(async () => {
    problems = [];
    expectNotFound = false;
    expectBadRequest = false;
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    page.on('console', (msg) => {
      const expected = /status of 401/.test(msg.text()) || (expectNotFound && /status of 404/.test(msg.text())) || (expectBadRequest && /status of 400/.test(msg.text()));
      if (msg.type() === 'error' && !expected) problems.push(`console: ${msg.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('request', (req) => {
      const url = req.url();
      if (!url.startsWith(`${relay.url}/`) && !url.startsWith('data:')) problems.push(`request to another origin: ${url}`);
    });
  });

  afterEach(async () => {
    await context.close();
    expect(problems).toEqual([]);
  });

  it('says a record is not there, without a spinner, and stops asking for it', async () => {
    expectNotFound = true;
    await signIn();
    const asked: string[] = [];
    page.on('request', (req) => {
      if (new URL(req.url()).pathname.startsWith('/v1/listeners/NOPE')) asked.push(req.url());
    });
    await page.goto(`${relay.url}/ui/listeners/NOPE`);
    const alert = page.getByRole('alert');
    await expect.poll(() => alert.textContent(), SEEN).toMatch(/The API answered 404/);
    // Longer than a poll: no second request, and no "Loading" beside the answer.
    await page.waitForTimeout(4_000);
    expect(asked).toHaveLength(1);
    expect(await page.getByText('Loading the listener').count()).toBe(0);
  });

  it('shows a refused list’s answer without "Loading", and links another engine’s execution id to its events', async () => {
    expectBadRequest = true;
    await signIn();
    await page.goto(`${relay.url}/ui/executions?state=bogus`);
    await expect.poll(() => page.getByRole('alert').textContent(), SEEN).toMatch(/The API answered 400.*state/);
    await page.waitForTimeout(1_000);
    expect(await page.getByText('Loading executions').count()).toBe(0);
    expect(await page.getByRole('option', { name: 'IDLE' }).count()).toBe(1);

    // An execution the relay holds no record of (posted by another engine) leads to its events.
    const posted = await relay.api('POST', '/v1/events', { type: 'TASK_SUCCEEDED', workbook: WORKBOOK, execution_id: 'elsewhere-1', task_name: 'charge' });
    expect(posted.status).toBe(202);
    await page.goto(`${relay.url}/ui/events?workbook=${WORKBOOK}`);
    await page.getByRole('link', { name: 'elsewhere-1' }).first().click();
    await expect.poll(() => page.url(), SEEN).toBe(`${relay.url}/ui/events?execution_id=elsewhere-1`);
    await page.getByRole('row').filter({ hasText: 'TASK_SUCCEEDED' }).first().waitFor(SEEN);
  });

  it('refuses a wrong token with the API’s 401, and keeps nothing', async () => {
    await submitToken('not-a-token-of-this-relay');
    const alert = page.getByRole('alert');
    await expect.poll(() => alert.textContent(), SEEN).toMatch(/The API answered 401 \(Unauthorized\).*not valid/);
    expect(await page.evaluate('sessionStorage.length')).toBe(0);
    // The focus goes back to the field, to paste again.
    expect(await page.evaluate('document.activeElement.id')).toBe('token');
    await shot('token-refused');
  });

  it('signs in, lists a listener created through the API with its health, and acts on it', async () => {
    const id = await createListener({ description: 'billing hooks', callback: { url: receiver.url('/billing'), headers: { 'X-Api-Key': 'k-123' } } });
    await publish('invoice.paid', { amount: 12 });
    await receiver.waitForCount('/billing', 1);

    await signIn();
    await expect.poll(() => page.getByRole('heading', { level: 1 }).textContent(), SEEN).toBe('Listeners');
    const row = page.getByRole('row', { name: /billing hooks/ });
    await row.waitFor(SEEN);
    expect(await row.textContent()).toContain(`POST ${receiver.url('/billing')}`);
    await expect.poll(async () => (await page.locator('.chart-summary').textContent()) ?? '', SEEN).toMatch(/\d+ succeeded, \d+ failed, \d+ retried/);
    await shot('listeners');

    // By keyboard: the listener's link, then Enter.
    await page.getByRole('link', { name: 'billing hooks' }).focus();
    await page.keyboard.press('Enter');
    await expect.poll(() => page.getByRole('heading', { level: 1 }).textContent(), SEEN).toBe('Listener billing hooks');
    expect(page.url()).toBe(`${relay.url}/ui/listeners/${id}`);
    // The header value stays masked, as the API gives it.
    await page.getByText('X-Api-Key: ***').waitFor(SEEN);
    await page.getByRole('row', { name: /invoice\.paid/ }).waitFor(SEEN);
    // A percentile from the rollups is its histogram bucket's upper bound, and says so.
    await expect.poll(async () => (await page.locator('.facts').first().textContent()) ?? '', SEEN).toMatch(/p95 duration, 24 h≤ \d+ ms/);

    await page.getByRole('button', { name: 'Ping' }).click();
    const status = page.getByRole('status').first();
    await expect.poll(() => status.textContent(), SEEN).toMatch(/PING sent as event/);
    await receiver.waitFor((all) => all.some((r) => r.path === '/billing' && JSON.parse(r.text).type === 'PING'));

    await page.getByRole('button', { name: 'Disable' }).click();
    await expect.poll(() => status.textContent(), SEEN).toMatch(/Listener disabled/);
    expect((await relay.api('GET', `/v1/listeners/${id}`)).body.enabled).toBe(false);
    await page.getByRole('button', { name: 'Enable' }).click();
    await expect.poll(() => status.textContent(), SEEN).toMatch(/Listener enabled/);
    expect((await relay.api('GET', `/v1/listeners/${id}`)).body.enabled).toBe(true);

    // The replay's outcome shows under its form, in view where its button was pressed, not
    // with the actions at the top of the page: first a window that ends before it starts.
    const replayStatus = page.getByRole('region', { name: 'Replay a window' }).getByRole('status');
    expectBadRequest = true;
    await page.getByLabel('From').fill(toLocalInput(Date.now() - 3_600_000));
    await page.getByLabel('Until (empty: now)').fill(toLocalInput(Date.now() - 7_200_000));
    await page.getByRole('button', { name: 'Replay' }).click();
    await expect.poll(() => replayStatus.textContent(), SEEN).toMatch(/until.*must be after since/);
    const shown = await replayStatus.boundingBox();
    expect(shown).not.toBeNull();
    expect(shown!.y).toBeGreaterThanOrEqual(0);
    expect(shown!.y + shown!.height).toBeLessThanOrEqual(await page.evaluate('window.innerHeight'));
    expect(await status.textContent()).toMatch(/Listener enabled/);
    expectBadRequest = false;
    // The window's one event (a PING is never replayed) gets a new delivery.
    await page.getByLabel('Until (empty: now)').fill('');
    await page.getByRole('button', { name: 'Replay' }).click();
    await expect.poll(() => replayStatus.textContent(), SEEN).toMatch(/^1 new delivery created\./);
    await receiver.waitFor((all) => all.filter((r) => r.path === '/billing' && JSON.parse(r.text).type === 'invoice.paid').length === 2);

    await page.getByRole('button', { name: 'Rotate secret…' }).click();
    await page.getByRole('button', { name: 'Rotate now' }).click();
    const secret = page.locator('.secret-value');
    await secret.waitFor(SEEN);
    expect(await secret.textContent()).toMatch(/^whsec_/);
    await shot('listener');

    // The PING shows in the event log, found with the type filter.
    await page.getByRole('link', { name: 'Event log' }).click();
    await page.getByLabel('Event type').fill('PING');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await expect.poll(() => page.url(), SEEN).toBe(`${relay.url}/ui/events?type=PING`);
    const pings = page.getByRole('row').filter({ hasText: 'PING' });
    await pings.first().waitFor(SEEN);
    expect(await page.getByRole('row').filter({ hasText: 'invoice.paid' }).count()).toBe(0);
    await shot('events');
    // Back and forward change the address under the form, and the form shows what is applied.
    await page.goBack();
    await expect.poll(() => page.url(), SEEN).toBe(`${relay.url}/ui/events`);
    await expect.poll(() => page.getByLabel('Event type').inputValue(), SEEN).toBe('');
    await page.goForward();
    await expect.poll(() => page.getByLabel('Event type').inputValue(), SEEN).toBe('PING');
  });

  it('shows a delivery that failed twice, then succeeded, with its three attempts', async () => {
    receiver.respond('/flaky', [{ status: 500, body: 'database is down' }, { status: 500, body: 'still down' }, { status: 200, body: 'ok' }]);
    const id = await createListener({ description: 'flaky receiver', callback: { url: receiver.url('/flaky') }, retry: { schedule_ms: [100, 100] } });
    await publish('order.created');
    const [delivery] = await deliveriesOf(id, (items) => items[0]?.status === 'succeeded');

    await signIn();
    await page.getByRole('link', { name: 'flaky receiver' }).click();
    await page.getByRole('link', { name: delivery.id }).click();
    await expect.poll(() => page.getByRole('heading', { name: /^Attempts/ }).textContent(), SEEN).toBe('Attempts (3)');
    const attempts = page.locator('table.attempts tbody tr');
    expect(await attempts.count()).toBe(3);
    expect(await attempts.nth(0).textContent()).toMatch(/500✗ failed: HTTP_ERROR.*database is down/);
    expect(await attempts.nth(1).textContent()).toMatch(/500✗ failed: HTTP_ERROR.*still down/);
    expect(await attempts.nth(2).textContent()).toMatch(/200✓ succeeded.*ok/);
    expect(await page.locator('.facts').first().textContent()).toMatch(/Status✓ succeeded/);
    await shot('delivery');
    // On a phone the page keeps to the screen's width: long ids wrap, tables scroll in their box.
    await page.setViewportSize({ width: 375, height: 800 });
    await expect.poll(() => page.evaluate<number>('document.documentElement.scrollWidth'), SEEN).toBeLessThanOrEqual(375);
    await shot('delivery-phone');
  });

  it('re-queues failed deliveries with the retry buttons and shows them succeed', async () => {
    receiver.respond('/down', [503]);
    const id = await createListener({ description: 'down receiver', callback: { url: receiver.url('/down') }, retry: { schedule_ms: [] } });
    await publish('order.shipped');
    await publish('order.shipped');
    const failed = await deliveriesOf(id, (items) => items.length === 2 && items.every((d) => d.status === 'failed'));
    receiver.respond('/down', [200]);

    await signIn();
    await page.goto(`${relay.url}/ui/deliveries/${failed[0].id}`);
    await page.getByText('✗ failed').first().waitFor(SEEN);
    await page.getByRole('button', { name: 'Retry now' }).click();
    // Due now, not "sent now": the listener's gate (disabled, circuit, rate limit) still decides.
    await expect.poll(() => page.getByRole('status').first().textContent(), SEEN).toMatch(/^Re-queued: the delivery is pending, due now with the same webhook-id; it goes once its listener lets it/);
    await expect.poll(() => page.locator('.facts').first().textContent(), SEEN).toMatch(/Status✓ succeeded/);
    await expect.poll(() => page.getByRole('heading', { name: /^Attempts/ }).textContent(), SEEN).toBe('Attempts (2)');
    const sent = receiver.requests('/down').filter((r) => r.headers['webhook-id'] === failed[0].id);
    expect(sent.map((r) => r.headers['webhook-attempt'])).toEqual(['1', '2']);

    // The listener's "Retry failed deliveries" re-queues the other one.
    await page.getByRole('link', { name: id }).click();
    await page.getByRole('button', { name: 'Retry failed deliveries' }).click();
    await expect.poll(() => page.getByRole('status').first().textContent(), SEEN).toMatch(/^1 failed delivery re-queued\./);
    const recent = page.getByRole('table', { name: /latest 20 deliveries/ });
    await expect.poll(async () => (await recent.textContent())?.match(/✓ succeeded/g)?.length ?? 0, SEEN).toBe(2);
    await deliveriesOf(id, (items) => items.every((d) => d.status === 'succeeded'));
    // Nothing failed is left: the answer says what counts as failed.
    await page.getByRole('button', { name: 'Retry failed deliveries' }).click();
    await expect.poll(() => page.getByRole('status').first().textContent(), SEEN).toMatch(/^0 failed deliveries re-queued\. A delivery is failed once its last try failed/);
  });

  it('shows an execution’s tasks as a timeline, re-runs a failed task, and pauses, resumes and cancels', async () => {
    await createWorkbook(
      relay.api,
      workbook(
        'ui_broken',
        `
first: {action: std.echo, input: {output: {greeting: hello}}, on-success: [second]}
second: {action: std.fail, input: {error_message: "the vendor API said no"}}`,
      ),
    );
    const broken = await startExecution(relay.api, 'ui_broken');
    await createWorkbook(relay.api, workbook('ui_slow', 'nap: {action: std.sleep, input: {seconds: 60}}'));
    const slow = await startExecution(relay.api, 'ui_slow');

    await signIn();
    await page.getByRole('link', { name: 'Executions' }).click();
    await page.getByRole('link', { name: broken }).click();
    await expect.poll(() => page.getByRole('heading', { level: 1 }).textContent(), SEEN).toBe('Execution of ui_broken.main');
    const tasks = page.locator('ol.timeline > li');
    await expect.poll(() => tasks.count(), SEEN).toBe(2);
    await expect.poll(() => tasks.nth(1).textContent(), SEEN).toMatch(/second.*std\.fail.*✗ error.*1 try.*the vendor API said no/);
    expect(await tasks.nth(0).textContent()).toMatch(/first.*std\.echo.*✓ success.*1 try.*Result of first/);
    await shot('execution');

    await page.getByRole('button', { name: 'Re-run second' }).click();
    await expect.poll(() => page.getByRole('status').first().textContent(), SEEN).toMatch(/Task second runs again/);
    // std.fail fails again, so the execution ends in ERROR once more.
    await expect.poll(async () => (await relay.api('GET', `/v1/executions/${broken}`)).body.state, SEEN).toBe('ERROR');

    await page.goto(`${relay.url}/ui/executions/${slow}`);
    await page.getByRole('button', { name: 'Pause' }).click();
    await expect.poll(() => page.locator('.facts').first().textContent(), SEEN).toMatch(/State⏸ paused/);
    await page.getByRole('button', { name: 'Resume' }).click();
    await expect.poll(() => page.locator('.facts').first().textContent(), SEEN).toMatch(/State▶ running/);
    await page.getByRole('button', { name: 'Cancel execution…' }).click();
    await page.getByRole('button', { name: 'Cancel it now' }).click();
    await expect.poll(() => page.locator('.facts').first().textContent(), SEEN).toMatch(/State⊘ cancelled/);
    expect((await relay.api('GET', `/v1/executions/${slow}`)).body.state).toBe('CANCELLED');
    await expect.poll(() => tasks.first().textContent(), SEEN).toMatch(/nap.*std\.sleep.*⊘ cancelled/);
  });

  it('drops a token the API stops accepting and asks again', async () => {
    await signIn();
    await page.getByRole('heading', { name: 'Listeners', level: 1 }).waitFor(SEEN);
    // As if the token had been removed from the relay's configuration.
    await page.evaluate(`sessionStorage.setItem('callback-relay.token', 'revoked-token')`);
    await page.getByRole('link', { name: 'Event log' }).click();
    await expect.poll(() => page.getByRole('alert').textContent(), SEEN).toMatch(/The API answered 401.*paste a valid one/);
    expect(await page.evaluate(`sessionStorage.getItem('callback-relay.token')`)).toBeNull();
  });
});
