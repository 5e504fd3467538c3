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
 * JSON.parse, throwing ProtoKeyError where an object has a key named `__proto__`. Such a key is
 * in the text either as written or with an escape (`\u005f_proto__`): text with neither is
 * parsed without the reviver, which costs about as much again as the parse.
 */
export function parseJsonKeepingKeys(text: string): unknown {
  if (!text.includes('__proto__') && !text.includes('\\u')) return JSON.parse(text);
  return JSON.parse(text, refuseProtoKeys);
}
