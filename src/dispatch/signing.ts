import { createHmac, randomBytes } from 'node:crypto';

export const SECRET_PREFIX = 'whsec_';
const MIN_KEY_BYTES = 24;
const MAX_KEY_BYTES = 64;
const MAX_CACHED_KEYS = 10_000;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export interface SignatureHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

export interface SignatureInput {
  deliveryId: string;
  /** Unix seconds. */
  timestamp: number;
  /** The raw body as sent; '' when the request has none. */
  body: string | Buffer;
  /** The current secret first, then the previous one while a rotation lasts. */
  secrets: readonly string[];
}

export class InvalidSecretError extends Error {
  readonly code = 'INVALID_SECRET';
  constructor() {
    super(`a signing secret must be ${SECRET_PREFIX} followed by base64 of ${MIN_KEY_BYTES}-${MAX_KEY_BYTES} bytes`);
    this.name = 'InvalidSecretError';
  }
}

export function generateSecret(): string {
  return SECRET_PREFIX + randomBytes(32).toString('base64');
}

function decodeSecret(secret: string): Buffer | null {
  if (typeof secret !== 'string' || !secret.startsWith(SECRET_PREFIX)) return null;
  const encoded = secret.slice(SECRET_PREFIX.length);
  // Buffer.from(…, 'base64') accepts almost anything; receivers' decoders are strict.
  if (encoded.length === 0 || !BASE64.test(encoded)) return null;
  const key = Buffer.from(encoded, 'base64');
  return key.length >= MIN_KEY_BYTES && key.length <= MAX_KEY_BYTES ? key : null;
}

export function isValidSecret(secret: unknown): secret is string {
  return typeof secret === 'string' && decodeSecret(secret) !== null;
}

const keyCache = new Map<string, Buffer>();

function signingKey(secret: string): Buffer {
  let key = keyCache.get(secret);
  if (key) return key;
  key = decodeSecret(secret) ?? undefined;
  if (!key) throw new InvalidSecretError();
  // Bounded so retired secrets cannot grow the cache forever; evicts the oldest entry.
  if (keyCache.size >= MAX_CACHED_KEYS) keyCache.delete(keyCache.keys().next().value as string);
  keyCache.set(secret, key);
  return key;
}

export function signatureHeaders({ deliveryId, timestamp, body, secrets }: SignatureInput): SignatureHeaders {
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
    throw new RangeError(`webhook timestamp must be whole unix seconds, got ${timestamp}`);
  }
  if (secrets.length === 0) throw new InvalidSecretError();
  const prefix = `${deliveryId}.${timestamp}.`;
  const signatures: string[] = [];
  for (const secret of secrets) {
    const hmac = createHmac('sha256', signingKey(secret)).update(prefix);
    if (body.length > 0) hmac.update(body);
    signatures.push('v1,' + hmac.digest('base64'));
  }
  return {
    'webhook-id': deliveryId,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': signatures.join(' '),
  };
}
