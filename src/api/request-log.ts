import crypto from 'node:crypto';
import type { RequestHandler } from 'express';
import type { Logger } from 'pino';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** Probes and scrapes: a prober or Prometheus asks every few seconds and sees the answer itself. */
const OPERATIONS = new Set(['/healthz', '/readyz', '/metrics']);
const CLI_USER_AGENT = /^callback-relay-cli\//;

/**
 * Requests that repeat all day and change nothing, logged at debug so that info shows what
 * happened: the operations endpoints whatever they answer, and reads by the relay's own CLI
 * (it identifies itself as `callback-relay-cli/<version>`; its GETs show or poll) unless they
 * fail. Writes by the CLI stay at info: they change something.
 */
export function isRoutineRequest(method: string, path: string, userAgent: string | undefined, status: number): boolean {
  if (OPERATIONS.has(path)) return true;
  return (method === 'GET' || method === 'HEAD') && status < 400 && userAgent !== undefined && CLI_USER_AGENT.test(userAgent);
}

/**
 * Gives every request an id (the client's `x-request-id` when it is sane), echoes it, and logs
 * one line when the answer is sent: info for 2xx/3xx, warn for 4xx, error for 5xx, debug for
 * routine requests. One line from the process logger, no per-request child logger: this runs
 * on every ingest request.
 */
export function requestLog(log: Logger): RequestHandler {
  return (req, res, next) => {
    const started = performance.now();
    const given = req.headers['x-request-id'];
    const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : crypto.randomUUID();
    res.setHeader('x-request-id', id);
    res.locals.requestId = id;
    // Read now: inside a mounted router req.path is relative to the mount point.
    const path = req.path;
    res.once('finish', () => {
      const status = res.statusCode;
      const level = isRoutineRequest(req.method, path, req.headers['user-agent'], status)
        ? 'debug'
        : status >= 500
          ? 'error'
          : status >= 400
            ? 'warn'
            : 'info';
      if (!log.isLevelEnabled(level)) return;
      log[level](
        { req: { id, method: req.method, url: req.originalUrl }, res: { statusCode: status }, responseTime: Math.round(performance.now() - started) },
        'request completed',
      );
    });
    next();
  };
}
