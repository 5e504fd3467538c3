import fs from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { z } from 'zod';
import type { BreakerSettings } from './dispatch/listener-gate.js';
import { BUILT_IN_TRANSPORTS, type BuiltInTransport } from './transports/registry.js';
import { LOOPBACK_MODES, parseAllowNetworks, type Cidr, type LoopbackMode } from './net/network-guard.js';
import { maskAmqpUrl, parseBrokerUrl } from './records/amqp-url.js';
import { DEFAULT_AMQP_EXCHANGE } from './records/callback.js';
import { RELAY_EXEC_VARIABLES } from './transports/exec-args.js';
import { DEFAULT_LIST_SCAN_LIMIT, DEFAULT_MAX_LISTENERS_PER_PROJECT } from './store/store.js';

/** Thrown for a bad environment value; main prints its one-line message and exits with code 2. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
const PROJECT_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** A value as an error message may quote it: the password of any URL in it shown as `***` (maskAmqpUrl masks every scheme's). */
const quoted = (value: unknown) => JSON.stringify(typeof value === 'string' ? maskAmqpUrl(value) : value);

const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

/** Every RELAY_ variable: name, parser and default. The README's configuration table mirrors this. */
const variables = {
  RELAY_HOST: z
    .string()
    .refine((h) => isIP(h) !== 0 || (HOST_NAME.test(h) && !/^[\d.]+$/.test(h)), 'an IP address or a host name to listen on, such as 127.0.0.1, 0.0.0.0, :: or localhost')
    .default('127.0.0.1'),
  RELAY_PORT: int(0, 65535).default(8990),
  RELAY_DATA_DIR: z.string().min(1).default('./data'),
  RELAY_DATABASE_URL: z
    .string()
    .refine((v) => v === '' || (v.startsWith('sqlite:') && v.length > 'sqlite:'.length) || /^postgres(ql)?:\/\//.test(v), {
      message: 'give postgres://user:pass@host:5432/db for PostgreSQL, sqlite:/path/to/file.db for SQLite, or leave unset',
    })
    .default(''),
  RELAY_DATABASE_SCHEMA: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'a PostgreSQL schema name: lower-case letters, digits and _, not starting with a digit')
    .default('public'),
  RELAY_DATABASE_POOL: int(1, 1000).default(10),
  RELAY_ROLE: z.enum(['all', 'api', 'dispatcher', 'engine']).default('all'),
  RELAY_DISPATCH_THREAD: z.enum(['on', 'off']).default('on'),
  RELAY_TOKENS: z.string().default(''),
  RELAY_ALLOW_NETWORKS: z.string().default(''),
  RELAY_ALLOW_LOOPBACK: z.enum(LOOPBACK_MODES).default('auto'),
  RELAY_DURABILITY: z.enum(['full', 'normal']).default('full'),
  RELAY_SHUTDOWN_GRACE_MS: int(0, 600_000).default(10_000),
  RELAY_MAX_CONNECTIONS: int(1, 1_000_000).default(10_000),
  RELAY_RETENTION_DAYS: int(1, 3650).default(30),
  RELAY_LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
  // No fixed default: pretty on a terminal, JSON lines otherwise (see loadConfig).
  RELAY_LOG_FORMAT: z.enum(LOG_FORMATS).optional(),
  RELAY_BUSY_TIMEOUT_MS: int(0, 600_000).default(5_000),
  RELAY_CONNECTIONS_PER_ORIGIN: int(1, 1024).default(32),
  RELAY_COMMIT_INTERVAL_MS: int(0, 1000).default(10),
  RELAY_MAX_IN_FLIGHT: int(1, 100_000).default(512),
  RELAY_REPLAY_SCAN_LIMIT: int(1, 10_000_000).default(100_000),
  RELAY_MAX_LISTENERS_PER_PROJECT: int(1, 1_000_000).default(DEFAULT_MAX_LISTENERS_PER_PROJECT),
  RELAY_LIST_SCAN_LIMIT: int(1, 10_000_000).default(DEFAULT_LIST_SCAN_LIMIT),
  // Unset: V8 chooses (see src/heap.ts).
  RELAY_HEAP_GROWING_PERCENT: int(1, 1000).optional(),
  RELAY_MAX_RESULT_BYTES: int(1024, 64 * 1024 * 1024).default(1024 * 1024),
  RELAY_MAX_TASKS_PER_EXECUTION: int(1, 1_000_000).default(1000),
  RELAY_TASK_LEASE_MS: int(1_000, 3_600_000).default(30_000),
  RELAY_BREAKER_FAILURE_RATIO: z
    .string()
    .regex(/^(0(\.\d+)?|1(\.0+)?)$/, 'a ratio between 0 and 1, such as 0.7')
    .transform(Number)
    .pipe(z.number().gt(0, 'more than 0'))
    .default(0.7),
  RELAY_BREAKER_MIN_ATTEMPTS: int(1, 1_000_000).default(10),
  RELAY_BREAKER_WINDOW_S: int(1, 86_400).default(300),
  RELAY_BREAKER_COOLDOWN_S: int(1, 86_400).default(30),
  RELAY_DISABLE_AFTER_HOURS: z
    .string()
    .regex(/^\d+(\.\d+)?$/, 'a number of hours, such as 120 or 0.5')
    .transform(Number)
    .pipe(z.number().gt(0, 'more than 0').max(87_600))
    .default(120),
  RELAY_TRANSPORTS: z.string().default('http,amqp'),
  RELAY_TRANSPORT_MODULES: z.string().default(''),
  // Checked below without zod: its message would quote the value, and the URL may hold a password.
  RELAY_AMQP_INGEST_URL: z.string().default(''),
  RELAY_AMQP_INGEST_QUEUES: z.string().default(''),
  RELAY_AMQP_INGEST_EXCHANGE: z.string().default(DEFAULT_AMQP_EXCHANGE),
  RELAY_AMQP_INGEST_PROJECT: z.string().regex(PROJECT_NAME, 'must be 1-64 of A-Z a-z 0-9 . _ -').default('default'),
  RELAY_AMQP_INGEST_PREFETCH: int(1, 65535).default(64),
  RELAY_EXEC_DIR: z.string().default(''),
  RELAY_EXEC_CONCURRENCY: int(1, 256).default(4),
  RELAY_EXEC_ENV: z.string().default(''),
} as const;

type Raw = { [K in keyof typeof variables]: z.output<(typeof variables)[K]> };

export type DatabaseConfig =
  | { kind: 'sqlite'; path: string }
  | { kind: 'postgres'; url: string; schema: string; pool: number };

export interface Config {
  host: string;
  port: number;
  dataDir: string;
  /** The SQLite file (the data folder's relay.db unless RELAY_DATABASE_URL=sqlite:…); unused on PostgreSQL. */
  databasePath: string;
  /** Which backend, from RELAY_DATABASE_URL. */
  database: DatabaseConfig;
  /** RELAY_ROLE (the --role flag overrides it). */
  role: 'all' | 'api' | 'dispatcher' | 'engine';
  /** RELAY_DISPATCH_THREAD: role `all` dispatches in a worker thread of its own (`node dist/main.js`). */
  dispatchThread: boolean;
  /** token → project, from RELAY_TOKENS; empty means "generate admin.token". */
  tokens: Map<string, string>;
  allowNetworks: Cidr[];
  /** `auto`: loopback callbacks while the relay binds a loopback address; the relay's own port never. */
  allowLoopback: LoopbackMode;
  durability: 'full' | 'normal';
  shutdownGraceMs: number;
  /** Client connections the HTTP server holds at once (RELAY_MAX_CONNECTIONS); more are closed as they come. */
  maxConnections: number;
  retentionDays: number;
  logLevel: (typeof LOG_LEVELS)[number];
  /** `pretty` for people at a terminal, `json` lines for log collectors. */
  logFormat: LogFormat;
  busyTimeoutMs: number;
  connectionsPerOrigin: number;
  maxInFlight: number;
  /** Listeners one project may have (RELAY_MAX_LISTENERS_PER_PROJECT); creating one more is a 409. */
  maxListenersPerProject: number;
  /** Events one replay call looks at, matching or not (RELAY_REPLAY_SCAN_LIMIT); the answer says where to go on. */
  replayScanLimit: number;
  /** Rows a page of events, deliveries or executions looks at when its filters are checked row by row (RELAY_LIST_SCAN_LIMIT). */
  listScanLimit: number;
  /** RELAY_HEAP_GROWING_PERCENT: V8's old-generation growth between full collections; null lets V8 choose. */
  heapGrowingPercent: number | null;
  commitIntervalMs: number;
  /** Bytes of JSON a task result, a task's evaluated input or an execution's input may have. */
  maxResultBytes: number;
  /** Task runs one execution may create; past it the execution fails. */
  maxTasksPerExecution: number;
  /** How long an engine task stays its runner's without a renewal; a dead runner's tasks are recovered after it. */
  taskLeaseMs: number;
  /** The listeners' circuit breaker and auto-disable (RELAY_BREAKER_*, RELAY_DISABLE_AFTER_HOURS). */
  breaker: BreakerSettings;
  /** Built-in transports to enable (RELAY_TRANSPORTS). */
  transports: BuiltInTransport[];
  /** Paths of operator transport modules (RELAY_TRANSPORT_MODULES). */
  transportModules: string[];
  /** Notifications consumed from RabbitMQ (RELAY_AMQP_INGEST_*); null when RELAY_AMQP_INGEST_URL is unset. */
  amqpIngest: AmqpIngestConfig | null;
  /** Script actions (RELAY_EXEC_*); null when RELAY_EXEC_DIR is unset. */
  exec: ExecConfig | null;
}

export interface ExecConfig {
  /** Absolute path of the only folder scripts run from. */
  dir: string;
  concurrency: number;
  /** Variables passed through to scripts, by name. */
  envNames: string[];
}

export interface AmqpIngestConfig {
  url: string;
  queues: string[];
  exchange: string;
  project: string;
  /** Messages each queue may have delivered to this process and not yet acknowledged. */
  prefetch: number;
}

// AMQP 0-9-1 names are short strings; an exchange name is limited to these characters.
const AMQP_NAME_BYTES = 255;
const EXCHANGE_NAME = /^[A-Za-z0-9._:-]+$/;

function parseAmqpIngest(r: Raw): AmqpIngestConfig | null {
  const url = r.RELAY_AMQP_INGEST_URL.trim();
  if (url === '') return null;
  try {
    parseBrokerUrl(url);
  } catch (err) {
    throw new ConfigError('RELAY_AMQP_INGEST_URL', `must be an amqp:// or amqps:// URL with a host (${(err as Error).message}; got ${maskAmqpUrl(url)})`);
  }
  const queues = [...new Set(r.RELAY_AMQP_INGEST_QUEUES.split(',').map((q) => q.trim()).filter(Boolean))];
  if (queues.length === 0) {
    throw new ConfigError('RELAY_AMQP_INGEST_QUEUES', 'required when RELAY_AMQP_INGEST_URL is set: comma-separated queue names, such as notifications.info,notifications.error');
  }
  for (const queue of queues) {
    if (Buffer.byteLength(queue) > AMQP_NAME_BYTES) throw new ConfigError('RELAY_AMQP_INGEST_QUEUES', `queue name "${queue.slice(0, 40)}…" is longer than ${AMQP_NAME_BYTES} bytes`);
    // RabbitMQ refuses to declare these: the name space belongs to the broker.
    if (queue.startsWith('amq.')) throw new ConfigError('RELAY_AMQP_INGEST_QUEUES', `queue name "${queue}" starts with amq., which the broker keeps for itself`);
  }
  const exchange = r.RELAY_AMQP_INGEST_EXCHANGE;
  if (!EXCHANGE_NAME.test(exchange) || exchange.length > AMQP_NAME_BYTES || exchange.startsWith('amq.')) {
    throw new ConfigError('RELAY_AMQP_INGEST_EXCHANGE', `must be 1-${AMQP_NAME_BYTES} of A-Z a-z 0-9 . _ : - and not start with amq. (got ${JSON.stringify(exchange)})`);
  }
  return { url, queues, exchange, project: r.RELAY_AMQP_INGEST_PROJECT, prefetch: r.RELAY_AMQP_INGEST_PREFETCH };
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function parseExec(r: Raw, transports: readonly BuiltInTransport[]): ExecConfig | null {
  const envNames = [...new Set(r.RELAY_EXEC_ENV.split(',').map((n) => n.trim()).filter(Boolean))];
  for (const name of envNames) {
    if (!ENV_NAME.test(name)) throw new ConfigError('RELAY_EXEC_ENV', `"${name}" is not a variable name (letters, digits and _, not starting with a digit)`);
    if ((RELAY_EXEC_VARIABLES as readonly string[]).includes(name)) throw new ConfigError('RELAY_EXEC_ENV', `${name} is set by the relay for every script`);
  }
  const given = r.RELAY_EXEC_DIR.trim();
  if (given === '') {
    if (transports.includes('exec')) {
      throw new ConfigError('RELAY_EXEC_DIR', 'required when RELAY_TRANSPORTS includes exec: the folder whose executables script actions may run');
    }
    return null;
  }
  const dir = path.resolve(given);
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dir);
  } catch (err) {
    throw new ConfigError('RELAY_EXEC_DIR', `${dir} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}); it must be an existing folder`);
  }
  if (!stat.isDirectory()) throw new ConfigError('RELAY_EXEC_DIR', `${dir} is not a folder`);
  return { dir, concurrency: r.RELAY_EXEC_CONCURRENCY, envNames };
}

function parseTokens(spec: string): Map<string, string> {
  const tokens = new Map<string, string>();
  for (const entry of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = entry.lastIndexOf('=');
    const token = entry.slice(0, eq);
    const project = entry.slice(eq + 1);
    if (eq <= 0 || !project) throw new Error(`entry ${tokens.size + 1} is not token=project`);
    if (token.length < 16) throw new Error(`entry ${tokens.size + 1}: a token needs at least 16 characters`);
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(project)) {
      throw new Error(`entry ${tokens.size + 1}: project must be 1-64 of A-Z a-z 0-9 . _ -`);
    }
    if (tokens.has(token)) throw new Error(`entry ${tokens.size + 1} repeats a token`);
    tokens.set(token, project);
  }
  return tokens;
}

function parseTransports(spec: string): BuiltInTransport[] {
  const names = spec.split(',').map((s) => s.trim()).filter(Boolean);
  for (const name of names) {
    if (!(BUILT_IN_TRANSPORTS as readonly string[]).includes(name)) {
      throw new Error(`"${name}" is not a built-in transport (${BUILT_IN_TRANSPORTS.join(', ')}); an operator's own transport is loaded with RELAY_TRANSPORT_MODULES`);
    }
  }
  return [...new Set(names)] as BuiltInTransport[];
}

/**
 * Reads and validates the environment once; the result is passed down, never read globally.
 * `stdoutIsTTY` picks the log format when RELAY_LOG_FORMAT is unset.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, stdoutIsTTY = process.stdout.isTTY === true): Config {
  const raw = {} as Record<string, unknown>;
  for (const [name, schema] of Object.entries(variables)) {
    const value = env[name];
    const result = (schema as z.ZodType).safeParse(value === undefined || value === '' ? undefined : value);
    if (!result.success) {
      const issue = result.error.issues[0];
      throw new ConfigError(name, `${issue?.message ?? 'invalid value'} (got ${quoted(value)})`);
    }
    raw[name] = result.data;
  }
  const r = raw as Raw;
  const guarded = <T>(name: string, fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      throw new ConfigError(name, (err as Error).message);
    }
  };
  const transports = guarded('RELAY_TRANSPORTS', () => parseTransports(r.RELAY_TRANSPORTS));
  const transportModules = r.RELAY_TRANSPORT_MODULES.split(',').map((p) => p.trim()).filter(Boolean);
  if (transports.length === 0 && transportModules.length === 0) {
    throw new ConfigError(
      'RELAY_TRANSPORTS',
      `${quoted(r.RELAY_TRANSPORTS)} enables no transport and RELAY_TRANSPORT_MODULES loads none: no listener could be created; name at least one of ${BUILT_IN_TRANSPORTS.join(', ')} (unset: http,amqp)`,
    );
  }
  const dataDir = path.resolve(r.RELAY_DATA_DIR);
  const postgres = /^postgres(ql)?:\/\//.test(r.RELAY_DATABASE_URL);
  const databasePath =
    r.RELAY_DATABASE_URL && !postgres
      ? path.resolve(r.RELAY_DATABASE_URL.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, ''))
      : path.join(dataDir, 'relay.db');
  const database: DatabaseConfig = postgres
    ? { kind: 'postgres', url: r.RELAY_DATABASE_URL, schema: r.RELAY_DATABASE_SCHEMA, pool: r.RELAY_DATABASE_POOL }
    : { kind: 'sqlite', path: databasePath };
  return {
    host: r.RELAY_HOST,
    port: r.RELAY_PORT,
    dataDir,
    databasePath,
    database,
    role: r.RELAY_ROLE,
    dispatchThread: r.RELAY_DISPATCH_THREAD === 'on',
    tokens: guarded('RELAY_TOKENS', () => parseTokens(r.RELAY_TOKENS)),
    allowNetworks: guarded('RELAY_ALLOW_NETWORKS', () => parseAllowNetworks(r.RELAY_ALLOW_NETWORKS)),
    allowLoopback: r.RELAY_ALLOW_LOOPBACK,
    durability: r.RELAY_DURABILITY,
    shutdownGraceMs: r.RELAY_SHUTDOWN_GRACE_MS,
    maxConnections: r.RELAY_MAX_CONNECTIONS,
    retentionDays: r.RELAY_RETENTION_DAYS,
    logLevel: r.RELAY_LOG_LEVEL,
    logFormat: r.RELAY_LOG_FORMAT ?? (stdoutIsTTY ? 'pretty' : 'json'),
    busyTimeoutMs: r.RELAY_BUSY_TIMEOUT_MS,
    connectionsPerOrigin: r.RELAY_CONNECTIONS_PER_ORIGIN,
    maxInFlight: r.RELAY_MAX_IN_FLIGHT,
    replayScanLimit: r.RELAY_REPLAY_SCAN_LIMIT,
    maxListenersPerProject: r.RELAY_MAX_LISTENERS_PER_PROJECT,
    listScanLimit: r.RELAY_LIST_SCAN_LIMIT,
    heapGrowingPercent: r.RELAY_HEAP_GROWING_PERCENT ?? null,
    commitIntervalMs: r.RELAY_COMMIT_INTERVAL_MS,
    maxResultBytes: r.RELAY_MAX_RESULT_BYTES,
    maxTasksPerExecution: r.RELAY_MAX_TASKS_PER_EXECUTION,
    taskLeaseMs: r.RELAY_TASK_LEASE_MS,
    breaker: {
      failureRatio: r.RELAY_BREAKER_FAILURE_RATIO,
      minAttempts: r.RELAY_BREAKER_MIN_ATTEMPTS,
      windowMs: r.RELAY_BREAKER_WINDOW_S * 1000,
      cooldownMs: r.RELAY_BREAKER_COOLDOWN_S * 1000,
      disableAfterMs: Math.round(r.RELAY_DISABLE_AFTER_HOURS * 3600_000),
    },
    transports,
    transportModules,
    amqpIngest: parseAmqpIngest(r),
    exec: parseExec(r, transports),
  };
}
