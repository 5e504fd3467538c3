import { isAlias, isMap, isNode, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import { describeBytes, jsonBytesWithin } from '../json-size.js';
import { validateWorkbook, type LineOf } from './workbook-validate.js';

export const ACTIONS = ['std.noop', 'std.echo', 'std.fail', 'std.sleep', 'std.http'] as const;
export type ActionName = (typeof ACTIONS)[number];

export interface TaskSpec {
  name: string;
  action: ActionName;
  input: Record<string, unknown>;
  onSuccess: string[];
  onError: string[];
  onComplete: string[];
  retry: { count: number; delay: number } | null;
  line: number;
}

export interface WorkflowSpec {
  name: string;
  input: Array<{ name: string; default?: unknown; required: boolean }>;
  tasks: Record<string, TaskSpec>;
  startTasks: string[];
  line: number;
}

export interface WorkbookSpec {
  name: string;
  version: '2.0';
  workflows: Record<string, WorkflowSpec>;
}

/** `field` is a dotted path such as `workflows.charge.tasks.charge_card.on-error`; `(body)` for the document itself. */
export interface WorkbookIssue {
  field: string;
  message: string;
  line?: number;
}

export class WorkbookError extends Error {
  readonly code = 'INVALID_WORKBOOK';
  constructor(readonly issues: WorkbookIssue[]) {
    const first = issues[0];
    const where = first?.line === undefined ? '' : ` (line ${first.line})`;
    const more = issues.length > 1 ? ` and ${issues.length - 1} more` : '';
    super(first ? `invalid workbook: ${first.field}: ${first.message}${where}${more}` : 'invalid workbook');
    this.name = 'WorkbookError';
  }
}

const BODY = '(body)';

/*
 * The request body bounds a definition's text, but YAML aliases (`*name`) repeat a node as often
 * as they are written: a "billion laughs" document expands a few lines into gigabytes. yaml
 * refuses documents whose aliases multiply (MAX_ALIAS_COUNT), and what a definition expands to
 * is bounded too, since its parsed form is stored with the workbook and with every execution.
 */
const MAX_ALIAS_COUNT = 100;
export const MAX_EXPANDED_DEFINITION_BYTES = 4 * 1024 * 1024;

/** Parses and validates a workbook; throws WorkbookError listing every problem found, each with its line. */
export function parseWorkbook(source: string, contentType: 'yaml' | 'json' = 'yaml'): WorkbookSpec {
  const lineCounter = new LineCounter();
  if (contentType === 'json') checkJsonSyntax(source);
  // JSON is YAML too, so one parse gives line numbers for both.
  const doc = parseDocument(source, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw new WorkbookError(
      doc.errors.map((e) => ({ field: BODY, message: e.message, line: lineCounter.linePos(e.pos[0]).line })),
    );
  }
  let root: unknown;
  try {
    root = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    const message = (err as Error).message;
    throw new WorkbookError([
      { field: BODY, message: /alias/i.test(message) ? `the aliases in this document expand too much: ${message}` : message },
    ]);
  }
  if (jsonBytesWithin(root, MAX_EXPANDED_DEFINITION_BYTES) === null) {
    throw new WorkbookError([
      {
        field: BODY,
        message: `with its aliases expanded the definition is more than ${describeBytes(MAX_EXPANDED_DEFINITION_BYTES)} of JSON; write the repeated parts fewer times`,
      },
    ]);
  }
  const { spec, issues } = validateWorkbook(root, locate(doc, lineCounter));
  if (!spec || issues.length > 0) throw new WorkbookError(issues);
  return spec;
}

function checkJsonSyntax(source: string): void {
  try {
    JSON.parse(source);
  } catch (err) {
    const message = (err as Error).message;
    const position = /at position (\d+)/.exec(message);
    if (position) {
      const line = source.slice(0, Number(position[1])).split('\n').length;
      throw new WorkbookError([{ field: BODY, message: `invalid JSON: ${message}`, line }]);
    }
    throw new WorkbookError([{ field: BODY, message: `invalid JSON: ${message}` }]);
  }
}

/**
 * Finds the line of the node at `path`: its key's line or its value's. A path that runs out
 * (a key that is missing) answers the line of the deepest key that exists.
 */
function locate(doc: Document, lineCounter: LineCounter): LineOf {
  const lineOf = (node: unknown): number | undefined =>
    isNode(node) && node.range ? lineCounter.linePos(node.range[0]).line : undefined;
  return (path, at = 'value') => {
    let node: unknown = doc.contents;
    let key: unknown = null;
    for (const segment of path) {
      if (isAlias(node)) node = node.resolve(doc);
      let next: { key: unknown; value: unknown } | undefined;
      if (isMap(node)) {
        const pair = node.items.find((p) => String(isScalar(p.key) ? p.key.value : p.key) === String(segment));
        if (pair) next = { key: pair.key, value: pair.value };
      } else if (isSeq(node) && typeof segment === 'number' && node.items[segment] !== undefined) {
        next = { key: node.items[segment], value: node.items[segment] };
      }
      if (!next) return lineOf(key) ?? lineOf(node);
      key = next.key;
      node = next.value;
    }
    return at === 'key' ? (lineOf(key) ?? lineOf(node)) : (lineOf(node) ?? lineOf(key));
  };
}
