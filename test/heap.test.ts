import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from './helpers/relay.js';
import { killAllRelays, startRelayProcess } from './helpers/relay-process.js';

/*
 * RELAY_HEAP_GROWING_PERCENT sets how far V8's old generation grows between full collections.
 * Real Node processes on dist/ (`npm run build` first): the same allocation pattern, a stream of
 * objects that live long enough to be promoted and then die, with the relay's setting applied
 * and with V8's own choice.
 */

const run = promisify(execFile);
const HEAP_MODULE = path.resolve('dist/heap.js');

// Each round keeps 60 rounds' worth of objects alive, like requests waiting for their commit.
const probe = (percent: number | null) => `
import v8 from 'node:v8';
const { limitHeapGrowth } = await import(${JSON.stringify(HEAP_MODULE)});
${percent === null ? '' : `limitHeapGrowth(${percent});`}
let peak = 0;
const live = [];
for (let i = 0; i < 1000; i++) {
  live.push(Array.from({ length: 5000 }, (_, k) => ({ k, s: 'x' + k })));
  if (live.length > 60) live.shift();
  if (i % 5 === 0) await new Promise((r) => setImmediate(r));
  peak = Math.max(peak, v8.getHeapStatistics().total_heap_size);
}
process.stdout.write(String(peak));
`;

async function peakHeapMb(percent: number | null): Promise<number> {
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', probe(percent)]);
  return Number(stdout) / 2 ** 20;
}

const dirs: string[] = [];
afterAll(async () => {
  await killAllRelays();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('RELAY_HEAP_GROWING_PERCENT', () => {
  it('is applied by the relay process at start, which says so; unset, nothing is said', async () => {
    const msg = 'V8 heap growth between full collections limited (RELAY_HEAP_GROWING_PERCENT)';
    const lines = async (extra: Record<string, string>) => {
      const dir = tempDir('relay-heap-');
      dirs.push(dir);
      const relay = await startRelayProcess({ RELAY_PORT: '0', RELAY_DATA_DIR: dir, RELAY_TOKENS: 'heap-test-token-0123456789=p', RELAY_LOG_LEVEL: 'info', ...extra });
      await relay.stop();
      return relay.stdoutLines.map((l) => JSON.parse(l) as { msg: string; percent?: number });
    };
    const [set, unset] = await Promise.all([lines({ RELAY_HEAP_GROWING_PERCENT: '100' }), lines({})]);
    expect(set.filter((l) => l.msg === msg).map((l) => l.percent)).toEqual([100]);
    expect(unset.filter((l) => l.msg === msg)).toEqual([]);
  }, 60_000);

  it('keeps a real process well below the peak heap V8 reaches on its own', async () => {
    const [limited, own] = await Promise.all([peakHeapMb(100), peakHeapMb(null)]);
    expect(limited, `limited ${limited.toFixed(0)} MB, V8's own ${own.toFixed(0)} MB`).toBeLessThan(own * 0.85);
  }, 60_000);
});
