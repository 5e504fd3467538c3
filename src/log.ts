import { pino, type Logger } from 'pino';

export function createLogger(level: string): Logger {
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
  return pino(
    {
      level,
      base: { service: 'callback-relay' },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Bearer tokens and callback headers are secrets; never let a log line carry them.
      redact: { paths: ['req.headers.authorization', 'headers.authorization', 'callback.headers.*'], censor: '***' },
    },
    destination,
  );
}
