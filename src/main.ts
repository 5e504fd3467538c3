import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './log.js';
import { startRelay } from './relay.js';

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
  const relay = await startRelay(config, log);
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
