import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PAGE_BYTES } from '../src/store/page-bytes.js';
import { createWorkbook, startExecution, waitForState, workbook } from './helpers/engine.js';
import { startTestRelay, type TestRelay } from './helpers/relay.js';

/*
 * A page of large records ends early: after the record that brings what it read to PAGE_BYTES
 * (4 MiB), its next_cursor going on after that record, whatever `limit` asked. Records of about
 * 900 KB: five to a page.
 */

const BIG = 900_000;
let relay: TestRelay;

beforeAll(async () => {
  relay = await startTestRelay();
});

afterAll(async () => {
  await relay?.close();
});

/** Follows next_cursor from `pathname` to the end: the ids of each page. */
async function pages(pathname: string): Promise<string[][]> {
  const seen: string[][] = [];
  let cursor: string | null = null;
  do {
    const res = await relay.api('GET', `${pathname}${pathname.includes('?') ? '&' : '?'}limit=1000${cursor ? `&cursor=${cursor}` : ''}`);
    expect(res.status, res.text).toBe(200);
    seen.push(res.body.items.map((item: { id?: string; name?: string }) => item.id ?? item.name));
    cursor = res.body.next_cursor;
  } while (cursor);
  return seen;
}

const sizes = (ids: string[][]) => ids.map((page) => page.length);

describe('pages of large records', () => {
  it('holds about PAGE_BYTES of events, in either order, walked or filtered', async () => {
    expect(PAGE_BYTES).toBe(4 * 1024 * 1024);
    const ids = Array.from({ length: 12 }, (_, i) => `big-${String(i).padStart(2, '0')}`);
    for (const [i, id] of ids.entries()) {
      const res = await relay.api('POST', '/v1/events', {
        id,
        type: i % 2 ? 'BIG_ODD' : 'BIG_EVEN',
        workbook: 'big',
        execution_id: 'big-run',
        data: { blob: 'x'.repeat(BIG) },
      });
      expect(res.status, res.text).toBe(202);
    }
    // Small events after them fill a page up to its limit.
    const small = Array.from({ length: 30 }, (_, i) => ({ id: `small-${i}`, type: 'SMALL', workbook: 'big', execution_id: 'big-run' }));
    expect((await relay.api('POST', '/v1/events', { events: small })).status).toBe(202);
    const all = [...ids, ...small.map((e) => e.id)];

    const asc = await pages('/v1/events?workbook=big');
    expect(sizes(asc)).toEqual([5, 5, 32]);
    expect(asc.flat()).toEqual(all);
    const desc = await pages('/v1/events?workbook=big&order=desc');
    expect(desc.flat()).toEqual([...all].reverse());
    expect(sizes(desc)).toEqual([35, 5, 2]);
    const execution = await pages('/v1/events?execution_id=big-run');
    expect(execution.flat()).toEqual(all);
    expect(sizes(execution)).toEqual([5, 5, 32]);
    // Filtered: six large ones of the type.
    const odd = await pages('/v1/events?workbook=big&type=BIG_ODD');
    expect(odd.flat()).toEqual(ids.filter((_, i) => i % 2));
    expect(sizes(odd)).toEqual([5, 1]);
    // A limit below what fits is kept.
    const first = await relay.api('GET', '/v1/events?workbook=big&limit=2');
    expect(first.body.items.map((e: { id: string }) => e.id)).toEqual(ids.slice(0, 2));
  }, 60_000);

  it('holds about PAGE_BYTES of executions (their inputs), of one execution\'s tasks (their results) and of workbooks (their definitions)', async () => {
    const blob = 'y'.repeat(BIG);
    const tasks = Array.from({ length: 7 }, (_, i) => `echo${i}: {action: std.echo, input: {output: "<% $.blob %>"}}`);
    await createWorkbook(relay.api, workbook('big_echo', tasks.join('\n'), ['blob']));
    const first = await startExecution(relay.api, 'big_echo', { blob });
    expect(await waitForState(relay.api, first, ['SUCCESS', 'ERROR'], 30_000)).toMatchObject({ state: 'SUCCESS' });
    const taskPages = await pages(`/v1/executions/${first}/tasks`);
    expect(sizes(taskPages)).toEqual([5, 2]);
    expect(new Set(taskPages.flat()).size).toBe(7);

    const started = [first];
    for (let i = 0; i < 6; i++) started.push(await startExecution(relay.api, 'big_echo', { blob }));
    const executionPages = await pages('/v1/executions?workbook=big_echo');
    expect(sizes(executionPages)).toEqual([5, 2]);
    expect(executionPages.flat()).toEqual(started);
    for (const id of started) await waitForState(relay.api, id, ['SUCCESS', 'ERROR'], 30_000);

    // Definitions of 900 KB: a comment makes up the size.
    const names = Array.from({ length: 6 }, (_, i) => `big_def_${i}`);
    for (const name of names) await createWorkbook(relay.api, `# ${'z'.repeat(BIG)}\n${workbook(name, 'only: {action: std.noop}')}`);
    const workbookPages = await pages('/v1/workbooks');
    expect(workbookPages.flat()).toEqual(['big_def_0', 'big_def_1', 'big_def_2', 'big_def_3', 'big_def_4', 'big_def_5', 'big_echo']);
    expect(sizes(workbookPages)).toEqual([5, 2]);
  }, 120_000);
});
