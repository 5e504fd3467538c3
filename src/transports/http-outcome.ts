import { type IncomingHttpHeaders, STATUS_CODES } from 'node:http';
import { isRetryAfterStatus, parseRetryAfter } from '../dispatch/retry-policy.js';
import type { AttemptErrorCode, AttemptOutcome } from './transport.js';

// What an HTTP answer or failure means for an attempt: status judgement, the response
// excerpt, Retry-After, and the stable error codes of AttemptOutcome.

export const RESPONSE_EXCERPT_BYTES = 4096;
/**
 * Past the excerpt, up to 64 KiB more is read and dropped, which lets a small answer leave its
 * socket in the pool; a body longer than this is cut off, which closes the socket.
 */
export const BODY_READ_LIMIT_BYTES = RESPONSE_EXCERPT_BYTES + 64 * 1024;

export class TransportError extends Error {
  constructor(
    readonly code: AttemptErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'TransportError';
  }
}

export function parseHttpUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new TransportError('BAD_URL', `not a valid URL: ${truncate(text, 200)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TransportError('BAD_URL', `not an http or https URL: ${url.protocol}`);
  }
  return url;
}

/** The first RESPONSE_EXCERPT_BYTES (+1, to see where a character is cut) of a body, as it arrives. */
export class BodyHead {
  private readonly chunks: Buffer[] = [];
  private size = 0;

  add(chunk: Buffer): void {
    if (this.size > RESPONSE_EXCERPT_BYTES) return;
    const part = chunk.subarray(0, RESPONSE_EXCERPT_BYTES + 1 - this.size);
    this.chunks.push(part);
    this.size += part.length;
  }

  bytes(): Buffer {
    // Most answers come in one chunk: no copy then.
    return this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.size);
  }
}

/** The longest prefix of at most `max` bytes that does not end inside a UTF-8 sequence. */
function utf8Prefix(bytes: Buffer, max: number): Buffer {
  if (bytes.length <= max) return bytes;
  let end = max;
  for (let i = 0; i < 3 && end > 0 && (bytes[end] & 0xc0) === 0x80; i++) end--;
  return bytes.subarray(0, end);
}

/** At most `max` bytes of UTF-8 text from the start of `bytes`, never half a character. */
export function utf8Excerpt(bytes: Buffer, max = RESPONSE_EXCERPT_BYTES): string {
  const text = utf8Prefix(bytes, max).toString('utf8');
  // Invalid bytes decode to U+FFFD (three bytes each), which can push the text past the limit.
  return Buffer.byteLength(text) <= max ? text : utf8Prefix(Buffer.from(text, 'utf8'), max).toString('utf8');
}

export function statusLine(status: number): string {
  const reason = STATUS_CODES[status];
  return reason ? `HTTP ${status} ${reason}` : `HTTP ${status}`;
}

export function judgeStatus(status: number, headers: IncomingHttpHeaders): Partial<AttemptOutcome> {
  if (status >= 200 && status < 300) return { ok: true };
  if (status >= 300 && status < 400) {
    const location = headerValue(headers.location);
    const target = location ? ` to ${truncate(location, 200)}` : '';
    return { error: 'REDIRECT', message: `${statusLine(status)}${target} (redirects are not followed)` };
  }
  return { error: 'HTTP_ERROR', message: statusLine(status) };
}

export function retryAfterOf(status: number, headers: IncomingHttpHeaders): number | null {
  if (!isRetryAfterStatus(status)) return null;
  return parseRetryAfter(headerValue(headers['retry-after']), Date.now());
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}…`;
}

export function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A connection that broke before any answer: on a stale pooled socket, worth one immediate retry. */
export function isConnectionHiccup(err: unknown): boolean {
  const code = errorCode(err);
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_SOCKET';
}

const TIMEOUT_CODES = new Set(['TIMEOUT', 'ETIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

export function isTimeoutError(err: unknown): boolean {
  const code = errorCode(err);
  return code !== undefined && TIMEOUT_CODES.has(code);
}

// OpenSSL's certificate verification results, as Node reports them in `code`.
const TLS_VERIFY_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'HOSTNAME_MISMATCH',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'PATH_LENGTH_EXCEEDED',
  'UNTRUSTED_CERT',
  'REJECTED_CERT',
]);

/** Maps a failure without a (complete) answer to its stable code; timeouts are handled before. */
export function classifyError(err: unknown): { error: AttemptErrorCode; message: string } {
  const code = errorCode(err);
  const message = errorMessage(err);
  if (err instanceof TransportError) return { error: err.code, message };
  if (code === 'EADDRBLOCKED') return { error: 'EADDRBLOCKED', message: `address blocked: ${message}` };
  if (code === undefined) return { error: 'REQUEST_ERROR', message };
  if (
    code.startsWith('ERR_TLS_') ||
    code.startsWith('ERR_SSL_') ||
    code.startsWith('CERT_') ||
    code.startsWith('ERR_OSSL_') ||
    code === 'EPROTO' ||
    TLS_VERIFY_CODES.has(code)
  ) {
    return { error: 'TLS_ERROR', message: `TLS: ${message}` };
  }
  if (code === 'UND_ERR_SOCKET') return { error: 'SOCKET_ERROR', message: `connection closed before a complete response (${message})` };
  if (code === 'UND_ERR_CLOSED' || code === 'UND_ERR_DESTROYED') return { error: 'TRANSPORT_CLOSED', message };
  if (code.startsWith('HPE_') || code === 'UND_ERR_HEADERS_OVERFLOW' || code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') {
    return { error: 'BAD_RESPONSE', message: `invalid HTTP response: ${message}` };
  }
  if (code === 'UND_ERR_INVALID_ARG' || code === 'UND_ERR_NOT_SUPPORTED' || code === 'ERR_INVALID_URL') {
    return { error: 'INVALID_REQUEST', message };
  }
  // System errors (ECONNREFUSED, ECONNRESET, ENOTFOUND, EAI_AGAIN, EHOSTUNREACH, …) keep their own code.
  if (/^E[A-Z_]+$/.test(code)) return { error: code, message };
  return { error: 'REQUEST_ERROR', message: `${code}: ${message}` };
}

