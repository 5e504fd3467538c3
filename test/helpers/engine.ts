import { pino } from 'pino';
import { loadConfig, type DatabaseConfig } from '../../src/config.js';
import type { RunnerHooks } from '../../src/engine/runner.js';
import { startRelay, type Relay } from '../../src/relay.js';
import { relayDatabaseEnv, type TestBackend } from './backend.js';
import { request, tempDir, TOKEN_A, type ApiResponse } from './relay.js';
import type { Receiver } from './receiver.js';

/*
 * Helpers for the engine's integration tests: workbook sources, the events a receiver got
 * for one execution in sequence order, and polling an execution until it settles.
 */

export type Api = (method: string, pathname: string, body?: unknown, opts?: { token?: string | null; headers?: Record<string, string>; raw?: string }) => Promise<ApiResponse>;

export interface ReceivedEvent {
  id: string;
  type: string;
  state: string | null;
  previous_state: string | null;
  state_info: string | null;
  task_name: string | null;
  task_id: string | null;
  execution_id: string;
  sequence: number;
  data: Record<string, any>;
}

/** A workbook with one workflow `main`; `tasks` is YAML indented by six spaces or given unindented. */
export function workbook(name: string, tasks: string, input: string[] = []): string {
  const body = tasks
    .replace(/^\n+|\s+$/g, '')
    .split('\n')
    .map((line) => `      ${line}`)
    .join('\n');
  const inputs = input.length ? `    input: [${input.join(', ')}]\n` : '';
  return `version: '2.0'\nname: ${name}\nworkflows:\n  main:\n${inputs}    tasks:\n${body}\n`;
}

export async function createWorkbook(api: Api, source: string): Promise<void> {
  const res = await api('POST', '/v1/workbooks', undefined, { raw: source, headers: { 'content-type': 'application/yaml' } });
  if (res.status !== 201) throw new Error(`workbook not created: ${res.status} ${res.text}`);
}

export async function startExecution(api: Api, wb: string, input: Record<string, unknown> = {}): Promise<string> {
  const res = await api('POST', '/v1/executions', { workbook: wb, workflow: 'main', input });
  if (res.status !== 201) throw new Error(`execution not started: ${res.status} ${res.text}`);
  return res.body.id;
}

/** Listener for every EXECUTION and TASK event of the project, to `url`. */
export async function createEngineListener(api: Api, url: string): Promise<string> {
  const res = await api('POST', '/v1/listeners', {
    workbook: '*',
    event_types: ['EXECUTION', 'TASK'],
    callback: { url },
    retry: { schedule_ms: [100, 200, 500, 1000, 1000, 1000, 1000, 1000, 1000, 1000] },
  });
  if (res.status !== 201) throw new Error(`listener not created: ${res.status} ${res.text}`);
  return res.body.id;
}

/** Events the receiver got on `path` for one execution, each once (by webhook-id), in sequence order. */
export function eventsOf(receiver: Receiver, path: string, executionId: string): ReceivedEvent[] {
  const seen = new Set<string>();
  const events: ReceivedEvent[] = [];
  for (const r of receiver.requests(path)) {
    const id = String(r.headers['webhook-id']);
    if (seen.has(id)) continue;
    seen.add(id);
    const e = JSON.parse(r.text) as ReceivedEvent;
    if (e.execution_id === executionId) events.push(e);
  }
  return events.sort((a, b) => a.sequence - b.sequence);
}

/** Compact form for assertions: `TASK_SUCCEEDED b`, `WORKFLOW_LAUNCHED`. */
export const describeEvents = (events: ReceivedEvent[]) => events.map((e) => (e.task_name ? `${e.type} ${e.task_name}` : e.type));

/** Resolves once the receiver holds an event of `type` for the execution and `count` events in all (when given). */
export async function waitForEvents(receiver: Receiver, path: string, executionId: string, type: string, count?: number, timeoutMs = 10_000) {
  await receiver.waitFor(() => {
    const events = eventsOf(receiver, path, executionId);
    return events.some((e) => e.type === type) && (count === undefined || events.length >= count);
  }, timeoutMs);
  return eventsOf(receiver, path, executionId);
}

/** Polls the execution until its state is one of `states`. */
export async function waitForState(api: Api, executionId: string, states: string[], timeoutMs = 10_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await api('GET', `/v1/executions/${executionId}`);
    if (states.includes(res.body?.state)) return res.body;
    if (Date.now() > deadline) throw new Error(`execution ${executionId} is ${res.body?.state}, not ${states.join('/')} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

export async function tasksOf(api: Api, executionId: string): Promise<any[]> {
  const res = await api('GET', `/v1/executions/${executionId}/tasks?limit=1000`);
  if (res.status !== 200) throw new Error(`tasks: ${res.status} ${res.text}`);
  return res.body.items;
}

/** Sequence numbers 1..n with no gap and no repeat. */
export const sequences = (events: ReceivedEvent[]) => events.map((e) => e.sequence);
export const oneToN = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

export interface EngineRelay extends Relay {
  api: Api;
  dataDir: string;
  /** The SQLite file; unused when `backend` is postgres. */
  databasePath: string;
  /** Which database this relay ran on (RELAY_TEST_BACKEND, or the caller's RELAY_DATABASE_URL). */
  backend: TestBackend;
  database: DatabaseConfig;
  /** Every log line the relay wrote (JSON, parsed), from level `debug` up. */
  logs: Array<Record<string, any>>;
}

/**
 * A real relay in this process (port 0; a SQLite file, or on the postgres run the PostgreSQL
 * schema of its data folder) with engine hooks and its log kept for the test.
 */
export async function startEngineRelay(
  opts: { env?: Record<string, string>; hooks?: RunnerHooks; dataDir?: string } = {},
): Promise<EngineRelay> {
  const dataDir = opts.dataDir ?? tempDir('relay-engine-');
  const base = {
    RELAY_PORT: '0',
    RELAY_DATA_DIR: dataDir,
    RELAY_TOKENS: `${TOKEN_A}=project-a`,
    RELAY_SHUTDOWN_GRACE_MS: '0',
    ...opts.env,
  };
  const config = loadConfig({ ...base, ...(await relayDatabaseEnv(base)) });
  const logs: Array<Record<string, any>> = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
  const relay = await startRelay(config, log, { engineHooks: opts.hooks });
  return {
    ...relay,
    dataDir,
    databasePath: config.databasePath,
    backend: config.database.kind,
    database: config.database,
    logs,
    api: (method, pathname, body, o) => request(relay.url, method, pathname, body, o),
  };
}
