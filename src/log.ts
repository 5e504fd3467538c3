import { pino, type Logger } from 'pino';

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: 'callback-relay' },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Bearer tokens and callback headers are secrets; never let a log line carry them.
    redact: { paths: ['req.headers.authorization', 'headers.authorization', 'callback.headers.*'], censor: '***' },
  });
}
