import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { allotSlots, createAdmissionGate, reserveFor } from '../src/dispatch/admission.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { request, startTestRelay, TOKEN_B, type TestRelay } from './helpers/relay.js';

const held = (entries: Record<string, number>) => new Map(Object.entries(entries));

describe('allotSlots (the fair share)', () => {
  it('lets a lone project use everything but the reserve', () => {
    expect(reserveFor(512)).toBe(64);
    expect(reserveFor(4)).toBe(1);
    expect(reserveFor(1)).toBe(0);
    expect(allotSlots(512, held({}), ['a'])).toEqual(new Map([['a', 448]]));
    expect(allotSlots(4, held({ a: 2 }), ['a'])).toEqual(new Map([['a', 1]]));
    expect(allotSlots(1, held({}), ['a'])).toEqual(new Map([['a', 1]]));
  });

  it('gives a newcomer the reserve at once while another project holds the rest', () => {
    expect(allotSlots(4, held({ a: 3 }), ['a', 'b'])).toEqual(new Map([['b', 1]]));
  });

  it('holds back a project above its share while another waits, and splits free room by share', () => {
    // a holds 3 of 4; with two projects active each share is 2: a gets nothing more.
    expect(allotSlots(4, held({ a: 3, b: 1 }), ['a', 'b'])).toEqual(new Map());
    expect(allotSlots(10, held({}), ['a', 'b', 'c'])).toEqual(new Map([['a', 3], ['b', 3], ['c', 3]]));
    // A project with attempts in flight but nothing due still counts as active.
    expect(allotSlots(10, held({ c: 1 }), ['a', 'b'])).toEqual(new Map([['a', 3], ['b', 3]]));
  });

  it('never allots more than is free', () => {
    expect(allotSlots(4, held({ a: 1, b: 2 }), ['a', 'b', 'c'])).toEqual(new Map([['c', 1]]));
    expect(allotSlots(4, held({ a: 4 }), ['b'])).toEqual(new Map());
    expect(allotSlots(4, held({}), [])).toEqual(new Map());
  });
});

describe('the gate', () => {
  it('counts in flight per project and rotates who is served first', () => {
    const gate = createAdmissionGate({ maxInFlight: 3, slotsPerOrigin: 1 });
    const first = gate.allot(['a', 'b']);
    const second = gate.allot(['a', 'b']);
    // With 3 slots and two projects the share is 1 each, and the order alternates.
    expect([...first.keys()]).toEqual(['a', 'b']);
    expect([...second.keys()]).toEqual(['b', 'a']);
    gate.admit('a');
    gate.admit('a');
    expect(gate.inFlight).toBe(2);
    expect(gate.heldBy('a')).toBe(2);
    expect(gate.allot(['a', 'b'])).toEqual(new Map([['b', 1]]));
    gate.release('a');
    expect(gate.heldBy('a')).toBe(1);
    expect(gate.inFlight).toBe(1);
  });

  it('queues attempts for a busy origin and hands the slot on in order', async () => {
    const gate = createAdmissionGate({ maxInFlight: 10, slotsPerOrigin: 1 });
    const order: string[] = [];
    const r1 = await gate.originSlot('http://x');
    const p2 = gate.originSlot('http://x').then((r) => (order.push('2'), r));
    const p3 = gate.originSlot('http://x').then((r) => (order.push('3'), r));
    const other = await gate.originSlot('http://y'); // another origin is not held up
    expect(other).toBeTypeOf('function');
    r1!();
    (await p2)!();
    await p3;
    expect(order).toEqual(['2', '3']);
    const waiting = gate.originSlot('http://y');
    gate.close();
    expect(await waiting).toBeNull();
    expect(await gate.originSlot('http://z')).toBeNull();
  });
});

describe('one project cannot starve another', () => {
  let relay: TestRelay;
  let receiver: Receiver;

  beforeAll(async () => {
    receiver = await startReceiver();
    receiver.respond('/a', ['hang']);
    relay = await startTestRelay({ RELAY_MAX_IN_FLIGHT: '4', RELAY_SHUTDOWN_GRACE_MS: '200' });
  });
  afterAll(async () => {
    await relay?.close();
    await receiver?.close();
  });
  afterEach(() => receiver.respond('/a', ['hang']));

  it("delivers project B's event within a second while project A's receiver never answers", async () => {
    const listener = (token: string | undefined, path: string) =>
      request(relay.url, 'POST', '/v1/listeners', {
        workbook: '*',
        event_types: ['NOTIFICATION'],
        callback: { url: receiver.url(path), timeout_ms: 60_000 },
      }, { token });
    expect((await listener(undefined, '/a')).status).toBe(201);
    expect((await listener(TOKEN_B, '/b')).status).toBe(201);
    const events = Array.from({ length: 20 }, (_, i) => ({ type: 'a.thing', data: { i } }));
    expect((await relay.api('POST', '/v1/events', { events })).status).toBe(202);
    // A takes what the gate lets it have, and those attempts hang.
    await receiver.waitFor((rs) => rs.filter((r) => r.path === '/a').length >= 3, 5_000);
    const sentAt = Date.now();
    const res = await request(relay.url, 'POST', '/v1/events', { type: 'b.thing' }, { token: TOKEN_B });
    expect(res.status).toBe(202);
    const [b] = await receiver.waitForCount('/b', 1, 1_000);
    expect(b.at - sentAt).toBeLessThan(1_000);
    // A never held more than the limit of four.
    expect(receiver.requests('/a').length).toBeLessThanOrEqual(4);
  });
});
