import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../src/config.js';
import { createFailureLog, createFailureTally } from '../src/dispatch/failure-log.js';
import { startRelay, type Relay } from '../src/relay.js';
import type { AttemptResult, ClaimedDelivery } from '../src/store/store.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { captureLog, request, tempDir, TOKEN_A, type LogLine } from './helpers/relay.js';

/*
 * What the dispatcher tells operators about failures: the tally that turns a storm of failed
 * attempts into one line per listener per minute (under a controlled clock), and the lines a
 * real relay writes while a real receiver answers 500 or 410.
 */

const MINUTE = 60_000;


const WARN = 40;
const DEBUG = 20;

describe('the failing-listener tally (controlled clock)', () => {
  it('turns 10,000 failures of one listener within a minute into one line, the rest into the next minute\'s', () => {
    const tally = createFailureTally(MINUTE);
    const lines = [];
    for (let i = 0; i < 10_000; i++) {
      const at = 1_000_000 + i * 5; // 50 s of failures
      tally.record('lst_a', { at, error: `HTTP 500 #${i}`, nextAttemptAt: at + 30_000 });
      lines.push(...tally.due(at));
    }
    // And ticks up to the end of the minute after the first line.
    for (let t = 1_050_000; t < 1_060_000; t += 1_000) lines.push(...tally.due(t));
    expect(lines).toEqual([{ listenerId: 'lst_a', failedAttempts: 1, since: 1_000_000, lastError: 'HTTP 500 #0', nextAttemptAt: 1_030_000 }]);

    const next = tally.due(1_060_000);
    expect(next).toEqual([
      { listenerId: 'lst_a', failedAttempts: 9_999, since: 1_000_005, lastError: 'HTTP 500 #9999', nextAttemptAt: 1_000_000 + 9_999 * 5 + 30_000 },
    ]);
    expect(lines[0].failedAttempts + next[0].failedAttempts).toBe(10_000);
  });

  it('gives two failing listeners a line each', () => {
    const tally = createFailureTally(MINUTE);
    for (let i = 0; i < 500; i++) {
      tally.record('lst_a', { at: i, error: 'HTTP 500', nextAttemptAt: null });
      tally.record('lst_b', { at: i, error: 'TIMEOUT', nextAttemptAt: 90_000 });
    }
    const lines = tally.due(1_000);
    expect(lines.map((l) => [l.listenerId, l.failedAttempts, l.lastError])).toEqual([
      ['lst_a', 500, 'HTTP 500'],
      ['lst_b', 500, 'TIMEOUT'],
    ]);
    expect(tally.due(2_000)).toEqual([]);
  });

  it('says nothing when nothing failed', () => {
    const tally = createFailureTally(MINUTE);
    for (let t = 0; t <= 10 * MINUTE; t += 1_000) expect(tally.due(t)).toEqual([]);
  });

  it('says nothing more once a listener stops failing, and reports its next failure at once after a quiet minute', () => {
    const tally = createFailureTally(MINUTE);
    tally.record('lst_a', { at: 0, error: 'HTTP 500', nextAttemptAt: 10 });
    expect(tally.due(0)).toHaveLength(1);
    expect(tally.due(MINUTE)).toEqual([]);
    expect(tally.due(5 * MINUTE)).toEqual([]);
    tally.record('lst_a', { at: 5 * MINUTE + 1, error: 'HTTP 502', nextAttemptAt: null });
    expect(tally.due(5 * MINUTE + 1)).toEqual([{ listenerId: 'lst_a', failedAttempts: 1, since: 5 * MINUTE + 1, lastError: 'HTTP 502', nextAttemptAt: null }]);
  });

  it('holds a second failure within the minute until the minute is over', () => {
    const tally = createFailureTally(MINUTE);
    tally.record('lst_a', { at: 0, error: 'HTTP 500', nextAttemptAt: 10 });
    expect(tally.due(0)).toHaveLength(1);
    tally.record('lst_a', { at: 30_000, error: 'HTTP 503', nextAttemptAt: 40_000 });
    expect(tally.due(30_000)).toEqual([]);
    expect(tally.due(MINUTE - 1)).toEqual([]);
    expect(tally.due(MINUTE)).toEqual([{ listenerId: 'lst_a', failedAttempts: 1, since: 30_000, lastError: 'HTTP 503', nextAttemptAt: 40_000 }]);
  });
});

function claimed(over: Partial<ClaimedDelivery> = {}): ClaimedDelivery {
  return {
    id: 'dlv_1',
    project: 'p',
    listenerId: 'lst_a',
    attemptNumber: 1,
    envelopeJson: JSON.stringify({ id: 'evt_1', type: 'TASK_FAILED' }),
    original: null,
    listener: {} as ClaimedDelivery['listener'],
    gap: null,
    ...over,
  };
}

function result(over: Partial<AttemptResult> = {}): AttemptResult {
  return {
    deliveryId: 'dlv_1',
    listenerId: 'lst_a',
    project: 'p',
    eventId: 'evt_1',
    eventType: 'TASK_FAILED',
    attempt: { number: 1, started_at: 1_000, duration_ms: 12, status_code: 500, error: 'HTTP_ERROR', response_excerpt: null },
    status: 'pending',
    nextAttemptAt: 31_000,
    lastError: 'HTTP 500',
    disableListener: null,
    ...over,
  };
}

describe('the failure log (controlled clock, real pino)', () => {
  it('writes summary lines at most once a minute per listener, whatever the number of failures', () => {
    const { lines, log } = captureLog('info');
    let now = 0;
    const failures = createFailureLog({ log, now: () => now });
    failures.summarize();
    expect(lines).toEqual([]);
    for (let i = 0; i < 10_000; i++) {
      now = i * 5;
      failures.attemptFinished(claimed({ id: `dlv_${i}` }), result({ deliveryId: `dlv_${i}`, lastError: `HTTP 500 #${i}` }));
      if (i === 5_000) failures.attemptFinished(claimed({ listenerId: 'lst_b' }), result({ listenerId: 'lst_b', lastError: 'TIMEOUT' }));
      failures.summarize();
    }
    const summaries = lines.filter((l) => l.msg.startsWith('listener failing'));
    // The first look (at 0) found nothing; the next, a second later, the first 201 failures.
    expect(summaries.map((l) => [l.listener, l.failedAttempts, l.level])).toEqual([
      ['lst_a', 201, WARN],
      ['lst_b', 1, WARN],
    ]);
    expect(summaries[0]).toMatchObject({ lastError: 'HTTP 500 #200', nextRetryAt: new Date(31_000).toISOString(), since: new Date(1_012).toISOString() });
    // Every one of them was a retryable failure: no final-failure lines, no debug lines at info.
    expect(lines).toHaveLength(2);
    now = 1_000 + MINUTE;
    failures.summarize();
    expect(lines.filter((l) => l.msg.startsWith('listener failing')).map((l) => [l.listener, l.failedAttempts])).toEqual([
      ['lst_a', 201],
      ['lst_b', 1],
      ['lst_a', 9_799],
    ]);
  });

  it('logs a delivery that failed for good with its listener, event and last error; every attempt only at debug', () => {
    const { lines, log } = captureLog('debug');
    const failures = createFailureLog({ log, now: () => 0 });
    failures.attemptFinished(claimed(), result());
    failures.attemptFinished(
      claimed({ attemptNumber: 2 }),
      result({ attempt: { number: 2, started_at: 40_000, duration_ms: 3, status_code: null, error: 'TIMEOUT', response_excerpt: null }, status: 'failed', nextAttemptAt: null, lastError: 'no answer within 3 ms' }),
    );
    expect(lines.filter((l) => l.level === DEBUG).map((l) => [l.msg, l.delivery, l.attempt, l.statusCode, l.error, l.durationMs])).toEqual([
      ['attempt finished', 'dlv_1', 1, 500, 'HTTP_ERROR', 12],
      ['attempt finished', 'dlv_1', 2, null, 'TIMEOUT', 3],
    ]);
    const final = lines.filter((l) => l.level === WARN);
    expect(final).toHaveLength(1);
    expect(final[0]).toMatchObject({
      msg: 'delivery failed after 2 attempts; no retries left',
      listener: 'lst_a',
      project: 'p',
      delivery: 'dlv_1',
      event: 'evt_1',
      eventType: 'TASK_FAILED',
      attempts: 2,
      lastError: 'no answer within 3 ms',
    });
  });

  it('logs one line per disabled listener with the reason its receiver gave', () => {
    const { lines, log } = captureLog('info');
    const failures = createFailureLog({ log });
    const gone = (listenerId: string, deliveryId: string) =>
      result({ listenerId, deliveryId, disableListener: `the receiver answered 410 Gone at 2026-01-01T00:00:0${deliveryId.at(-1)}.000Z` });
    failures.listenersDisabled(['lst_a', 'lst_b'], [result(), gone('lst_a', 'dlv_1'), gone('lst_b', 'dlv_2')]);
    expect(lines.map((l) => [l.level, l.listener, l.delivery, l.reason])).toEqual([
      [WARN, 'lst_a', 'dlv_1', 'the receiver answered 410 Gone at 2026-01-01T00:00:01.000Z'],
      [WARN, 'lst_b', 'dlv_2', 'the receiver answered 410 Gone at 2026-01-01T00:00:02.000Z'],
    ]);
    expect(lines[0].msg).toMatch(/^listener disabled: the receiver answered 410 Gone/);
  });

  it('logs a circuit that opens at warn and one that closes at info', () => {
    const { lines, log } = captureLog('info');
    const failures = createFailureLog({ log });
    failures.circuitChanged({ listenerId: 'lst_a', state: 'open', reason: '8 of 10 attempts failed', probeAt: 30_000 });
    failures.circuitChanged({ listenerId: 'lst_a', state: 'closed', reason: 'a probe succeeded' });
    expect(lines.map((l) => [l.level, l.listener, l.circuit, l.probeAt])).toEqual([
      [WARN, 'lst_a', 'open', new Date(30_000).toISOString()],
      [30, 'lst_a', 'closed', null],
    ]);
  });
});

describe('a relay whose receiver fails', () => {
  let relay: Relay | undefined;
  let receiver: Receiver | undefined;

  afterEach(async () => {
    await relay?.close();
    relay = undefined;
    await receiver?.close();
    receiver = undefined;
  });

  async function start(level: string) {
    receiver = await startReceiver();
    const { lines, log } = captureLog(level);
    const config = loadConfig({
      RELAY_PORT: '0',
      RELAY_DATA_DIR: tempDir(),
      RELAY_TOKENS: `${TOKEN_A}=project-a`,
      RELAY_SHUTDOWN_GRACE_MS: '500',
      // The circuit breaker would stop a burst of failures; these tests are about the log.
      RELAY_BREAKER_MIN_ATTEMPTS: '1000000',
    });
    relay = await startRelay(config, log);
    return { lines, url: relay.url, receiver };
  }

  async function listener(url: string, target: string, schedule: number[]): Promise<string> {
    const res = await request(url, 'POST', '/v1/listeners', {
      workbook: '*',
      event_types: ['NOTIFICATION'],
      // Not the relay's own events (relay.delivery.failed about these failures).
      events: ['billing.failed', 'storm.tick'],
      callback: { url: target },
      retry: { schedule_ms: schedule },
    });
    expect(res.status).toBe(201);
    return res.body.id;
  }

  const dispatcherLines = (lines: LogLine[], prefix: string) => lines.filter((l) => l.msg.startsWith(prefix));

  it('logs the final failure of a delivery with its fields, and no attempt lines at info', async () => {
    const { lines, url, receiver } = await start('info');
    receiver.respond('/down', [500]);
    const id = await listener(url, receiver.url('/down'), [50, 50]);
    const ingested = await request(url, 'POST', '/v1/events', { type: 'billing.failed' });
    expect(ingested.status).toBe(202);
    const eventId = ingested.body.items[0].id;
    await vi.waitFor(() => expect(dispatcherLines(lines, 'delivery failed')).toHaveLength(1), { timeout: 10_000, interval: 50 });
    const [line] = dispatcherLines(lines, 'delivery failed');
    const delivery = (await request(url, 'GET', `/v1/deliveries?listener_id=${id}`)).body.items[0];
    expect(line).toMatchObject({
      level: WARN,
      component: 'dispatcher',
      listener: id,
      delivery: delivery.id,
      event: eventId,
      eventType: 'billing.failed',
      attempts: 3,
      statusCode: 500,
    });
    expect(line.lastError).toMatch(/500/);
    expect(receiver.requests('/down')).toHaveLength(3);
    expect(dispatcherLines(lines, 'attempt finished')).toEqual([]);
  });

  it('writes every attempt at debug', async () => {
    const { lines, url, receiver } = await start('debug');
    receiver.respond('/down', [500]);
    await listener(url, receiver.url('/down'), [50]);
    expect((await request(url, 'POST', '/v1/events', { type: 'billing.failed' })).status).toBe(202);
    await vi.waitFor(() => expect(dispatcherLines(lines, 'delivery failed')).toHaveLength(1), { timeout: 10_000, interval: 50 });
    const attempts = dispatcherLines(lines, 'attempt finished');
    expect(attempts.map((l) => [l.level, l.attempt, l.statusCode, l.error])).toEqual([
      [DEBUG, 1, 500, 'HTTP_ERROR'],
      [DEBUG, 2, 500, 'HTTP_ERROR'],
    ]);
    expect(attempts[0].delivery).toMatch(/\S/);
    expect(attempts[0].durationMs).toEqual(expect.any(Number));
  });

  it('turns 200 failed attempts in a burst into at most one summary line per listener', async () => {
    const { lines, url, receiver } = await start('info');
    receiver.respond('/a', [500]);
    receiver.respond('/b', [503]);
    // The retries are a minute away: every attempt of the burst fails and none is final.
    const a = await listener(url, receiver.url('/a'), [MINUTE]);
    const b = await listener(url, receiver.url('/b'), [MINUTE]);
    // Four waves over about five seconds, so that the summary is looked at between them.
    for (let wave = 1; wave <= 4; wave++) {
      const events = Array.from({ length: 25 }, (_, i) => ({ type: 'storm.tick', data: { wave, i } }));
      expect((await request(url, 'POST', '/v1/events', { events })).status).toBe(202);
      await receiver.waitFor((reqs) => reqs.length >= wave * 50, 20_000);
      await new Promise((resolve) => setTimeout(resolve, 1_200));
    }
    // Recorded, and the summary looked at more than once since.
    await vi.waitFor(
      async () => {
        const failed = await request(url, 'GET', `/v1/deliveries?limit=1000`);
        expect(failed.body.items.filter((d: { attempt_count: number; in_flight: boolean }) => d.attempt_count === 1 && !d.in_flight)).toHaveLength(200);
      },
      { timeout: 10_000, interval: 100 },
    );
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const summaries = dispatcherLines(lines, 'listener failing');
    expect(summaries.map((l) => l.listener).sort()).toEqual([a, b].sort());
    for (const s of summaries) {
      expect(s.level).toBe(WARN);
      expect(s.failedAttempts).toBeGreaterThanOrEqual(1);
      // The first line counts the first wave's failures; the later ones wait for the next minute.
      expect(s.failedAttempts).toBeLessThan(100);
      expect(s.lastError).toMatch(s.listener === a ? /500/ : /503/);
      expect(Date.parse(String(s.nextRetryAt))).toBeGreaterThan(Date.now() + 30_000);
    }
    expect(dispatcherLines(lines, 'delivery failed')).toEqual([]);
    // 200 failures, and nothing else at warn.
    expect(lines.filter((l) => l.level >= WARN)).toHaveLength(2);
  }, 60_000);

  it('logs each listener its receiver turned off, with the reason', async () => {
    const { lines, url, receiver } = await start('info');
    receiver.respond('/gone', [410]);
    const id = await listener(url, receiver.url('/gone'), [50]);
    expect((await request(url, 'POST', '/v1/events', { type: 'billing.failed' })).status).toBe(202);
    await vi.waitFor(() => expect(dispatcherLines(lines, 'listener disabled')).toHaveLength(1), { timeout: 10_000, interval: 50 });
    const [line] = dispatcherLines(lines, 'listener disabled');
    expect(line).toMatchObject({ level: WARN, listener: id, project: 'project-a' });
    expect(line.reason).toMatch(/^the receiver answered 410 Gone at \d{4}-/);
  });
});
