import { z } from 'zod';
import { compileEnvelopePath, parseEnvelopePath } from '../records/envelope-path.js';
import { EventEnvelope } from '../records/event.js';
import { compilePattern } from './pattern.js';

/*
 * A listener's payload filter: `{ "<dot.path>": condition, … }` over the event envelope.
 *
 * Semantics, chosen so that a filter never matches by accident:
 * - Every key must match. A key whose path is missing never matches, whatever the condition,
 *   except `{ "$exists": false }`, which is the one way to ask for absence. In particular
 *   `$ne` on a missing key does not match (unlike MongoDB): "vendor is not dell" should not
 *   fire for an event that has no vendor at all. `null` counts as present.
 * - Comparisons are strict and typed: `1` never equals `"1"`, `$regex` tests strings only,
 *   `$gt`/`$lt` compare numbers with numbers and strings with strings (code-unit order, which
 *   is chronological for ISO timestamps such as `occurred_at`); a type mismatch is a non-match.
 * - Objects and arrays in the envelope are never equal to a scalar; a numeric path segment
 *   indexes an array (`data.hosts.0.name`).
 * - `$regex` is RE2 syntax run by a linear-time engine and searches anywhere in the string, as
 *   `RegExp.test` does (`^` anchors at the start, as Python's `re.match` does).
 */

export const FILTER_OPERATORS = ['$in', '$ne', '$regex', '$exists', '$gt', '$lt'] as const;
export type FilterOperator = (typeof FILTER_OPERATORS)[number];

/*
 * Size limits, checked when a listener is created or changed. They keep validating, compiling
 * and matching a filter cheap: the fan-out runs every filter of a project on every event.
 */
/** Keys (conditions) in one filter. */
export const MAX_FILTER_KEYS = 50;
/** Characters in one key (a dot path). */
export const MAX_PATH_LENGTH = 256;
/** How deep a condition nests: an operator object (1) holding a `$in` list (2). */
export const MAX_CONDITION_DEPTH = 2;
/** Values in one `$in` list. */
export const MAX_IN_VALUES = 1000;
/** Characters in one `$regex` pattern. */
export const MAX_REGEX_LENGTH = 1000;
/** The whole filter as compact JSON, in UTF-8 bytes. */
export const MAX_FILTER_BYTES = 16 * 1024;
/**
 * RE2 program instructions of all `$regex` patterns of one filter together. Matching is linear
 * in the string, but its worst case per character grows with the program (about 5 ns per
 * character and instruction when the DFA gives way to the NFA), so the program is bounded too.
 */
export const MAX_REGEX_PROGRAM = 1000;
/**
 * Longest string (in UTF-16 code units) that `$regex` tests; a longer value does not match.
 * With MAX_REGEX_PROGRAM this bounds one filter's regex work on one event to a fraction of a
 * second even on the slowest patterns, whatever size of event the ingest accepts.
 */
export const MAX_REGEX_SUBJECT_LENGTH = 64 * 1024;

const ENVELOPE_FIELDS: readonly string[] = Object.keys(EventEnvelope.shape);
const OPERATOR_LIST = FILTER_OPERATORS.join(', ');

const Scalar = z.union([z.string(), z.number(), z.boolean(), z.null()], {
  error: 'must be a string, number, boolean or null',
});
const Comparable = z.union([z.number(), z.string()], { error: 'must be a number or a string' });

const RegexSource = z.string().max(MAX_REGEX_LENGTH);

const OperatorsSchema = z
  .strictObject(
    {
      $in: z.array(Scalar).min(1, '$in needs at least one value').max(MAX_IN_VALUES).optional(),
      $ne: Scalar.optional(),
      $regex: RegexSource.optional(),
      $exists: z.boolean().optional(),
      $gt: Comparable.optional(),
      $lt: Comparable.optional(),
    },
    {
      error: (issue) =>
        issue.code === 'unrecognized_keys'
          ? `unknown operator ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}; ` +
            `an operator object takes ${OPERATOR_LIST} (to test a nested field, put its dot path in the key)`
          : undefined,
    },
  )
  .superRefine((ops, ctx) => {
    const used = FILTER_OPERATORS.filter((op) => ops[op] !== undefined);
    // An unknown operator was already reported; "needs one" would only repeat it.
    if (used.length === 0 && ctx.issues.length === 0) {
      ctx.addIssue({ code: 'custom', message: `an operator object needs at least one of ${OPERATOR_LIST}` });
    }
    if (ops.$exists === false && used.length > 1) {
      ctx.addIssue({
        code: 'custom',
        message: '"$exists": false cannot be combined with other operators: a missing key matches none of them',
      });
    }
    if (ops.$gt !== undefined && ops.$lt !== undefined && typeof ops.$gt !== typeof ops.$lt) {
      ctx.addIssue({ code: 'custom', message: '$gt and $lt must both be numbers or both be strings' });
    }
  });

const CONDITION_SHAPE = `must be a string, number, boolean, null, or an object of operators (${OPERATOR_LIST})`;

export const FilterConditionSchema = z.union([z.string(), z.number(), z.boolean(), z.null(), OperatorsSchema], {
  // For an object, say what is wrong inside it rather than that no union member fits.
  error: (issue) => {
    if (issue.code !== 'invalid_union' || !isPlainObject(issue.input)) return CONDITION_SHAPE;
    const inner = issue.errors.at(-1)?.[0];
    if (!inner) return CONDITION_SHAPE;
    return inner.path.length > 0 ? `${inner.path.join('.')}: ${inner.message}` : inner.message;
  },
});

const FilterKey = z.string().superRefine((key, ctx) => {
  const problem = pathProblem(key);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

/** Whether `value` nests objects or arrays more than `levels` deep; looks no further than that. */
function nestsDeeperThan(value: unknown, levels: number): boolean {
  if (value === null || typeof value !== 'object') return false;
  if (levels === 0) return true;
  for (const inner of Object.values(value)) if (nestsDeeperThan(inner, levels - 1)) return true;
  return false;
}

/*
 * The limits on a filter as a whole. It runs even when some conditions have problems, so that
 * every bad pattern is reported at once, and stops at the first limit crossed: nothing deep is
 * serialised, and no pattern of an oversized filter is compiled (compiling is the costly part).
 * Each pattern is compiled once, and the running total stops at the first one past the budget.
 */
function checkFilterLimits(filter: unknown, ctx: z.RefinementCtx): void {
  if (!isPlainObject(filter)) return; // the record schema says what it must be
  const keys = Object.keys(filter);
  if (keys.length > MAX_FILTER_KEYS) {
    ctx.addIssue({ code: 'custom', message: `a filter has at most ${MAX_FILTER_KEYS} keys, this one has ${keys.length}` });
    return;
  }
  const deep = keys.filter((key) => nestsDeeperThan(filter[key], MAX_CONDITION_DEPTH));
  if (deep.length > 0) {
    // The shape of a condition allows no such depth, so its own check has usually said so.
    const reported = new Set(ctx.issues.map((issue) => issue.path?.[0]));
    for (const key of deep.filter((k) => !reported.has(k))) {
      ctx.addIssue({ code: 'custom', path: [key], message: `nests deeper than ${MAX_CONDITION_DEPTH} levels` });
    }
    return;
  }
  const bytes = Buffer.byteLength(JSON.stringify(filter));
  if (bytes > MAX_FILTER_BYTES) {
    ctx.addIssue({ code: 'custom', message: `a filter is at most ${MAX_FILTER_BYTES} bytes of JSON, this one is ${bytes}` });
    return;
  }
  let program = 0;
  for (const [key, condition] of Object.entries(filter)) {
    if (!isPlainObject(condition)) continue;
    const source = condition.$regex;
    if (typeof source !== 'string' || source.length > MAX_REGEX_LENGTH) continue;
    const compiled = compilePattern(source);
    if (!compiled.ok) {
      ctx.addIssue({ code: 'custom', path: [key, '$regex'], message: compiled.reason });
      continue;
    }
    program += compiled.pattern.programSize();
    if (program > MAX_REGEX_PROGRAM) {
      ctx.addIssue({
        code: 'custom',
        path: [key, '$regex'],
        message:
          `a filter's $regex patterns compile to at most ${MAX_REGEX_PROGRAM} RE2 instructions together, ` +
          `and these come to ${program} with this one: use smaller repeat counts or fewer patterns`,
      });
      return;
    }
  }
}

export const FilterSchema = z
  .record(FilterKey, FilterConditionSchema, {
    error: (issue) => (issue.code === 'invalid_key' ? issue.issues[0]?.message : undefined),
  })
  .superRefine(checkFilterLimits, { when: () => true });

export type FilterScalar = string | number | boolean | null;
export type FilterOperators = z.output<typeof OperatorsSchema>;
export type FilterCondition = z.output<typeof FilterConditionSchema>;
export type Filter = z.output<typeof FilterSchema>;
export type FilterPredicate = (envelope: object) => boolean;

function pathProblem(key: string): string | null {
  if (key.length === 0) return 'a filter key must be a dot path into the event envelope, such as "data.vendor"';
  if (key.length > MAX_PATH_LENGTH) return `a filter key is at most ${MAX_PATH_LENGTH} characters`;
  const parsed = parseEnvelopePath(key);
  if ('error' in parsed) return parsed.error;
  const [first] = parsed.segments;
  if (first.exact || !ENVELOPE_FIELDS.includes(first.key)) {
    return `"${first.key}" is not a field of the event envelope (one of ${ENVELOPE_FIELDS.join(', ')})`;
  }
  return null;
}

/** Thrown by `compileFilter` for a filter that `FilterSchema` would refuse. */
export class InvalidFilterError extends Error {
  readonly code = 'INVALID_FILTER';
  constructor(key: string, message: string) {
    super(`filter key "${key}": ${message}`);
    this.name = 'InvalidFilterError';
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object';
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return isRecord(value) && !Array.isArray(value);
}

type ValueTest = (value: unknown) => boolean;

function isScalar(value: unknown): value is FilterScalar {
  return value === null || ['string', 'number', 'boolean'].includes(typeof value);
}

function comparison(key: string, op: '$gt' | '$lt', bound: unknown): ValueTest {
  if (typeof bound === 'number') {
    return op === '$gt'
      ? (v) => typeof v === 'number' && v > bound
      : (v) => typeof v === 'number' && v < bound;
  }
  if (typeof bound === 'string') {
    return op === '$gt'
      ? (v) => typeof v === 'string' && v > bound
      : (v) => typeof v === 'string' && v < bound;
  }
  throw new InvalidFilterError(key, `${op} must be a number or a string`);
}

function compileOperator(key: string, op: string, arg: unknown): ValueTest {
  switch (op) {
    case '$exists':
      if (typeof arg !== 'boolean') throw new InvalidFilterError(key, '$exists must be true or false');
      return arg ? (v) => v !== undefined : (v) => v === undefined;
    case '$in': {
      if (!Array.isArray(arg) || !arg.every(isScalar)) {
        throw new InvalidFilterError(key, '$in must be an array of strings, numbers, booleans or nulls');
      }
      const values = new Set<unknown>(arg);
      return (v) => values.has(v);
    }
    case '$ne':
      if (!isScalar(arg)) throw new InvalidFilterError(key, '$ne must be a string, number, boolean or null');
      return (v) => v !== undefined && v !== arg;
    case '$regex': {
      if (typeof arg !== 'string') throw new InvalidFilterError(key, '$regex must be a string');
      const compiled = compilePattern(arg);
      if (!compiled.ok) throw new InvalidFilterError(key, compiled.reason);
      const re = compiled.pattern;
      // test() searches anywhere, as RegExp.test does, and keeps no state between events.
      // A metered fan-out charges the whole match to the request's budget (filter-budget.ts).
      return (v) => typeof v === 'string' && v.length <= MAX_REGEX_SUBJECT_LENGTH && re.test(v);
    }
    case '$gt':
    case '$lt':
      return comparison(key, op, arg);
    default:
      throw new InvalidFilterError(key, `unknown operator ${JSON.stringify(op)}`);
  }
}

function compileCondition(key: string, condition: unknown): ValueTest {
  if (isScalar(condition)) return (v) => v === condition;
  if (!isRecord(condition) || Array.isArray(condition)) {
    throw new InvalidFilterError(key, 'a condition is a scalar or an object of operators');
  }
  const tests = Object.entries(condition)
    .filter(([, arg]) => arg !== undefined)
    .map(([op, arg]) => compileOperator(key, op, arg));
  if (tests.length === 0) throw new InvalidFilterError(key, 'an operator object needs at least one operator');
  if (tests.length === 1) return tests[0];
  return (v) => {
    for (let i = 0; i < tests.length; i++) if (!tests[i](v)) return false;
    return true;
  };
}

/**
 * Compiles a filter once into a predicate over event envelopes (paths split and patterns
 * compiled here, not per event). Expects a filter `FilterSchema` accepted; throws
 * `InvalidFilterError` for a malformed one, and for a pattern the linear-time engine cannot
 * run. The size limits belong at create time and are not checked again.
 */
export function compileFilter(filter: Filter): FilterPredicate {
  const conditions = Object.entries(filter).map(([key, condition]) => ({
    read: compileEnvelopePath(key),
    test: compileCondition(key, condition),
  }));
  if (conditions.length === 0) return () => true;
  if (conditions.length === 1) {
    const [{ read, test }] = conditions;
    return (envelope) => test(read(envelope));
  }
  return (envelope) => {
    for (let i = 0; i < conditions.length; i++) {
      const c = conditions[i];
      if (!c.test(c.read(envelope))) return false;
    }
    return true;
  };
}
