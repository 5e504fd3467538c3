import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { AdminTokenExposedError } from './api/auth.js';
import { ConfigError, loadConfig } from './config.js';
import { limitHeapGrowth } from './heap.js';
import { createLogger } from './log.js';
import { ROLES, startRelay, type Role } from './relay.js';
import { SchemaTooNewError } from './store/migrations.js';
import { TransportLoadError } from './transports/registry.js';

const USAGE = `usage: node dist/main.js [--role all|api|dispatcher|engine]   (npm start -- --role …)

Runs the relay: the REST API, the workflow engine, the dispatcher and the background pruner.
  --role all         everything in one process (default, or RELAY_ROLE); the
                     dispatcher runs in a thread of its own (RELAY_DISPATCH_THREAD=off:
                     one thread)
  --role api         the REST API and ingest; engine state changes commit here, other
                     processes run tasks and dispatch
  --role dispatcher  the dispatcher only, with /healthz, /readyz and /metrics
  --role engine      the engine's task runner only, with /healthz, /readyz and /metrics
On PostgreSQL (RELAY_DATABASE_URL=postgres://…) any number of processes of each role share
one database; on SQLite, processes on one machine share one file.
Configuration comes from RELAY_* environment variables (see README.md).
Logs are JSON lines, or readable lines on a terminal; RELAY_LOG_FORMAT=json|pretty chooses.`;

let role: Role | undefined;
try {
  const { values } = parseArgs({ options: { role: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  if (values.role !== undefined) {
    if (!(ROLES as readonly string[]).includes(values.role)) throw new Error(`--role must be one of ${ROLES.join(', ')}`);
    role = values.role as Role;
  }
} catch (err) {
  process.stderr.write(`callback-relay: ${(err as Error).message}\n${USAGE}\n`);
  process.exit(2);
}

function unresolvableHost(host: string, code: string): never {
  process.stderr.write(`callback-relay: bad configuration: RELAY_HOST: ${JSON.stringify(host)} does not resolve to an address (${code})\n`);
  process.exit(2);
}

let config;
try {
  config = loadConfig();
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`callback-relay: bad configuration: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}

// A host name that does not resolve is a bad RELAY_HOST: said before the database is opened
// (and migrated) or the admin token written, not when listening at the end of the start.
if (isIP(config.host) === 0) {
  try {
    await lookup(config.host);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_NONAME') unresolvableHost(config.host, code);
    throw err;
  }
}

const log = createLogger(config.logLevel, config.logFormat);
// Last resort: an error nothing caught leaves the process in a state no one reasoned about.
// Log it and exit non-zero (a supervisor restarts the relay; leases and recovery take over)
// rather than go on serving from that state.
for (const event of ['uncaughtException', 'unhandledRejection'] as const) {
  process.on(event, (err: unknown) => {
    log.fatal({ err, event }, `${event}: the relay stops rather than continue in an unknown state`);
    process.exit(70);
  });
}
// Everything this process creates holds secrets (the database, admin.token): owner-only.
process.umask(0o077);
if (config.heapGrowingPercent !== null) {
  limitHeapGrowth(config.heapGrowingPercent);
  log.info({ percent: config.heapGrowingPercent }, 'V8 heap growth between full collections limited (RELAY_HEAP_GROWING_PERCENT)');
}
try {
  const relay = await startRelay(config, log, {
    role,
    dispatchThread: config.dispatchThread,
    // A later release migrated the database (its fatal line is logged): stop as on SIGTERM,
    // letting attempts in flight finish and record, then exit as for a bad configuration.
    onSuperseded: (err) => {
      process.stderr.write(`callback-relay: ${err.message} This process stops.\n`);
      setImmediate(() => stop({ reason: 'the database was migrated by a later release' }, 2));
    },
  });
  let stopping = false;
  const stop = (why: { signal: string } | { reason: string }, exitCode = 0) => {
    if (stopping) return;
    stopping = true;
    log.info(why, 'shutting down');
    relay.close().then(
      () => {
        log.info('stopped');
        process.exit(exitCode);
      },
      (err) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop({ signal: 'SIGTERM' }));
  process.on('SIGINT', () => stop({ signal: 'SIGINT' }));
} catch (err) {
  const e = err as NodeJS.ErrnoException;
  if (err instanceof ConfigError) {
    // Found while starting (a data folder that cannot be one): as a bad value at the start.
    process.stderr.write(`callback-relay: bad configuration: ${err.message}\n`);
    log.fatal({ err, variable: err.variable }, `bad configuration: ${err.message}`);
    process.exit(2);
  }
  if (err instanceof TransportLoadError) {
    process.stderr.write(`callback-relay: bad configuration: RELAY_TRANSPORT_MODULES: ${err.message}\n`);
    log.fatal({ err, module: err.module }, err.message);
    process.exit(2);
  }
  if (err instanceof SchemaTooNewError) {
    // Restarting the same release cannot help: said once, plainly, and exit as for a bad configuration.
    process.stderr.write(`callback-relay: ${err.message}\n`);
    log.fatal({ migrations: err.unknown, latest_known: err.latestKnown }, 'the database is newer than this release');
    process.exit(2);
  }
  if (err instanceof AdminTokenExposedError) {
    log.fatal({ file: err.file, mode: err.mode.toString(8) }, err.message);
    process.exit(2);
  }
  if (e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN') {
    // It resolved a moment ago, at the start, and no longer does.
    log.fatal({ err }, `cannot listen on ${config.host}:${config.port} (${e.code}); set RELAY_HOST`);
    unresolvableHost(config.host, e.code);
  }
  // An address not of this machine, or a port this process may not take, is the configuration's
  // fault and stays so however often it is restarted; a port in use may be free again.
  if (e.syscall === 'listen' && (e.code === 'EADDRNOTAVAIL' || e.code === 'EACCES')) {
    const [variable, why] =
      e.code === 'EADDRNOTAVAIL'
        ? ['RELAY_HOST', `${JSON.stringify(config.host)} is no address of this machine`]
        : ['RELAY_PORT', `port ${config.port} on ${config.host} needs a privilege this process does not have`];
    process.stderr.write(`callback-relay: bad configuration: ${variable}: ${why} (${e.code})\n`);
    log.fatal({ err }, `cannot listen on ${config.host}:${config.port} (${e.code}); set ${variable}`);
    process.exit(2);
  }
  if (e.code === 'EADDRINUSE') {
    log.fatal({ err }, `cannot listen on ${config.host}:${config.port} (${e.code}); another process has that port: set RELAY_PORT or RELAY_HOST`);
  } else {
    log.fatal({ err }, 'failed to start');
  }
  process.exit(1);
}
