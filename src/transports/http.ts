import diagnosticsChannel from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Agent, type Dispatcher } from 'undici';
import type { NetworkGuard } from '../net/network-guard.js';
import type { AttemptOutcome, OutboundRequest, Transport } from './transport.js';
import {
  BodyHead,
  classifyError,
  errorMessage,
  isConnectionHiccup,
  isTimeoutError,
  judgeStatus,
  parseHttpUrl,
  readBody,
  retryAfterOf,
  statusLine,
  utf8Excerpt,
} from './http-outcome.js';

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
    // The guard's connector checks the very addresses the socket connects to (no DNS rebinding)
    // and the port with them (never the relay's own).
    connect: guard.connect,
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

  // Per-origin slots are the dispatcher's admission gate's; this only refuses work after close.
  let closed = false;

  async function send(req: OutboundRequest): Promise<AttemptOutcome> {
    let url: URL;
    try {
      url = parseHttpUrl(req.url);
      guard.assertLiteralHostAllowed(url);
    } catch (err) {
      return { ...NO_ANSWER, ...classifyError(err) };
    }
    if (closed) return { ...NO_ANSWER, error: 'TRANSPORT_CLOSED', message: 'the transport was closed' };
    return attempt(url, req);
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
    closed = true;
    closing ??= agent.destroy().finally(() => {
      diagnosticsChannel.unsubscribe('undici:client:sendHeaders', onSendHeaders);
    });
    return closing;
  }

  return { send, close };
}

export { classifyError, RESPONSE_EXCERPT_BYTES, utf8Excerpt } from './http-outcome.js';
