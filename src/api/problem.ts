import type { ErrorRequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import { z, type ZodError } from 'zod';
import { closestName } from '../closest-name.js';
import { UnstorableJsonError } from '../json-text.js';
import { FilterBudgetError } from '../fanout/filter-budget.js';
import { StoreConflictError, StoreUnavailableError } from '../store/store.js';

export interface FieldError {
  field: string;
  message: string;
  line?: number;
}

/** An RFC 9457 problem that a route throws; the error handler turns it into the response. */
export class Problem extends Error {
  constructor(
    readonly status: number,
    readonly slug: string,
    readonly title: string,
    readonly detail: string,
    readonly errors?: FieldError[],
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
    this.name = 'Problem';
  }
}

export const badRequest = (detail: string, errors?: FieldError[]) =>
  new Problem(400, 'invalid-request', 'Invalid request', detail, errors);
/** A 400 listing each field's problem; its detail is the same list as text. */
export const fieldProblems = (errors: FieldError[]) => badRequest(errors.map((e) => `${e.field}: ${e.message}`).join('; '), errors);
export const invalidField = (field: string, message: string) => fieldProblems([{ field, message }]);
export const notFound = (what: string) => new Problem(404, 'not-found', 'Not found', `${what} does not exist`);
export const conflict = (detail: string) => new Problem(409, 'conflict', 'Conflict', detail);
export const unsupportedMediaType = (detail: string) =>
  new Problem(415, 'unsupported-media-type', 'Unsupported media type', detail);

type RawIssue = Parameters<z.core.$ZodErrorMap>[0];

const UNKNOWN_FIELD = 'unknown field';
const MISSING_VALUE_CODES = new Set(['invalid_type', 'invalid_value', 'invalid_union']);

/** The keys an object schema declares (none for other schemas, such as a record's). */
function declaredKeys(schema: unknown): string[] {
  const shape = (schema as { _zod?: { def?: { shape?: Record<string, unknown> } } } | undefined)?._zod?.def?.shape;
  return shape ? Object.keys(shape) : [];
}

export function unknownFieldMessage(key: string, known: readonly string[]): string {
  const meant = closestName(key, known);
  return meant ? `${UNKNOWN_FIELD}; did you mean \`${meant}\`?` : UNKNOWN_FIELD;
}

/**
 * zod's wording where a schema gives none: a missing field is "required" (not "expected
 * string, received undefined"), and an unknown key names the closest key its object declares.
 * Only the raw issue still holds the input and the schema that raised it, so this runs as
 * zod's error map; an unrecognized_keys message holds one line per key, in the issue's order,
 * which fieldErrors splits again. Messages a schema sets itself still take precedence.
 */
export function explainIssue(issue: RawIssue): string | undefined {
  if (issue.code === 'unrecognized_keys') {
    const known = declaredKeys(issue.inst);
    return issue.keys.map((k) => unknownFieldMessage(k, known)).join('\n');
  }
  if (issue.input === undefined && MISSING_VALUE_CODES.has(issue.code ?? '')) return 'required';
  return undefined;
}

// Process-wide on purpose: every route's schema is worded the same way without each one asking.
z.config({ customError: explainIssue });

/** Zod issues as `errors` entries, with dotted field paths (`callback.url`, `events.2`). */
export function fieldErrors(error: ZodError, prefix = ''): FieldError[] {
  return error.issues.flatMap((issue) => {
    const base = [prefix, ...issue.path.map(String)].filter(Boolean).join('.');
    // Unknown keys are reported once per key so each names its own field.
    if (issue.code === 'unrecognized_keys') {
      const messages = issue.message.split('\n');
      const own = messages.length === issue.keys.length && messages.every((m) => m.startsWith(UNKNOWN_FIELD));
      return issue.keys.map((k, i) => ({ field: base ? `${base}.${k}` : k, message: own ? messages[i] : UNKNOWN_FIELD }));
    }
    return [{ field: base || '(body)', message: issue.message }];
  });
}

export function validationProblem(error: ZodError, prefix = ''): Problem {
  return fieldProblems(fieldErrors(error, prefix));
}

export function sendProblem(res: Response, p: Problem): void {
  for (const [k, v] of Object.entries(p.headers)) res.setHeader(k, v);
  res
    .status(p.status)
    .type('application/problem+json')
    .send(
      JSON.stringify({
        type: `/problems/${p.slug}`,
        title: p.title,
        status: p.status,
        detail: p.detail,
        ...(p.errors ? { errors: p.errors } : {}),
      }),
    );
}

const BODY_PARSER_PROBLEMS: Record<string, (e: { message: string; limit?: number }) => Problem> = {
  'entity.parse.failed': (e) => badRequest(`the body is not valid JSON: ${e.message}`, [{ field: '(body)', message: e.message }]),
  'entity.too.large': (e) =>
    new Problem(413, 'payload-too-large', 'Payload too large', `the body is larger than ${e.limit ?? 'the limit of'} bytes`),
  'encoding.unsupported': (e) => unsupportedMediaType(e.message),
  'charset.unsupported': (e) => unsupportedMediaType(e.message),
  'request.aborted': () => badRequest('the request was aborted'),
};

/**
 * A body that its Content-Encoding (gzip, deflate, br) does not describe: body-parser marks
 * zlib's error (which has an errno) a 400 but gives it no type of its own.
 */
function undecodableBody(err: unknown, contentEncoding: string | undefined): Problem | null {
  if (contentEncoding === undefined || typeof (err as { errno?: unknown } | null)?.errno !== 'number' || (err as { status?: unknown }).status !== 400) return null;
  const message = `not ${contentEncoding ?? 'compressed'} data as Content-Encoding says: ${(err as Error).message}`;
  return badRequest(`the body could not be decoded: ${message}`, [{ field: '(body)', message }]);
}

/**
 * A path segment that is not percent-encoded UTF-8 (`/v1/events/%FF`): the router cannot decode
 * it into the route's parameter and marks its URIError a 400.
 */
function undecodablePath(err: unknown): Problem | null {
  if (!(err instanceof URIError) || (err as { status?: unknown }).status !== 400) return null;
  const message = 'not valid percent-encoded UTF-8';
  return badRequest(`the URL path is ${message} (${err.message})`, [{ field: '(path)', message }]);
}

export function problemHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    if (res.headersSent) return;
    if (err instanceof Problem) return sendProblem(res, err);
    if (err instanceof UnstorableJsonError) return sendProblem(res, badRequest(`the body is refused: ${err.message}`, [{ field: '(body)', message: err.message }]));
    const type = (err as { type?: string }).type;
    if (type && BODY_PARSER_PROBLEMS[type]) return sendProblem(res, BODY_PARSER_PROBLEMS[type](err));
    const undecodable = undecodableBody(err, req.headers['content-encoding']) ?? undecodablePath(err);
    if (undecodable) return sendProblem(res, undecodable);
    if (err instanceof StoreUnavailableError) {
      return sendProblem(
        res,
        // A read stored nothing to begin with: only a write is told that nothing was kept.
        new Problem(503, 'unavailable', 'Service unavailable', `${err.message}; ${req.method === 'GET' || req.method === 'HEAD' ? '' : 'nothing was stored, '}try again`, undefined, {
          'Retry-After': String(err.retryAfterSeconds),
        }),
      );
    }
    if (err instanceof StoreConflictError) return sendProblem(res, conflict(err.message));
    if (err instanceof FilterBudgetError) {
      const message = `${err.message}; nothing was stored`;
      return sendProblem(res, new Problem(422, 'filter-budget', 'Too much filter work', message, [{ field: '(body)', message }]));
    }
    log.error({ err, requestId: res.locals.requestId }, 'request failed');
    sendProblem(res, new Problem(500, 'internal-error', 'Internal server error', 'the relay failed to handle this request'));
  };
}
