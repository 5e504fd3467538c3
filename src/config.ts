import path from 'node:path';
import { z } from 'zod';
import { BUILT_IN_TRANSPORTS, type BuiltInTransport } from './transports/registry.js';
import { LOOPBACK_MODES, parseAllowNetworks, type Cidr, type LoopbackMode } from './net/network-guard.js';

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

const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

/** Every RELAY_ variable: name, parser and default. The README's configuration table mirrors this. */
const variables = {
  RELAY_HOST: z.string().min(1).default('127.0.0.1'),
  RELAY_PORT: int(0, 65535).default(8990),
  RELAY_DATA_DIR: z.string().min(1).default('./data'),
  RELAY_DATABASE_URL: z
    .string()
    .refine((v) => v === '' || v.startsWith('sqlite:'), {
      message: 'only SQLite is available in this version (leave unset, or sqlite:/path/to/file.db)',
    })
    .default(''),
  RELAY_TOKENS: z.string().default(''),
  RELAY_ALLOW_NETWORKS: z.string().default(''),
  RELAY_ALLOW_LOOPBACK: z.enum(LOOPBACK_MODES).default('auto'),
  RELAY_DURABILITY: z.enum(['full', 'normal']).default('full'),
  RELAY_SHUTDOWN_GRACE_MS: int(0, 600_000).default(10_000),
  RELAY_RETENTION_DAYS: int(1, 3650).default(30),
  RELAY_LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
  RELAY_BUSY_TIMEOUT_MS: int(0, 600_000).default(5_000),
  RELAY_CONNECTIONS_PER_ORIGIN: int(1, 1024).default(32),
  RELAY_COMMIT_INTERVAL_MS: int(0, 1000).default(10),
  RELAY_MAX_IN_FLIGHT: int(1, 100_000).default(512),
  RELAY_MAX_RESULT_BYTES: int(1024, 64 * 1024 * 1024).default(1024 * 1024),
  RELAY_MAX_TASKS_PER_EXECUTION: int(1, 1_000_000).default(1000),
  RELAY_TRANSPORTS: z.string().default('http,amqp'),
  RELAY_TRANSPORT_MODULES: z.string().default(''),
} as const;

type Raw = { [K in keyof typeof variables]: z.output<(typeof variables)[K]> };

export interface Config {
  host: string;
  port: number;
  dataDir: string;
  databasePath: string;
  /** token → project, from RELAY_TOKENS; empty means "generate admin.token". */
  tokens: Map<string, string>;
  allowNetworks: Cidr[];
  /** `auto`: loopback callbacks while the relay binds a loopback address; the relay's own port never. */
  allowLoopback: LoopbackMode;
  durability: 'full' | 'normal';
  shutdownGraceMs: number;
  retentionDays: number;
  logLevel: (typeof LOG_LEVELS)[number];
  busyTimeoutMs: number;
  connectionsPerOrigin: number;
  maxInFlight: number;
  commitIntervalMs: number;
  /** Bytes of JSON a task result, a task's evaluated input or an execution's input may have. */
  maxResultBytes: number;
  /** Task runs one execution may create; past it the execution fails. */
  maxTasksPerExecution: number;
  /** Built-in transports to enable (RELAY_TRANSPORTS). */
  transports: BuiltInTransport[];
  /** Paths of operator transport modules (RELAY_TRANSPORT_MODULES). */
  transportModules: string[];
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

/** Reads and validates the environment once; the result is passed down, never read globally. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const raw = {} as Record<string, unknown>;
  for (const [name, schema] of Object.entries(variables)) {
    const value = env[name];
    const result = (schema as z.ZodType).safeParse(value === undefined || value === '' ? undefined : value);
    if (!result.success) {
      const issue = result.error.issues[0];
      throw new ConfigError(name, `${issue?.message ?? 'invalid value'} (got ${JSON.stringify(value)})`);
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
  const dataDir = path.resolve(r.RELAY_DATA_DIR);
  const databasePath = r.RELAY_DATABASE_URL
    ? path.resolve(r.RELAY_DATABASE_URL.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, ''))
    : path.join(dataDir, 'relay.db');
  return {
    host: r.RELAY_HOST,
    port: r.RELAY_PORT,
    dataDir,
    databasePath,
    tokens: guarded('RELAY_TOKENS', () => parseTokens(r.RELAY_TOKENS)),
    allowNetworks: guarded('RELAY_ALLOW_NETWORKS', () => parseAllowNetworks(r.RELAY_ALLOW_NETWORKS)),
    allowLoopback: r.RELAY_ALLOW_LOOPBACK,
    durability: r.RELAY_DURABILITY,
    shutdownGraceMs: r.RELAY_SHUTDOWN_GRACE_MS,
    retentionDays: r.RELAY_RETENTION_DAYS,
    logLevel: r.RELAY_LOG_LEVEL,
    busyTimeoutMs: r.RELAY_BUSY_TIMEOUT_MS,
    connectionsPerOrigin: r.RELAY_CONNECTIONS_PER_ORIGIN,
    maxInFlight: r.RELAY_MAX_IN_FLIGHT,
    commitIntervalMs: r.RELAY_COMMIT_INTERVAL_MS,
    maxResultBytes: r.RELAY_MAX_RESULT_BYTES,
    maxTasksPerExecution: r.RELAY_MAX_TASKS_PER_EXECUTION,
    transports: guarded('RELAY_TRANSPORTS', () => parseTransports(r.RELAY_TRANSPORTS)),
    transportModules: r.RELAY_TRANSPORT_MODULES.split(',').map((p) => p.trim()).filter(Boolean),
  };
}
