#!/usr/bin/env node
// End-to-end benchmark: the relay as its own process on a fresh database (production settings),
// a receiver in another process, and the raw HTTP ceiling measured in the same run; on
// PostgreSQL also several processes on one schema, and graphile-worker doing the same work.
// `npm run bench -- --help` says what each scenario measures.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { amqpBench, amqpIngestBench } from './amqp.mjs';
import { BACKENDS, openBackend, PG_URL } from './databases.mjs';
import { graphileBench } from './graphile.mjs';
import { addListener, api, arrivalRate, ingest, killChildren, log, makeEvent, now, ROOT, startReceiver, startRelay, stopRelays, TOKEN } from './harness.mjs';
import { derive, printTable, writeResults } from './report.mjs';

const SCENARIOS = ['throughput', 'fanout', 'ordering', 'latency', 'ceiling', 'backlog', 'engine', 'amqp', 'amqp-ingest', 'two-process', 'graphile'];
const POSTGRES_ONLY = ['two-process', 'graphile'];
const HELP = `usage: npm run bench [-- OPTIONS]

The relay runs as its own process (dist/main.js, so build first: npm run bench does) with
production settings, a receiver in another process answers 200 at once, and the benchmark
process generates the load. Every relay run gets a fresh database, removed afterwards; when a
PostgreSQL is in use it checkpoints before every run (either backend, and the ceiling), so that
no run pays for the checkpoint the run before it asked for.

options
  --backend sqlite|postgres|both   where the relay keeps its data (default sqlite). postgres:
                                   a fresh schema of BENCH_PG_URL per relay run, dropped after
                                   it; both: every scenario on each backend in turn, printed
                                   side by side, a column per backend
  --quick                          smaller counts (a few minutes per backend)
  --smoke                          tiny counts: checks that everything runs, the figures mean nothing
  --only a,b,…                     some scenarios: ${SCENARIOS.join(', ')}
  --out DIR                        where the JSON goes (default bench/results)
  -h, --help                       this text

scenarios (full / --quick counts)
  throughput    N events (100,000 / 10,000) posted to the batch API (1000 per request, 4 in
                flight) while the dispatcher delivers them to 1 listener: ingest events/s, and
                deliveries/s from the first to the last receipt (the delivery rate); relay
                CPU per event, and its main thread's share (the rest is mostly the dispatch
                thread's); the relay's peak RSS
  fanout        events to 10 listeners: ingest events/s, deliveries/s
  ordering      the throughput run's N events spread round-robin over 100 executions, to an
                unordered listener, then (fresh database) to one with "ordering": "execution":
                deliveries/s of each, ordered / unordered, and the arrivals whose sequence is
                below one already received for their execution (0 for the ordered listener)
  latency       1,000 single-event requests/s, open loop, after a warm-up: ingest-to-receipt
                p50/p95/p99/max, ingest answer p99, relay CPU per event, its main
                thread's share and the kernel's (system time)
  ceiling       plain undici requests to the same receiver, same connection count, no
                database (measured once, shared by the backends)
  backlog       a 10,000 and a 1,000,000 (--quick: 100,000) delivery backlog ingested with
                --role api, then the delivery rate over the first 10,000 with --role all
  engine        a 5-task std.noop workflow through the embedded engine, 1 listener
  amqp          deliveries to an amqp listener (oslo format), broker-confirmed
  amqp-ingest   oslo notifications consumed from a RabbitMQ queue into the outbox
  two-process   postgres only: the throughput run with 1 --role api process and 2 --role
                dispatcher processes on one schema, and with 1 api + 1 dispatcher, four runs
                in the order 1, 2, 2, 1 dispatchers: deliveries/s of each (the mean of its two
                runs), and two / one; relay CPU per event, all processes and the dispatcher
                processes alone. Then four runs in the same order where the api process stores
                the N events first and the dispatcher processes, started after it, drain
                them alone: deliveries/s, two / one, and the dispatchers' CPU per delivery
  graphile      postgres only: graphile-worker (the devDependency) on the same database, in
                its own schema: the same N jobs added with addJobs (1000 per call, 4 in
                flight) while a worker process runs them with a local queue of 500, batched
                completions and concurrency 32 (the relay's connections per receiver); each
                job sends one undici request signed as Standard Webhooks (HMAC-SHA256 over
                id.timestamp.body) to the same receiver and inserts one attempt row.
                deliveries/s, first to last receipt

printed: a table with a column per backend (deliveries/s, ingest events/s, latency, backlog
rates, fan-out, ordering, engine, …) and the ratios: postgres / sqlite delivery rate, relay
on postgres / graphile-worker, two dispatcher processes / one (beside the ingest, and draining
a stored backlog). bench/results/latest.json holds the same: "figures" (the first backend's, as
in earlier files), "by_backend", "ratios"; earlier runs stay beside it, named by date, commit,
mode and backends.

environment
  BENCH_PG_URL           PostgreSQL for --backend postgres|both (default ${PG_URL})
  BENCH_AMQP_URL         RabbitMQ for amqp, amqp-ingest (default amqp://guest:guest@127.0.0.1:5672/)
  BENCH_RELAY_NODE_ARGS  node options for every relay process, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"
  BENCH_LATENCY_TRACE    file for the latency run's per-event trace (start, receipt, answer; ms)
  RELAY_*                passed on to the relay (RELAY_DATABASE_POOL, RELAY_MAX_IN_FLIGHT, …)`;

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'sqlite' },
    quick: { type: 'boolean', default: false },
    smoke: { type: 'boolean', default: false },
    out: { type: 'string', default: path.join(ROOT, 'bench', 'results') },
    only: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  console.log(HELP);
  process.exit(0);
}
const usage = (message) => {
  console.error(`bench: ${message} (npm run bench -- --help)`);
  process.exit(2);
};
if (![...BACKENDS, 'both'].includes(args.backend)) usage(`--backend must be sqlite, postgres or both, not ${args.backend}`);
const backendNames = args.backend === 'both' ? BACKENDS : [args.backend];
const only = args.only ? args.only.split(',') : SCENARIOS;
for (const name of only) {
  if (!SCENARIOS.includes(name)) usage(`--only: unknown scenario ${name}; one of ${SCENARIOS.join(', ')}`);
  if (args.only && POSTGRES_ONLY.includes(name) && !backendNames.includes('postgres')) usage(`--only ${name} runs on PostgreSQL: add --backend postgres`);
}
const want = (name) => only.includes(name);

const mode = args.smoke ? 'smoke' : args.quick ? 'quick' : 'full';
const SIZES = {
  full: { events: 100_000, fanout: 10_000, latencySeconds: 30, warmupSeconds: 10, rate: 1000, ceiling: 100_000, backlogs: [10_000, 1_000_000], executions: 2000, notifications: 20_000 },
  quick: { events: 10_000, fanout: 1_000, latencySeconds: 10, warmupSeconds: 5, rate: 1000, ceiling: 20_000, backlogs: [10_000, 100_000], executions: 300, notifications: 5_000 },
  smoke: { events: 300, fanout: 50, latencySeconds: 1, warmupSeconds: 1, rate: 100, ceiling: 300, backlogs: [200, 400], executions: 5, notifications: 300 },
}[mode];
const MEASURED_DELIVERIES = Math.min(10_000, SIZES.backlogs[0]);
// The ordering target is stated for events spread over this many executions.
const ORDERING_EXECUTIONS = 100;

// ---------- processes and databases ----------
const receiver = await startReceiver();
const backends = [];
let closing;
const closeBackends = () => (closing ??= stopRelays().then(() => Promise.allSettled(backends.map((b) => b.close()))));
process.on('exit', killChildren);
process.on('SIGINT', () => {
  // Relays first (a schema in use cannot be dropped), then the schemas this run created.
  killChildren();
  closeBackends().finally(() => process.exit(130));
});
for (const name of backendNames) backends.push(await openBackend(name));

/** Every backend settles, so that what is measured next does not pay for what ran before it. */
async function settleBackends() {
  for (const b of backends) await b.settle();
}

/** A fresh database for one run, settled first, dropped afterwards whether the run succeeded or not. */
async function withDatabase(backend, label, run) {
  await settleBackends();
  const database = await backend.fresh(label);
  try {
    return await run(database);
  } finally {
    await stopRelays();
    await database.drop();
  }
}

// ---------- the scenarios: each fills in its figures on one backend ----------
const RUNS = {
  // 1. throughput, one listener
  throughput: (backend, fig) =>
    withDatabase(backend, 'throughput', async (db) => {
      log(`throughput on ${backend.name}: ${SIZES.events} events to 1 listener`);
      const relay = await startRelay(db);
      await receiver.reset();
      await addListener(relay, receiver.url);
      const cpuBefore = relay.cpuSeconds();
      const mainBefore = relay.mainThreadCpuSeconds();
      const ingestSeconds = await ingest(relay, SIZES.events, 't1');
      const s = await receiver.waitForUnique(SIZES.events);
      // CPU per event holds up better than rates on a machine that is busy with other work.
      fig.relay_cpu_ms_per_event_throughput = Number((((relay.cpuSeconds() - cpuBefore) * 1000) / SIZES.events).toFixed(3));
      fig.relay_main_thread_cpu_ms_per_event_throughput = Number((((relay.mainThreadCpuSeconds() - mainBefore) * 1000) / SIZES.events).toFixed(3));
      fig.ingest_events_per_s = Math.round(SIZES.events / ingestSeconds);
      fig.ingest_note = 'batch API, 1000 events per request, 4 requests in flight; dispatcher running meanwhile';
      fig.deliveries_per_s_1_listener = arrivalRate(SIZES.events, s);
      fig.duplicates_1_listener = s.total - s.unique;
      fig.peak_rss_mb_throughput = Math.round(relay.peakRss() / 2 ** 20);
    }),

  // 2. fan-out to 10 listeners
  fanout: (backend, fig) =>
    withDatabase(backend, 'fanout', async (db) => {
      log(`fan-out on ${backend.name}: ${SIZES.fanout} events to 10 listeners`);
      const relay = await startRelay(db);
      await receiver.reset();
      for (let i = 0; i < 10; i++) await addListener(relay, receiver.url);
      const ingestSeconds = await ingest(relay, SIZES.fanout, 'f');
      const s = await receiver.waitForUnique(SIZES.fanout * 10);
      fig.ingest_events_per_s_fanout_10 = Math.round(SIZES.fanout / ingestSeconds);
      fig.deliveries_per_s_fanout_10 = arrivalRate(SIZES.fanout * 10, s);
    }),

  // 2b. the same load to an unordered and to an ordered listener
  ordering: async (backend, fig) => {
    const runs = {};
    for (const ordering of ['none', 'execution']) {
      runs[ordering] = await withDatabase(backend, `ordering_${ordering}`, async (db) => {
        log(`ordering on ${backend.name}: ${SIZES.events} events over ${ORDERING_EXECUTIONS} executions to 1 listener, ordering ${ordering}`);
        const relay = await startRelay(db);
        // Both runs parse every body for the order check, so the receiver costs them the same.
        await receiver.reset({ trackOrder: true });
        await addListener(relay, receiver.url, { ordering });
        await ingest(relay, SIZES.events, ordering === 'none' ? 'u' : 'o', { executions: ORDERING_EXECUTIONS });
        const s = await receiver.waitForUnique(SIZES.events);
        return { deliveries_per_s: arrivalRate(SIZES.events, s), out_of_order: s.outOfOrder, duplicates: s.total - s.unique };
      });
    }
    if (runs.execution.out_of_order > 0) log(`ordering on ${backend.name}: the ordered listener got ${runs.execution.out_of_order} events after a later one of their execution`);
    fig.ordering = {
      events: SIZES.events,
      executions: ORDERING_EXECUTIONS,
      unordered: runs.none,
      ordered: runs.execution,
      ordered_to_unordered: Number((runs.execution.deliveries_per_s / runs.none.deliveries_per_s).toFixed(2)),
    };
  },

  // 3. latency at a steady rate (open loop)
  latency: (backend, fig) =>
    withDatabase(backend, 'latency', async (db) => {
      log(`latency on ${backend.name}: ${SIZES.rate} events/s, single-event requests: ${SIZES.warmupSeconds} s warm-up, then ${SIZES.latencySeconds} s measured`);
      const relay = await startRelay(db);
      await receiver.reset();
      await addListener(relay, receiver.url);
      // A fresh process runs cold (JIT, connection pools); its first seconds are not the steady state.
      const warm = await openLoop(relay, 'warm', SIZES.warmupSeconds);
      await receiver.waitForUnique(warm.total - warm.failed);
      await receiver.reset({ trackEvents: true });
      const cpuBefore = relay.cpuSeconds();
      const mainBefore = relay.mainThreadCpuSeconds();
      const systemBefore = relay.systemCpuSeconds();
      const { starts, acks, t0, total, failed } = await openLoop(relay, 'lat', SIZES.latencySeconds);
      await receiver.waitForUnique(total - failed);
      const cpuSeconds = relay.cpuSeconds() - cpuBefore;
      const mainSeconds = relay.mainThreadCpuSeconds() - mainBefore;
      const systemSeconds = relay.systemCpuSeconds() - systemBefore;
      const wallSeconds = (now() - t0) / 1000;
      const arrivals = await receiver.eventArrivals();
      if (process.env.BENCH_LATENCY_TRACE) {
        const trace = arrivals.map(([id, t]) => [Math.round(starts.get(id) - t0), Math.round(t - starts.get(id)), Math.round(acks.get(id) - starts.get(id))]).sort((a, b) => a[0] - b[0]);
        fs.writeFileSync(`${process.env.BENCH_LATENCY_TRACE}${backendNames.length > 1 ? `.${backend.name}` : ''}`, trace.map((r) => r.join(' ')).join('\n'));
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
        // What one event costs the relay (its ingest request and its delivery), and how many
        // cores' worth of CPU its threads used together over the run.
        latency_relay_cpu_ms_per_event: Number(((cpuSeconds * 1000) / total).toFixed(3)),
        latency_relay_cpu_utilisation: Number((cpuSeconds / wallSeconds).toFixed(2)),
        // Of that, the main thread's (the ingest requests); the rest is mostly the dispatch thread.
        latency_relay_main_thread_cpu_ms_per_event: Number(((mainSeconds * 1000) / total).toFixed(3)),
        // And of all of it, the kernel's work for the relay (sockets, the log pipe, fsync).
        latency_relay_system_cpu_ms_per_event: Number(((systemSeconds * 1000) / total).toFixed(3)),
      });
    }),

  // 5. backlog scaling
  backlog: async (backend, fig) => {
    for (const size of SIZES.backlogs) {
      await withDatabase(backend, `backlog_${size}`, async (db) => {
        log(`backlog on ${backend.name}: ${size} due deliveries (ingested with --role api), then the first ${MEASURED_DELIVERIES} delivered`);
        let relay = await startRelay(db, 'api');
        await addListener(relay, receiver.url);
        await ingest(relay, size, 'b', { progress: size >= 100_000 });
        await relay.stop();
        await receiver.reset();
        relay = await startRelay(db, 'all');
        const s = await receiver.waitForUnique(MEASURED_DELIVERIES);
        // first to MEASURED-th arrival: the receiver's first and last are taken at that moment.
        fig.backlog.push({
          backlog: size,
          measured: MEASURED_DELIVERIES,
          deliveries_per_s_first_10k: arrivalRate(s.unique, s),
          relay_peak_rss_mb: Math.round(relay.peakRss() / 2 ** 20),
        });
      });
    }
  },

  // 6. engine path
  engine: (backend, fig) =>
    withDatabase(backend, 'engine', async (db) => {
      const relay = await startRelay(db);
      const res = await request(relay.url + '/v1/workbooks', { headers: { authorization: `Bearer ${TOKEN}` } });
      await res.body.dump();
      if (res.statusCode === 404) {
        fig.engine = 'skipped: this relay has no workflow engine (no /v1/workbooks)';
        log(fig.engine);
      } else {
        fig.engine = await engineBench(relay, backend.name);
      }
    }),

  // 7. amqp transport: confirmed publishes
  amqp: (backend, fig) => withDatabase(backend, 'amqp', async (database) => (fig.amqp = await amqpBench({ database, receiver, count: SIZES.events }))),

  // 8. notifications consumed from RabbitMQ
  'amqp-ingest': (backend, fig) =>
    withDatabase(backend, 'amqp_ingest', async (database) => (fig.amqp_ingest = await amqpIngestBench({ database, receiver, count: SIZES.notifications }))),

  // 9. several processes on one schema (PostgreSQL)
  'two-process': async (backend, fig) => {
    // Two measurements, each in the order 1, 2, 2, 1 dispatchers with each figure the mean of
    // its two runs (a machine that speeds up or slows down over them weighs on both alike):
    // the throughput run (the batch ingest and the dispatchers sharing the machine), and a
    // stored backlog drained by the dispatcher processes alone.
    const order = [1, 2, 2, 1];
    const measure = async (kind) => {
      const runs = [];
      for (const [round, dispatchers] of order.entries()) {
        runs.push(
          await withDatabase(backend, `two_process_${kind}_${round}`, async (db) => {
            log(`two-process on ${backend.name}, ${kind} (${round + 1} of ${order.length}): ${SIZES.events} events, 1 --role api + ${dispatchers} --role dispatcher`);
            const apiRelay = await startRelay(db, 'api');
            await receiver.reset();
            await addListener(apiRelay, receiver.url);
            const startDispatchers = () => Promise.all(Array.from({ length: dispatchers }, () => startRelay(db, 'dispatcher')));
            let ingestSeconds;
            let dispatcherProcesses;
            if (kind === 'alongside') dispatcherProcesses = await startDispatchers();
            else {
              ingestSeconds = await ingest(apiRelay, SIZES.events, `p${round}`);
              // The backlog's writing is not what the drain pays for.
              await settleBackends();
            }
            const processes = kind === 'alongside' ? [apiRelay, ...dispatcherProcesses] : [apiRelay];
            const cpu = (list) => list.reduce((sum, p) => sum + p.cpuSeconds(), 0);
            let apiBefore = apiRelay.cpuSeconds();
            let cpuBefore = cpu(processes);
            if (kind === 'alongside') ingestSeconds = await ingest(apiRelay, SIZES.events, `p${round}`);
            else {
              dispatcherProcesses = await startDispatchers();
              processes.push(...dispatcherProcesses);
              // Counted from when they listen (their start-up is not the drain's), which leaves
              // out what their first cycle did by then; the api process's from the same moment,
              // or what it did meanwhile would be taken off the dispatchers' share.
              apiBefore = apiRelay.cpuSeconds();
              cpuBefore = cpu(processes);
            }
            const s = await receiver.waitForUnique(SIZES.events);
            const relaySeconds = cpu(processes) - cpuBefore;
            const apiSeconds = apiRelay.cpuSeconds() - apiBefore;
            const msPerEvent = (seconds) => Number(((seconds * 1000) / SIZES.events).toFixed(3));
            return {
              dispatchers,
              ingest_events_per_s: Math.round(SIZES.events / ingestSeconds),
              deliveries_per_s: arrivalRate(SIZES.events, s),
              duplicates: s.total - s.unique,
              relay_cpu_ms_per_event: msPerEvent(relaySeconds),
              // Of that, the dispatcher processes' (the rest is the api process's).
              dispatchers_cpu_ms_per_event: msPerEvent(relaySeconds - apiSeconds),
            };
          }),
        );
      }
      const meanOf = (dispatchers) => {
        const mine = runs.filter((r) => r.dispatchers === dispatchers);
        const mean = (key, digits) => Number((mine.reduce((sum, r) => sum + r[key], 0) / mine.length).toFixed(digits));
        return {
          dispatchers,
          ingest_events_per_s: mean('ingest_events_per_s', 0),
          deliveries_per_s: mean('deliveries_per_s', 0),
          duplicates: mine.reduce((sum, r) => sum + r.duplicates, 0),
          relay_cpu_ms_per_event: mean('relay_cpu_ms_per_event', 3),
          dispatchers_cpu_ms_per_event: mean('dispatchers_cpu_ms_per_event', 3),
          runs_deliveries_per_s: mine.map((r) => r.deliveries_per_s),
        };
      };
      const [one, two] = [meanOf(1), meanOf(2)];
      return { one_dispatcher: one, two_dispatchers: two, two_to_one: Number((two.deliveries_per_s / one.deliveries_per_s).toFixed(2)) };
    };
    const alongside = await measure('alongside');
    const backlog = await measure('backlog');
    fig.two_process = { events: SIZES.events, order, ...alongside, backlog };
  },

  // 10. graphile-worker doing the same work (PostgreSQL)
  graphile: (backend, fig) => withDatabase(backend, 'graphile', async (database) => (fig.graphile = await graphileBench({ database, receiver, jobs: SIZES.events }))),
};

const byBackend = Object.fromEntries(backendNames.map((b) => [b, { backlog: [] }]));
const results = { mode, backends: backendNames, started_at: new Date().toISOString(), machine: machine() };
try {
  // Scenario by scenario, each backend in turn: the columns are measured close together in time.
  for (const scenario of SCENARIOS.filter(want)) {
    if (scenario === 'ceiling') {
      await settleBackends();
      const ceiling = await ceilingBench();
      for (const f of Object.values(byBackend)) f.ceiling_requests_per_s = ceiling;
      continue;
    }
    for (const backend of backends) {
      if (POSTGRES_ONLY.includes(scenario) && backend.name !== 'postgres') continue;
      await RUNS[scenario](backend, byBackend[backend.name]);
    }
  }
} finally {
  await closeBackends();
}
results.finished_at = new Date().toISOString();
results.ratios = derive(byBackend);
results.figures = byBackend[backendNames[0]];
results.by_backend = byBackend;
printTable(results);
writeResults(results, args.out);
receiver.stop();
process.exit(0);

// ---------- helpers ----------
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
        const id = `${prefix}-${i}`;
        starts.set(id, now());
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

/** 4. The raw HTTP ceiling: plain undici requests to the same receiver, no database. */
async function ceilingBench() {
  log(`ceiling: ${SIZES.ceiling} plain undici requests to the same receiver, no database`);
  await receiver.reset();
  const agent = new Agent({ connections: 32, pipelining: 1, keepAliveTimeout: 60_000 });
  const body = JSON.stringify({ ...makeEvent(1), id: '01JD00000000000000000000', category: 'TASK', sequence: 1, occurred_at: new Date().toISOString(), source: 'api' });
  let next = 0;
  const started = now();
  await Promise.all(
    Array.from({ length: 512 }, async () => {
      while (next < SIZES.ceiling) {
        const i = next++;
        const res = await request(receiver.url, {
          dispatcher: agent,
          method: 'POST',
          body,
          headers: { 'content-type': 'application/json', 'webhook-id': `c-${i}`, 'webhook-timestamp': '1', 'webhook-signature': 'v1,x', 'webhook-attempt': '1' },
        });
        await res.body.dump();
      }
    }),
  );
  const rate = Math.round(SIZES.ceiling / ((now() - started) / 1000));
  await agent.close();
  return rate;
}

async function engineBench(relay, backendName) {
  log(`engine on ${backendName}: ${SIZES.executions} executions of a 5-task std.noop workflow, 1 listener`);
  const yaml = `version: '2.0'\nname: benchwb\nworkflows:\n  five:\n    tasks:\n      t1: {action: std.noop, on-success: [t2]}\n      t2: {action: std.noop, on-success: [t3]}\n      t3: {action: std.noop, on-success: [t4]}\n      t4: {action: std.noop, on-success: [t5]}\n      t5: {action: std.noop}\n`;
  const res = await request(relay.url + '/v1/workbooks', { method: 'POST', body: yaml, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/yaml' } });
  await res.body.dump();
  if (res.statusCode !== 201) return `skipped: creating the workbook answered ${res.statusCode}`;
  await receiver.reset();
  await addListener(relay, receiver.url, { workbook: 'benchwb', event_types: ['EXECUTION', 'TASK'] });
  const started = now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next++ < SIZES.executions) await api(relay.url, 'POST', '/v1/executions', { workbook: 'benchwb', workflow: 'five', input: {} });
    }),
  );
  // each execution: WORKFLOW_LAUNCHED, 5 × (TASK_LAUNCHED, TASK_SUCCEEDED), WORKFLOW_SUCCEEDED = 12 events
  const expected = SIZES.executions * 12;
  const s = await receiver.waitForUnique(expected);
  const seconds = (s.last - started) / 1000;
  return { executions: SIZES.executions, executions_per_s: Math.round(SIZES.executions / seconds), events_delivered_per_s: Math.round(expected / seconds) };
}

function machine() {
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {}
  return { cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model, memory_gb: Math.round(os.totalmem() / 2 ** 30), node: process.version, commit };
}
