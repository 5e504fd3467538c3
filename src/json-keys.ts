/**
 * JSON text holding a key named `__proto__`. JSON.parse keeps it as a key like any other, but
 * the relay's schemas (and any plain object it is copied into) cannot: it would vanish without
 * a word, and a filter of such a key would become one that matches everything. So wherever
 * JSON comes in (a request body, a Mistral notification, a RabbitMQ message) it is refused.
 */
export class ProtoKeyError extends Error {
  constructor() {
    super('a key named __proto__ cannot be stored');
    this.name = 'ProtoKeyError';
  }
}

/** A JSON.parse reviver that throws ProtoKeyError at a key named `__proto__`. */
export const refuseProtoKeys = (key: string, value: unknown): unknown => {
  if (key === '__proto__') throw new ProtoKeyError();
  return value;
};

/**
 * Whether JSON text can hold a key named `__proto__`: it is there either as written or with
 * an escape (`\u005f_proto__`). Text with neither is parsed without the reviver, which makes a
 * parse about six times as costly (a 1,000-event batch: 0.7 against 4.1 ms).
 */
const mayHoldProtoKey = (text: string | Buffer): boolean => text.includes('__proto__') || text.includes('\\u');

/** JSON.parse, throwing ProtoKeyError where an object has a key named `__proto__`. */
export function parseJsonKeepingKeys(text: string): unknown {
  return mayHoldProtoKey(text) ? JSON.parse(text, refuseProtoKeys) : JSON.parse(text);
}

/**
 * Throws ProtoKeyError when the JSON text has a key named `__proto__`; text that is not JSON is
 * left for the parser that follows to report.
 */
export function assertNoProtoKey(text: Buffer): void {
  if (!mayHoldProtoKey(text)) return;
  const decoded = text.toString('utf8');
  try {
    JSON.parse(decoded.charCodeAt(0) === 0xfeff ? decoded.slice(1) : decoded, refuseProtoKeys);
  } catch (err) {
    if (err instanceof ProtoKeyError) throw err;
  }
}
