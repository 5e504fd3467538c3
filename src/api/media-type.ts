import type { RequestHandler } from 'express';
import { unsupportedMediaType } from './problem.js';

const JSON_TYPE = /^application\/([a-z0-9.+-]+\+)?json$/;

function hasBody(headers: Record<string, string | string[] | undefined>): boolean {
  const length = headers['content-length'];
  if (length !== undefined) return length !== '0';
  return headers['transfer-encoding'] !== undefined;
}

/**
 * Refuses a request body whose media type the route does not read (415), before any parsing.
 * A request with no body passes: some POSTs (ping, rotate-secret) need none.
 */
export function requireMediaType(accepted: (mediaType: string) => boolean = (t) => JSON_TYPE.test(t)): RequestHandler {
  return (req, _res, next) => {
    if (req.method === 'GET' || req.method === 'DELETE' || req.method === 'HEAD' || !hasBody(req.headers)) return next();
    const mediaType = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    if (!accepted(mediaType)) {
      throw unsupportedMediaType(
        mediaType ? `${mediaType} is not accepted here; send application/json` : 'send the body as application/json (Content-Type header missing)',
      );
    }
    next();
  };
}

export const isJsonMediaType = (t: string) => JSON_TYPE.test(t);
