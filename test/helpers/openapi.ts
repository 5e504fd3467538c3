import fs from 'node:fs';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { parse } from 'yaml';

/*
 * Checks real responses against openapi.yaml, so the document cannot drift from the server.
 * `request()` in ./relay.ts runs every response the integration tests receive through
 * `validateResponse`.
 *
 * The document leaves response objects open (clients should ignore fields they do not know),
 * but here every object a response schema describes is closed with `unevaluatedProperties:
 * false`, so a field the server sends and the document does not name fails the test.
 */

export const OPENAPI_FILE = new URL('../../openapi.yaml', import.meta.url);
export const OPENAPI_TEXT = fs.readFileSync(OPENAPI_FILE, 'utf8');

type Json = Record<string, any>;

/** The parsed document; treat it as read-only. */
export const openapi: Json = parse(OPENAPI_TEXT);

export const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;

const SPEC_ID = 'https://callback-relay.invalid/openapi.json';

export interface ResponseToCheck {
  method: string;
  /** The request path as sent, query included: `/v1/listeners/01J…?limit=3`. */
  path: string;
  status: number;
  /** The `Content-Type` header, or null/undefined when there is none. */
  contentType?: string | null;
  /** The parsed body: JSON as a value, anything else as text, undefined when empty. */
  body?: unknown;
  /** When given, the headers the document marks `required` must be present. */
  headers?: Headers;
}

interface Route {
  template: string;
  pattern: RegExp;
  /** Templated segments; a literal path wins over a templated one that also matches. */
  params: number;
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const routes: Route[] = Object.keys(openapi.paths ?? {})
  .map((template) => ({
    template,
    pattern: new RegExp(
      '^' + template.split(/(\{[^}/]+\})/).map((part) => (/^\{[^}/]+\}$/.test(part) ? '[^/]+' : escapeRegExp(part))).join('') + '$',
    ),
    params: (template.match(/\{[^}/]+\}/g) ?? []).length,
  }))
  .sort((a, b) => a.params - b.params);

/** The documented path template that a request path falls under, or undefined. */
export function matchPath(path: string): string | undefined {
  let pathname = path.split(/[?#]/)[0];
  // Express routes are not strict about a trailing slash, so neither is this.
  if (pathname.length > 1) pathname = pathname.replace(/\/+$/, '');
  return routes.find((r) => r.pattern.test(pathname))?.template;
}

const jsonPointer = (...parts: string[]) => parts.map((p) => '/' + p.replace(/~/g, '~0').replace(/\//g, '~1')).join('');

function resolvePointer(pointer: string): any {
  return pointer
    .split('/')
    .slice(1)
    .reduce((node, part) => node?.[part.replace(/~1/g, '/').replace(/~0/g, '~')], openapi as any);
}

/** Follows OpenAPI `$ref`s (response objects and the like); returns the object and its pointer. */
function deref(node: any, pointer: string): { node: any; pointer: string } {
  const seen = new Set<string>();
  while (node && typeof node.$ref === 'string') {
    const ref: string = node.$ref;
    if (!ref.startsWith('#/') || seen.has(ref)) throw new Error(`openapi.yaml: cannot follow $ref ${ref} at ${pointer}`);
    seen.add(ref);
    pointer = ref.slice(1);
    node = resolvePointer(pointer);
    if (node === undefined) throw new Error(`openapi.yaml: $ref ${ref} points at nothing`);
  }
  return { node, pointer };
}

// ---- the closed copy of the document that ajv validates against -------------------------

function isObjectSchema(node: any, seen = new Set<any>()): boolean {
  if (!node || typeof node !== 'object' || seen.has(node)) return false;
  seen.add(node);
  const types = Array.isArray(node.type) ? node.type : [node.type];
  if (types.includes('object') || node.properties || node.allOf) return true;
  if (typeof node.$ref === 'string' && node.$ref.startsWith('#/')) return isObjectSchema(resolveIn(closedDoc, node.$ref), seen);
  return false;
}

function resolveIn(doc: Json, ref: string): any {
  return ref
    .slice(2)
    .split('/')
    .reduce((n, part) => n?.[part.replace(/~1/g, '/').replace(/~0/g, '~')], doc as any);
}

/*
 * Closes every object schema at the place it is used (a property, an item, a branch, a
 * response body), not the named component itself: a component closed on its own would refuse
 * the fields that an `allOf` beside it adds (Listener inside ListenerCreated). Members of an
 * `allOf` stay open for the same reason; the schema that composes them is closed instead.
 */
function closeSchema(node: any, place: 'component' | 'allOf' | 'use'): void {
  if (!node || typeof node !== 'object') return;
  if (
    place === 'use' &&
    node.additionalProperties === undefined &&
    node.unevaluatedProperties === undefined &&
    isObjectSchema(node)
  ) {
    node.unevaluatedProperties = false;
  }
  for (const key of ['properties', 'patternProperties', '$defs'] as const) {
    for (const sub of Object.values(node[key] ?? {})) closeSchema(sub, 'use');
  }
  for (const key of ['items', 'additionalProperties', 'contains', 'not', 'if', 'then', 'else'] as const) {
    if (node[key] && typeof node[key] === 'object') closeSchema(node[key], 'use');
  }
  for (const key of ['anyOf', 'oneOf', 'prefixItems'] as const) {
    for (const sub of node[key] ?? []) closeSchema(sub, 'use');
  }
  for (const sub of node.allOf ?? []) closeSchema(sub, 'allOf');
}

const closedDoc: Json = structuredClone({ paths: openapi.paths ?? {}, components: openapi.components ?? {} });
for (const schema of Object.values<any>(closedDoc.components.schemas ?? {})) closeSchema(schema, 'component');
const responseObjects = [
  ...Object.values<any>(closedDoc.components.responses ?? {}),
  ...Object.values<any>(closedDoc.paths).flatMap((item) =>
    HTTP_METHODS.flatMap((m) => Object.values<any>(item?.[m]?.responses ?? {})),
  ),
];
for (const response of responseObjects) {
  for (const media of Object.values<any>(response?.content ?? {})) closeSchema(media?.schema, 'use');
}

const ajv = new Ajv2020({
  allErrors: true,
  strict: true,
  // OpenAPI schemas leave `type: object` implicit beside $ref, and use type unions for nullables.
  strictTypes: false,
  allowUnionTypes: true,
});
addFormatsModule.default(ajv);
// The document's root is not a schema; these keywords only carry the schemas ajv resolves $refs into.
ajv.addKeyword('paths');
ajv.addKeyword('components');
ajv.addSchema({ $id: SPEC_ID, ...closedDoc });

const validators = new Map<string, ValidateFunction>();

function validatorAt(pointer: string): ValidateFunction {
  let validate = validators.get(pointer);
  if (!validate) {
    validate = ajv.compile({ $ref: `${SPEC_ID}#${pointer}` });
    validators.set(pointer, validate);
  }
  return validate;
}

// ---- the check --------------------------------------------------------------------------

export const mediaTypeOf = (contentType: string | null | undefined) => (contentType ?? '').split(';')[0].trim().toLowerCase();
export const isJsonMediaType = (t: string) => /^application\/([a-z0-9.+-]+\+)?json$/.test(t);

function matchMediaType(actual: string, documented: string[]): string | undefined {
  return (
    documented.find((d) => d.toLowerCase() === actual) ??
    documented.find((d) => d.endsWith('/*') && actual.startsWith(d.slice(0, -1).toLowerCase())) ??
    documented.find((d) => d === '*/*')
  );
}

function formatErrors(errors: ErrorObject[] | null | undefined): string {
  return (errors ?? [])
    .map((e) => {
      const extra =
        e.keyword === 'unevaluatedProperties'
          ? ` (${JSON.stringify((e.params as { unevaluatedProperty: string }).unevaluatedProperty)} is not in the document)`
          : e.keyword === 'enum'
            ? ` (${JSON.stringify((e.params as { allowedValues: unknown[] }).allowedValues)})`
            : '';
      return `  - ${e.instancePath || '(body)'} ${e.message}${extra} [${e.schemaPath}]`;
    })
    .join('\n');
}

const excerpt = (body: unknown) => {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return text === undefined ? '(none)' : text.length > 600 ? `${text.slice(0, 600)}…` : text;
};

function validateBody(where: string, pointer: string, body: unknown): void {
  const validate = validatorAt(pointer);
  if (!validate(body)) {
    throw new Error(`${where}: the body does not match openapi.yaml (${pointer}):\n${formatErrors(validate.errors)}\nbody: ${excerpt(body)}`);
  }
}

/**
 * Throws when a response is not what openapi.yaml says the operation answers: an undocumented
 * status, an undocumented content type, a body that does not fit its schema, or a required
 * header that is missing. Paths the document does not contain at all are not checked; an
 * undocumented method on a documented path must be an error answered as a Problem.
 */
export function validateResponse({ method, path, status, contentType, body, headers }: ResponseToCheck): void {
  const template = matchPath(path);
  if (!template) return;
  const verb = method.toLowerCase() === 'head' ? 'get' : method.toLowerCase();
  const where = `${method.toUpperCase()} ${template} → ${status}`;
  const operation = openapi.paths[template]?.[verb];
  const actualType = mediaTypeOf(contentType);

  if (!operation) {
    if (status < 400) {
      throw new Error(`${where}: openapi.yaml has no ${method.toUpperCase()} operation on ${template}, but the server answered ${status}`);
    }
    if (actualType !== 'application/problem+json') {
      throw new Error(`${where}: an undocumented operation must answer application/problem+json, got ${contentType ?? 'no content type'}`);
    }
    validateBody(where, '/components/schemas/Problem', body);
    return;
  }

  const responses: Json = operation.responses ?? {};
  const key = [String(status), `${String(status)[0]}XX`, 'default'].find((k) => k in responses);
  if (!key) {
    throw new Error(`${where}: status ${status} is not documented (documented: ${Object.keys(responses).join(', ')})\nbody: ${excerpt(body)}`);
  }
  const opPointer = jsonPointer('paths', template, verb, 'responses', key);
  const { node: response, pointer } = deref(responses[key], opPointer);

  for (const [name, header] of Object.entries<any>(response.headers ?? {})) {
    if (headers && deref(header, '').node.required && !headers.has(name)) {
      throw new Error(`${where}: the required header ${name} is missing`);
    }
  }

  const documented = Object.keys(response.content ?? {});
  const hasBody = body !== undefined && body !== '';
  if (documented.length === 0) {
    if (hasBody) throw new Error(`${where}: openapi.yaml documents no body, but the server sent ${contentType ?? 'one'}: ${excerpt(body)}`);
    return;
  }
  if (!actualType) {
    throw new Error(`${where}: no Content-Type; openapi.yaml documents ${documented.join(', ')}`);
  }
  const mediaType = matchMediaType(actualType, documented);
  if (!mediaType) {
    throw new Error(`${where}: content type ${actualType} is not documented (documented: ${documented.join(', ')})`);
  }
  if (method.toUpperCase() === 'HEAD' || !response.content[mediaType]?.schema) return;
  const schemaPointer = `${pointer}${jsonPointer('content', mediaType, 'schema')}`;
  if (isJsonMediaType(actualType)) {
    validateBody(where, schemaPointer, body);
  } else {
    validateBody(where, schemaPointer, typeof body === 'string' ? body : body === undefined ? '' : String(body));
  }
}
