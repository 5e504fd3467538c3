import { AMQP_FORMATS, AmqpCallbackSchema } from '../records/callback.js';
import type { FieldProblem } from './contract.js';

/*
 * The `callback` of an amqp listener (DESIGN.md, "AMQP transport"): its shape lives with the
 * listener record (records/callback.ts); here, the field problems the transport reports for it.
 */

export { AMQP_FORMATS, AmqpCallbackSchema, DEFAULT_AMQP_EXCHANGE, type AmqpCallback, type AmqpCallbackInput } from '../records/callback.js';
export { AMQP_MASK, maskAmqpUrl, parseBrokerUrl, type BrokerAddress } from '../records/amqp-url.js';

// The relay itself checks these shared fields for every transport.
const SHARED_FIELDS = new Set(['transport', 'timeout_ms', 'headers']);

/** Problems with an amqp callback's own fields, named `callback.<field>`. */
export function validateAmqpCallback(callback: Record<string, unknown>): FieldProblem[] {
  const parsed = AmqpCallbackSchema.safeParse({ ...callback, transport: 'amqp' });
  if (parsed.success) return [];
  return parsed.error.issues.flatMap((issue): FieldProblem[] => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ field: `callback.${key}`, message: `not a field of an amqp callback` }));
    }
    const path = issue.path.map(String);
    if (SHARED_FIELDS.has(path[0])) return [];
    const message =
      path[0] === 'format' ? `must be one of ${AMQP_FORMATS.join(', ')} for the amqp transport` : issue.message;
    return [{ field: ['callback', ...path].join('.'), message }];
  });
}

