import { parentPort } from 'node:worker_threads';
import { parseWorkbook, WorkbookError } from './workbook.js';
import type { ParsedAnswer, ParseFormat } from './workbook-parser.js';

/* The workbook parser thread (workbook-parser.ts): one definition at a time. */

const port = parentPort!;
port.on('message', ({ id, source, format }: { id: number; source: string; format: ParseFormat }) => {
  let answer: ParsedAnswer;
  try {
    answer = { id, spec: parseWorkbook(source, format) };
  } catch (err) {
    answer = err instanceof WorkbookError ? { id, issues: err.issues } : { id, error: (err as Error)?.message ?? String(err) };
  }
  port.postMessage(answer);
});
