import diagnosticsChannel from 'node:diagnostics_channel';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Agent, type Dispatcher } from 'undici';
import type { NetworkGuard } from '../net/network-guard.js';
import { isRetryAfterStatus, parseRetryAfter } from '../dispatch/retry-policy.js';
import type { AttemptErrorCode, AttemptOutcome, OutboundRequest, Transport } from './transport.js';
import { createOriginSlots } from './origin-slots.js';

const NO_ANSWER: AttemptOutcome = {
  ok: false,
  statusCode: null,
  durationMs: 0,
  error: null,
  message: null,
  responseExcerpt: null,
  retryAfterMs: null,
  gone: false,
};

export const RESPONSE_EXCERPT_BYTES = 4096;
/** Past the excerpt, up to this much more is read and dropped so the socket can be reused; beyond, it is closed. */
const DISCARD_LIMIT_BYTES = 64 * 1024;
/** A stale-connection retry needs at least this much of the attempt's time left. */
const MIN_RETRY_BUDGET_MS = 50;

export interface HttpTransportOptions {
  guard: NetworkGuard;
  /** Sockets kept per origin (scheme, host, port). */
  connectionsPerOrigin?: number;
  /** Sent as `user-agent` unless the request has its own. */
  userAgent?: string;
}

/** What one try of a request went through, seen from inside undici. */
interface TryProbe {
  reusedSocket: boolean;
  responseStarted: boolean;
}

class DeadlineError extends Error {
  readonly code = 'TIMEOUT';
  constructor(timeoutMs: number) {
    super(`no answer within ${timeoutMs} ms`);
    this.name = 'DeadlineError';
  }
}

class TransportError extends Error {
  constructor(
    readonly code: AttemptErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'TransportError';
  }
}

/** Passes every callback through, noting when the request goes onto a socket and when the answer's first byte arrives. */
class ProbeHandler implements Dispatcher.DispatchHandler {
  constructor(
    private readonly inner: Dispatcher.DispatchHandler,
    private readonly probe: TryProbe,
    private readonly onWrite: (probe: TryProbe) => void,
  ) {}

  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.onWrite(this.probe);
    this.inner.onRequestStart?.(controller, context);
  }

  onResponseStarted(): void {
    this.probe.responseStarted = true;
    this.inner.onResponseStarted?.();
  }

  onRequestUpgrade(...args: Parameters<NonNullable<Dispatcher.DispatchHandler['onRequestUpgrade']>>): void {
    this.inner.onRequestUpgrade?.(...args);
  }

  onResponseStart(...args: Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseStart']>>): void {
    this.inner.onResponseStart?.(...args);
  }

  onResponseData(...args: Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseData']>>): void {
    this.inner.onResponseData?.(...args);
  }

  onResponseEnd(...args: Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseEnd']>>): void {
    this.inner.onResponseEnd?.(...args);
  }

  onResponseError(...args: Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseError']>>): void {
    this.inner.onResponseError?.(...args);
  }
}

export function createHttpTransport({ guard, connectionsPerOrigin = 32, userAgent }: HttpTransportOptions): Transport {
  const agent = new Agent({
    connections: connectionsPerOrigin,
    pipelining: 1,
    // The guard's lookup runs on the very addresses the socket connects to: no DNS rebinding.
    connect: { lookup: guard.lookup },
  });

  /*
   * Retrying a reset is only safe on a pooled keep-alive socket the receiver closed while it
   * sat idle: the request most likely never reached its handler. A reset on a fresh socket, or
   * once any answer byte came, means the receiver may have acted on it: that stays a failed attempt.
   * undici does not say which socket a request went out on, so: the handler marks its probe
   * `writing` in onRequestStart, and undici then publishes `sendHeaders` with the socket
   * synchronously in the same call (writeH1), where the probe learns whether that socket has
   * carried a request before. With pipelining 1 a socket carries one request at a time.
   */
  const requestsPerSocket = new WeakMap<Socket, number>();
  let writing: TryProbe | null = null;
  const onSendHeaders = (message: unknown): void => {
    const probe = writing;
    if (probe === null) return;
    writing = null;
    const { socket } = message as { socket: Socket };
    const sent = requestsPerSocket.get(socket) ?? 0;
    probe.reusedSocket = sent > 0;
    requestsPerSocket.set(socket, sent + 1);
  };
  diagnosticsChannel.subscribe('undici:client:sendHeaders', onSendHeaders);

  const probes = new WeakMap<object, TryProbe>();
  const dispatcher = agent.compose((dispatch) => (opts, handler) => {
    const probe = probes.get(opts);
    if (!probe) return dispatch(opts, handler);
    return dispatch(opts, new ProbeHandler(handler, probe, (p) => (writing = p)));
  });

  async function exchange(
    options: Dispatcher.RequestOptions,
    deadline: number,
    signal: AbortSignal,
  ): Promise<Dispatcher.ResponseData> {
    const tryOnce = () => {
      const probe: TryProbe = { reusedSocket: false, responseStarted: false };
      const remaining = Math.max(1, Math.ceil(deadline - performance.now()));
      const tryOptions = { ...options, headersTimeout: remaining, bodyTimeout: remaining };
      probes.set(tryOptions, probe);
      return { probe, response: dispatcher.request(tryOptions) };
    };
    const first = tryOnce();
    try {
      return await first.response;
    } catch (error) {
      const retry =
        isConnectionHiccup(error) &&
        first.probe.reusedSocket &&
        !first.probe.responseStarted &&
        !signal.aborted &&
        deadline - performance.now() >= MIN_RETRY_BUDGET_MS;
      if (!retry) throw error;
      return tryOnce().response;
    }
  }

  const slots = createOriginSlots(connectionsPerOrigin);

  async function send(req: OutboundRequest): Promise<AttemptOutcome> {
    let url: URL;
    try {
      url = parseHttpUrl(req.url);
      guard.assertLiteralHostAllowed(url);
    } catch (err) {
      return { ...NO_ANSWER, ...classifyError(err) };
    }
    const release = await slots.acquire(url.origin);
    if (release === null) return { ...NO_ANSWER, error: 'TRANSPORT_CLOSED', message: 'the transport was closed' };
    try {
      return await attempt(url, req);
    } finally {
      release();
    }
  }

  async function attempt(url: URL, req: OutboundRequest): Promise<AttemptOutcome> {
    const started = performance.now();
    const timeoutMs = req.timeoutMs;
    const deadline = started + timeoutMs;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new DeadlineError(timeoutMs)), timeoutMs);
    let response: Dispatcher.ResponseData | null = null;
    let head: BodyHead | null = null;
    const finish = (fields: Partial<AttemptOutcome>): AttemptOutcome => ({
      ok: false,
      statusCode: response?.statusCode ?? null,
      durationMs: Math.round(performance.now() - started),
      error: null,
      message: null,
      responseExcerpt: head === null ? null : utf8Excerpt(head.bytes()),
      retryAfterMs: response ? retryAfterOf(response) : null,
      gone: response?.statusCode === 410,
      ...fields,
    });

    try {
      const method = req.method.toUpperCase();
      const headers = { ...req.headers };
      if (userAgent !== undefined && !Object.keys(headers).some((k) => k.toLowerCase() === 'user-agent')) {
        headers['user-agent'] = userAgent;
      }
      response = await exchange(
        {
          origin: url.origin,
          path: url.pathname + url.search,
          method: method as Dispatcher.HttpMethod,
          headers,
          body: req.body === '' && (method === 'GET' || method === 'DELETE' || method === 'HEAD') ? undefined : req.body,
          signal: controller.signal,
        },
        deadline,
        controller.signal,
      );
      head = new BodyHead();
      await readBody(response.body, head);
      return finish(judgeStatus(response));
    } catch (err) {
      if (response !== null) response.body.destroy();
      if (controller.signal.aborted) {
        const text =
          response === null
            ? `no answer within ${timeoutMs} ms`
            : `${statusLine(response.statusCode)}, but the body was not complete within ${timeoutMs} ms`;
        return finish({ error: 'TIMEOUT', message: text });
      }
      // undici's own limits (connect timeout, headers/body timeouts) say which one ran out.
      if (isTimeoutError(err)) return finish({ error: 'TIMEOUT', message: errorMessage(err) });
      return finish(classifyError(err));
    } finally {
      clearTimeout(timer);
    }
  }

  let closing: Promise<void> | null = null;
  function close(): Promise<void> {
    // Called once the dispatcher has waited out its grace and given back what is unfinished:
    // whatever is still in flight is abandoned, not waited for.
    slots.close();
    closing ??= agent.destroy().finally(() => {
      diagnosticsChannel.unsubscribe('undici:client:sendHeaders', onSendHeaders);
    });
    return closing;
  }

  return { send, close };
}

function parseHttpUrl(text: string): URL {
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
class BodyHead {
  private readonly chunks: Buffer[] = [];
  private size = 0;

  add(chunk: Buffer): void {
    if (this.size > RESPONSE_EXCERPT_BYTES) return;
    const part = chunk.subarray(0, RESPONSE_EXCERPT_BYTES + 1 - this.size);
    this.chunks.push(part);
    this.size += part.length;
  }

  bytes(): Buffer {
    return Buffer.concat(this.chunks, this.size);
  }
}

/**
 * Reads the body into `head`. Past the head, up to DISCARD_LIMIT_BYTES more is read and
 * dropped, which lets a small answer leave its socket in the pool; a larger one is cut off,
 * which closes the socket.
 */
function readBody(body: Dispatcher.ResponseData['body'], head: BodyHead): Promise<void> {
  return new Promise((resolve, reject) => {
    let total = 0;
    body.on('data', (chunk: Buffer) => {
      head.add(chunk);
      total += chunk.length;
      if (total > RESPONSE_EXCERPT_BYTES + DISCARD_LIMIT_BYTES) {
        body.on('error', () => {});
        body.destroy();
        resolve();
      }
    });
    body.once('end', () => resolve());
    body.once('error', reject);
  });
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

function statusLine(status: number): string {
  const reason = STATUS_CODES[status];
  return reason ? `HTTP ${status} ${reason}` : `HTTP ${status}`;
}

function judgeStatus(response: Dispatcher.ResponseData): Partial<AttemptOutcome> {
  const status = response.statusCode;
  if (status >= 200 && status < 300) return { ok: true };
  if (status >= 300 && status < 400) {
    const location = headerValue(response.headers.location);
    const target = location ? ` to ${truncate(location, 200)}` : '';
    return { error: 'REDIRECT', message: `${statusLine(status)}${target} (redirects are not followed)` };
  }
  return { error: 'HTTP_ERROR', message: statusLine(status) };
}

function retryAfterOf(response: Dispatcher.ResponseData): number | null {
  if (!isRetryAfterStatus(response.statusCode)) return null;
  return parseRetryAfter(headerValue(response.headers['retry-after']), Date.now());
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}…`;
}

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A connection that broke before any answer: on a stale pooled socket, worth one immediate retry. */
function isConnectionHiccup(err: unknown): boolean {
  const code = errorCode(err);
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_SOCKET';
}

const TIMEOUT_CODES = new Set(['TIMEOUT', 'ETIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

function isTimeoutError(err: unknown): boolean {
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
