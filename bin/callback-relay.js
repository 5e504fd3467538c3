#!/usr/bin/env node
import { existsSync } from 'node:fs';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('callback-relay: dist/ is not built; run `npm run build` first\n');
  process.exit(1);
}
const { runCli } = await import(main.href);

process.exitCode = await runCli(process.argv.slice(2));
