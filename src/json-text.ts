import { jsonShape, type JsonShape } from './json-depth.js';

/*
 * JSON text that cannot be stored as it was sent. JSON.parse takes it without a word, but what
 * the relay would keep is not what the client said, so wherever JSON comes in (a request body,
 * a Mistral notification, a RabbitMQ message) it is refused:
 * - a key named `__proto__`: parsed as a key like any other, it vanishes as soon as the value is
 *   copied into a plain object (the relay's schemas do), and a filter of such a key becomes one
 *   that matches everything;
 * - a number beyond what a double holds (`1e309`): parsed as Infinity, it is stored as null.
 */
export class UnstorableJsonError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnstorableJsonError';
  }
}

function refuseUnstorable(this: unknown, key: string, value: unknown): unknown {
  if (key === '__proto__') throw new UnstorableJsonError('a key named __proto__ cannot be stored');
  if (typeof value === 'number' && !Number.isFinite(value)) {
    const where = Array.isArray(this) ? `item ${key} of an array` : key === '' ? 'the value' : JSON.stringify(key);
    throw new UnstorableJsonError(`${where} is a number too large to store (beyond ±1.8e308)`);
  }
  return value;
}

/**
 * Whether JSON text may hold what refuseUnstorable refuses: `__proto__` as written or with an
 * escape (`\u005f_proto__`), or a number that may be too large (see jsonShape). Text with none
 * of them (nearly all) is parsed without the reviver, which makes a parse about six times as
 * costly (a 1,000-event batch: 0.7 against 4.1 ms).
 */
const mayBeUnstorable = (text: string | Buffer, shape: JsonShape = jsonShape(text)): boolean =>
  shape.largeNumber || text.includes('__proto__') || text.includes('\\u');

/**
 * JSON.parse, throwing UnstorableJsonError at what cannot be stored as sent (see above).
 * `shape` is the text's, when the caller has walked it already.
 */
export function parseStorableJson(text: string, shape?: JsonShape): unknown {
  return mayBeUnstorable(text, shape) ? JSON.parse(text, refuseUnstorable) : JSON.parse(text);
}

/**
 * Throws UnstorableJsonError when the JSON text holds what cannot be stored as sent; text that
 * is not JSON is left for the parser that follows to report. `shape` is the text's, when the
 * caller has walked it already.
 */
export function assertStorableJson(text: Buffer, shape?: JsonShape): void {
  if (!mayBeUnstorable(text, shape)) return;
  const decoded = text.toString('utf8');
  try {
    JSON.parse(decoded.charCodeAt(0) === 0xfeff ? decoded.slice(1) : decoded, refuseUnstorable);
  } catch (err) {
    if (err instanceof UnstorableJsonError) throw err;
  }
}
