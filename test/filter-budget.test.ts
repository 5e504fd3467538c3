import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { FilterBudgetError, MAX_DELIVERIES_PER_REQUEST, matchCharged, meteredRoute, newFilterMeter } from '../src/fanout/filter-budget.js';
import { compileListenerRule } from '../src/fanout/match.js';
import type { EventEnvelope } from '../src/records/event.js';
import { replayPage } from '../src/store/rows.js';
import { storedListener, taskEnvelope } from './helpers/envelopes.js';
import { createWorkbook, startExecution, tasksOf, waitForState, workbook } from './helpers/engine.js';
import { COSTLY, costlyFilter, LONG, SHORT } from './helpers/costly-filter.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { startTestRelay, type TestRelay } from './helpers/relay.js';

/*
 * A request's matching is bounded (src/fanout/filter-budget.ts): a linear-time engine and
 * bounded patterns still let many costly patterns times many long values hold the relay.
 */


describe('a replay page under the budget', () => {
  const rows = [1, 2, 3].map((seq) => ({ seq, id: `e${seq}`, envelope: JSON.stringify(taskEnvelope({ id: `e${seq}` })) }));
  const limits = { limit: 10, scanLimit: 10 };
  const spentAt = (seq: number) => (e: EventEnvelope) => {
    if (e.id === `e${seq}`) throw new FilterBudgetError(2_000);
    return ['l1'];
  };

  it('stops before the event that ran past it, once one was looked at', () => {
    const state = { count: 0, scanned: 0, last: null as (typeof rows)[number] | null, truncated: false };
    expect(replayPage(rows, state, spentAt(3), limits).map((t) => t.row.id)).toEqual(['e1', 'e2']);
    expect(state).toMatchObject({ count: 2, scanned: 2, truncated: true, last: rows[1] });
  });

  it('refuses the call when the first event alone costs more', () => {
    const state = { count: 0, scanned: 0, last: null, truncated: false };
    expect(() => replayPage(rows, state, spentAt(1), limits)).toThrow(FilterBudgetError);
  });
});

describe('the meter', () => {
  const matcher = compileListenerRule(storedListener('l1', { workbook: '*', event_types: ['TASK'], filter: costlyFilter }));
  const route = Object.assign((e: EventEnvelope) => (matchCharged(matcher, e) ? ['l1'] : []), {});
  const heavy = taskEnvelope({ data: { s: LONG, t: LONG, u: LONG } });

  it('charges only a metered route, and stops it once the budget is spent', () => {
    expect(matchCharged(matcher, taskEnvelope({ data: { s: SHORT, t: SHORT, u: SHORT } }))).toBe(true);
    // Unmetered (a RabbitMQ message, the engine's events other than a result): no limit.
    expect(route(heavy)).toEqual([]);
    const meter = newFilterMeter(1);
    expect(() => meteredRoute(route, meter)(heavy)).toThrow(FilterBudgetError);
    expect(meter.spentMs).toBeGreaterThan(1);
    // The meter is the route's only while it runs.
    expect(route(heavy)).toEqual([]);
  });

  it('counts the deliveries the route makes, and stops it past the most one request may make', () => {
    const three = Object.assign(() => ['l1', 'l2', 'l3'], {});
    const meter = newFilterMeter(500, undefined, 7);
    const metered = meteredRoute(three, meter);
    expect(metered(heavy)).toHaveLength(3);
    expect(metered(heavy)).toHaveLength(3);
    expect(() => metered(heavy)).toThrow(/would make more than 7 deliveries/);
    expect(meter.deliveries).toBe(9);
    expect(newFilterMeter().maxDeliveries).toBe(MAX_DELIVERIES_PER_REQUEST);
  });

  it('lets cheap work through, and keeps the route\'s properties', () => {
    const ordered = new Set(['l1']);
    const metered = meteredRoute(Object.assign(route, { ordered }), newFilterMeter(500));
    expect(metered.ordered).toBe(ordered);
    for (let i = 0; i < 100; i++) expect(metered(taskEnvelope({ data: { s: SHORT, t: SHORT, u: SHORT } }))).toEqual(['l1']);
  });
});

describe('requests that would cost too much filter work', () => {
  let relay: TestRelay;
  let receiver: Receiver;
  beforeAll(async () => {
    [relay, receiver] = await Promise.all([startTestRelay(), startReceiver()]);
  });
  afterAll(async () => {
    await relay?.close();
    await receiver?.close();
  });

  const listen = async (workbook: string) => {
    const res = await relay.api('POST', '/v1/listeners', { workbook, event_types: ['NOTIFICATION'], filter: costlyFilter, callback: { url: receiver.url(`/${workbook}`) } });
    expect(res.status, res.text).toBe(201);
    return res.body.id as string;
  };
  const heavyEvents = (workbook: string, n: number) => Array.from({ length: n }, (_, i) => ({ type: 'budget.heavy', workbook, data: { i, s: LONG, t: LONG, u: LONG } }));

  it('refuses an ingest request with a 422 naming the body, stores none of it, and stays responsive', async () => {
    await listen('costly');
    const started = Date.now();
    const [res, health] = await Promise.all([
      relay.api('POST', '/v1/events', { events: heavyEvents('costly', 20) }),
      // Asked once the request is being matched: answered soon after the refusal at the latest.
      new Promise((r) => setTimeout(r, 200)).then(() => relay.api('GET', '/healthz')),
    ]);
    expect(res.status, res.text).toBe(422);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(res.body.errors).toEqual([{ field: '(body)', message: expect.stringMatching(/took more than 500 ms.*nothing was stored$/) }]);
    expect(health.status).toBe(200);
    // Without the budget this took seconds (7 s for 20 such events on this machine).
    expect(Date.now() - started).toBeLessThan(5_000);
    expect((await relay.api('GET', '/v1/events?type=budget.heavy')).body.items).toEqual([]);

    // The same listener takes events whose values are short.
    const fine = await relay.api('POST', '/v1/events', { events: [{ type: 'budget.light', workbook: 'costly', data: { s: SHORT, t: SHORT, u: SHORT } }] });
    expect(fine.status, fine.text).toBe(202);
    const [received] = await receiver.waitForCount('/costly', 1);
    expect(JSON.parse(received.text)).toMatchObject({ type: 'budget.light' });
  }, 30_000);

  it('refuses only the request that costs too much: others of the project committed beside it are stored', async () => {
    await listen('mixed');
    const light = (i: number) => relay.api('POST', '/v1/events', { events: [{ type: 'budget.mixed', workbook: 'mixed', data: { i, s: SHORT, t: SHORT, u: SHORT } }] });
    const answers = await Promise.all([light(0), relay.api('POST', '/v1/events', { events: heavyEvents('mixed', 3) }), light(1), light(2), light(3)]);
    expect(answers.map((a) => a.status)).toEqual([202, 422, 202, 202, 202]);
    const received = await receiver.waitForCount('/mixed', 4);
    expect(received.map((r) => JSON.parse(r.text).data.i).sort()).toEqual([0, 1, 2, 3]);
  }, 30_000);

  it('meters a Mistral notification as it does a request of events', async () => {
    // One such event takes one listener a few tenths of a second; four take more than the budget.
    for (let i = 0; i < 4; i++) {
      const res = await relay.api('POST', '/v1/listeners', {
        workbook: 'mcostly',
        event_types: ['EXECUTION'],
        filter: costlyFilter,
        callback: { url: receiver.url('/mcostly') },
      });
      expect(res.status, res.text).toBe(201);
    }
    const body = JSON.stringify({ event: 'WORKFLOW_SUCCEEDED', id: 'exec-costly', state: 'SUCCESS', name: 'wf', s: LONG, t: LONG, u: LONG });
    const started = Date.now();
    const mistral = await relay.api('POST', '/v1/ingest/mistral?workbook=mcostly', undefined, { raw: body });
    expect(mistral.status, mistral.text).toBe(422);
    expect(mistral.body.errors).toEqual([{ field: '(body)', message: expect.stringMatching(/took more than 500 ms.*nothing was stored$/) }]);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect((await relay.api('GET', '/v1/events?workbook=mcostly')).body.items).toEqual([]);
  }, 30_000);

  it('meters the launch of an execution, whose event carries the client\'s input', async () => {
    await createWorkbook(relay.api, workbook('xcostly', 'only:\n  action: std.noop', ['s', 't', 'u']));
    const inputFilter = { 'data.input.s': { $regex: COSTLY }, 'data.input.t': { $regex: COSTLY }, 'data.input.u': { $regex: COSTLY } };
    for (let i = 0; i < 4; i++) {
      const res = await relay.api('POST', '/v1/listeners', { workbook: 'xcostly', event_types: ['EXECUTION'], filter: inputFilter, callback: { url: receiver.url('/xcostly') } });
      expect(res.status, res.text).toBe(201);
    }
    const started = Date.now();
    const [res, health] = await Promise.all([
      relay.api('POST', '/v1/executions', { workbook: 'xcostly', workflow: 'main', input: { s: LONG, t: LONG, u: LONG } }),
      new Promise((r) => setTimeout(r, 200)).then(() => relay.api('GET', '/healthz')),
    ]);
    expect(res.status, res.text).toBe(422);
    expect(res.body.errors).toEqual([
      { field: '(body)', message: expect.stringMatching(/took more than 500 ms; send shorter input values where the filters test them; nothing was stored$/) },
    ]);
    expect(health.status).toBe(200);
    // Unmetered, the four listeners held the relay for seconds on this one event.
    expect(Date.now() - started).toBeLessThan(5_000);
    const executions = await relay.api('GET', '/v1/executions?limit=1000');
    expect(executions.body.items.filter((e: { workbook: string }) => e.workbook === 'xcostly')).toEqual([]);
    expect((await relay.api('GET', '/v1/events?workbook=xcostly')).body.items).toEqual([]);

    // Short values go through, to every listener whose filter they match.
    const fine = await relay.api('POST', '/v1/executions', { workbook: 'xcostly', workflow: 'main', input: { s: SHORT, t: SHORT, u: SHORT } });
    expect(fine.status, fine.text).toBe(201);
    const received = await receiver.waitForCount('/xcostly', 4);
    expect(received.map((r) => JSON.parse(r.text).type)).toEqual(Array(4).fill('WORKFLOW_LAUNCHED'));
  }, 30_000);

  it('fails a task whose result would cost too much to match, instead of holding the relay', async () => {
    // An echo of the input is the task's result: the launch's event carries no result, its
    // TASK_SUCCEEDED would.
    const tasks = "echo:\n  action: std.echo\n  input:\n    output: {s: '<% $.s %>', t: '<% $.t %>', u: '<% $.u %>'}";
    await createWorkbook(relay.api, workbook('rcostly', tasks, ['s', 't', 'u']));
    const resultFilter = { 'data.result.s': { $regex: COSTLY }, 'data.result.t': { $regex: COSTLY }, 'data.result.u': { $regex: COSTLY } };
    for (let i = 0; i < 4; i++) {
      const res = await relay.api('POST', '/v1/listeners', { workbook: 'rcostly', event_types: ['TASK'], filter: resultFilter, callback: { url: receiver.url('/rcostly') } });
      expect(res.status, res.text).toBe(201);
    }
    const started = Date.now();
    const id = await startExecution(relay.api, 'rcostly', { s: LONG, t: LONG, u: LONG });
    const execution = await waitForState(relay.api, id, ['SUCCESS', 'ERROR'], 15_000);
    // Unmetered, the four listeners held the relay for seconds and the task succeeded.
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(execution.state).toBe('ERROR');
    const [task] = await tasksOf(relay.api, id);
    expect(task).toMatchObject({ name: 'echo', state: 'ERROR', result: null });
    expect(task.state_info).toBe(
      "its result was not kept: matching these events against the project's listeners (their $regex filters and event patterns) " +
        'took more than 500 ms; return a shorter result where the filters test it',
    );

    // A short result goes through, to the listeners whose filter it matches.
    const fine = await startExecution(relay.api, 'rcostly', { s: SHORT, t: SHORT, u: SHORT });
    expect((await waitForState(relay.api, fine, ['SUCCESS', 'ERROR'])).state).toBe('SUCCESS');
    const received = await receiver.waitForCount('/rcostly', 4);
    expect(received.map((r) => JSON.parse(r.text).type)).toEqual(Array(4).fill('TASK_SUCCEEDED'));
  }, 30_000);

  it('counts event patterns too: a request against many long patterns is refused instead of holding the relay', async () => {
    // 20 listeners of 100 patterns, each a run of 49 words between two #s: matching a type of
    // 100 words against one takes about 2,500 word comparisons, so 1,000 such events would
    // hold the relay for seconds.
    const type = Array.from({ length: 100 }, () => 'a').join('.');
    const run = Array.from({ length: 48 }, () => 'a').join('.');
    for (let l = 0; l < 20; l++) {
      const events = Array.from({ length: 100 }, (_, i) => `#.${run}.b${l}x${i}.#`);
      const res = await relay.api('POST', '/v1/listeners', { workbook: 'patterns', event_types: ['NOTIFICATION'], events, callback: { url: receiver.url('/patterns') } });
      expect(res.status, res.text).toBe(201);
    }
    const started = Date.now();
    const [res, health] = await Promise.all([
      relay.api('POST', '/v1/events', { events: Array.from({ length: 1_000 }, (_, i) => ({ type, workbook: 'patterns', data: { i } })) }),
      new Promise((r) => setTimeout(r, 200)).then(() => relay.api('GET', '/healthz')),
    ]);
    expect(res.status, res.text).toBe(422);
    expect(res.body.errors).toEqual([{ field: '(body)', message: expect.stringMatching(/event patterns\) took more than 500 ms.*nothing was stored$/) }]);
    expect(health.status).toBe(200);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect((await relay.api('GET', '/v1/events?workbook=patterns')).body.items).toEqual([]);
    // A type the patterns are quick to turn down goes through.
    const fine = await relay.api('POST', '/v1/events', { events: [{ type: 'a.b0x0', workbook: 'patterns' }] });
    expect(fine.status, fine.text).toBe(202);
  }, 60_000);

  it('refuses a request whose events would make more deliveries than one request may, storing none of it', async () => {
    // 21 listeners that take every event of the workbook: 1,000 events would make 21,000
    // deliveries, each a row of the request's transaction. (A relay of its own, with no
    // dispatcher: the deliveries it makes are counted, not sent.)
    const relay = await startTestRelay({ RELAY_ROLE: 'api' });
    onTestFinished(() => relay.close());
    const ids: string[] = [];
    for (let i = 0; i < 21; i++) {
      const res = await relay.api('POST', '/v1/listeners', { workbook: 'wide', event_types: ['NOTIFICATION'], callback: { url: receiver.url('/wide') } });
      expect(res.status, res.text).toBe(201);
      ids.push(res.body.id);
    }
    const events = (n: number, tag: string) => Array.from({ length: n }, (_, i) => ({ id: `${tag}-${i}`, type: 'budget.wide', workbook: 'wide' }));
    const res = await relay.api('POST', '/v1/events', { events: events(1_000, 'too-many') });
    expect(res.status, res.text.slice(0, 300)).toBe(422);
    expect(res.body.errors).toEqual([
      {
        field: '(body)',
        message:
          `these events would make more than ${MAX_DELIVERIES_PER_REQUEST} deliveries (one per event for each of the project's listeners that matches it), ` +
          'more than one request may make; send fewer events at a time, or match them with fewer listeners; nothing was stored',
      },
    ]);
    expect((await relay.api('GET', '/v1/events?workbook=wide')).body.items).toEqual([]);
    // With one listener fewer the same request makes exactly the most: it is stored.
    expect((await relay.api('DELETE', `/v1/listeners/${ids.pop()}`)).status).toBe(204);
    const fine = await relay.api('POST', '/v1/events', { events: events(1_000, 'just-enough') });
    expect(fine.status, fine.text).toBe(202);
    const deliveries = await relay.api('GET', `/v1/deliveries?listener_id=${ids[0]}&limit=1000`);
    expect(deliveries.body.items).toHaveLength(1_000);
  }, 60_000);

  it('stops a replay call at its budget and says where to go on, keeping what it made', async () => {
    // Stored while no listener tests them, then replayed to one that does: a light event, then
    // heavy ones (each 0.6-2 s of matching here).
    const since = new Date(Date.now() - 1_000).toISOString();
    const light = { type: 'budget.light', workbook: 'later', data: { s: SHORT, t: SHORT, u: SHORT } };
    const stored = await relay.api('POST', '/v1/events', { events: [light, ...heavyEvents('later', 12)] });
    expect(stored.status, stored.text).toBe(202);
    const id = await listen('later');
    const started = Date.now();
    const replay = await relay.api('POST', `/v1/listeners/${id}/replay`, { since });
    expect(replay.status, replay.text).toBe(202);
    // A replay's budget is larger than a request's (it may walk 100,000 events): 2 s, and the
    // event that ran past it is left for the next call.
    expect(Date.now() - started).toBeLessThan(6_000);
    expect(replay.body).toEqual({ count: 1, truncated: true, next: { since, until: expect.any(String), after: expect.any(String) } });
    const [received] = await receiver.waitForCount('/later', 1);
    expect(JSON.parse(received.text)).toMatchObject({ type: 'budget.light' });
  }, 30_000);
});
