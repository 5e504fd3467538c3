import YAML from 'yaml';
import { UsageError } from './errors.js';

/** `-f`: table for people (the default); json and yaml print the API's document; value and csv print columns. */
export const OUTPUT_FORMATS = ['table', 'json', 'yaml', 'value', 'csv'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** One column of a list: its table header, the API field it comes from, and how a table cell reads it. */
export interface Column<T> {
  header: string;
  /** The API's field name (dotted for a nested one): what `-c` also accepts and csv's header says. */
  field: string;
  /** The table cell: shortened, or a relative time, where that reads better. */
  cell(item: T, now: number): string;
  /** The value json, yaml, csv, value and sorting use; the API's field unless given. */
  value?(item: T): unknown;
  /** Shown only when asked for with -c. */
  optional?: boolean;
}

/** One line of a record: its name, the table text and, where the text is not the API's value, that value. */
export type FieldPair = [name: string, text: string, value?: unknown];

/** "-" in a table for what is not there. */
export const dash = (v: string | number | null | undefined) => (v === null || v === undefined || v === '' ? '-' : String(v));

/** A field that may be absent: "-" in a table, null in the machine formats. */
export const optionalField = (name: string, v: string | number | null | undefined): FieldPair => [name, dash(v), v ?? null];

/** How the user asked a list or record to be shown (-f, -c, --sort-column, --sort-descending). */
export interface ViewOptions {
  format: OutputFormat;
  columns?: string[];
  sortColumns?: string[];
  sortDescending?: boolean;
}

export interface ListDocument<T> {
  items: T[];
  next_cursor?: string | null;
}

export interface Printer {
  line(text?: string): void;
  /** The API's JSON as is, pretty-printed. */
  json(value: unknown): void;
  /** An aligned table with a header row; the last column is not padded. */
  table(headers: string[], rows: string[][]): void;
  /** `key: value` lines with the values aligned, for one record. */
  fields(pairs: FieldPair[]): void;
  /** A table of the (non-optional) columns, for what a record holds: an event's deliveries. */
  rows<T>(columns: Array<Column<T>>, items: T[]): void;
  /** Checks -c and --sort-column against `columns` (a usage error names the valid ones) before any request. */
  list<T>(columns: Array<Column<T>>): ListPrinter<T>;
  /**
   * One record in the chosen format. Answers true when it printed the whole record as a table,
   * so that the caller may add what belongs to it (its deliveries, attempts or tasks, a note).
   * `made` says what change the record is the answer to ("the listener was created"): a -c
   * naming no field of it then prints the whole record before the usage error, so that nothing
   * the change answered once (a new secret) is lost.
   */
  show(doc: unknown, fields: FieldPair[], made?: string): boolean;
  /** What a command that is not a list or a show answered (json, yaml, value or csv). */
  data(value: unknown): void;
}

export interface ListPrinter<T> {
  /** `empty` when there are no items (table only); `more` (the next page's command) after a table. */
  print(doc: ListDocument<T>, text: { empty: string; more?: string }): void;
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

export function formatFields(pairs: FieldPair[]): string[] {
  const width = Math.max(0, ...pairs.map(([k]) => k.length)) + 2;
  return pairs.map(([k, v]) => `${pad(`${k}:`, width)}${terminalSafe(v, true)}`.trimEnd());
}

const normalName = (name: string) => name.trim().toLowerCase().replace(/[\s-]+/g, '_');

/** The columns -c names, in the order given (all the non-optional ones without -c); a usage error for an unknown one. */
export function selectColumns<T>(columns: Array<Column<T>>, wanted: string[] | undefined): Array<Column<T>> {
  if (!wanted?.length) return columns.filter((c) => !c.optional);
  return wanted.map((name) => findColumn(columns, name));
}

function findColumn<T>(columns: Array<Column<T>>, name: string): Column<T> {
  const wanted = normalName(name);
  const found = columns.find((c) => normalName(c.header) === wanted || normalName(c.field) === wanted);
  if (found) return found;
  const valid = columns.map((c) => (normalName(c.header) === c.field ? c.field : `${c.header} (${c.field})`));
  throw new UsageError(`unknown column "${name}": give one of ${valid.join(', ')}`);
}

/** A (possibly dotted) field of an API record. */
export function fieldValue(item: unknown, field: string): unknown {
  let value: unknown = item;
  for (const key of field.split('.')) {
    if (value === null || typeof value !== 'object') return null;
    value = (value as Record<string, unknown>)[key];
  }
  return value ?? null;
}

const valueOf = <T>(c: Column<T>, item: T) => (c.value ? c.value(item) : fieldValue(item, c.field));

/** Nulls last; numbers by size, everything else by its text. */
function compareValues(a: unknown, b: unknown): number {
  if (a === null || a === undefined) return b === null || b === undefined ? 0 : 1;
  if (b === null || b === undefined) return -1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const [x, y] = [plainText(a), plainText(b)];
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Items sorted by the columns named (first one first); a stable sort, so ties keep the API's order. */
export function sortItems<T>(items: T[], columns: Array<Column<T>>, sortColumns: string[] | undefined, descending = false): T[] {
  if (!sortColumns?.length) return items;
  const keys = sortColumns.map((name) => findColumn(columns, name));
  const sign = descending ? -1 : 1;
  return [...items].sort((a, b) => {
    for (const c of keys) {
      const order = compareValues(valueOf(c, a), valueOf(c, b));
      if (order) return sign * order;
    }
    return 0;
  });
}

/** A value as one piece of text: lists of plain values joined with commas, objects as JSON, null as nothing. */
export function plainText(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (Array.isArray(value) && value.every((v) => v === null || typeof v !== 'object')) return value.join(',');
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

// As cliff writes csv (Python's QUOTE_NONNUMERIC): numbers bare, everything else quoted, quotes doubled.
const csvCell = (value: unknown) =>
  typeof value === 'number' ? String(value) : value === null || value === undefined ? '' : `"${plainText(value).replace(/"/g, '""')}"`;
const csvLine = (values: unknown[]) => values.map(csvCell).join(',');

/** The records in a columnar machine format: csv with a header row, or value (space-separated, one record a line). */
function columnar(format: 'csv' | 'value', names: string[], records: unknown[][]): string[] {
  if (format === 'csv') return [csvLine(names), ...records.map(csvLine)];
  return records.map((values) => values.map((v) => terminalSafe(plainText(v), true)).join(' '));
}

/** A document for json or yaml. */
export function documentText(format: 'json' | 'yaml', value: unknown): string {
  return format === 'json' ? JSON.stringify(value, null, 2) : YAML.stringify(value).replace(/\n$/, '');
}

/** The lines of a list in the chosen format; the table's empty text and more line are the printer's. */
export function renderList<T>(doc: ListDocument<T>, columns: Array<Column<T>>, view: ViewOptions, now: number): string[] {
  const chosen = selectColumns(columns, view.columns);
  const items = sortItems(doc.items, columns, view.sortColumns, view.sortDescending);
  switch (view.format) {
    case 'table':
      return formatTable(chosen.map((c) => c.header), items.map((item) => chosen.map((c) => c.cell(item, now))));
    case 'json':
    case 'yaml': {
      // The API's document as is, unless -c picked fields of it.
      const picked = view.columns?.length
        ? items.map((item) => Object.fromEntries(chosen.map((c) => [c.field, valueOf(c, item)])))
        : items;
      return [documentText(view.format, { ...doc, items: picked })];
    }
    default:
      return columnar(view.format, chosen.map((c) => c.field), items.map((item) => chosen.map((c) => valueOf(c, item))));
  }
}

/** The field pairs -c names, in the order given; a usage error for an unknown one. */
export function selectFields(fields: FieldPair[], wanted: string[] | undefined): FieldPair[] {
  if (!wanted?.length) return fields;
  return wanted.map((name) => {
    const found = fields.find(([n]) => normalName(n) === normalName(name));
    if (!found) throw new UsageError(`unknown column "${name}": give one of ${fields.map(([n]) => n).join(', ')}`);
    return found;
  });
}

/** The lines of one record in the chosen format. */
export function renderShow(doc: unknown, fields: FieldPair[], view: ViewOptions): string[] {
  const chosen = selectFields(fields, view.columns);
  const value = ([, text, v]: FieldPair) => (v === undefined ? text : v);
  switch (view.format) {
    case 'table':
      return formatFields(chosen);
    case 'json':
    case 'yaml':
      return [documentText(view.format, view.columns?.length ? Object.fromEntries(chosen.map((f) => [f[0], value(f)])) : doc)];
    case 'csv':
      return columnar('csv', chosen.map(([n]) => n), [chosen.map(value)]);
    default:
      // As cliff's value format shows one record: each value on its own line.
      return chosen.map((f) => terminalSafe(plainText(value(f)), true));
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The fields of a plain answer ({"count": 3}, {"items": [...]}) as columns or pairs, for value and csv. */
export function renderData(value: unknown, format: OutputFormat): string[] {
  if (format === 'json' || format === 'yaml') return [documentText(format, value)];
  const items = isRecord(value) && Array.isArray(value.items) && value.items.every(isRecord) ? (value.items as Array<Record<string, unknown>>) : null;
  if (items && (format === 'csv' || format === 'value')) {
    const names = [...new Set(items.flatMap((item) => Object.keys(item)))];
    return columnar(format, names, items.map((item) => names.map((n) => item[n] ?? null)));
  }
  const pairs: FieldPair[] = isRecord(value) ? Object.entries(value).map(([k, v]) => [k, plainText(v), v]) : [['value', plainText(value), value]];
  return renderShow(value, pairs, { format });
}

export function createPrinter(io: { stdout(text: string): void; stderr(text: string): void }, view: ViewOptions, now: number): Printer {
  const line = (text = '') => io.stdout(`${text}\n`);
  const lines = (texts: string[]) => texts.forEach((t) => line(t));
  return {
    line,
    json: (value) => line(JSON.stringify(value, null, 2)),
    table: (headers, rows) => lines(formatTable(headers, rows)),
    fields: (pairs) => lines(formatFields(pairs)),
    rows: (columns, items) => lines(renderList({ items }, columns, { format: 'table' }, now)),
    list<T>(columns: Array<Column<T>>): ListPrinter<T> {
      selectColumns(columns, view.columns);
      for (const name of view.sortColumns ?? []) findColumn(columns, name);
      return {
        print(doc, text) {
          if (view.format === 'table' && !doc.items.length) line(text.empty);
          else lines(renderList(doc, columns, view, now));
          if (!text.more) return;
          // json and yaml carry next_cursor; the columnar formats keep stdout to the records.
          if (view.format === 'table') line(`\nmore: ${text.more}`);
          else if (view.format !== 'json' && view.format !== 'yaml') io.stderr(`more: ${text.more}\n`);
        },
      };
    },
    show(doc, fields, made) {
      let rendered: string[];
      try {
        rendered = renderShow(doc, fields, view);
      } catch (err) {
        if (!(err instanceof UsageError) || made === undefined) throw err;
        lines(renderShow(doc, fields, { ...view, columns: undefined }));
        throw new UsageError(`${err.message}; ${made} all the same, shown whole above`);
      }
      lines(rendered);
      return view.format === 'table' && !view.columns?.length;
    },
    data: (value) => lines(renderData(value, view.format)),
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
