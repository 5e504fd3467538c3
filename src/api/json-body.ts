import express, { type Request, type RequestHandler } from 'express';
import { badRequest } from './problem.js';
import { assertStorableJson } from '../json-text.js';
import { jsonShape, MAX_JSON_DEPTH } from '../json-depth.js';

export { MAX_JSON_DEPTH };

/** Refuses JSON text nested deeper than MAX_JSON_DEPTH with a 400 naming the body. */
export function assertJsonDepth(text: Buffer | string, field = '(body)', shape = jsonShape(text, MAX_JSON_DEPTH)): void {
  if (shape.depth > MAX_JSON_DEPTH) {
    throw badRequest(`${field}: objects and arrays nest deeper than ${MAX_JSON_DEPTH} levels`, [
      { field, message: `objects and arrays nest deeper than ${MAX_JSON_DEPTH} levels` },
    ]);
  }
}

/**
 * express.json for every route, with the nesting limit and what cannot be stored as sent (see
 * json-text.ts) checked on the raw bytes before parsing.
 */
export function jsonBody(limit: string): RequestHandler {
  return express.json({
    limit,
    type: () => true,
    strict: false,
    verify: (_req, _res, buf) => {
      const shape = jsonShape(buf, MAX_JSON_DEPTH);
      assertJsonDepth(buf, '(body)', shape);
      assertStorableJson(buf, shape);
    },
  });
}

/**
 * The request's JSON body, `{}` when it has none (no body, or an empty one). A body that is
 * there stays what it is, `null` too, for the route's schema to refuse.
 */
export const bodyOrEmpty = (req: Request): unknown => (req.body === undefined ? {} : req.body);
