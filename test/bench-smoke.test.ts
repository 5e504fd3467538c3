import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { tempDir } from './helpers/relay.js';

// The benchmark is not part of the suite; this only checks that it runs end to end and writes
// its figures (tiny counts, so the numbers themselves mean nothing here).
it('runs the benchmark end to end and writes its figures', async () => {
  const out = tempDir('relay-bench-out-');
  const { stdout } = await promisify(execFile)(process.execPath, ['bench/bench.mjs', '--smoke', '--out', out], {
    timeout: 240_000,
  });
  expect(stdout).toContain('callback-relay benchmark (smoke)');
  expect(stdout).toMatch(/relay peak RSS \(MB\), throughput run +\d+/);
  const latest = JSON.parse(fs.readFileSync(path.join(out, 'latest.json'), 'utf8'));
  expect(latest.mode).toBe('smoke');
  for (const key of ['ingest_events_per_s', 'deliveries_per_s_1_listener', 'peak_rss_mb_throughput', 'ceiling_requests_per_s', 'latency_p99_ms', 'deliveries_per_s_fanout_10']) {
    expect(latest.figures[key], key).toBeGreaterThan(0);
  }
  // The main thread's CPU is part of the process's, read from its own /proc/<pid>/task entry;
  // the kernel's (system time) is part of it too.
  for (const [main, all] of [
    ['relay_main_thread_cpu_ms_per_event_throughput', 'relay_cpu_ms_per_event_throughput'],
    ['latency_relay_main_thread_cpu_ms_per_event', 'latency_relay_cpu_ms_per_event'],
    ['latency_relay_system_cpu_ms_per_event', 'latency_relay_cpu_ms_per_event'],
  ]) {
    expect(latest.figures[main], main).toBeGreaterThan(0);
    expect(latest.figures[main], main).toBeLessThanOrEqual(latest.figures[all]);
  }
  expect(latest.figures.backlog).toHaveLength(2);
  expect(fs.readdirSync(out).filter((f) => f.endsWith('-smoke.json'))).toHaveLength(1);
}, 300_000);

// The PostgreSQL-only scenario of several processes: both of its measurements, in order.
it('runs the two-process scenario on PostgreSQL, with the ingest alongside and from a stored backlog', async () => {
  const out = tempDir('relay-bench-out-');
  const { stdout } = await promisify(execFile)(process.execPath, ['bench/bench.mjs', '--smoke', '--backend', 'postgres', '--only', 'two-process', '--out', out], {
    timeout: 120_000,
  });
  expect(stdout).toMatch(/a stored backlog drained: deliveries\/s, 1 \/ 2 dispatcher processes \(means of 2\) +\d+ \/ \d+/);
  const latest = JSON.parse(fs.readFileSync(path.join(out, 'latest.json'), 'utf8'));
  const { two_process: twoProcess } = latest.by_backend.postgres;
  expect(twoProcess.order).toEqual([1, 2, 2, 1]);
  for (const measured of [twoProcess, twoProcess.backlog]) {
    for (const half of [measured.one_dispatcher, measured.two_dispatchers]) {
      expect(half.runs_deliveries_per_s).toHaveLength(2);
      expect(half.duplicates).toBe(0);
      expect(half.dispatchers_cpu_ms_per_event).toBeGreaterThan(0);
    }
  }
  expect(latest.ratios.two_to_one_dispatchers).toBeGreaterThan(0);
  expect(latest.ratios.two_to_one_dispatchers_backlog).toBe(twoProcess.backlog.two_to_one);
}, 180_000);
