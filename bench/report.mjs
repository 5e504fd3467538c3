// The printed table (a column per backend, the ratios the targets are stated in) and the JSON
// files in bench/results.
import fs from 'node:fs';
import path from 'node:path';
import { log } from './harness.mjs';

const ratio = (a, b) => (a > 0 && b > 0 ? Number((a / b).toFixed(2)) : undefined);

/** Figures that compare runs: within a backend's column, and across backends and systems. */
export function derive(byBackend) {
  for (const f of Object.values(byBackend)) {
    f.relay_to_ceiling_ratio = ratio(f.deliveries_per_s_1_listener, f.ceiling_requests_per_s);
    if (f.backlog.length === 2) f.backlog_rate_ratio = ratio(f.backlog[1].deliveries_per_s_first_10k, f.backlog[0].deliveries_per_s_first_10k);
  }
  const { sqlite, postgres } = byBackend;
  const ratios = {
    postgres_to_sqlite_deliveries: ratio(postgres?.deliveries_per_s_1_listener, sqlite?.deliveries_per_s_1_listener),
    postgres_to_graphile_deliveries: ratio(postgres?.deliveries_per_s_1_listener, postgres?.graphile?.deliveries_per_s),
    two_to_one_dispatchers: postgres?.two_process?.two_to_one,
    two_to_one_dispatchers_backlog: postgres?.two_process?.backlog?.two_to_one,
  };
  return Object.fromEntries(Object.entries(ratios).filter(([, v]) => v !== undefined));
}

/** The two-process runs' deliveries/s in the order they ran (each figure above is the mean of its two). */
function runsInOrder({ order, one_dispatcher: one, two_dispatchers: two }) {
  const next = { 1: [...one.runs_deliveries_per_s], 2: [...two.runs_deliveries_per_s] };
  return order.map((n) => next[n].shift()).join(' / ');
}

const ROWS = [
  ['ingest, batch API (events/s)', (f) => f.ingest_events_per_s],
  ['deliveries/s, 1 listener', (f) => f.deliveries_per_s_1_listener],
  ['relay CPU per event (ms), throughput run (ingest + delivery)', (f) => f.relay_cpu_ms_per_event_throughput],
  ['  of which its main thread (the API)', (f) => f.relay_main_thread_cpu_ms_per_event_throughput],
  ['relay peak RSS (MB), throughput run', (f) => f.peak_rss_mb_throughput],
  ['raw HTTP ceiling (requests/s)', (f) => f.ceiling_requests_per_s],
  ['relay / ceiling', (f) => f.relay_to_ceiling_ratio],
  ['ingest with 10-listener fan-out (events/s)', (f) => f.ingest_events_per_s_fanout_10],
  ['deliveries/s, 10 listeners', (f) => f.deliveries_per_s_fanout_10],
  [(f) => f.ordering && `deliveries/s, ${f.ordering.executions} executions: unordered listener`, (f) => f.ordering?.unordered.deliveries_per_s],
  [(f) => f.ordering && `deliveries/s, ${f.ordering.executions} executions: ordered listener ("ordering": "execution")`, (f) => f.ordering?.ordered.deliveries_per_s],
  ['ordered / unordered', (f) => f.ordering?.ordered_to_unordered],
  ['arrivals out of sequence order: unordered / ordered', (f) => f.ordering && `${f.ordering.unordered.out_of_order} / ${f.ordering.ordered.out_of_order}`],
  [(f) => `latency p50 / p95 / p99 / max (ms) at ${f.latency_rate_per_s}/s, after ${f.latency_warmup_seconds} s warm-up`, (f) => f.latency_p50_ms !== undefined && `${f.latency_p50_ms} / ${f.latency_p95_ms} / ${f.latency_p99_ms} / ${f.latency_max_ms}`],
  ['ingest answer p99 (ms) in the latency run', (f) => f.latency_ack_p99_ms],
  ['relay CPU per event (ms), CPU use, in the latency run', (f) => f.latency_relay_cpu_ms_per_event !== undefined && `${f.latency_relay_cpu_ms_per_event}, ${f.latency_relay_cpu_utilisation}`],
  ['  of which its main thread (the API)', (f) => f.latency_relay_main_thread_cpu_ms_per_event],
  ['  of which in the kernel (system time)', (f) => f.latency_relay_system_cpu_ms_per_event],
  ...[0, 1].map((i) => [
    (f) => f.backlog[i] && `backlog ${f.backlog[i].backlog}: deliveries/s (first ${f.backlog[i].measured}), peak RSS MB`,
    (f) => f.backlog[i] && `${f.backlog[i].deliveries_per_s_first_10k}, ${f.backlog[i].relay_peak_rss_mb}`,
  ]),
  ['backlog rate ratio (large / small)', (f) => f.backlog_rate_ratio],
  ['amqp deliveries/s, 1 listener (broker-confirmed, oslo format)', (f) => f.amqp?.deliveries_per_s],
  ['notifications consumed from RabbitMQ into the outbox (/s, 1 listener)', (f) => f.amqp_ingest?.notifications_per_s],
  ['engine, 5-task workflow: executions/s', (f) => (typeof f.engine === 'string' ? 'skipped' : f.engine?.executions_per_s)],
  ['engine: events delivered/s', (f) => f.engine?.events_delivered_per_s],
  ['deliveries/s, 1 api + 1 dispatcher process (mean of 2 runs)', (f) => f.two_process?.one_dispatcher.deliveries_per_s],
  ['deliveries/s, 1 api + 2 dispatcher processes (mean of 2 runs)', (f) => f.two_process?.two_dispatchers.deliveries_per_s],
  ['  runs in order 1, 2, 2, 1 dispatchers', (f) => f.two_process?.order && runsInOrder(f.two_process)],
  ['relay CPU per event (ms), all processes: 1 / 2 dispatchers', (f) => f.two_process && `${f.two_process.one_dispatcher.relay_cpu_ms_per_event} / ${f.two_process.two_dispatchers.relay_cpu_ms_per_event}`],
  ['  of which the dispatcher processes: 1 / 2 dispatchers', (f) => f.two_process?.one_dispatcher.dispatchers_cpu_ms_per_event !== undefined && `${f.two_process.one_dispatcher.dispatchers_cpu_ms_per_event} / ${f.two_process.two_dispatchers.dispatchers_cpu_ms_per_event}`],
  ['a stored backlog drained: deliveries/s, 1 / 2 dispatcher processes (means of 2)', (f) => f.two_process?.backlog && `${f.two_process.backlog.one_dispatcher.deliveries_per_s} / ${f.two_process.backlog.two_dispatchers.deliveries_per_s}`],
  ['  runs in order 1, 2, 2, 1 dispatchers', (f) => f.two_process?.backlog && runsInOrder({ order: f.two_process.order, ...f.two_process.backlog })],
  ['  dispatcher processes\' CPU per delivery (ms): 1 / 2 dispatchers', (f) => f.two_process?.backlog && `${f.two_process.backlog.one_dispatcher.dispatchers_cpu_ms_per_event} / ${f.two_process.backlog.two_dispatchers.dispatchers_cpu_ms_per_event}`],
  ['graphile-worker: deliveries/s (signed, 1 attempt row each)', (f) => f.graphile?.deliveries_per_s],
  ['graphile-worker: jobs added/s (addJobs, 1000 per call)', (f) => f.graphile?.jobs_added_per_s],
  ['graphile-worker: CPU per job (ms), worker + adding', (f) => f.graphile && `${f.graphile.worker_cpu_ms_per_job} + ${f.graphile.add_cpu_ms_per_job}`],
];

const RATIO_LABELS = {
  postgres_to_sqlite_deliveries: 'postgres / sqlite, deliveries/s to 1 listener',
  postgres_to_graphile_deliveries: 'relay on postgres / graphile-worker, deliveries/s',
  two_to_one_dispatchers: 'two dispatcher processes / one, deliveries/s (means)',
  two_to_one_dispatchers_backlog: '  the same, draining a stored backlog',
};

export function printTable(results) {
  const backends = results.backends;
  const cols = backends.map((b) => results.by_backend[b]);
  const rows = [];
  for (const [label, value] of ROWS) {
    const cells = cols.map((f) => value(f));
    if (cells.every((c) => c === undefined || c === false)) continue;
    const name = typeof label === 'string' ? label : cols.map((f) => label(f)).find(Boolean);
    rows.push([name, ...cells.map((c) => (c === undefined || c === false ? '—' : String(c)))]);
  }
  const header = ['figure', ...backends];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r) => '  ' + r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const m = results.machine;
  console.log(`\ncallback-relay benchmark (${results.mode}) — ${m.cpus} CPUs, ${m.node}, commit ${m.commit}`);
  console.log(line(header));
  for (const r of rows) console.log(line(r));
  const ratios = Object.entries(results.ratios);
  if (ratios.length) {
    const w = Math.max(...ratios.map(([k]) => RATIO_LABELS[k].length));
    console.log('  ratios');
    for (const [k, v] of ratios) console.log(`    ${RATIO_LABELS[k].padEnd(w)}  ${v}`);
  }
}

export function writeResults(results, dir) {
  fs.mkdirSync(dir, { recursive: true });
  const json = JSON.stringify(results, null, 2) + '\n';
  fs.writeFileSync(path.join(dir, 'latest.json'), json);
  const stamp = results.started_at.replace(/[:]/g, '-').replace(/\..*/, '');
  const backends = results.backends.length > 1 ? `-${results.backends.join('+')}` : results.backends[0] === 'sqlite' ? '' : `-${results.backends[0]}`;
  fs.writeFileSync(path.join(dir, `${stamp}-${results.machine.commit}-${results.mode}${backends}.json`), json);
  log(`wrote ${path.join(dir, 'latest.json')}`);
}
