import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWorkbook, workbook } from './helpers/engine.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { startTestRelay, TOKEN_B, type TestRelay } from './helpers/relay.js';

// order=asc|desc on the lists of events, deliveries and executions: every page walk sees each
// record once, in the order asked for, and a cursor only continues the order it was made in.
const COUNT = 250;
const LIMIT = 7;

let relay: TestRelay;
let receiver: Receiver;

beforeAll(async () => {
  [relay, receiver] = await Promise.all([startTestRelay({ RELAY_SHUTDOWN_GRACE_MS: '2000' }), startReceiver()]);
});

afterAll(async () => {
  await relay?.close();
  await receiver?.close();
});

/** Follows next_cursor from the first page to the end; the ids in the order the pages gave them. */
async function walk(pathname: string, order?: 'asc' | 'desc'): Promise<{ ids: string[]; pages: number }> {
  const ids: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const query: string = [order && `order=${order}`, `limit=${LIMIT}`, cursor && `cursor=${cursor}`].filter(Boolean).join('&');
    const res = await relay.api('GET', `${pathname}${pathname.includes('?') ? '&' : '?'}${query}`);
    expect(res.status, res.text).toBe(200);
    expect(res.body.items.length).toBeLessThanOrEqual(LIMIT);
    ids.push(...res.body.items.map((item: { id: string }) => item.id));
    cursor = res.body.next_cursor;
    pages++;
  } while (cursor);
  return { ids, pages };
}

/** Both directions walk all `expected` (oldest first) exactly once, in page-sized steps. */
async function expectBothOrders(pathname: string, expected: string[]) {
  const asc = await walk(pathname, 'asc');
  const byDefault = await walk(pathname);
  const desc = await walk(pathname, 'desc');
  expect(new Set(asc.ids).size).toBe(asc.ids.length);
  expect(asc.ids).toEqual(expected);
  expect(byDefault.ids).toEqual(expected);
  expect(desc.ids).toEqual([...expected].reverse());
  expect(asc.pages).toBe(Math.ceil(COUNT / LIMIT));
  expect(desc.pages).toBe(Math.ceil(COUNT / LIMIT));
}

async function firstCursor(pathname: string, order: 'asc' | 'desc'): Promise<string> {
  const res = await relay.api('GET', `${pathname}${pathname.includes('?') ? '&' : '?'}order=${order}&limit=${LIMIT}`);
  expect(res.body.next_cursor).toEqual(expect.any(String));
  return res.body.next_cursor;
}

/** A cursor made in one order is refused in the other, naming `cursor`; a bad order names `order`. */
async function expectOrderChecks(pathname: string) {
  const sep = pathname.includes('?') ? '&' : '?';
  const ascCursor = await firstCursor(pathname, 'asc');
  const descCursor = await firstCursor(pathname, 'desc');
  for (const [cursor, order] of [[ascCursor, 'desc'], [descCursor, 'asc'], [descCursor, undefined]] as const) {
    const res = await relay.api('GET', `${pathname}${sep}${order ? `order=${order}&` : ''}cursor=${cursor}`);
    expect(res.status, `${order} with a cursor of the other order`).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(res.body.errors).toEqual([{ field: 'cursor', message: expect.stringMatching(/continues a list in order=(asc|desc)/) }]);
  }
  for (const bad of ['newest', 'DESC', '']) {
    const res = await relay.api('GET', `${pathname}${sep}order=${bad}`, undefined, { validate: false });
    expect(res.status, `order=${bad}`).toBe(400);
    expect(res.body.errors).toEqual([{ field: 'order', message: 'one of asc, desc' }]);
  }
  const twice = await relay.api('GET', `${pathname}${sep}order=asc&order=desc`, undefined, { validate: false });
  expect(twice.body.errors).toEqual([{ field: 'order', message: 'one of asc, desc' }]);
}

describe('order=asc|desc', () => {
  it(`pages ${COUNT} events and their deliveries both ways, each once and in order`, async () => {
    const listener = await relay.api('POST', '/v1/listeners', {
      workbook: 'ordered',
      event_types: ['NOTIFICATION'],
      callback: { url: receiver.url('/ordered') },
    });
    expect(listener.status).toBe(201);
    const eventIds = Array.from({ length: COUNT }, (_, i) => `ordered-${String(i).padStart(3, '0')}`);
    const published = await relay.api('POST', '/v1/events', {
      events: eventIds.map((id, i) => ({ id, type: i % 2 ? 'ORDER_PAID' : 'ORDER_PLACED', workbook: 'ordered' })),
    });
    expect(published.status).toBe(202);

    await expectBothOrders('/v1/events?workbook=ordered', eventIds);
    await expectOrderChecks('/v1/events?workbook=ordered');

    const deliveryIds = (await walk(`/v1/deliveries?listener_id=${listener.body.id}`)).ids;
    expect(deliveryIds).toHaveLength(COUNT);
    expect(deliveryIds).toEqual([...deliveryIds].sort());
    await expectBothOrders(`/v1/deliveries?listener_id=${listener.body.id}`, deliveryIds);
    await expectOrderChecks(`/v1/deliveries?listener_id=${listener.body.id}`);

    // A delivery says which event type and workbook it carries.
    const newest = await relay.api('GET', `/v1/deliveries?listener_id=${listener.body.id}&order=desc&limit=2`);
    expect(newest.body.items.map((d: { event_id: string; event_type: string; workbook: string }) => [d.event_id, d.event_type, d.workbook])).toEqual([
      ['ordered-249', 'ORDER_PAID', 'ordered'],
      ['ordered-248', 'ORDER_PLACED', 'ordered'],
    ]);
    const one = await relay.api('GET', `/v1/deliveries/${newest.body.items[0].id}`);
    expect(one.body).toMatchObject({ event_type: 'ORDER_PAID', workbook: 'ordered' });
    const shown = await relay.api('GET', '/v1/events/ordered-000');
    expect(shown.body.deliveries).toEqual([expect.objectContaining({ event_type: 'ORDER_PLACED', workbook: 'ordered' })]);
    expect((await relay.api('GET', `/v1/deliveries?order=desc&listener_id=${listener.body.id}`, undefined, { token: TOKEN_B })).body.items).toEqual([]);
  }, 60_000);

  it('a newest-first walk is not disturbed by events that arrive during it', async () => {
    const ids = Array.from({ length: 30 }, (_, i) => `during-${i}`);
    expect((await relay.api('POST', '/v1/events', { events: ids.map((id) => ({ id, type: 'DURING', workbook: 'during' })) })).status).toBe(202);
    const seen: string[] = [];
    let cursor: string | null = null;
    let n = 0;
    do {
      const res = await relay.api('GET', `/v1/events?workbook=during&order=desc&limit=${LIMIT}${cursor ? `&cursor=${cursor}` : ''}`);
      seen.push(...res.body.items.map((e: { id: string }) => e.id));
      cursor = res.body.next_cursor;
      await relay.api('POST', '/v1/events', { id: `late-${n++}`, type: 'DURING', workbook: 'during' });
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());
  });

  it(`pages ${COUNT} executions both ways, each once and in order`, async () => {
    await createWorkbook(relay.api, workbook('ordered_runs', 'only: {action: std.noop}'));
    const started: string[] = [];
    for (let i = 0; i < COUNT; i += 25) {
      const batch = await Promise.all(
        Array.from({ length: 25 }, () => relay.api('POST', '/v1/executions', { workbook: 'ordered_runs', workflow: 'main' })),
      );
      for (const res of batch) {
        expect(res.status).toBe(201);
        started.push(res.body.id);
      }
    }
    const created = [...started].sort();
    await expectBothOrders('/v1/executions?workbook=ordered_runs', created);
    await expectOrderChecks('/v1/executions?workbook=ordered_runs');
  }, 60_000);
});

describe('an event with more than 1000 deliveries', () => {
  it('lists the first 1000 and a cursor that continues them in GET /v1/deliveries?event_id=', async () => {
    // 1003 listeners of a workbook of their own, every one matching the event.
    for (let i = 0; i < 1003; i += 50) {
      await Promise.all(
        Array.from({ length: Math.min(50, 1003 - i) }, async () => {
          const res = await relay.api('POST', '/v1/listeners', { workbook: 'wide', event_types: ['NOTIFICATION'], callback: { url: receiver.url('/wide') } });
          expect(res.status, res.text).toBe(201);
        }),
      );
    }
    const posted = await relay.api('POST', '/v1/events', { id: 'wide-1', type: 'wide.event', workbook: 'wide' });
    expect(posted.status, posted.text).toBe(202);
    const event = await relay.api('GET', '/v1/events/wide-1');
    expect(event.status, event.text).toBe(200);
    expect(event.body.deliveries).toHaveLength(1000);
    expect(event.body.deliveries_next_cursor).toEqual(expect.any(String));
    const rest = await relay.api('GET', `/v1/deliveries?event_id=wide-1&order=asc&cursor=${event.body.deliveries_next_cursor}`);
    expect(rest.status, rest.text).toBe(200);
    expect(rest.body.next_cursor).toBeNull();
    const ids = [...event.body.deliveries, ...rest.body.items].map((d: { id: string }) => d.id);
    expect(ids).toHaveLength(1003);
    expect(new Set(ids).size).toBe(1003);
    expect(ids).toEqual([...ids].sort());
    // One that fits says so with null.
    const small = await relay.api('POST', '/v1/events', { id: 'narrow-1', type: 'narrow.event', workbook: 'nobody' });
    expect(small.status).toBe(202);
    expect((await relay.api('GET', '/v1/events/narrow-1')).body).toMatchObject({ deliveries: [], deliveries_next_cursor: null });
  }, 60_000);
});

describe('cursors', () => {
  it('a cursor continues only the list it was made for; cursors of earlier versions are still read', async () => {
    for (const name of ['cursor_a', 'cursor_b']) await createWorkbook(relay.api, workbook(name, 'only: {action: std.noop}'));
    for (const name of ['cursor_a', 'cursor_b']) expect((await relay.api('POST', '/v1/executions', { workbook: name, workflow: 'main' })).status).toBe(201);
    const listeners: string[] = [];
    for (let i = 0; i < 2; i++) {
      const res = await relay.api('POST', '/v1/listeners', { workbook: 'cursors', event_types: ['NOTIFICATION'], callback: { url: receiver.url('/cursors') } });
      listeners.push(res.body.id);
    }
    expect((await relay.api('POST', '/v1/events', { events: [1, 2].map((i) => ({ id: `cursor-${i}`, type: 'CURSOR', workbook: 'cursors' })) })).status).toBe(202);
    const lists: Record<string, string> = {
      events: '/v1/events?workbook=cursors',
      deliveries: `/v1/deliveries?listener_id=${listeners[0]}`,
      executions: '/v1/executions',
      listeners: '/v1/listeners?workbook=cursors',
      workbooks: '/v1/workbooks',
    };
    const cursors: Record<string, string> = {};
    for (const [name, pathname] of Object.entries(lists)) {
      const res = await relay.api('GET', `${pathname}${pathname.includes('?') ? '&' : '?'}limit=1`);
      expect(res.body.next_cursor, name).toEqual(expect.any(String));
      cursors[name] = res.body.next_cursor;
      // Its own list takes it.
      expect((await relay.api('GET', `${pathname}${pathname.includes('?') ? '&' : '?'}limit=1&cursor=${cursors[name]}`)).status, name).toBe(200);
    }
    for (const [name, pathname] of Object.entries(lists)) {
      for (const [from, cursor] of Object.entries(cursors)) {
        if (from === name) continue;
        const res = await relay.api('GET', `${pathname}${pathname.includes('?') ? '&' : '?'}cursor=${cursor}`);
        expect(res.status, `a cursor of ${from} given to ${name}`).toBe(400);
        expect(res.body.errors).toEqual([{ field: 'cursor', message: `this cursor continues the list of ${from}, not of ${name}: start again without a cursor` }]);
      }
    }
    // Cursors from before they named their list: v2 (lists with an order) and v1 (oldest first).
    const old = (text: string) => Buffer.from(text).toString('base64url');
    const deliveries = (await relay.api('GET', lists.deliveries)).body.items.map((d: { id: string }) => d.id);
    const v2 = await relay.api('GET', `${lists.deliveries}&cursor=${old(`v2:asc:${deliveries[0]}`)}`);
    expect(v2.body.items.map((d: { id: string }) => d.id)).toEqual(deliveries.slice(1));
    const v1 = await relay.api('GET', `${lists.listeners}&cursor=${old(`v1:${[...listeners].sort()[0]}`)}`);
    expect(v1.body.items.map((l: { id: string }) => l.id)).toEqual([[...listeners].sort()[1]]);
    expect((await relay.api('GET', `${lists.listeners}&cursor=${old('v2:asc:x')}`)).status).toBe(400);
  });
});

describe('pages whose filters their walk does not serve (RELAY_LIST_SCAN_LIMIT)', () => {
  let bounded: TestRelay;
  beforeAll(async () => {
    bounded = await startTestRelay({ RELAY_LIST_SCAN_LIMIT: '10' });
  });
  afterAll(async () => {
    await bounded?.close();
  });

  /** Every page from the first, as a client follows next_cursor. */
  async function pages(pathname: string): Promise<string[][]> {
    const out: string[][] = [];
    for (let cursor: string | null = null; ; ) {
      const res = await bounded.api('GET', `${pathname}&limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.status, res.text).toBe(200);
      expect(res.body.items.length).toBeLessThanOrEqual(3);
      out.push(res.body.items.map((item: { id: string }) => item.id));
      cursor = res.body.next_cursor;
      if (!cursor) return out;
    }
  }

  it('look at no more than that many records a page, and go on with next_cursor to the end', async () => {
    const listener = await bounded.api('POST', '/v1/listeners', { workbook: '*', event_types: ['NOTIFICATION'], callback: { url: receiver.url('/bounded') } });
    expect(listener.status).toBe(201);
    // 40 events, 10 apart in the log: "rare" at 5, 6, 25 and 39.
    const rare = [5, 6, 25, 39];
    const ids = Array.from({ length: 40 }, (_, i) => `bounded-${String(i).padStart(2, '0')}`);
    const published = await bounded.api('POST', '/v1/events', {
      events: ids.map((id, i) => ({ id, type: 'BOUNDED', workbook: rare.includes(i) ? 'rare' : 'common', execution_id: `x-${i % 2}` })),
    });
    expect(published.status).toBe(202);
    const rareIds = rare.map((i) => ids[i]);

    const asc = await pages('/v1/events?workbook=rare');
    expect(asc).toEqual([[rareIds[0], rareIds[1]], [], [rareIds[2]], [rareIds[3]], []]);
    expect((await pages('/v1/events?workbook=rare&order=desc')).flat()).toEqual([...rareIds].reverse());
    expect((await pages('/v1/events?workbook=nothing')).flat()).toEqual([]);
    // One execution's events, in sequence order, the workbook checked on ten at a time.
    expect(await pages('/v1/events?execution_id=x-1&workbook=rare')).toEqual([[ids[5]], [ids[25], ids[39]], []]);
    expect((await pages('/v1/events?execution_id=x-0')).flat()).toEqual(ids.filter((_, i) => i % 2 === 0));

    await receiver.waitForCount('/bounded', 40);
    const deliveries = async () => (await bounded.api('GET', `/v1/deliveries?listener_id=${listener.body.id}&status=pending&limit=100`)).body.items;
    for (let i = 0; i < 50 && (await deliveries()).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    const succeeded = await pages(`/v1/deliveries?listener_id=${listener.body.id}&status=succeeded`);
    expect(succeeded.flat()).toHaveLength(40);
    expect(succeeded.length).toBe(14);
    expect(await pages(`/v1/deliveries?listener_id=${listener.body.id}&status=failed`)).toEqual([[]]);
  });

  it('apply to executions too', async () => {
    for (const name of ['scan_a', 'scan_b']) await createWorkbook(bounded.api, workbook(name, 'only: {action: std.noop}'));
    const started: string[] = [];
    for (const name of [...Array(12).fill('scan_a'), 'scan_b']) {
      const res = await bounded.api('POST', '/v1/executions', { workbook: name, workflow: 'main' });
      expect(res.status).toBe(201);
      started.push(res.body.id);
    }
    const first = await bounded.api('GET', '/v1/executions?workbook=scan_b&limit=3');
    expect(first.body).toEqual({ items: [], next_cursor: expect.any(String) });
    const second = await bounded.api('GET', `/v1/executions?workbook=scan_b&limit=3&cursor=${first.body.next_cursor}`);
    expect(second.body.items.map((e: { id: string }) => e.id)).toEqual([started[12]]);
    expect(second.body.next_cursor).toBeNull();
    expect((await pages('/v1/executions?workbook=scan_a&order=desc')).flat()).toEqual(started.slice(0, 12).reverse());
  });

  it('refuse a cursor of an earlier version, a cursor of the log for one execution, and one execution\'s for another', async () => {
    const old = Buffer.from('v3:events:asc:17').toString('base64url');
    const res = await bounded.api('GET', `/v1/events?cursor=${old}`);
    expect(res.status).toBe(400);
    expect(res.body.errors).toEqual([{ field: 'cursor', message: 'a cursor of an earlier version of the relay: start again without a cursor' }]);
    expect((await bounded.api('POST', '/v1/events', { events: [1, 2].map((i) => ({ id: `plain-${i}`, type: 'PLAIN', workbook: 'plain' })) })).status).toBe(202);
    const log = await bounded.api('GET', '/v1/events?workbook=plain&limit=1');
    const mixed = await bounded.api('GET', `/v1/events?execution_id=x-1&cursor=${log.body.next_cursor}`);
    expect(mixed.status).toBe(400);
    expect(mixed.body.errors).toEqual([{ field: 'cursor', message: expect.stringContaining('continues a list of events without execution_id') }]);
    const ofExecution = await bounded.api('GET', '/v1/events?execution_id=x-1&limit=1');
    expect(ofExecution.body.next_cursor).toEqual(expect.any(String));
    const unfiltered = await bounded.api('GET', `/v1/events?cursor=${ofExecution.body.next_cursor}`);
    expect(unfiltered.status).toBe(400);
    expect(unfiltered.body.errors).toEqual([{ field: 'cursor', message: expect.stringContaining("continues a list of one execution's events") }]);
    const same = await bounded.api('GET', `/v1/events?execution_id=x-1&limit=1&cursor=${ofExecution.body.next_cursor}`);
    expect(same.body.items.map((e: { sequence: number }) => e.sequence)).toEqual([2]);
    // A cursor of one execution's events continues no other execution's.
    const other = await bounded.api('GET', `/v1/events?execution_id=x-2&cursor=${ofExecution.body.next_cursor}`);
    expect(other.status).toBe(400);
    expect(other.body.errors).toEqual([{ field: 'cursor', message: 'this cursor continues the events of execution x-1, not of x-2: start again without a cursor' }]);
    // Before they named their execution, such cursors held its sequence alone.
    const bare = await bounded.api('GET', `/v1/events?execution_id=x-1&cursor=${Buffer.from('v3:events:asc:x1').toString('base64url')}`);
    expect(bare.status).toBe(400);
    expect(bare.body.errors).toEqual([{ field: 'cursor', message: 'a cursor of an earlier version of the relay: start again without a cursor' }]);
  });
});
