import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { tempDir } from './helpers/relay.js';
import { boundCli, cleanEnv, eventually, fieldsOf, okJson, spawnRelay, type SpawnedRelay } from './helpers/spawn-relay.js';

// event-*, delivery-*, listener-ping and listener-replay: the built CLI against a real relay
// child process and a real receiver, as a user would run them.
const T = 60_000;

let relay: SpawnedRelay;
let receiver: Receiver;
let workDir: string;
const cli = boundCli(() => ({ relay, workDir }));
const json = okJson;

const writeFile = (name: string, text: string) => {
  const file = path.join(workDir, name);
  fs.writeFileSync(file, text);
  return file;
};

const ndjson = (events: unknown[]) => events.map((e) => JSON.stringify(e)).join('\n') + '\n';

async function addListener(workbook: string, receiverPath: string, eventTypes = 'NOTIFICATION'): Promise<string> {
  const created = json(await cli(['listener-add', 'workbook', workbook, receiver.url(receiverPath), '--event-type', eventTypes, '-f', 'json']));
  return created.id;
}


async function deliveries(...filters: string[]): Promise<Array<{ id: string; status: string; attempt_count: number; event_id: string; in_flight: boolean }>> {
  return json(await cli(['delivery-list', ...filters, '--all', '-f', 'json'])).items;
}

beforeAll(async () => {
  workDir = tempDir('relay-cli-events-');
  [relay, receiver] = await Promise.all([spawnRelay(path.join(workDir, 'data')), startReceiver()]);
}, 30_000);

afterAll(async () => {
  await relay?.stop();
  await receiver?.close();
  fs.rmSync(workDir, { recursive: true, force: true });
});

describe('event-publish', () => {
  it('publishes 10,000 events from a JSON-lines file in batches of 1000, and every one is delivered', async () => {
    const listener = await addListener('bulk', '/bulk');
    const events = Array.from({ length: 10_000 }, (_, i) => ({ id: `bulk-${i}`, type: 'BULK_TEST', workbook: 'bulk', data: { i } }));
    const file = writeFile('bulk.ndjson', ndjson(events));

    const started = Date.now();
    const r = await cli(['event-publish', file]);
    expect(r).toMatchObject({ code: 0, stdout: 'published 10000 events (0 duplicates) in 10 requests\n' });
    expect(r.stderr).toBe('… 10000 events published (10 requests)\n');
    expect(Date.now() - started).toBeLessThan(30_000);

    await receiver.waitForCount('/bulk', 10_000, 120_000);
    const succeeded = await eventually(
      async () => {
        const items = await deliveries('--listener-id', listener, '--status', 'succeeded');
        return items.length === 10_000 && items;
      },
      60_000,
      '10000 succeeded deliveries',
    );
    expect(new Set(succeeded.map((d) => d.event_id))).toEqual(new Set(events.map((e) => e.id)));
    const received = new Set(receiver.requests('/bulk').map((req) => JSON.parse(req.text).id));
    expect(received.size).toBe(10_000);

    // The same ids again, from stdin without FILE: stored once, counted as duplicates.
    const again = await cli(['event-publish'], { input: ndjson(events.slice(0, 3)) });
    expect(again).toEqual({ code: 0, stdout: 'published 3 events (3 duplicates) in 1 request\n', stderr: '' });
  }, 240_000);

  it('reads an array, a wrapper and a pretty-printed event from stdin or a file; -f json prints the ids', async () => {
    await addListener('stdin', '/stdin');
    const array = [
      { id: 'stdin-1', type: 'STDIN_TEST', workbook: 'stdin' },
      { id: 'stdin-2', type: 'STDIN_TEST', workbook: 'stdin' },
    ];
    const fromDash = await cli(['event-publish', '-', '-f', 'json'], { input: JSON.stringify(array) });
    expect(json(fromDash)).toEqual({ items: [{ id: 'stdin-1', duplicate: false }, { id: 'stdin-2', duplicate: false }] });

    const wrapper = JSON.stringify({ events: [{ id: 'stdin-3', type: 'STDIN_TEST', workbook: 'stdin' }, array[0]] }, null, 2);
    const fromStdin = await cli(['event-publish', '-f', 'json'], { input: wrapper });
    expect(json(fromStdin)).toEqual({ items: [{ id: 'stdin-3', duplicate: false }, { id: 'stdin-1', duplicate: true }] });

    const single = writeFile('single.json', `\uFEFF${JSON.stringify({ type: 'STDIN_TEST', workbook: 'stdin', data: { n: 4 } }, null, 2)}\r\n`);
    const fromFile = await cli(['event-publish', 'single.json']);
    expect(fromFile).toEqual({ code: 0, stdout: 'published 1 event (0 duplicates) in 1 request\n', stderr: '' });
    expect(fs.existsSync(single)).toBe(true);

    // A wrapper on one line, and lines with an array, in JSON lines.
    const lines = `${JSON.stringify({ events: [{ id: 'stdin-5', type: 'STDIN_TEST', workbook: 'stdin' }] })}\n\n${JSON.stringify([{ id: 'stdin-6', type: 'STDIN_TEST', workbook: 'stdin' }])}\n`;
    expect(json(await cli(['event-publish', '-f', 'json'], { input: lines })).items.map((i: { id: string }) => i.id)).toEqual(['stdin-5', 'stdin-6']);

    const got = await receiver.waitForCount('/stdin', 6, 10_000);
    expect(got.map((req) => JSON.parse(req.text).type)).toEqual(Array(6).fill('STDIN_TEST'));
  }, T);

  it('stops at a refused batch: exit 1, the field named by its place in the whole input, what was published before', async () => {
    const events: Array<Record<string, unknown>> = Array.from({ length: 1500 }, (_, i) => ({ id: `bad-${i}`, type: 'BAD_BATCH', workbook: 'badbatch' }));
    events[1203] = { id: 'bad-1203', type: 42, workbook: 'badbatch' };
    const r = await cli(['event-publish', writeFile('bad.ndjson', ndjson(events))]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^error: 400 Invalid request: events\.1203\.type: /);
    expect(r.stderr).toContain('  events.1203.type (line 1204): ');
    expect(r.stderr).toContain(
      'hint: 1000 events were published in 1 request before this one; none of events.1000–events.1499 were stored (a request is all or nothing). Publish the rest again from events.1000 (line 1001).',
    );
    expect(r.stderr).not.toMatch(/events\.203\b/);
    const stored = json(await cli(['event-list', '--workbook', 'badbatch', '--all', '-f', 'json']));
    expect(stored.items).toHaveLength(1000);
    // Newest first, as event-list lists by default.
    expect(stored.items[0].id).toBe('bad-999');

    // An array read whole: no line numbers; the first request fails, so nothing was published.
    const array = await cli(['event-publish', '-'], { input: JSON.stringify([{ type: 'OK' }, { type: 'TASK_FAILED', category: 'EXECUTION' }]) });
    expect(array.code).toBe(1);
    expect(array.stderr).toMatch(/^error: 400 Invalid request: events\.1\.category: TASK_FAILED is in category TASK/);
    expect(array.stderr).toContain('  events.1.category (line 1): ');
    expect(array.stderr).toMatch(/\nhint: nothing was published \(a request is stored all or nothing\)\n$/);
  }, T);

  it('sends --batch events per request, and refuses a batch size the API would not take before reading any input', async () => {
    const events = Array.from({ length: 25 }, (_, i) => ({ id: `batched-${i}`, type: 'BATCHED', workbook: 'batched' }));
    const r = await cli(['event-publish', '-', '--batch', '10'], { input: ndjson(events) });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('published 25 events (0 duplicates) in 3 requests\n');
    expect(json(await cli(['event-list', '--workbook', 'batched', '--all', '-f', 'json'])).items).toHaveLength(25);
    for (const bad of ['0', '1001', 'ten']) {
      const refused = await cli(['event-publish', '-', '--batch', bad], { input: ndjson(events) });
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain("option '--batch <n>' argument");
      expect(refused.stderr).toContain('expected a whole number from 1 to 1000.');
    }
  }, T);

  it('stops at input that is not JSON: exit 2, naming the line and what was already sent', async () => {
    const good = Array.from({ length: 1200 }, (_, i) => JSON.stringify({ id: `half-${i}`, type: 'HALF', workbook: 'half' }));
    const lines = [...good.slice(0, 1100), '{"type": "HALF", oops}', ...good.slice(1100)];
    const r = await cli(['event-publish', writeFile('half.ndjson', lines.join('\n'))]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('half.ndjson line 1101 is not valid JSON');
    expect(r.stderr).toContain('1000 events (events.0–events.999) were published in 1 request before it; nothing after events.999 was sent');
    expect(json(await cli(['event-list', '--workbook', 'half', '--all', '-f', 'json'])).items).toHaveLength(1000);
  }, T);

  it('refuses what the relay could not store as written (a number beyond a double, a key named __proto__), naming the line, before sending it', async () => {
    // Parsed and sent again as it was, -1e999 went out as null and the event was stored with it.
    const huge = await cli(['event-publish', '-'], { input: '{"id":"huge-1","type":"HUGE","workbook":"huge","data":{"sizes":[1,-1e999]}}\n' });
    expect(huge.code).toBe(2);
    expect(huge.stderr).toContain('stdin line 1: item 1 of an array is a number too large to store (beyond ±1.8e308)');
    const proto = await cli(['event-publish', '-'], { input: '{\n"id":"huge-2","type":"HUGE","workbook":"huge","data":{"__proto__":{"a":1}}\n}\n' });
    expect(proto.code).toBe(2);
    expect(proto.stderr).toContain('stdin: a key named __proto__ cannot be stored');
    expect(json(await cli(['event-list', '--workbook', 'huge', '-f', 'json'])).items).toEqual([]);
  }, T);
});

describe('event-list and event-show', () => {
  it('filters by workbook, execution, type and time, pages, and shows one event with its deliveries', async () => {
    const listener = await addListener('listing', '/listing', 'TASK,NOTIFICATION');
    const before = new Date(Date.now() - 1000).toISOString();
    const input = [
      { id: 'list-1', type: 'TASK_SUCCEEDED', workbook: 'listing', execution_id: 'ex-list', task_name: 'charge' },
      { id: 'list-2', type: 'TASK_FAILED', workbook: 'listing', execution_id: 'ex-list', task_name: 'ship', data: { reason: 'no stock' } },
      { id: 'list-3', type: 'ORDER_NOTE', workbook: 'listing' },
    ];
    expect((await cli(['event-publish'], { input: ndjson(input) })).code).toBe(0);

    const table = await cli(['event-list', '--workbook', 'listing']);
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ID\s+TYPE\s+WORKBOOK\s+EXECUTION\s+TASK\s+SEQ\s+OCCURRED AT$/);
    // Newest first, with when each occurred relative to now.
    expect(lines.slice(1).map((l) => l.split(/\s{2,}/))).toEqual([
      ['list-3', 'ORDER_NOTE', 'listing', '-', '-', '-', expect.stringMatching(/^(\d+ s ago|now)$/)],
      ['list-2', 'TASK_FAILED', 'listing', 'ex-list', 'ship', '2', expect.stringMatching(/^(\d+ s ago|now)$/)],
      ['list-1', 'TASK_SUCCEEDED', 'listing', 'ex-list', 'charge', '1', expect.stringMatching(/^(\d+ s ago|now)$/)],
    ]);
    const oldestFirst = await cli(['event-list', '--workbook', 'listing', '--order', 'asc']);
    expect(oldestFirst.stdout.trim().split('\n').slice(1).map((l) => l.split(/\s+/)[0])).toEqual(['list-1', 'list-2', 'list-3']);

    const failed = json(await cli(['event-list', '--execution-id', 'ex-list', '--type', 'TASK_FAILED', '-f', 'json']));
    expect(failed).toMatchObject({ items: [{ id: 'list-2', category: 'TASK', sequence: 2, data: { reason: 'no stock' } }], next_cursor: null });
    expect(failed.items[0].received_at).toEqual(expect.any(String));

    const future = await cli(['event-list', '--workbook', 'listing', '--since', '2999-01-01T00:00:00Z']);
    expect(future).toEqual({ code: 0, stdout: 'no events\n', stderr: '' });

    const first = await cli(['event-list', '--workbook', 'listing', '--since', before, '--limit', '2']);
    expect(first.code).toBe(0);
    const more = new RegExp(`more: callback-relay event-list --workbook listing --since ${before.replace(/[.]/g, '\\.')} --limit 2 --cursor (\\S+)`).exec(first.stdout);
    expect(more, first.stdout).not.toBeNull();
    const second = json(await cli(['event-list', '--workbook', 'listing', '--limit', '2', '--cursor', more![1], '-f', 'json']));
    expect(second).toMatchObject({ items: [{ id: 'list-1' }], next_cursor: null });
    const all = json(await cli(['event-list', '--workbook', 'listing', '--limit', '1', '--all', '-f', 'json']));
    expect({ ids: all.items.map((e: { id: string }) => e.id), next: all.next_cursor }).toEqual({ ids: ['list-3', 'list-2', 'list-1'], next: null });
    const ascAll = json(await cli(['event-list', '--workbook', 'listing', '--limit', '1', '--order', 'asc', '--all', '-f', 'json']));
    expect(ascAll.items.map((e: { id: string }) => e.id)).toEqual(['list-1', 'list-2', 'list-3']);
    // An oldest-first page's more line keeps --order asc: its cursor continues only that order.
    const ascFirst = await cli(['event-list', '--workbook', 'listing', '--order', 'asc', '--limit', '2']);
    const ascMore = /more: callback-relay event-list --workbook listing --order asc --limit 2 --cursor (\S+)/.exec(ascFirst.stdout);
    expect(ascMore, ascFirst.stdout).not.toBeNull();
    expect(json(await cli(['event-list', '--workbook', 'listing', '--order', 'asc', '--limit', '2', '--cursor', ascMore![1], '-f', 'json'])).items).toEqual([
      expect.objectContaining({ id: 'list-3' }),
    ]);
    const mixed = await cli(['event-list', '--workbook', 'listing', '--cursor', ascMore![1]]);
    expect(mixed).toMatchObject({ code: 1, stdout: '' });
    expect(mixed.stderr).toMatch(/cursor: this cursor continues a list in order=asc, not desc/);

    await eventually(async () => (await deliveries('--event-id', 'list-2'))[0]?.status === 'succeeded', 10_000, 'list-2 delivered');
    const shown = await cli(['event-show', 'list-2']);
    expect(shown.code).toBe(0);
    expect(fieldsOf(shown.stdout)).toMatchObject({
      id: 'list-2',
      type: 'TASK_FAILED',
      category: 'TASK',
      execution_id: 'ex-list',
      task_name: 'ship',
      sequence: '2',
      data: '{"reason":"no stock"}',
    });
    const deliveryLines = shown.stdout.split('deliveries (1):\n')[1].trim().split('\n');
    expect(deliveryLines[0]).toMatch(/^ID\s+LISTENER\s+STATUS\s+ATTEMPTS\s+NEXT ATTEMPT\s+UPDATED AT\s+LAST ERROR$/);
    expect(deliveryLines[1]).toMatch(new RegExp(`^\\S+\\s+${listener}\\s+succeeded\\s+1\\s+-\\s+(\\d+ s ago|now)\\s+-$`));
    expect(json(await cli(['event-show', 'list-2', '-f', 'json'])).deliveries).toEqual([
      expect.objectContaining({ listener_id: listener, status: 'succeeded', attempt_count: 1 }),
    ]);

    const unmatched = json(await cli(['event-publish', '-f', 'json'], { input: '{"type":"NOBODY","workbook":"nobody"}' })).items[0].id;
    expect((await cli(['event-show', unmatched])).stdout).toContain('deliveries: none (no listener matched this event)');

    const missing = await cli(['event-show', 'no-such-event']);
    expect(missing).toMatchObject({ code: 1, stdout: '' });
    expect(missing.stderr).toMatch(/^error: 404 Not found/);
  }, T);
});

describe('delivery-list, -show, -retry and listener-replay', () => {
  it('a receiver that always answers 500: failed after 3 attempts, re-queued, retried and replayed', async () => {
    receiver.respond('/fail', [{ status: 500, body: 'boom: database\nis down '.padEnd(200, 'x') }]);
    const res = await fetch(`${relay.url}/v1/listeners`, {
      method: 'POST',
      headers: { authorization: `Bearer ${relay.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ workbook: 'failing', event_types: ['NOTIFICATION'], callback: { url: receiver.url('/fail') }, retry: { schedule_ms: [100, 100] } }),
    });
    expect(res.status).toBe(201);
    const listener = ((await res.json()) as { id: string }).id;
    const since = new Date(Date.now() - 1000).toISOString();
    expect((await cli(['event-publish'], { input: '{"id":"fail-1","type":"WILL_FAIL","workbook":"failing"}' })).code).toBe(0);

    const [failed] = await eventually(async () => {
      const items = await deliveries('--listener-id', listener, '--status', 'failed');
      return items.length === 1 && items;
    }, 20_000, 'a failed delivery');
    expect(failed).toMatchObject({ event_id: 'fail-1', attempt_count: 3, status: 'failed' });
    expect(receiver.requests('/fail')).toHaveLength(3);
    const webhookId = receiver.requests('/fail')[0].headers['webhook-id'];
    expect(webhookId).toBe(failed.id);

    const listTable = await cli(['delivery-list', '--status', 'failed', '--listener-id', listener]);
    expect(listTable.stdout.trim().split('\n')).toEqual([
      expect.stringMatching(/^ID\s+EVENT\s+EVENT TYPE\s+WORKBOOK\s+LISTENER\s+STATUS\s+ATTEMPTS\s+NEXT ATTEMPT\s+UPDATED AT\s+LAST ERROR$/),
      expect.stringMatching(new RegExp(`^${failed.id}\\s+fail-1\\s+WILL_FAIL\\s+failing\\s+${listener}\\s+failed\\s+3\\s+-\\s+(\\d+ s ago|now)\\s+HTTP 500`)),
    ]);

    const show = await cli(['delivery-show', failed.id]);
    expect(show.code).toBe(0);
    expect(fieldsOf(show.stdout)).toMatchObject({ id: failed.id, event_id: 'fail-1', listener_id: listener, status: 'failed', attempt_count: '3' });
    const attempts = show.stdout.split('attempts (3):\n')[1].trim().split('\n');
    expect(attempts[0]).toMatch(/^#\s+STARTED AT\s+DURATION MS\s+STATUS CODE\s+ERROR\s+RESPONSE EXCERPT$/);
    expect(attempts.slice(1)).toHaveLength(3);
    attempts.slice(1).forEach((line, i) => {
      expect(line).toMatch(new RegExp(`^${i + 1}\\s+\\d{4}-\\d\\d-\\d\\dT\\S+Z\\s+\\d+\\s+500\\s+\\S+\\s+boom: database is down x+…$`));
      expect(line.split('boom')[1].length).toBeLessThanOrEqual(60);
    });
    const shownJson = json(await cli(['delivery-show', failed.id, '-f', 'json']));
    expect(shownJson.attempts.map((a: { number: number; status_code: number }) => [a.number, a.status_code])).toEqual([[1, 500], [2, 500], [3, 500]]);
    expect(shownJson.attempts[0].response_excerpt).toHaveLength(200);

    // Re-queue the failed one through a replay: the same delivery, one more try, failed again.
    const requeued = await cli(['listener-replay', listener, '--since', since, '--only-failed']);
    expect(requeued).toEqual({
      code: 0,
      stdout: `re-queued 1 failed delivery for listener ${listener}\nfollow it with: callback-relay delivery-list --listener-id ${listener} --status pending\n`,
      stderr: '',
    });
    await receiver.waitForCount('/fail', 4, 10_000);
    expect(receiver.requests('/fail')[3].headers['webhook-id']).toBe(failed.id);
    await eventually(async () => (await deliveries('--listener-id', listener, '--status', 'failed'))[0]?.attempt_count === 4, 10_000, 'failed again');

    // The receiver recovers: delivery-retry sends the same delivery again, and it succeeds.
    receiver.respond('/fail', [200]);
    const retried = await cli(['delivery-retry', failed.id]);
    expect(retried.code).toBe(0);
    expect(fieldsOf(retried.stdout)).toMatchObject({ id: failed.id, status: expect.stringMatching(/^pending/) });
    expect(retried.stdout).toContain(`re-queued delivery ${failed.id}; follow it with: callback-relay delivery-show ${failed.id}`);
    expect(retried.stdout).toContain(`the listener's deliveries still to be sent: callback-relay delivery-list --listener-id ${listener} --status pending\n`);
    const fifth = (await receiver.waitForCount('/fail', 5, 10_000))[4];
    expect(fifth.headers['webhook-id']).toBe(failed.id);
    expect(fifth.headers['webhook-attempt']).toBe('5');
    await eventually(async () => (await deliveries('--listener-id', listener, '--status', 'succeeded')).length === 1, 10_000, 'retry succeeded');

    // A replay of the window makes a new delivery, with a new webhook-id.
    const replayed = await cli(['listener-replay', listener, '--since', since, '--until', new Date(Date.now() + 60_000).toISOString(), '-f', 'json']);
    expect(json(replayed)).toEqual({ count: 1, truncated: false });
    const again = (await receiver.waitForCount('/fail', 6, 10_000))[5];
    expect(again.headers['webhook-id']).not.toBe(failed.id);
    expect(JSON.parse(again.text).id).toBe('fail-1');
    const table = await cli(['listener-replay', listener, '--since', '2999-01-01T00:00:00Z']);
    expect(table).toEqual({ code: 0, stdout: `queued 0 new deliveries for listener ${listener}\n`, stderr: '' });

    const gone = await cli(['delivery-retry', 'no-such-delivery']);
    expect(gone).toMatchObject({ code: 1, stdout: '' });
    expect(gone.stderr).toMatch(/^error: 404 Not found/);
  }, T);
});

describe('listener-replay --wait', () => {
  async function createListener(workbook: string, receiverPath: string): Promise<string> {
    const res = await fetch(`${relay.url}/v1/listeners`, {
      method: 'POST',
      headers: { authorization: `Bearer ${relay.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ workbook, event_types: ['NOTIFICATION'], callback: { url: receiver.url(receiverPath) }, retry: { schedule_ms: [] } }),
    });
    expect(res.status).toBe(201);
    return ((await res.json()) as { id: string }).id;
  }
  const progressLines = (stderr: string, total: number) => {
    const lines = stderr.trim().split('\n');
    for (const line of lines) expect(line).toMatch(new RegExp(`^\\d+ of ${total} finished$`));
    expect(lines.at(-1)).toBe(`${total} of ${total} finished`);
    return lines;
  };

  it('follows the replayed deliveries until they finish, "n of m finished" on stderr, exit 1 when some did not succeed', async () => {
    receiver.respond('/replay-wait', [500, 500, 500]);
    const listener = await createListener('replaywait', '/replay-wait');
    const since = new Date(Date.now() - 1000).toISOString();
    const events = Array.from({ length: 3 }, (_, i) => ({ id: `rw-${i}`, type: 'REPLAY_WAIT', workbook: 'replaywait' }));
    expect((await cli(['event-publish'], { input: ndjson(events) })).code).toBe(0);
    await eventually(async () => (await deliveries('--listener-id', listener, '--status', 'failed')).length === 3, 10_000, '3 failed');

    // The receiver recovers: the failed ones are re-queued and followed to success.
    receiver.respond('/replay-wait', [200]);
    const started = Date.now();
    const requeued = await cli(['listener-replay', listener, '--since', since, '--only-failed', '--wait']);
    expect(requeued.stdout).toBe(`re-queued 3 failed deliveries for listener ${listener}\nall 3 finished: 3 succeeded, 0 did not\n`);
    expect(requeued.code).toBe(0);
    const lines = progressLines(requeued.stderr, 3);
    expect(lines.length).toBeLessThanOrEqual(Math.ceil((Date.now() - started) / 1000) + 1);
    expect(receiver.requests('/replay-wait')).toHaveLength(6);

    // A replay of the window: 3 new deliveries; stdout keeps the JSON, progress goes to stderr.
    const replayed = await cli(['listener-replay', listener, '--since', since, '--until', new Date().toISOString(), '--wait', '-f', 'json']);
    expect(replayed.code).toBe(0);
    expect(JSON.parse(replayed.stdout)).toEqual({ count: 3, truncated: false, finished: 3, failed: 0 });
    progressLines(replayed.stderr, 3);
    expect(receiver.requests('/replay-wait')).toHaveLength(9);

    // A receiver that refuses them: the wait ends with exit 1 and where to look.
    receiver.respond('/replay-wait', [503]);
    const refused = await cli(['listener-replay', listener, '--since', since, '--until', new Date().toISOString(), '--wait']);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe(`queued 3 new deliveries for listener ${listener}\nall 3 finished: 0 succeeded, 3 did not\n`);
    expect(refused.stderr).toContain(
      `error: 3 of the 3 replayed deliveries did not succeed\nhint: callback-relay delivery-list --listener-id ${listener} --status failed shows them\n`,
    );
  }, T);
});

describe('what receivers answer, on a terminal', () => {
  it('shows control sequences in an answer as visible escapes, in every output format', async () => {
    // A title change, a screen clear, a C1 CSI and a right-to-left override.
    const hostile = 'ok\x1b]0;owned\x07\x1b[2J\u009b31mred\u202eevil';
    receiver.respond('/hostile', [{ status: 500, body: hostile }]);
    const listener = await addListener('hostile', '/hostile');
    expect((await cli(['event-publish'], { input: '{"id":"hostile-1","type":"HOSTILE","workbook":"hostile"}' })).code).toBe(0);
    await receiver.waitForCount('/hostile', 1, 10_000);
    const [delivery] = await eventually(async () => {
      const items = await deliveries('--listener-id', listener);
      return items.length === 1 && items[0].attempt_count >= 1 && items;
    }, 10_000, 'an attempt');
    for (const format of ['table', 'json']) {
      const shown = await cli(['delivery-show', delivery.id, '-f', format]);
      expect(shown.code).toBe(0);
      expect(shown.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/);
      expect(shown.stdout).toContain('\\u001b]0;owned\\u0007');
      expect(shown.stdout).toContain('\\u202eevil');
    }
    // JSON output is still JSON, and the escapes read back as the original text.
    expect(json(await cli(['delivery-show', delivery.id, '-f', 'json'])).attempts[0].response_excerpt).toBe(hostile);
  }, T);
});

describe('listener-ping', () => {
  it('sends a PING to that listener only, and with --wait prints how the receiver answered', async () => {
    const listener = await addListener('pinged', '/ping');
    const r = await cli(['listener-ping', listener]);
    expect(r.code).toBe(0);
    const eventId = /^sent PING event (\S+) to listener /.exec(r.stdout)?.[1];
    expect(eventId, r.stdout).toBeTruthy();
    const [ping] = await receiver.waitForCount('/ping', 1, 10_000);
    expect(JSON.parse(ping.text)).toMatchObject({ id: eventId, type: 'PING', category: 'NOTIFICATION', data: { listener_id: listener } });

    const waited = await cli(['listener-ping', listener, '--wait']);
    expect(waited.code).toBe(0);
    expect(waited.stdout).toMatch(/^sent PING event \S+ to listener \S+ as delivery \S+\n#\s+STARTED AT/);
    expect(waited.stdout).toMatch(/\n1\s+\S+\s+\d+\s+200\s+-/);

    receiver.respond('/ping-down', [503]);
    const down = await addListener('pinged-down', '/ping-down');
    const refused = await cli(['listener-ping', down, '--wait', '-f', 'json']);
    expect(refused.code).toBe(1);
    expect(JSON.parse(refused.stdout)).toMatchObject({ delivery: { listener_id: down, attempts: [{ number: 1, status_code: 503 }] } });
    expect(refused.stderr).toMatch(/^error: the receiver answered 503\nhint: the relay retries it/);
    expect(receiver.requests('/ping-down')).toHaveLength(1);

    const missing = await cli(['listener-ping', 'no-such-listener']);
    expect(missing).toMatchObject({ code: 1, stdout: '' });
    expect(missing.stderr).toMatch(/^error: 404 Not found/);
  }, T);
});

describe('usage', () => {
  it('exits 2 for bad option values and unreadable input, before any request', async () => {
    writeFile('empty.json', '\n  \n');
    writeFile('yaml.txt', 'type: TASK_FAILED\nworkbook: x\n');
    writeFile('broken.ndjson', '{"type":"A"}\n{"type":"B"}\n{"type": nope}\n');
    writeFile('wrapper.json', '{"events": {"type": "A"}}');
    fs.mkdirSync(path.join(workDir, 'a-dir'), { recursive: true });
    const cases: Array<[string[], RegExp]> = [
      [['delivery-list', '--status', 'done'], /'done' is invalid. Allowed choices are pending, succeeded, failed, cancelled/],
      [['event-list', '--since', 'yesterday'], /"yesterday" is not a date-time with a zone/],
      [['event-list', '--since', '2026-11-23T10:00:00'], /not a date-time with a zone/],
      [['event-list', '--since', '2026-02-30T10:00:00Z'], /not a date-time with a zone/],
      [['event-list', '--limit', '1001'], /expected a whole number from 1 to 1000/],
      [['delivery-list', '--limit', 'ten'], /expected a whole number from 1 to 1000/],
      [['delivery-list', '--cursor', 'not a cursor!'], /not a cursor/],
      [['event-list', '--workbook', ' '], /give a non-empty value/],
      [['listener-replay', 'some-id'], /give --since \(a time window\) or --execution \(one execution\)/],
      [['listener-replay', 'some-id', '--since', '2026-01-02T00:00:00Z', '--until', '2026-01-01T00:00:00Z'], /--until .* must be after --since/],
      [['listener-replay', 'some-id', '--since', 'now'], /not a date-time/],
      [['event-show'], /missing required argument 'id'/],
      [['delivery-show', ''], /give a non-empty value/],
      [['delivery-retry'], /missing required argument 'id'/],
      [['listener-ping'], /missing required argument 'id'/],
      [['event-publish', 'a.json', 'b.json'], /too many arguments/],
      [['event-publish', 'missing.ndjson'], /cannot read missing.ndjson: no such file/],
      [['event-publish', 'a-dir'], /cannot read a-dir: it is a directory/],
      [['event-publish', 'empty.json'], /no events in empty.json/],
      [['event-publish', 'yaml.txt'], /yaml.txt is neither one JSON document \(.*\) nor JSON lines \(line 1: /],
      [['event-publish', 'broken.ndjson'], /broken.ndjson line 3 is not valid JSON/],
      [['event-publish', 'wrapper.json'], /wrapper.json line 1: "events" must be an array of events/],
    ];
    // No relay at this address: a request would exit 1, not 2.
    const env = cleanEnv({ RELAY_URL: 'http://127.0.0.1:9', RELAY_TOKEN: 'unused' });
    const results = await Promise.all(cases.map(([args]) => cli(args, { env })));
    results.forEach((r, i) => {
      expect({ args: cases[i][0], code: r.code, stdout: r.stdout }).toEqual({ args: cases[i][0], code: 2, stdout: '' });
      expect(r.stderr).toMatch(cases[i][1]);
    });
    // Nothing in the broken file was sent: it is rejected before its first (only) request.
    expect(json(await cli(['event-list', '--type', 'B', '-f', 'json'])).items).toEqual([]);
  }, T);

  it('prints help with examples for every new command, exit code 0', async () => {
    const commands = ['event-publish', 'event-list', 'event-show', 'delivery-list', 'delivery-show', 'delivery-retry', 'listener-ping', 'listener-replay'];
    const [top, ...helps] = await Promise.all([cli(['--help']), ...commands.map((c) => cli([c, '--help']))]);
    expect(top.code).toBe(0);
    for (const c of commands) expect(top.stdout).toContain(c);
    helps.forEach((r, i) => {
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Usage: callback-relay ${commands[i]}`);
      expect(r.stdout).toMatch(/Examples:\n  \$ /);
      expect(r.stdout).toMatch(/-f, --output <format>/);
    });
  }, T);
});

describe('listener-replay and lists over calls the relay bounds (RELAY_REPLAY_SCAN_LIMIT, RELAY_LIST_SCAN_LIMIT)', () => {
  let bounded: SpawnedRelay;
  beforeAll(async () => {
    bounded = await spawnRelay(path.join(workDir, 'bounded'), { RELAY_REPLAY_SCAN_LIMIT: '2', RELAY_LIST_SCAN_LIMIT: '2' });
  }, 30_000);
  afterAll(async () => {
    await bounded?.stop();
  });
  const boundedCli = boundCli(() => ({ relay: bounded, workDir }));

  it('goes on where each call stopped until the window is done, saying how far it got on stderr', async () => {
    const since = new Date(Date.now() - 1000).toISOString();
    const events = Array.from({ length: 5 }, (_, i) => ({ id: `bounded-${i}`, type: 'BOUNDED', workbook: i === 2 ? 'elsewhere' : 'bounded' }));
    expect((await boundedCli(['event-publish'], { input: ndjson(events) })).code).toBe(0);
    const created = okJson(await boundedCli(['listener-add', 'workbook', 'bounded', receiver.url('/bounded-cli'), '--event-type', 'NOTIFICATION', '-f', 'json']));

    const replayed = await boundedCli(['listener-replay', created.id, '--since', since]);
    expect(replayed.code, replayed.stderr).toBe(0);
    // 5 events, 2 looked at per call: 3 calls.
    expect(replayed.stderr).toBe(
      '… queued 2 new deliveries so far (1 call); going on where the relay stopped\n' +
        '… queued 3 new deliveries so far (2 calls); going on where the relay stopped\n',
    );
    expect(replayed.stdout).toMatch(new RegExp(`^queued 4 new deliveries for listener ${created.id} in 3 calls\nfollow them with: `));
    const got = await receiver.waitForCount('/bounded-cli', 4, 10_000);
    expect(got.map((r) => JSON.parse(r.text).id).sort()).toEqual(['bounded-0', 'bounded-1', 'bounded-3', 'bounded-4']);

    const asJson = await boundedCli(['listener-replay', created.id, '--since', since, '-f', 'json']);
    expect(JSON.parse(asJson.stdout)).toEqual({ count: 4, truncated: false });
    await receiver.waitForCount('/bounded-cli', 8, 10_000);

    // --wait follows the deliveries of every call, whatever comes between them.
    const waited = await boundedCli(['listener-replay', created.id, '--since', since, '--wait']);
    expect(waited.code, waited.stderr).toBe(0);
    expect(waited.stdout).toBe(`queued 4 new deliveries for listener ${created.id} in 3 calls\nall 4 finished: 4 succeeded, 0 did not\n`);
    await receiver.waitForCount('/bounded-cli', 12, 10_000);

    // --after goes on from a position an answer gave: here after the first two events.
    const res = await fetch(`${bounded.url}/v1/listeners/${created.id}/replay`, {
      method: 'POST',
      headers: { authorization: `Bearer ${bounded.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ since }),
    });
    const first = (await res.json()) as { count: number; next: { since: string; until: string; after: string } };
    expect(first.count).toBe(2);
    const rest = await boundedCli(['listener-replay', created.id, '--since', first.next.since, '--until', first.next.until, '--after', first.next.after, '-f', 'json']);
    expect(JSON.parse(rest.stdout)).toEqual({ count: 2, truncated: false });
    const all = await receiver.waitForCount('/bounded-cli', 16, 10_000);
    expect(all.slice(12).map((r) => JSON.parse(r.text).id).sort()).toEqual(['bounded-0', 'bounded-1', 'bounded-3', 'bounded-4']);
    const refused = await boundedCli(['listener-replay', created.id, '--since', since, '--only-failed', '--after', first.next.after]);
    expect(refused).toMatchObject({ code: 1, stdout: '' });
    expect(refused.stderr).toMatch(/after: goes on with a replay of new deliveries/);
  });

  it('re-queues failed deliveries over calls that each look at RELAY_REPLAY_SCAN_LIMIT of them, each once', async () => {
    receiver.respond('/bounded-failing', [{ status: 500, body: 'down' }]);
    const res = await fetch(`${bounded.url}/v1/listeners`, {
      method: 'POST',
      headers: { authorization: `Bearer ${bounded.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ workbook: 'bounded-failing', event_types: ['NOTIFICATION'], callback: { url: receiver.url('/bounded-failing') }, retry: { schedule_ms: [50] } }),
    });
    expect(res.status).toBe(201);
    const listener = ((await res.json()) as { id: string }).id;
    const since = new Date(Date.now() - 1000).toISOString();
    const events = Array.from({ length: 3 }, (_, i) => ({ id: `bounded-failing-${i}`, type: 'WILL_FAIL', workbook: 'bounded-failing' }));
    expect((await boundedCli(['event-publish'], { input: ndjson(events) })).code).toBe(0);
    const failed = async () => okJson(await boundedCli(['delivery-list', '--listener-id', listener, '--status', 'failed', '--all', '-f', 'json'])).items.length;
    await eventually(async () => (await failed()) === 3, 20_000, 'three failed deliveries');
    expect(receiver.requests('/bounded-failing')).toHaveLength(6);

    const requeued = await boundedCli(['listener-replay', listener, '--since', since, '--only-failed']);
    expect(requeued.code, requeued.stderr).toBe(0);
    // 3 failed deliveries, 2 looked at per call: 2 calls.
    expect(requeued.stderr).toBe('… re-queued 2 failed deliveries so far (1 call); going on where the relay stopped\n');
    expect(requeued.stdout).toMatch(new RegExp(`^re-queued 3 failed deliveries for listener ${listener} in 2 calls\nfollow them with: `));
    const got = await receiver.waitForCount('/bounded-failing', 9, 10_000);
    expect(got.slice(6).map((r) => JSON.parse(r.text).id).sort()).toEqual(events.map((e) => e.id));
  });

  it('a list follows the pages the relay cut short until it holds --limit', async () => {
    const events = Array.from({ length: 9 }, (_, i) => ({ id: `sparse-${i}`, type: 'SPARSE', workbook: [0, 5, 8].includes(i) ? 'sparse' : 'dense' }));
    expect((await boundedCli(['event-publish'], { input: ndjson(events) })).code).toBe(0);
    const ids = async (...args: string[]) => {
      const r = await boundedCli(['event-list', '--workbook', 'sparse', '-f', 'value', '-c', 'id', ...args]);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout;
    };
    // Two events looked at per request: sparse-5 is three requests after sparse-0.
    expect(await ids('--order', 'asc')).toBe('sparse-0\nsparse-5\nsparse-8\n');
    expect(await ids('--all')).toBe('sparse-8\nsparse-5\nsparse-0\n');
    const first = await boundedCli(['event-list', '--workbook', 'sparse', '--order', 'asc', '--limit', '2']);
    expect(first.code, first.stderr).toBe(0);
    const more = /event-list --workbook sparse --order asc --limit 2 --cursor (\S+)/.exec(first.stdout + first.stderr);
    expect(more).not.toBeNull();
    expect(await ids('--order', 'asc', '--limit', '2', '--cursor', more![1])).toBe('sparse-8\n');
  });
});
