import { pino, type DestinationStream, type Logger } from 'pino';
import { prettyFactory } from 'pino-pretty';
import type { LogFormat } from './config.js';

/**
 * `sync` writes every line before the call returns. The dispatch thread logs that way: a worker
 * thread that ends drops what an asynchronous write still holds, and its lines are few (failures
 * are summarised, not logged one by one).
 */
export function createLogger(level: string, format: LogFormat = 'json', options: { sync?: boolean } = {}): Logger {
  return pino(
    {
      level,
      base: { service: 'callback-relay' },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Bearer tokens and callback headers are secrets; never let a log line carry them.
      redact: { paths: ['req.headers.authorization', 'headers.authorization', 'callback.headers.*'], censor: '***' },
    },
    format === 'pretty' ? prettyDestination() : jsonDestination(options.sync === true),
  );
}

function jsonDestination(sync: boolean): DestinationStream {
  if (sync) return pino.destination({ dest: 1, sync: true });
  // Asynchronous writes: under load, log lines are coalesced into few writes instead of one
  // blocking write per request. What is still buffered is written out when the process exits.
  const destination = pino.destination({ dest: 1, sync: false });
  process.once('exit', () => {
    try {
      destination.flushSync();
    } catch {
      // nothing more can be done for a log line at exit
    }
  });
  return destination;
}

/**
 * Human-readable lines for a terminal. Formatted and written synchronously in this thread (no
 * worker transport), so the line explaining a crash is on the screen before the process exits.
 * Colours only when stdout is a terminal, not when pretty output is piped into a file.
 */
function prettyDestination(): DestinationStream {
  const format = prettyFactory({
    colorize: process.stdout.isTTY === true,
    translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l',
    ignore: 'service,component',
    messageFormat: '{if component}[{component}] {end}{msg}',
  });
  const out = pino.destination({ dest: 1, sync: true });
  return { write: (line: string) => void out.write(format(line)) };
}
