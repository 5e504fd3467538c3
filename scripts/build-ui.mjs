#!/usr/bin/env node
/*
 * Builds the dashboard (ui/) into dist/ui/, which the relay serves at /ui (src/api/ui.ts).
 *
 * Why this stack: the dashboard is a handful of pages over the public /v1 API, served by the
 * relay itself on its own port, so it needs no framework server and no second process.
 * Preact (a few KB, React's component model), uPlot (a small, fast canvas chart for time
 * series) and esbuild (one well-kept binary that bundles TypeScript, JSX and CSS in well under
 * a second, with no plugin tree) are each small and maintained, and together leave two
 * files with content hashes in their names: hashed files can be cached for a year, and the
 * strict Content-Security-Policy holds because nothing is inline.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const source = path.join(root, 'ui');
const out = path.join(root, 'dist', 'ui');
const assets = path.join(out, 'assets');
// Absolute: client routes are nested (/ui/listeners/ID) and the CSP forbids <base>.
const PUBLIC_PATH = '/ui/assets';

// Stale hashed files would otherwise pile up with every build.
fs.rmSync(out, { recursive: true, force: true });

const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: [path.join(source, 'main.tsx')],
  outdir: assets,
  entryNames: '[name]-[hash]',
  bundle: true,
  format: 'esm',
  platform: 'browser',
  // Browsers of the last few years; the test drives Debian's Chromium.
  target: ['chrome111', 'firefox111', 'safari16.4', 'edge111'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  minify: true,
  sourcemap: 'linked',
  legalComments: 'linked',
  metafile: true,
  logLevel: 'warning',
});

// The entry's script and the stylesheet esbuild split off its CSS imports.
const entry = Object.entries(result.metafile.outputs).find(([, o]) => o.entryPoint?.endsWith('main.tsx'));
if (!entry || !entry[1].cssBundle) throw new Error('build-ui: esbuild produced no script or no stylesheet for ui/main.tsx');
const publicUrl = (file) => `${PUBLIC_PATH}/${path.basename(file)}`;

const html = fs
  .readFileSync(path.join(source, 'index.html'), 'utf8')
  .replace('%SCRIPT%', publicUrl(entry[0]))
  .replace('%STYLESHEET%', publicUrl(entry[1].cssBundle));
fs.writeFileSync(path.join(out, 'index.html'), html);

