import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { tempDir } from './helpers/relay.js';

// The amqp-ingest benchmark scenario runs end to end against the real RabbitMQ and writes its
// figure (tiny counts: the number itself means nothing here). Uses dist/: `npm run build` first.
it('runs the amqp-ingest benchmark scenario and writes notifications consumed per second', async () => {
  const out = tempDir('relay-bench-ingest-');
  const { stdout } = await promisify(execFile)(process.execPath, ['bench/bench.mjs', '--smoke', '--only', 'amqp-ingest', '--out', out], {
    timeout: 120_000,
  });
  expect(stdout).toMatch(/notifications consumed from RabbitMQ into the outbox \(\/s, 1 listener\)\s+\d+/);
  const latest = JSON.parse(fs.readFileSync(path.join(out, 'latest.json'), 'utf8'));
  expect(latest.figures.amqp_ingest).toMatchObject({ notifications: 300 });
  expect(latest.figures.amqp_ingest.notifications_per_s).toBeGreaterThan(0);
  fs.rmSync(out, { recursive: true, force: true });
}, 180_000);
