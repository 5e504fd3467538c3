/*
 * Stable codes for what can go wrong between the relay and a broker, recorded as an attempt's
 * `error` (DESIGN.md, "AMQP transport"):
 * - `NACK`: the broker refused the message (basic.nack).
 * - `UNROUTABLE`: no queue is bound for the routing key; the broker returned the message.
 * - `TIMEOUT`: no confirm (or no connection) before the attempt's deadline.
 * - `ECONNREFUSED`, `ECONNRESET`, `ENOTFOUND`, `EAI_AGAIN`, `ETIMEDOUT` (connect), `EHOSTUNREACH`,
 *   … as the OS reported them; `EADDRBLOCKED` when the network guard refused the address.
 * - AMQP replies by their names: `ACCESS_REFUSED` (login or permissions), `NOT_ALLOWED` (the
 *   vhost does not exist or the user may not use it), `NOT_FOUND`, `PRECONDITION_FAILED`,
 *   `RESOURCE_LOCKED`, `CONNECTION_FORCED` (the broker closed the connection), …
 * - `TLS_ERROR`: handshake or certificate failure.
 * - `SOCKET_ERROR`: the connection dropped; `HEARTBEAT_TIMEOUT`: the broker went silent.
 * - `CHANNEL_CLOSED`: the channel closed under the message for a reason not known.
 * - `INVALID_REQUEST`: the message could not be encoded (e.g. headers over 64 KiB).
 * - `BAD_URL`: not an amqp or amqps URL; `TRANSPORT_CLOSED`: the relay is shutting down.
 * - `AMQP_ERROR`: anything else (the message says what).
 */

export interface AmqpFailure {
  error: string;
  message: string;
}

const REPLY_NAMES: Record<number, string> = {
  311: 'CONTENT_TOO_LARGE',
  312: 'NO_ROUTE',
  313: 'NO_CONSUMERS',
  320: 'CONNECTION_FORCED',
  402: 'INVALID_PATH',
  403: 'ACCESS_REFUSED',
  404: 'NOT_FOUND',
  405: 'RESOURCE_LOCKED',
  406: 'PRECONDITION_FAILED',
  501: 'FRAME_ERROR',
  502: 'SYNTAX_ERROR',
  503: 'COMMAND_INVALID',
  504: 'CHANNEL_ERROR',
  505: 'UNEXPECTED_FRAME',
  506: 'RESOURCE_ERROR',
  530: 'NOT_ALLOWED',
  540: 'NOT_IMPLEMENTED',
  541: 'INTERNAL_ERROR',
};

const TLS_CODES = new Set([
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

// amqplib writes a broker's close as `403 (ACCESS-REFUSED) with message "…"`.
const REPLY_IN_TEXT = /\b(\d{3}) \(([A-Z]+(?:-[A-Z]+)*)\)/;

/** What an error from amqplib, the socket or the guard means, as a stable code and a line of text. */
export function classifyAmqpError(err: unknown): AmqpFailure {
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') {
    if (TLS_CODES.has(code) || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_')) return { error: 'TLS_ERROR', message };
    if (/^E[A-Z0-9_]+$/.test(code) && !code.startsWith('ERR_')) return { error: code, message };
  }
  const reply = REPLY_IN_TEXT.exec(message);
  if (reply) return { error: reply[2].replaceAll('-', '_'), message };
  if (typeof code === 'number' && REPLY_NAMES[code]) return { error: REPLY_NAMES[code], message };
  if (/^connect ETIMEDOUT\b/.test(message)) return { error: 'ETIMEDOUT', message };
  // The broker closes the handshake at connection.open for a missing vhost or one the user may not use.
  if (message.startsWith('Expected ConnectionOpenOk')) {
    return { error: 'NOT_ALLOWED', message: 'the broker refused the vhost (it does not exist, or the user may not use it)' };
  }
  if (message === 'Heartbeat timeout') return { error: 'HEARTBEAT_TIMEOUT', message };
  if (/^Socket closed abruptly|^Unexpected close/.test(message)) return { error: 'SOCKET_ERROR', message };
  if (/^(channel|connection) closed/i.test(message)) return { error: 'CHANNEL_CLOSED', message };
  if (err instanceof RangeError) return { error: 'INVALID_REQUEST', message };
  return { error: 'AMQP_ERROR', message };
}

/** `text` with every occurrence of `secret` shown as `***` (secrets shorter than 4 characters are left: they would mangle the text). */
export function scrubSecret(text: string, secret: string | undefined): string {
  if (secret === undefined || secret.length < 4) return text;
  return text.split(secret).join('***');
}
