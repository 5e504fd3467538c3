#!/usr/bin/env node
// End-to-end benchmark: the relay as its own process on a fresh SQLite database (production
// settings), a receiver in another process, and the raw HTTP ceiling measured in the same run.
//   npm run bench              full run (about 10 minutes)
//   npm run bench -- --quick   smaller counts (under 2 minutes)
import { fork, spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    smoke: { type: 'boolean', default: false },
    out: { type: 'string', default: path.join(ROOT, 'bench', 'results') },
    only: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
const SCENARIOS = ['throughput', 'fanout', 'latency', 'ceiling', 'backlog', 'engine', 'amqp', 'amqp-ingest'];
const only = args.only ? args.only.split(',') : SCENARIOS;
for (const name of only) if (!SCENARIOS.includes(name)) throw new Error(`--only: unknown scenario ${name}; one of ${SCENARIOS.join(', ')}`);
const want = (name) => only.includes(name);
if (args.help) {
  console.log(`usage: npm run bench [-- --quick] [-- --out DIR] [-- --only ${SCENARIOS.join(',')}]\n  amqp and amqp-ingest need a RabbitMQ at BENCH_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/)`);
  process.exit(0);
}
const mode = args.smoke ? 'smoke' : args.quick ? 'quick' : 'full';
const SIZES = {
  full: { events: 100_000, fanout: 10_000, latencySeconds: 30, warmupSeconds: 10, rate: 1000, ceiling: 100_000, backlogs: [10_000, 1_000_000], executions: 2000, notifications: 20_000 },
  quick: { events: 10_000, fanout: 1_000, latencySeconds: 10, warmupSeconds: 5, rate: 1000, ceiling: 20_000, backlogs: [10_000, 100_000], executions: 300, notifications: 5_000 },
  smoke: { events: 300, fanout: 50, latencySeconds: 1, warmupSeconds: 1, rate: 100, ceiling: 300, backlogs: [200, 400], executions: 5, notifications: 300 },
}[mode];
const MEASURED_DELIVERIES = Math.min(10_000, SIZES.backlogs[0]);
const TOKEN = 'bench-token-0123456789abcdef';
const now = () => performance.timeOrigin + performance.now();
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
const log = (...a) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...a);

// ---------- processes ----------
const receiver = fork(path.join(ROOT, 'bench', 'receiver.mjs'), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
const ask = (msg, type = msg.type) =>
  new Promise((resolve) => {
    const on = (m) => m.type === type && (receiver.off('message', on), resolve(m));
    receiver.on('message', on);
    receiver.send(msg);
  });
const { port: receiverPort } = await new Promise((r) => receiver.once('message', r));
const receiverUrl = `http://127.0.0.1:${receiverPort}/hook`;

const relays = new Set();
async function startRelay(dataDir, role = 'all', extraEnv = {}) {
  const nodeArgs = process.env.BENCH_RELAY_NODE_ARGS ? process.env.BENCH_RELAY_NODE_ARGS.split(' ') : [];
  const child = spawn(process.execPath, [...nodeArgs, path.join(ROOT, 'dist', 'main.js'), '--role', role], {
    env: { ...process.env, RELAY_PORT: '0', RELAY_DATA_DIR: dataDir, RELAY_TOKENS: `${TOKEN}=bench`, RELAY_LOG_LEVEL: 'info', RELAY_DURABILITY: 'full', ...extraEnv },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  relays.add(child);
  const url = await new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.includes('listening on')) {
          child.stdout.off('data', onData);
          child.stdout.resume(); // keep draining the request log
          resolve(JSON.parse(line).url);
          return;
        }
      }
    };
    child.stdout.on('data', onData);
    child.once('exit', (code) => reject(new Error(`relay exited with ${code} before listening`)));
  });
  let peakRss = 0;
  const sample = () => {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      if (m) peakRss = Math.max(peakRss, Number(m[1]) * 1024);
    } catch {}
  };
  const sampler = setInterval(sample, 100);
  return {
    url,
    peakRss: () => (sample(), peakRss),
    /** CPU seconds (user + system) the relay process has used so far. */
    cpuSeconds() {
      const fields = fs.readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1].split(' ');
      return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
    },
    async stop() {
      clearInterval(sampler);
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      relays.delete(child);
    },
  };
}
const cleanup = () => {
  for (const c of relays) c.kill('SIGKILL');
  receiver.kill('SIGKILL');
};
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

const client = new Agent({ connections: 64, keepAliveTimeout: 60_000 });
async function api(base, method, pathname, body) {
  const res = await request(base + pathname, {
    dispatcher: client,
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new Error(`${method} ${pathname}: ${res.statusCode} ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : null;
}
const tempDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'relay-bench-'));
const addListener = (relay, extra = {}) =>
  api(relay.url, 'POST', '/v1/listeners', { workbook: '*', event_types: ['TASK'], callback: { url: receiverUrl }, ...extra });
const makeEvent = (i, prefix = 'e') => ({
  id: `${prefix}-${i}`,
  type: 'TASK_SUCCEEDED',
  workbook: 'bench',
  workflow: 'wf',
  execution_id: `exec-${i % 1000}`,
  task_name: 'step',
  state: 'SUCCESS',
  data: { n: i },
});

/** Posts `count` events in batches of 1000, `parallel` requests at a time; returns seconds. */
async function ingest(relay, count, prefix, parallel = 4, progress = false) {
  const started = now();
  let next = 0;
  let done = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < count) {
        const from = next;
        next = Math.min(count, next + 1000);
        const events = [];
        for (let i = from; i < next; i++) events.push(makeEvent(i, prefix));
        await api(relay.url, 'POST', '/v1/events', { events });
        done += events.length;
        if (progress && done % 100_000 === 0) log(`  ingested ${done}/${count}`);
      }
    }),
  );
  return (now() - started) / 1000;
}

async function waitForUnique(n, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await ask({ type: 'stats' });
    if (s.unique >= n) return s;
    if (Date.now() > deadline) throw new Error(`only ${s.unique} of ${n} deliveries arrived within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const results = { mode, started_at: new Date().toISOString(), machine: machine(), figures: {} };
const fig = results.figures;

// ---------- 1. throughput, one listener ----------
if (want('throughput')) {
  log(`throughput: ${SIZES.events} events to 1 listener`);
  const relay = await startRelay(tempDir());
  await ask({ type: 'reset' });
  await addListener(relay);
  const ingestSeconds = await ingest(relay, SIZES.events, 't1');
  const s = await waitForUnique(SIZES.events, 600_000);
  fig.ingest_events_per_s = Math.round(SIZES.events / ingestSeconds);
  fig.ingest_note = 'batch API, 1000 events per request, 4 requests in flight; dispatcher running meanwhile';
  fig.deliveries_per_s_1_listener = Math.round(SIZES.events / ((s.last - s.first) / 1000));
  fig.duplicates_1_listener = s.total - s.unique;
  fig.peak_rss_mb_throughput = Math.round(relay.peakRss() / 2 ** 20);
  await relay.stop();
}

// ---------- 2. fan-out to 10 listeners ----------
if (want('fanout')) {
  log(`fan-out: ${SIZES.fanout} events to 10 listeners`);
  const relay = await startRelay(tempDir());
  await ask({ type: 'reset' });
  for (let i = 0; i < 10; i++) await addListener(relay);
  const ingestSeconds = await ingest(relay, SIZES.fanout, 'f');
  const s = await waitForUnique(SIZES.fanout * 10, 600_000);
  fig.ingest_events_per_s_fanout_10 = Math.round(SIZES.fanout / ingestSeconds);
  fig.deliveries_per_s_fanout_10 = Math.round((SIZES.fanout * 10) / ((s.last - s.first) / 1000));
  await relay.stop();
}

// ---------- 3. latency at a steady rate (open loop) ----------
/** Offers `rate` single-event requests per second for `seconds`, not waiting for answers. */
async function openLoop(relay, prefix, seconds) {
  const total = SIZES.rate * seconds;
  const starts = new Map();
  const acks = new Map();
  const t0 = now() + 50;
  const interval = 1000 / SIZES.rate;
  const pending = [];
  let sent = 0;
  let failed = 0;
  await new Promise((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor((now() - t0) / interval) + 1);
      while (sent < due) {
        const i = sent++;
        starts.set(`${prefix}-${i}`, now());
        const id = `${prefix}-${i}`;
        pending.push(
          api(relay.url, 'POST', '/v1/events', makeEvent(i, prefix)).then(
            () => acks.set(id, now()),
            () => failed++,
          ),
        );
      }
      if (sent >= total) resolve();
      else setTimeout(tick, 1);
    };
    setTimeout(tick, 50);
  });
  await Promise.all(pending);
  return { starts, acks, t0, total, failed };
}

if (want('latency')) {
  log(`latency: ${SIZES.rate} events/s, single-event requests: ${SIZES.warmupSeconds} s warm-up, then ${SIZES.latencySeconds} s measured`);
  const relay = await startRelay(tempDir());
  await ask({ type: 'reset' });
  await addListener(relay);
  // A fresh process runs cold (JIT, connection pools); its first seconds are not the steady state.
  const warm = await openLoop(relay, 'warm', SIZES.warmupSeconds);
  await waitForUnique(warm.total - warm.failed, 120_000);
  await ask({ type: 'reset', trackEvents: true });
  const cpuBefore = relay.cpuSeconds();
  const { starts, acks, t0, total, failed } = await openLoop(relay, 'lat', SIZES.latencySeconds);
  await waitForUnique(total - failed, 120_000);
  const cpuSeconds = relay.cpuSeconds() - cpuBefore;
  const wallSeconds = (now() - t0) / 1000;
  const { arrivals } = await ask({ type: 'events' });
  if (process.env.BENCH_LATENCY_TRACE) {
    const trace = arrivals.map(([id, t]) => [Math.round(starts.get(id) - t0), Math.round(t - starts.get(id)), Math.round(acks.get(id) - starts.get(id))]).sort((a, b) => a[0] - b[0]);
    fs.writeFileSync(process.env.BENCH_LATENCY_TRACE, trace.map((r) => r.join(' ')).join('\n'));
  }
  const lat = arrivals.map(([id, t]) => t - starts.get(id)).filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  const pct = (p) => Number(lat[Math.min(lat.length - 1, Math.floor(p * lat.length))].toFixed(1));
  const ackLat = [...acks].map(([id, t]) => t - starts.get(id)).sort((a, b) => a - b);
  Object.assign(fig, {
    latency_rate_per_s: SIZES.rate,
    latency_seconds: SIZES.latencySeconds,
    latency_warmup_seconds: SIZES.warmupSeconds,
    latency_failed_requests: failed,
    latency_p50_ms: pct(0.5),
    latency_p95_ms: pct(0.95),
    latency_p99_ms: pct(0.99),
    latency_max_ms: Number(lat[lat.length - 1].toFixed(1)),
    latency_ack_p99_ms: Number(ackLat[Math.floor(0.99 * ackLat.length)].toFixed(1)),
    // What one event costs the relay (its ingest request and its delivery), and how busy its
    // one thread was: near 1.0 the relay is the bottleneck and queues build up.
    latency_relay_cpu_ms_per_event: Number(((cpuSeconds * 1000) / total).toFixed(3)),
    latency_relay_cpu_utilisation: Number((cpuSeconds / wallSeconds).toFixed(2)),
  });
  await relay.stop();
}

// ---------- 4. the raw HTTP ceiling ----------
if (want('ceiling')) {
  log(`ceiling: ${SIZES.ceiling} plain undici requests to the same receiver, no database`);
  await ask({ type: 'reset' });
  const agent = new Agent({ connections: 32, pipelining: 1, keepAliveTimeout: 60_000 });
  const body = JSON.stringify({ ...makeEvent(1), id: '01JD00000000000000000000', category: 'TASK', sequence: 1, occurred_at: new Date().toISOString(), source: 'api' });
  let next = 0;
  const started = now();
  await Promise.all(
    Array.from({ length: 512 }, async () => {
      while (next < SIZES.ceiling) {
        const i = next++;
        const res = await request(receiverUrl, {
          dispatcher: agent,
          method: 'POST',
          body,
          headers: { 'content-type': 'application/json', 'webhook-id': `c-${i}`, 'webhook-timestamp': '1', 'webhook-signature': 'v1,x', 'webhook-attempt': '1' },
        });
        await res.body.dump();
      }
    }),
  );
  fig.ceiling_requests_per_s = Math.round(SIZES.ceiling / ((now() - started) / 1000));
  if (fig.deliveries_per_s_1_listener) {
    fig.relay_to_ceiling_ratio = Number((fig.deliveries_per_s_1_listener / fig.ceiling_requests_per_s).toFixed(2));
  }
  await agent.close();
}

// ---------- 5. backlog scaling ----------
fig.backlog = [];
for (const size of want('backlog') ? SIZES.backlogs : []) {
  log(`backlog: ${size} due deliveries (ingested with --role api), then the first ${MEASURED_DELIVERIES} delivered`);
  const dir = tempDir();
  let relay = await startRelay(dir, 'api');
  await addListener(relay);
  await ingest(relay, size, 'b', 4, size >= 100_000);
  await relay.stop();
  await ask({ type: 'reset' });
  relay = await startRelay(dir, 'all');
  const s = await waitForUnique(MEASURED_DELIVERIES, 600_000);
  // first to MEASURED-th arrival: the receiver's first and last are taken at that moment.
  fig.backlog.push({
    backlog: size,
    deliveries_per_s_first_10k: Math.round(s.unique / ((s.last - s.first) / 1000)),
    relay_peak_rss_mb: Math.round(relay.peakRss() / 2 ** 20),
  });
  await relay.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
if (fig.backlog.length === 2) {
  const [small, large] = fig.backlog;
  fig.backlog_rate_ratio = Number((large.deliveries_per_s_first_10k / small.deliveries_per_s_first_10k).toFixed(2));
}

// ---------- 6. engine path ----------
if (want('engine')) {
  const relay = await startRelay(tempDir());
  const probe = await request(relay.url + '/v1/workbooks', { dispatcher: client, headers: { authorization: `Bearer ${TOKEN}` } });
  await probe.body.dump();
  if (probe.statusCode === 404) {
    fig.engine = 'skipped: this relay has no workflow engine (no /v1/workbooks)';
    log(fig.engine);
  } else {
    fig.engine = await engineBench(relay);
  }
  await relay.stop();
}

// ---------- 7. amqp transport: confirmed publishes ----------
if (want('amqp')) fig.amqp = await amqpBench();

// ---------- 8. notifications consumed from RabbitMQ ----------
if (want('amqp-ingest')) fig.amqp_ingest = await amqpIngestBench();

results.finished_at = new Date().toISOString();
printTable(fig);
writeResults(results);
receiver.send({ type: 'stop' });
process.exit(0);

// ---------- helpers ----------
async function engineBench(relay) {
  log(`engine: ${SIZES.executions} executions of a 5-task std.noop workflow, 1 listener`);
  const yaml = `version: '2.0'\nname: benchwb\nworkflows:\n  five:\n    tasks:\n      t1: {action: std.noop, on-success: [t2]}\n      t2: {action: std.noop, on-success: [t3]}\n      t3: {action: std.noop, on-success: [t4]}\n      t4: {action: std.noop, on-success: [t5]}\n      t5: {action: std.noop}\n`;
  const res = await request(relay.url + '/v1/workbooks', { dispatcher: client, method: 'POST', body: yaml, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/yaml' } });
  await res.body.dump();
  if (res.statusCode !== 201) return `skipped: creating the workbook answered ${res.statusCode}`;
  await ask({ type: 'reset' });
  await addListener(relay, { workbook: 'benchwb', event_types: ['EXECUTION', 'TASK'] });
  const started = now();
  let next = 0;
  const ids = [];
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next++ < SIZES.executions) ids.push((await api(relay.url, 'POST', '/v1/executions', { workbook: 'benchwb', workflow: 'five', input: {} })).id);
    }),
  );
  // each execution: WORKFLOW_LAUNCHED, 5 × (TASK_LAUNCHED, TASK_SUCCEEDED), WORKFLOW_SUCCEEDED = 12 events
  const expected = SIZES.executions * 12;
  const s = await waitForUnique(expected, 600_000);
  const seconds = (s.last - started) / 1000;
  return { executions: SIZES.executions, executions_per_s: Math.round(SIZES.executions / seconds), events_delivered_per_s: Math.round(expected / seconds) };
}

/**
 * Deliveries to one amqp listener (format oslo) on the RabbitMQ at BENCH_AMQP_URL: each one a
 * persistent message confirmed by the broker. Measured at a consumer of the listener's queue,
 * from the first message to the last.
 */
async function amqpBench() {
  const { default: amqp } = await import('amqplib');
  const brokerUrl = process.env.BENCH_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672/';
  const n = SIZES.events;
  const exchange = `bench-x-${process.pid}`;
  const topic = `bench-${process.pid}`;
  const queue = `${topic}.info`;
  log(`amqp: ${n} events to 1 amqp listener at ${brokerUrl.replace(/:[^:@/]*@/, ':***@')}`);
  const connection = await amqp.connect(brokerUrl);
  const channel = await connection.createChannel();
  await channel.assertExchange(exchange, 'topic', { durable: false, autoDelete: false });
  await channel.assertQueue(queue, { durable: false, autoDelete: false });
  await channel.bindQueue(queue, exchange, queue);
  const relay = await startRelay(tempDir());
  let first = 0;
  let last = 0;
  let count = 0;
  const done = new Promise((resolve) => {
    void channel.consume(queue, (msg) => {
      if (!msg) return;
      count++;
      last = now();
      if (count === 1) first = last;
      if (count === n) resolve();
    }, { noAck: true });
  });
  try {
    await addListener(relay, { callback: { transport: 'amqp', url: brokerUrl, exchange, topic } });
    await ingest(relay, n, 'q');
    await Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error(`only ${count} of ${n} messages arrived`)), 600_000))]);
    return { messages: n, deliveries_per_s: Math.round(n / ((last - first) / 1000)), peak_rss_mb: Math.round(relay.peakRss() / 2 ** 20) };
  } finally {
    await relay.stop();
    await channel.deleteQueue(queue).catch(() => {});
    await channel.deleteExchange(exchange).catch(() => {});
    await connection.close().catch(() => {});
  }
}

/**
 * OpenStack notifications consumed from a queue into the outbox: the relay consumes the queue
 * (RELAY_AMQP_INGEST_*) while the benchmark publishes N messagingv2 notifications to it as an
 * oslo notifier does; measured from the first publish until the relay has stored N events
 * (relay_events_ingested_total), with one listener so each event also gets its delivery.
 */
async function amqpIngestBench() {
  const { default: amqp } = await import('amqplib');
  const brokerUrl = process.env.BENCH_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672/';
  const n = SIZES.notifications;
  const exchange = `bench-ingest-x-${process.pid}`;
  const queue = `bench-ingest-${process.pid}.info`;
  const publisher = 'bench-notifier:host';
  log(`amqp-ingest: ${n} notifications consumed from ${queue} into the outbox, 1 listener`);
  const relay = await startRelay(tempDir(), 'all', {
    RELAY_AMQP_INGEST_URL: brokerUrl,
    RELAY_AMQP_INGEST_QUEUES: queue,
    RELAY_AMQP_INGEST_EXCHANGE: exchange,
    RELAY_AMQP_INGEST_PROJECT: 'bench',
  });
  const connection = await amqp.connect(brokerUrl);
  const channel = await connection.createConfirmChannel();
  const stored = async () => {
    const res = await request(relay.url + '/metrics', { dispatcher: client });
    const line = (await res.body.text()).split('\n').find((l) => l.startsWith(`relay_events_ingested_total{source="${publisher}"}`));
    return line === undefined ? 0 : Number(line.split(' ').pop());
  };
  try {
    for (let ready = false; !ready; ) {
      const res = await request(relay.url + '/readyz', { dispatcher: client });
      await res.body.dump();
      ready = res.statusCode === 200;
      if (!ready) await new Promise((r) => setTimeout(r, 100));
    }
    await addListener(relay, { event_types: ['NOTIFICATION'] });
    const payload = (i) => ({
      'esi_leap_object.name': 'LeasePayload',
      'esi_leap_object.namespace': 'esi_leap',
      'esi_leap_object.version': '1.0',
      'esi_leap_object.data': { id: `lease-${i}`, node_name: `node-${i % 100}`, purpose: 'bench', properties: { vendor: 'dell' } },
    });
    const started = now();
    for (let i = 0; i < n; i++) {
      const message = {
        message_id: `bench-${process.pid}-${i}`,
        publisher_id: publisher,
        event_type: 'esi_leap.lease.fulfill.end',
        priority: 'INFO',
        payload: payload(i),
        timestamp: new Date().toISOString().replace('T', ' ').replace('Z', '000'),
      };
      const body = Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(message) }));
      if (!channel.publish(exchange, queue, body, { contentType: 'application/json' })) await new Promise((r) => channel.once('drain', r));
      if (i % 1000 === 999) await channel.waitForConfirms();
    }
    await channel.waitForConfirms();
    const publishSeconds = (now() - started) / 1000;
    const deadline = Date.now() + 600_000;
    let count = 0;
    while ((count = await stored()) < n) {
      if (Date.now() > deadline) throw new Error(`only ${count} of ${n} notifications were stored`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const seconds = (now() - started) / 1000;
    return {
      notifications: n,
      notifications_per_s: Math.round(n / seconds),
      published_per_s: Math.round(n / publishSeconds),
      peak_rss_mb: Math.round(relay.peakRss() / 2 ** 20),
    };
  } finally {
    await relay.stop();
    await channel.deleteQueue(queue).catch(() => {});
    await channel.deleteExchange(exchange).catch(() => {});
    await connection.close().catch(() => {});
  }
}

function machine() {
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT }).toString().trim();
  } catch {}
  return { cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model, memory_gb: Math.round(os.totalmem() / 2 ** 30), node: process.version, commit };
}

function printTable(f) {
  const rows = [
    ['ingest, batch API (events/s)', f.ingest_events_per_s],
    ['deliveries/s, 1 listener', f.deliveries_per_s_1_listener],
    ['raw HTTP ceiling (requests/s)', f.ceiling_requests_per_s],
    ['relay / ceiling', f.relay_to_ceiling_ratio],
    ['ingest with 10-listener fan-out (events/s)', f.ingest_events_per_s_fanout_10],
    ['deliveries/s, 10 listeners', f.deliveries_per_s_fanout_10],
    [`latency p50 / p95 / p99 / max (ms) at ${f.latency_rate_per_s}/s, after ${f.latency_warmup_seconds} s warm-up`, `${f.latency_p50_ms} / ${f.latency_p95_ms} / ${f.latency_p99_ms} / ${f.latency_max_ms}`],
    ['ingest answer p99 (ms) in the latency run', f.latency_ack_p99_ms],
    ['relay CPU per event (ms), CPU use, in the latency run', f.latency_relay_cpu_ms_per_event === undefined ? undefined : `${f.latency_relay_cpu_ms_per_event}, ${f.latency_relay_cpu_utilisation}`],
    ...f.backlog.map((b) => [`backlog ${b.backlog}: deliveries/s (first ${MEASURED_DELIVERIES}), peak RSS MB`, `${b.deliveries_per_s_first_10k}, ${b.relay_peak_rss_mb}`]),
    ['backlog rate ratio (large / small)', f.backlog_rate_ratio],
    ['amqp deliveries/s, 1 listener (broker-confirmed, oslo format)', f.amqp?.deliveries_per_s],
    ['notifications consumed from RabbitMQ into the outbox (/s, 1 listener)', f.amqp_ingest?.notifications_per_s],
    ['engine', f.engine === undefined || typeof f.engine === 'string' ? f.engine : `${f.engine.executions_per_s} executions/s, ${f.engine.events_delivered_per_s} events delivered/s`],
  ].filter(([, v]) => v !== undefined && !String(v).includes('undefined'));
  const w = Math.max(...rows.map(([k]) => k.length));
  console.log(`\ncallback-relay benchmark (${mode}) — ${results.machine.cpus} CPUs, ${results.machine.node}, commit ${results.machine.commit}`);
  for (const [k, v] of rows) console.log(`  ${k.padEnd(w)}  ${v}`);
}

function writeResults(r) {
  fs.mkdirSync(args.out, { recursive: true });
  const json = JSON.stringify(r, null, 2) + '\n';
  fs.writeFileSync(path.join(args.out, 'latest.json'), json);
  const stamp = r.started_at.replace(/[:]/g, '-').replace(/\..*/, '');
  fs.writeFileSync(path.join(args.out, `${stamp}-${r.machine.commit}-${mode}.json`), json);
  log(`wrote ${path.join(args.out, 'latest.json')}`);
}
