import crypto from 'node:crypto';
import type { RequestHandler } from 'express';
import type { Logger } from 'pino';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const QUIET = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * Gives every request an id (the client's `x-request-id` when it is sane), echoes it, and logs
 * one line when the answer is sent: info for 2xx/3xx, warn for 4xx, error for 5xx. One line
 * from the process logger, no per-request child logger: this runs on every ingest request.
 */
export function requestLog(log: Logger): RequestHandler {
  return (req, res, next) => {
    const started = performance.now();
    const given = req.headers['x-request-id'];
    const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : crypto.randomUUID();
    res.setHeader('x-request-id', id);
    res.locals.requestId = id;
    if (!QUIET.has(req.path)) {
      res.once('finish', () => {
        const status = res.statusCode;
        const level = status >= 500 ? 'error' : status >= 400 ? 'warn' : 'info';
        if (!log.isLevelEnabled(level)) return;
        log[level](
          { req: { id, method: req.method, url: req.originalUrl }, res: { statusCode: status }, responseTime: Math.round(performance.now() - started) },
          'request completed',
        );
      });
    }
    next();
  };
}
