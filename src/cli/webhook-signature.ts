import { createHmac, timingSafeEqual } from 'node:crypto';

/*
 * Standard Webhooks verification as a receiver does it, written apart from the relay's signer
 * so that checking a delivery does not repeat the signer's own mistakes. It answers why a
 * signature fails (the `standardwebhooks` library only throws), and its timestamp tolerance
 * can be changed or turned off for old captures.
 */

/** The Standard Webhooks default: a timestamp more than 5 minutes off is refused. */
export const DEFAULT_TOLERANCE_SECONDS = 300;

export type VerifyFailure =
  | 'missing-headers'
  | 'bad-secret'
  | 'bad-timestamp'
  | 'timestamp-too-old'
  | 'timestamp-too-new'
  | 'no-matching-signature';

export type Verification = { valid: true } | { valid: false; reason: VerifyFailure; message: string };

export interface VerifyInput {
  /** A `whsec_…` secret (the bare base64 is taken too, as the library does). */
  secret: string;
  /** Header names in lower case. */
  headers: Record<string, string | undefined>;
  body: Buffer | string;
  nowSeconds: number;
  /** Null: the timestamp's age is not checked (only its signature). */
  toleranceSeconds: number | null;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The HMAC key of a secret, or null when it is not base64. */
export function secretKey(secret: string): Buffer | null {
  const encoded = secret.trim().replace(/^whsec_/, '');
  if (!encoded || !BASE64.test(encoded)) return null;
  return Buffer.from(encoded, 'base64');
}

const fail = (reason: VerifyFailure, message: string): Verification => ({ valid: false, reason, message });

export function verifyWebhook({ secret, headers, body, nowSeconds, toleranceSeconds }: VerifyInput): Verification {
  const id = headers['webhook-id'];
  const timestamp = headers['webhook-timestamp'];
  const signatures = headers['webhook-signature'];
  const missing = (['webhook-id', 'webhook-timestamp', 'webhook-signature'] as const).filter((h) => !headers[h]);
  if (!id || !timestamp || !signatures) return fail('missing-headers', `no ${missing.join(', ')} header: not a Standard Webhooks request`);
  const key = secretKey(secret);
  if (!key) return fail('bad-secret', 'the secret is not whsec_ followed by base64');
  if (!/^\d+$/.test(timestamp.trim())) return fail('bad-timestamp', `webhook-timestamp "${timestamp}" is not unix seconds`);
  const sent = Number(timestamp.trim());
  if (toleranceSeconds !== null) {
    if (nowSeconds - sent > toleranceSeconds) {
      return fail('timestamp-too-old', `the timestamp is ${nowSeconds - sent} s old, more than the ${toleranceSeconds} s tolerance`);
    }
    if (sent - nowSeconds > toleranceSeconds) {
      return fail('timestamp-too-new', `the timestamp is ${sent - nowSeconds} s in the future, more than the ${toleranceSeconds} s tolerance: is a clock off?`);
    }
  }
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.`).update(body).digest();
  for (const entry of signatures.trim().split(/\s+/)) {
    const [version, value] = entry.split(',', 2);
    if (version !== 'v1' || value === undefined) continue;
    const given = Buffer.from(value, 'base64');
    if (given.length === expected.length && timingSafeEqual(given, expected)) return { valid: true };
  }
  return fail(
    'no-matching-signature',
    'no v1 signature matches this secret over the id, timestamp and body: a wrong (or rotated) secret, or a changed body',
  );
}
