import path from 'node:path';
import { maskAmqpUrl, parseBrokerUrl } from '../records/amqp-url.js';
import { ListenerInput } from '../records/listener.js';
import { parseStorableJson, UnstorableJsonError } from '../json-text.js';
import { argumentPathProblems } from '../transports/exec-args.js';
import {
  ConfigValueError,
  DEFAULT_SECTION,
  lineOf,
  readValue,
  type ConfigDocument,
  type ConfigSection,
} from './esi-config.js';

/*
 * What an esi-event-actions configuration means for the relay (DESIGN.md, "Script actions"):
 * one exec listener per action section, and the settings that consume the same queues. Pure:
 * the command decides what to send and print.
 *
 * esi-event-actions looks every dot path up in the lease's versioned data, which the relay's
 * events carry as `data`, so `node_name` becomes `data.node_name`. It filters with Python's
 * `re.match`, anchored at the start only, which `^(?:pattern)` keeps.
 */

/** The keys of an action section esi-event-actions reads. */
export const ACTION_KEYS = ['events', 'script', 'script_params', 'filter_params'] as const;
/** The [DEFAULT] keys it reads: the broker and the queues. */
export const BROKER_KEYS = ['user', 'password', 'host', 'port', 'queues'] as const;

/** A listener create body (POST /v1/listeners). */
export type ListenerBody = Record<string, unknown> & {
  events: string[];
  filter: Record<string, { $regex: string }> | null;
  callback: { transport: 'exec'; command: string; args: string[]; timeout_ms?: number };
  description: string;
};

export interface PlannedAction {
  section: string;
  /** The section's `script` as written (a path the old tool ran through a shell). */
  script: string;
  body: ListenerBody;
  /** Line of each of its keys (own or inherited), for the relay's refusals. */
  lines: Partial<Record<string, number>>;
}

export interface ImportProblem {
  /** `DEFAULT` for the broker keys. */
  section: string;
  key: string;
  line?: number;
  message: string;
}

export interface ImportPlan {
  actions: PlannedAction[];
  /** Sections that cannot become listeners, and [DEFAULT] keys that cannot become settings. */
  problems: ImportProblem[];
  /** Keys an action section has that esi-event-actions never read (typos, usually). */
  warnings: ImportProblem[];
  /** The broker URL with its password masked, or null when [DEFAULT] does not give one. */
  ingestUrl: string | null;
  queues: string[];
}

export interface PlanOptions {
  /** The file's name, for the listeners' descriptions. */
  fileName: string;
  /** callback.timeout_ms of every listener; the transport's default when absent. */
  timeoutMs?: number;
}

const MAX_DESCRIPTION = 1000;

/** The description that ties a listener to its section, also how a later import recognises it. */
export function actionDescription(section: string, fileName: string): string {
  return `esi-event-actions [${section}] from ${path.basename(fileName)}`.slice(0, MAX_DESCRIPTION);
}

/** Anchored at the start only, as Python's re.match is. */
export const anchoredPattern = (pattern: string) => `^(?:${pattern})`;

const split = (value: string) => value.split(',').map((s) => s.trim()).filter(Boolean);

// configparser has no inline comments: `x = a  # note` is the value "a  # note".
const INLINE_COMMENT = /\s[#;]/;
const inlineCommentHint = (value: string) =>
  INLINE_COMMENT.test(value) ? ' (configparser keeps "# …" after a value as part of it: put the comment on a line of its own)' : '';

class SectionProblem extends Error {
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(message);
  }
}

function read(doc: ConfigDocument, section: ConfigSection | null, key: string): string | undefined {
  try {
    return readValue(doc, section, key);
  } catch (err) {
    if (err instanceof ConfigValueError) throw new SectionProblem(key, err.reason);
    throw err;
  }
}

function required(doc: ConfigDocument, section: ConfigSection | null, key: string): string {
  const value = read(doc, section, key);
  if (value === undefined || value.trim() === '') throw new SectionProblem(key, 'is missing or empty');
  return value.trim();
}

function commandOf(script: string): string {
  if (/\s/.test(script)) {
    throw new SectionProblem(
      'script',
      `"${script}" is more than one file name${inlineCommentHint(script)}: esi-event-actions ran it through a shell; the relay runs one executable from RELAY_EXEC_DIR and takes its arguments only from script_params (wrap the command line in a script)`,
    );
  }
  return script.replace(/\/+$/, '').split('/').pop() ?? '';
}

function argsOf(value: string | undefined): string[] {
  const params = split(value ?? '');
  for (const p of params) {
    if (/\s/.test(p)) throw new SectionProblem('script_params', `"${p}" is not a key of the payload${inlineCommentHint(value!)}`);
  }
  const args = params.map((p) => `data.${p}`);
  const bad = argumentPathProblems(args)[0];
  if (bad) throw new SectionProblem('script_params', `"${params[Number(bad.field.split('.').pop())]}": ${bad.message}`);
  return args;
}

function filterOf(value: string | undefined): Record<string, { $regex: string }> | null {
  if (value === undefined || value.trim() === '') return null;
  let parsed: unknown;
  try {
    parsed = parseStorableJson(value);
  } catch (err) {
    if (err instanceof UnstorableJsonError) throw new SectionProblem('filter_params', err.message);
    throw new SectionProblem('filter_params', `is not valid JSON: ${(err as Error).message}${inlineCommentHint(value)}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new SectionProblem('filter_params', 'must be a JSON object of payload key → regular expression, such as {"purpose": "test"}');
  }
  const filter: Record<string, { $regex: string }> = {};
  for (const [key, pattern] of Object.entries(parsed)) {
    if (key.trim() === '') throw new SectionProblem('filter_params', 'has an empty key');
    if (typeof pattern !== 'string') {
      throw new SectionProblem('filter_params', `the pattern of "${key}" must be a string (a regular expression), not ${JSON.stringify(pattern)}`);
    }
    filter[`data.${key}`] = { $regex: anchoredPattern(pattern) };
  }
  return Object.keys(filter).length > 0 ? filter : null;
}

/** Which key of the section a listener field came from, for the API's and the schema's problems. */
export function keyForField(field: string): string {
  if (field.startsWith('callback.command')) return 'script';
  if (field.startsWith('callback.args')) return 'script_params';
  if (field.startsWith('filter')) return 'filter_params';
  if (field.startsWith('events')) return 'events';
  return field;
}

function planAction(doc: ConfigDocument, section: ConfigSection, options: PlanOptions): PlannedAction {
  const eventsValue = required(doc, section, 'events');
  const events = split(eventsValue);
  if (events.length === 0) throw new SectionProblem('events', 'names no event type');
  const spaced = events.find((e) => /\s/.test(e));
  if (spaced) throw new SectionProblem('events', `"${spaced}" is not an event type${inlineCommentHint(eventsValue)}`);
  const script = required(doc, section, 'script');
  const body: ListenerBody = {
    workbook: '*',
    event_types: ['NOTIFICATION'],
    events,
    filter: filterOf(read(doc, section, 'filter_params')),
    callback: {
      transport: 'exec',
      command: commandOf(script),
      args: argsOf(read(doc, section, 'script_params')),
      ...(options.timeoutMs !== undefined && { timeout_ms: options.timeoutMs }),
    },
    description: actionDescription(section.name, options.fileName),
  };
  // The relay's own rules, so that a dry run reports what the relay would refuse.
  const checked = ListenerInput.safeParse(body);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    const field = issue.path.join('.');
    throw new SectionProblem(keyForField(field), `${field ? `${field}: ` : ''}${issue.message}`);
  }
  const lines = Object.fromEntries(ACTION_KEYS.map((k) => [k, lineOf(doc, section, k)]));
  return { section: section.name, script, body, lines };
}

function brokerOf(doc: ConfigDocument, problems: ImportProblem[]): string | null {
  const problem = (key: string, message: string) => problems.push({ section: DEFAULT_SECTION, key, line: lineOf(doc, null, key), message });
  const values: Partial<Record<(typeof BROKER_KEYS)[number], string>> = {};
  for (const key of ['user', 'password', 'host', 'port'] as const) {
    try {
      const value = read(doc, null, key);
      if (value === undefined || (key !== 'password' && value.trim() === '')) problem(key, 'is missing or empty: esi-event-actions needs it to reach the broker');
      else values[key] = value.trim();
    } catch (err) {
      if (!(err instanceof SectionProblem)) throw err;
      problem(key, err.message);
    }
  }
  const { user, password, host, port } = values;
  if (port !== undefined && (!/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535)) {
    problem('port', `"${port}" is not a port number (1 to 65535)`);
    return null;
  }
  if (user === undefined || password === undefined || host === undefined || port === undefined) return null;
  const hostPart = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  // pika connects to vhost "/", which is what a URL with an empty path means to the relay.
  const url = `amqp://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${hostPart}:${port}/`;
  try {
    parseBrokerUrl(url);
  } catch (err) {
    problem('host', `"${host}" does not make a broker URL (${(err as Error).message})`);
    return null;
  }
  return maskAmqpUrl(url);
}

function queuesOf(doc: ConfigDocument, problems: ImportProblem[]): string[] {
  const problem = (message: string) => problems.push({ section: DEFAULT_SECTION, key: 'queues', line: lineOf(doc, null, 'queues'), message });
  try {
    const queues = [...new Set(split(read(doc, null, 'queues') ?? ''))];
    if (queues.length === 0) problem('is missing or empty: esi-event-actions consumes these queues');
    return queues;
  } catch (err) {
    if (!(err instanceof SectionProblem)) throw err;
    problem(err.message);
    return [];
  }
}

export function planImport(doc: ConfigDocument, options: PlanOptions): ImportPlan {
  const actions: PlannedAction[] = [];
  const problems: ImportProblem[] = [];
  const warnings: ImportProblem[] = [];
  const known = new Set<string>([...ACTION_KEYS, ...BROKER_KEYS]);
  for (const section of doc.sections) {
    for (const [key, entry] of section.entries) {
      if (!known.has(key)) {
        warnings.push({ section: section.name, key, line: entry.line, message: `is not a key esi-event-actions reads (${ACTION_KEYS.join(', ')}); it is ignored` });
      }
    }
    try {
      actions.push(planAction(doc, section, options));
    } catch (err) {
      if (!(err instanceof SectionProblem)) throw err;
      problems.push({ section: section.name, key: err.key, line: lineOf(doc, section, err.key), message: err.message });
    }
  }
  const ingestUrl = brokerOf(doc, problems);
  const queues = queuesOf(doc, problems);
  return { actions, problems, warnings, ingestUrl, queues };
}

/** `[section] key (line n): message`, as the command prints a problem. */
export function problemText(p: ImportProblem): string {
  return `[${p.section}] ${p.key}${p.line === undefined ? '' : ` (line ${p.line})`}: ${p.message}`;
}
