// The benchmark's moving parts: the receiver process, relay processes, the API client and the
// shapes of load. Scenarios (bench.mjs, amqp.mjs, graphile.mjs) are built from these.
import { fork, spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Agent, request } from 'undici';

export const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
export const TOKEN = 'bench-token-0123456789abcdef';
export const now = () => performance.timeOrigin + performance.now();
export const log = (...a) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...a);
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

const children = new Set();
/** Ends every process the benchmark started (on exit, and before a database is dropped after a failure). */
export function killChildren() {
  for (const c of children) c.kill('SIGKILL');
  children.clear();
}

/**
 * CPU seconds in a /proc stat file, of a process or of one of its threads: user and system
 * time, or system time alone.
 */
function cpuSecondsOf(statFile, { systemOnly = false } = {}) {
  const fields = fs.readFileSync(statFile, 'utf8').split(') ')[1].split(' ');
  return ((systemOnly ? 0 : Number(fields[11])) + Number(fields[12])) / CLOCK_TICKS;
}

/** Peak resident memory and CPU time of a child process, read from /proc. */
export function watchProcess(child) {
  let peakRss = 0;
  const sample = () => {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      if (m) peakRss = Math.max(peakRss, Number(m[1]) * 1024);
    } catch {}
  };
  const sampler = setInterval(sample, 100);
  return {
    peakRss: () => (sample(), peakRss),
    /** CPU seconds (user + system) the process has used so far, all of its threads. */
    cpuSeconds: () => cpuSecondsOf(`/proc/${child.pid}/stat`),
    /** Of those, the seconds spent in the kernel for it (sockets, pipes, fsync): system time. */
    systemCpuSeconds: () => cpuSecondsOf(`/proc/${child.pid}/stat`, { systemOnly: true }),
    /**
     * CPU seconds of its main thread alone (the thread whose id is the process's), which takes
     * the API's requests; the rest is the dispatch thread's, the garbage collector's helpers'
     * and the I/O pool's.
     */
    mainThreadCpuSeconds: () => cpuSecondsOf(`/proc/${child.pid}/task/${child.pid}/stat`),
    stop: () => clearInterval(sampler),
  };
}

/** Forks a child that is tracked for clean-up; resolves once it sends its first message. */
export async function forkTracked(file, argv, options) {
  const child = fork(file, argv, options);
  children.add(child);
  child.once('exit', () => children.delete(child));
  const first = await new Promise((resolve, reject) => {
    child.once('message', resolve);
    child.once('exit', (code) => reject(new Error(`${path.basename(file)} exited with ${code} before it was ready`)));
  });
  return { child, first };
}

// ---------- the receiver ----------
export async function startReceiver() {
  const { child, first } = await forkTracked(path.join(ROOT, 'bench', 'receiver.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ask = (msg, type = msg.type) =>
    new Promise((resolve) => {
      const on = (m) => m.type === type && (child.off('message', on), resolve(m));
      child.on('message', on);
      child.send(msg);
    });
  return {
    url: `http://127.0.0.1:${first.port}/hook`,
    /** trackEvents: note each event's first arrival; trackOrder: count arrivals out of sequence order per execution. */
    reset: ({ trackEvents = false, trackOrder = false } = {}) => ask({ type: 'reset', trackEvents, trackOrder }),
    /** { unique, total, first, last, outOfOrder } since the last reset. */
    stats: () => ask({ type: 'stats' }),
    /** [event id, first arrival] of each event since a reset with trackEvents. */
    eventArrivals: async () => (await ask({ type: 'events' })).arrivals,
    /** Waits for n distinct webhook-ids; gives up once none has arrived for `stallMs`. */
    async waitForUnique(n, stallMs = 60_000) {
      let seen = -1;
      let progressAt = Date.now();
      for (;;) {
        const s = await ask({ type: 'stats' });
        if (s.unique >= n) return s;
        if (s.unique > seen) [seen, progressAt] = [s.unique, Date.now()];
        else if (Date.now() - progressAt > stallMs) throw new Error(`only ${s.unique} of ${n} deliveries arrived, and none in the last ${stallMs / 1000} s`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    stop: () => child.send({ type: 'stop' }),
  };
}

/** Deliveries per second from the first to the last arrival the receiver saw. */
export const arrivalRate = (count, stats) => Math.round(count / ((stats.last - stats.first) / 1000));

// ---------- relay processes ----------
const relays = new Set();

/**
 * Starts dist/main.js with the given role on `database` (from databases.mjs), production
 * settings, and resolves once it listens. BENCH_RELAY_NODE_ARGS goes to node (e.g. --cpu-prof).
 */
export async function startRelay(database, role = 'all', extraEnv = {}) {
  const nodeArgs = (process.env.BENCH_RELAY_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const env = { ...process.env };
  // The database handle alone says where the data lives, whatever the shell exported.
  delete env.RELAY_DATABASE_URL;
  delete env.RELAY_DATABASE_SCHEMA;
  Object.assign(env, { RELAY_PORT: '0', RELAY_TOKENS: `${TOKEN}=bench`, RELAY_LOG_LEVEL: 'info', RELAY_DURABILITY: 'full' }, database.env, extraEnv);
  const child = spawn(process.execPath, [...nodeArgs, path.join(ROOT, 'dist', 'main.js'), '--role', role], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
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
    child.once('exit', (code) => reject(new Error(`relay (--role ${role}, ${database.location}) exited with ${code} before listening`)));
  });
  const watch = watchProcess(child);
  const relay = {
    url,
    role,
    peakRss: watch.peakRss,
    cpuSeconds: watch.cpuSeconds,
    systemCpuSeconds: watch.systemCpuSeconds,
    mainThreadCpuSeconds: watch.mainThreadCpuSeconds,
    async stop() {
      watch.stop();
      relays.delete(relay);
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
  relays.add(relay);
  return relay;
}

/** Stops the relays still running (a scenario that failed half-way), so their database can be dropped. */
export const stopRelays = () => Promise.all([...relays].map((r) => r.stop()));

// ---------- the API and the load ----------
const client = new Agent({ connections: 64, keepAliveTimeout: 60_000 });

export async function api(base, method, pathname, body) {
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

/** A GET without the token (probes, /metrics), answered with its status and body text. */
export async function probe(url) {
  const res = await request(url, { dispatcher: client });
  return { status: res.statusCode, text: await res.body.text() };
}

export const addListener = (relay, receiverUrl, extra = {}) =>
  api(relay.url, 'POST', '/v1/listeners', { workbook: '*', event_types: ['TASK'], callback: { url: receiverUrl }, ...extra });

/** The i-th event of a load; `executions` events apart share an execution_id. */
export const makeEvent = (i, prefix = 'e', executions = 1000) => ({
  id: `${prefix}-${i}`,
  type: 'TASK_SUCCEEDED',
  workbook: 'bench',
  workflow: 'wf',
  execution_id: `exec-${i % executions}`,
  task_name: 'step',
  state: 'SUCCESS',
  data: { n: i },
});

/**
 * Runs `send(events)` over `count` events in batches of 1000, `parallel` batches at a time;
 * returns seconds. The relay's batch ingest and graphile-worker's addJobs share this shape.
 */
export async function inBatches(count, prefix, send, { parallel = 4, progress = false, executions } = {}) {
  const started = now();
  let next = 0;
  let done = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < count) {
        const from = next;
        next = Math.min(count, next + 1000);
        const events = [];
        for (let i = from; i < next; i++) events.push(makeEvent(i, prefix, executions));
        await send(events);
        done += events.length;
        if (progress && done % 100_000 === 0) log(`  sent ${done}/${count}`);
      }
    }),
  );
  return (now() - started) / 1000;
}

/** Posts `count` events to the relay's batch API; returns seconds. */
export const ingest = (relay, count, prefix, options) =>
  inBatches(count, prefix, (events) => api(relay.url, 'POST', '/v1/events', { events }), options);
