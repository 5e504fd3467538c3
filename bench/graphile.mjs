// The comparison target: graphile-worker on the same PostgreSQL doing the relay's work per job —
// one signed HTTP request to the benchmark's receiver and one attempt row — in its own process,
// with the batching its authors measure with (local queue, batched completions).
//   graphileBench(…)                       from bench.mjs: schema, jobs, measurement
//   node bench/graphile.mjs worker CONFIG  the worker process it forks
import { createHmac, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Agent, request } from 'undici';
import { Logger, makeWorkerUtils, run, runMigrations } from 'graphile-worker';
import { arrivalRate, forkTracked, inBatches, log, watchProcess } from './harness.mjs';

/** The relay's requests in flight to one receiver (RELAY_CONNECTIONS_PER_ORIGIN's default). */
export const GRAPHILE_CONCURRENCY = 32;
/** graphile-worker's performance page runs with a local queue of 500 and completions batched at 0 ms. */
const LOCAL_QUEUE_SIZE = 500;

/**
 * Adds `jobs` jobs with addJobs (1000 per call, 4 calls in flight: the relay's ingest shape)
 * while the worker runs, and measures deliveries/s at the receiver, first to last arrival.
 */
export async function graphileBench({ database, receiver, jobs }) {
  const { url, schema } = database;
  const concurrency = GRAPHILE_CONCURRENCY;
  log(`graphile: ${jobs} jobs, graphile-worker concurrency ${concurrency}, local queue ${LOCAL_QUEUE_SIZE}, schema ${schema}`);
  await runMigrations({ connectionString: url, schema, logger: quietLogger });
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query(
    `CREATE TABLE ${pg.escapeIdentifier(schema)}.attempts (id bigserial PRIMARY KEY, job_id bigint NOT NULL, delivery_id text NOT NULL, attempt int NOT NULL, status int NOT NULL, duration_ms real NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`,
  );
  await receiver.reset();
  const secret = 'whsec_' + randomBytes(32).toString('base64');
  const config = { url, schema, concurrency, receiverUrl: receiver.url, secret };
  const { child } = await forkTracked(fileURLToPath(import.meta.url), ['worker', JSON.stringify(config)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const worker = watchProcess(child);
  const stopWorker = async () => {
    worker.stop();
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.send({ type: 'stop' });
    await exited;
  };
  const utils = await makeWorkerUtils({ connectionString: url, schema, logger: quietLogger });
  try {
    let sequence = 0;
    const workerCpuBefore = worker.cpuSeconds();
    const addCpuBefore = process.cpuUsage();
    const addSeconds = await inBatches(jobs, 'g', (events) =>
      utils.addJobs(events.map((e) => ({ identifier: 'deliver', payload: { ...e, category: 'TASK', sequence: ++sequence, occurred_at: new Date().toISOString(), source: 'api' } }))),
    );
    const addCpu = process.cpuUsage(addCpuBefore);
    const s = await receiver.waitForUnique(jobs);
    const cpuSeconds = worker.cpuSeconds() - workerCpuBefore;
    const peakRss = worker.peakRss();
    // A job's attempt row is written after its request: count them once the worker has drained.
    await stopWorker();
    const { rows } = await admin.query(`SELECT count(*)::int AS n FROM ${pg.escapeIdentifier(schema)}.attempts`);
    return {
      jobs,
      concurrency,
      local_queue_size: LOCAL_QUEUE_SIZE,
      jobs_added_per_s: Math.round(jobs / addSeconds),
      deliveries_per_s: arrivalRate(jobs, s),
      duplicates: s.total - s.unique,
      attempt_rows: rows[0].n,
      worker_cpu_ms_per_job: Number(((cpuSeconds * 1000) / jobs).toFixed(3)),
      // The benchmark process itself adds the jobs (the relay's counterpart is its ingest).
      add_cpu_ms_per_job: Number(((addCpu.user + addCpu.system) / 1000 / jobs).toFixed(3)),
      worker_peak_rss_mb: Math.round(peakRss / 2 ** 20),
    };
  } finally {
    await stopWorker();
    await utils.release();
    await admin.end();
  }
}

// Per-job "Completed task" lines are info; the relay logs no line per delivery either.
const quietLogger = new Logger(() => (level, message) => {
  if (level === 'error' || level === 'warning') console.error(`[graphile-worker ${level}] ${message}`);
});

async function worker({ url, schema, concurrency, receiverUrl, secret }) {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  // The relay's HTTP transport: one pool per origin, as many connections as requests in flight.
  const agent = new Agent({ connections: concurrency, pipelining: 1, keepAliveTimeout: 60_000 });
  const insertAttempt = `INSERT INTO ${pg.escapeIdentifier(schema)}.attempts (job_id, delivery_id, attempt, status, duration_ms) VALUES ($1, $2, $3, $4, $5)`;
  const deliver = async (payload, helpers) => {
    const { job } = helpers;
    const deliveryId = `gw-${job.id}`;
    const body = JSON.stringify(payload);
    const timestamp = Math.floor(Date.now() / 1000);
    // Standard Webhooks: HMAC-SHA256 over id.timestamp.body, as the relay signs.
    const signature = createHmac('sha256', key).update(`${deliveryId}.${timestamp}.`).update(body).digest('base64');
    const started = performance.now();
    const res = await request(receiverUrl, {
      dispatcher: agent,
      method: 'POST',
      body,
      headers: {
        'content-type': 'application/json',
        'webhook-id': deliveryId,
        'webhook-timestamp': String(timestamp),
        'webhook-signature': `v1,${signature}`,
        'webhook-attempt': String(job.attempts),
      },
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    });
    await res.body.dump();
    await helpers.query(insertAttempt, [job.id, deliveryId, job.attempts, res.statusCode, performance.now() - started]);
    if (res.statusCode < 200 || res.statusCode >= 300) throw new Error(`receiver answered ${res.statusCode}`);
  };
  const runner = await run({
    noHandleSignals: true,
    taskList: { deliver },
    preset: {
      worker: {
        connectionString: url,
        schema,
        concurrentJobs: concurrency,
        // graphile-worker's advice when tasks use its pool: concurrency + 2.
        maxPoolSize: concurrency + 2,
        localQueue: { size: LOCAL_QUEUE_SIZE },
        completeJobBatchDelay: 0,
        failJobBatchDelay: 0,
        logger: quietLogger,
      },
    },
  });
  process.on('message', (m) => {
    if (m.type === 'stop') runner.stop().then(() => process.exit(0));
  });
  process.send({ type: 'ready' });
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === 'worker') {
  await worker(JSON.parse(process.argv[3]));
}
