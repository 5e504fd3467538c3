import { z } from 'zod';
import safeRegex from 'safe-regex2';
import { EventEnvelope } from '../records/event.js';

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
 */

export const FILTER_OPERATORS = ['$in', '$ne', '$regex', '$exists', '$gt', '$lt'] as const;
export type FilterOperator = (typeof FILTER_OPERATORS)[number];

const MAX_CONDITIONS = 50;
const MAX_PATH_LENGTH = 256;
const MAX_IN_VALUES = 1000;
const MAX_REGEX_LENGTH = 1000;

const ENVELOPE_FIELDS: readonly string[] = Object.keys(EventEnvelope.shape);
const OPERATOR_LIST = FILTER_OPERATORS.join(', ');

const Scalar = z.union([z.string(), z.number(), z.boolean(), z.null()], {
  error: 'must be a string, number, boolean or null',
});
const Comparable = z.union([z.number(), z.string()], { error: 'must be a number or a string' });

const RegexSource = z
  .string()
  .max(MAX_REGEX_LENGTH)
  .superRefine((source, ctx) => {
    try {
      new RegExp(source);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return;
    }
    if (!safeRegex(source)) {
      ctx.addIssue({
        code: 'custom',
        message:
          'this pattern may take exponential time on some inputs (nested quantifiers such as "(a+)+", ' +
          'more than 25 quantifiers, or lookbehind, which the checker cannot analyse); ' +
          'rewrite it without nested repetition',
      });
    }
  });

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

export const FilterSchema = z
  .record(FilterKey, FilterConditionSchema, {
    error: (issue) => (issue.code === 'invalid_key' ? issue.issues[0]?.message : undefined),
  })
  .refine((f) => Object.keys(f).length <= MAX_CONDITIONS, `a filter has at most ${MAX_CONDITIONS} keys`);

export type FilterScalar = string | number | boolean | null;
export type FilterOperators = z.output<typeof OperatorsSchema>;
export type FilterCondition = z.output<typeof FilterConditionSchema>;
export type Filter = z.output<typeof FilterSchema>;
export type FilterPredicate = (envelope: object) => boolean;

function pathProblem(key: string): string | null {
  if (key.length === 0) return 'a filter key must be a dot path into the event envelope, such as "data.vendor"';
  if (key.length > MAX_PATH_LENGTH) return `a filter key is at most ${MAX_PATH_LENGTH} characters`;
  const segments = key.split('.');
  if (segments.some((s) => s.length === 0)) return `"${key}" has an empty path segment`;
  if (!ENVELOPE_FIELDS.includes(segments[0])) {
    return `"${segments[0]}" is not a field of the event envelope (one of ${ENVELOPE_FIELDS.join(', ')})`;
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

type PathReader = (root: unknown) => unknown;

/*
 * Reads a dot path, or undefined when it is missing. Own properties only, so `constructor` or
 * `__proto__` never reach the prototype. Payloads relayed from elsewhere can have keys that
 * themselves contain dots (oslo versioned objects: "nova_object.data"), so when a segment is
 * missing the reader tries it joined with the following ones, exact key first, without
 * backtracking.
 */
function compilePath(path: string | readonly string[]): PathReader {
  const segments = typeof path === 'string' ? path.split('.') : [...path];
  if (segments.length === 1) {
    const key = segments[0];
    return (root) => (isRecord(root) && Object.hasOwn(root, key) ? root[key] : undefined);
  }
  const n = segments.length;
  // spans[i][j - i] is the key made of segments i..j.
  const spans = segments.map((_, i) => segments.slice(i).map((_, k) => segments.slice(i, i + k + 1).join('.')));
  return (root) => {
    let current = root;
    let i = 0;
    while (i < n) {
      if (!isRecord(current)) return undefined;
      const candidates = spans[i];
      let k = 0;
      while (k < candidates.length && !Object.hasOwn(current, candidates[k])) k++;
      if (k === candidates.length) return undefined;
      current = current[candidates[k]];
      i += k + 1;
    }
    return current;
  };
}

/** The value at a dot path (or a list of segments) of `obj`; undefined when it is missing. */
export function getPath(obj: unknown, path: string | readonly string[]): unknown {
  return compilePath(path)(obj);
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
      let re: RegExp;
      try {
        re = new RegExp(arg);
      } catch (err) {
        throw new InvalidFilterError(key, (err as Error).message);
      }
      // No g or y flag, so test() keeps no lastIndex state between events.
      return (v) => typeof v === 'string' && re.test(v);
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
 * Compiles a filter once into a predicate over event envelopes (paths split and regexes built
 * here, not per event). Expects a filter `FilterSchema` accepted; throws `InvalidFilterError`
 * for a malformed one. It does not repeat the ReDoS check, which belongs at create time.
 */
export function compileFilter(filter: Filter): FilterPredicate {
  const conditions = Object.entries(filter).map(([key, condition]) => ({
    read: compilePath(key),
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
