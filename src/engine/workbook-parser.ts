import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { parseWorkbook, WorkbookError, type WorkbookIssue, type WorkbookSpec } from './workbook.js';

/*
 * Workbook definitions are parsed off the thread that serves every request. The YAML parser
 * takes 1 µs a byte for block style and about 3 µs for flow style (JSON): a definition at the
 * body limit (1 MiB) is seconds of parsing, which on the serving thread would hold every other
 * request, /healthz included. One long-lived thread takes the definitions one after another.
 * Where the thread's file is not built (the tests that run the sources), the parse runs here.
 */

export type ParseFormat = 'yaml' | 'json';

/** What the parser thread answers for one definition. */
export type ParsedAnswer = { id: number; spec: WorkbookSpec } | { id: number; issues: WorkbookIssue[] } | { id: number; error: string };

const WORKER_FILE = new URL('./workbook-worker.js', import.meta.url);

let worker: Worker | null = null;
let nextId = 1;
const pending = new Map<number, { resolve(spec: WorkbookSpec): void; reject(err: unknown): void }>();

function thread(): Worker {
  if (worker) return worker;
  const w = new Worker(WORKER_FILE, { resourceLimits: { maxOldGenerationSizeMb: 512 } });
  // It never keeps the process alive: a stopping relay does not wait for it.
  w.unref();
  w.on('message', (m: ParsedAnswer) => {
    const call = pending.get(m.id);
    if (!call) return;
    pending.delete(m.id);
    if ('spec' in m) call.resolve(m.spec);
    else if ('issues' in m) call.reject(new WorkbookError(m.issues));
    else call.reject(new Error(m.error));
  });
  const fail = (err: Error) => {
    if (worker === w) worker = null;
    for (const [id, call] of pending) {
      pending.delete(id);
      call.reject(err);
    }
  };
  w.on('error', fail);
  w.on('exit', (code) => fail(new Error(`the workbook parser thread stopped (exit code ${code})`)));
  worker = w;
  return w;
}

const built = fs.existsSync(fileURLToPath(WORKER_FILE));

/** parseWorkbook, in the parser thread: resolves the spec, or rejects with WorkbookError listing the problems. */
export function parseWorkbookOffThread(source: string, format: ParseFormat): Promise<WorkbookSpec> {
  if (!built) return new Promise((resolve) => resolve(parseWorkbook(source, format)));
  const id = nextId++;
  return new Promise<WorkbookSpec>((resolve, reject) => {
    pending.set(id, { resolve, reject });
    thread().postMessage({ id, source, format });
  });
}
