import express, { Router, type Request } from 'express';
import { WorkbookError, type WorkbookSpec } from '../../engine/workbook.js';
import { parseWorkbookOffThread } from '../../engine/workbook-parser.js';
import { toWorkbookView } from '../../records/engine.js';
import type { EngineStore } from '../../store/engine-store.js';
import { BODY_LIMIT } from '../limits.js';
import { isJsonMediaType } from '../media-type.js';
import { assertJsonDepth } from '../json-body.js';
import { badRequest, conflict, invalidField, notFound, unsupportedMediaType } from '../problem.js';
import { page, pageParams } from '../paging.js';

export const YAML_MEDIA_TYPES = ['application/yaml', 'application/x-yaml', 'text/yaml'];

const mediaTypeOf = (req: Request) => (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();

/** Workbook bodies are the definition itself, YAML or JSON, kept as sent: the text is what reads answer. */
const readDefinition = [
  ((req, _res, next) => {
    const type = mediaTypeOf(req);
    if (!YAML_MEDIA_TYPES.includes(type) && !isJsonMediaType(type)) {
      throw unsupportedMediaType(
        `${type || 'a body without Content-Type'} is not accepted here; send the workbook as ${[...YAML_MEDIA_TYPES, 'application/json'].join(', ')}`,
      );
    }
    next();
  }) satisfies express.RequestHandler,
  // Parsed in a thread of its own (engine/workbook-parser.ts): seconds for the largest.
  express.text({ type: () => true, limit: BODY_LIMIT }),
];

/** The definition text and its parsed spec; a bad definition is a 400 listing every problem with its line. */
async function definitionOf(req: Request): Promise<{ source: string; spec: WorkbookSpec }> {
  let source = typeof req.body === 'string' ? req.body : '';
  if (source.trim() === '') throw badRequest('the body must be a workbook definition', [{ field: '(body)', message: 'empty' }]);
  let format: 'yaml' | 'json' = isJsonMediaType(mediaTypeOf(req)) ? 'json' : 'yaml';
  if (format === 'json') {
    // {"definition": "<YAML text>"} is accepted too, for clients that only send JSON.
    const wrapped = tryJson(source) as { definition?: unknown; version?: unknown } | undefined;
    if (wrapped && typeof wrapped.definition === 'string' && wrapped.version === undefined) {
      source = wrapped.definition;
      format = 'yaml';
    }
  }
  // YAML's flow collections are JSON's brackets: the same bound holds for both (quotes aside,
  // brackets in a YAML scalar that is not double-quoted count too, and balanced ones do no harm).
  assertJsonDepth(source);
  if (format === 'yaml') assertBlockIndent(source);
  try {
    return { source, spec: await parseWorkbookOffThread(source, format) };
  } catch (err) {
    if (!(err instanceof WorkbookError)) throw err;
    const errors = err.issues.map((i) => ({ field: i.field, message: i.message, ...(i.line === undefined ? {} : { line: i.line }) }));
    throw badRequest(errors.map((e) => `${e.field}: ${e.message}${e.line ? ` (line ${e.line})` : ''}`).join('; '), errors);
  }
}

/**
 * The deepest a definition's block structure may start a line: YAML nests blocks by indentation,
 * and a compact `- - - x` nests once per `- ` on one line. A thousand such levels in 2 KB made
 * V8 run out of memory compiling a regular expression (the process died), 700 did not; a real
 * workbook stays within a few dozen columns.
 */
export const MAX_BLOCK_INDENT = 256;

/** Refuses YAML whose lines start a node deeper than MAX_BLOCK_INDENT columns, counting compact `- `, `? ` and `: ` indicators as indentation. */
function assertBlockIndent(source: string): void {
  let line = 1;
  for (let i = 0; i < source.length; line++) {
    let column = 0;
    for (;;) {
      const c = source[i];
      if (c === ' ') {
        column++;
        i++;
      } else if ((c === '-' || c === '?' || c === ':') && (source[i + 1] === ' ' || source[i + 1] === '\t')) {
        column += 2;
        i += 2;
      } else break;
    }
    if (column > MAX_BLOCK_INDENT) {
      const message = `line ${line} starts ${column} columns deep (block indentation and compact "- " nesting); at most ${MAX_BLOCK_INDENT} are taken`;
      throw badRequest(`(body): ${message}`, [{ field: '(body)', message, line }]);
    }
    const next = source.indexOf('\n', i);
    if (next === -1) break;
    i = next + 1;
  }
}

function tryJson(text: string): unknown {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

export function workbookRoutes({ store }: { store: EngineStore }): Router {
  const router = Router();

  router.post('/', ...readDefinition, async (req, res) => {
    const { source, spec } = await definitionOf(req);
    const now = Date.now();
    const record = { project: res.locals.project as string, name: spec.name, source, spec, created_at: now, updated_at: now };
    await store.createWorkbook(record);
    res.status(201).location(`/v1/workbooks/${encodeURIComponent(spec.name)}`).json(toWorkbookView(record));
  });

  router.get('/', async (req, res) => {
    const { limit, after } = pageParams(req.query, 'workbooks');
    const { rows, resume } = await store.listWorkbooks(res.locals.project, { after, limit: limit + 1 });
    res.json(page('workbooks', rows, limit, (w) => w.name, toWorkbookView, 'asc', resume));
  });

  router.get('/:name', async (req, res) => {
    const workbook = await store.getWorkbook(res.locals.project, req.params.name);
    if (!workbook) throw notFound(`workbook ${req.params.name}`);
    res.json(toWorkbookView(workbook));
  });

  // Running executions keep the workflow they started with; the new definition applies to the next ones.
  router.put('/:name', ...readDefinition, async (req, res) => {
    const { source, spec } = await definitionOf(req);
    if (spec.name !== req.params.name) throw invalidField('name', `the definition names workbook ${spec.name}, not ${req.params.name}`);
    const updated = await store.updateWorkbook(res.locals.project, req.params.name, source, spec, Date.now());
    if (!updated) throw notFound(`workbook ${req.params.name}`);
    res.json(toWorkbookView(updated));
  });

  router.delete('/:name', async (req, res) => {
    const outcome = await store.deleteWorkbook(res.locals.project, req.params.name);
    if (outcome === 'not_found') throw notFound(`workbook ${req.params.name}`);
    if (outcome === 'executions_running') {
      throw conflict(`workbook ${req.params.name} has executions that are RUNNING or PAUSED; cancel them or let them finish first`);
    }
    res.status(204).end();
  });

  return router;
}
