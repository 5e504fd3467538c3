export const OUTPUT_FORMATS = ['table', 'json'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export interface Printer {
  line(text?: string): void;
  /** The API's JSON as is, pretty-printed. */
  json(value: unknown): void;
  /** An aligned table with a header row; the last column is not padded. */
  table(headers: string[], rows: string[][]): void;
  /** `key: value` lines with the values aligned, for one record. */
  fields(pairs: Array<[string, string]>): void;
}

/*
 * Everything printed as text may hold what a receiver answered (excerpts, errors) or what a
 * client sent (event data). Terminal control characters in it could move the cursor, rewrite
 * earlier lines or retitle the window, so they are shown as visible escapes instead: C0 and C1
 * controls, DEL, and the bidirectional overrides that reorder how text is shown.
 */
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const CONTROL_IN_CELL = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const visible = (ch: string) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`;

/** `text` with terminal control characters replaced by `\uXXXX`; newlines and tabs kept unless `inline`. */
export function terminalSafe(text: string, inline = false): string {
  return text.replace(inline ? CONTROL_IN_CELL : CONTROL, visible);
}

const pad = (text: string, width: number) => text + ' '.repeat(Math.max(0, width - text.length));

export function formatTable(headers: string[], rows: string[][]): string[] {
  const all = [headers, ...rows].map((r) => r.map((cell) => terminalSafe(cell ?? '', true)));
  const widths = headers.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : pad(cell, widths[i]))).join('  ').trimEnd());
}

export function formatFields(pairs: Array<[string, string]>): string[] {
  const width = Math.max(0, ...pairs.map(([k]) => k.length)) + 2;
  return pairs.map(([k, v]) => `${pad(`${k}:`, width)}${terminalSafe(v, true)}`.trimEnd());
}

export function createPrinter(write: (text: string) => void): Printer {
  const line = (text = '') => write(`${text}\n`);
  return {
    line,
    json: (value) => line(JSON.stringify(value, null, 2)),
    table: (headers, rows) => formatTable(headers, rows).forEach((l) => line(l)),
    fields: (pairs) => formatFields(pairs).forEach((l) => line(l)),
  };
}

/** 5000 → "5s", 1800000 → "30m"; whole units only, else milliseconds. */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** The "Examples:" block at the end of a command's --help. */
export const helpExamples = (lines: string[]) => `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`;
