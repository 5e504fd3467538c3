import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './log.js';
import { ROLES, startRelay, type Role } from './relay.js';

const USAGE = `usage: callback-relay-server [--role all|api|dispatcher]

Runs the relay: the REST API, the dispatcher and the background pruner in one process.
  --role all         everything (default)
  --role api         the API only; another process dispatches
  --role dispatcher  the dispatcher only, with /healthz, /readyz and /metrics
Configuration comes from RELAY_* environment variables (see README.md).`;

let role: Role = 'all';
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

const log = createLogger(config.logLevel);
try {
  const relay = await startRelay(config, log, { role });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    relay.close().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (err) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
} catch (err) {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL') {
    log.fatal({ err }, `cannot listen on ${config.host}:${config.port} (${e.code}); set RELAY_HOST or RELAY_PORT`);
  } else {
    log.fatal({ err }, 'failed to start');
  }
  process.exit(1);
}
