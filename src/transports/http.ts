import diagnosticsChannel from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Dispatcher } from 'undici';
import type { NetworkGuard } from '../net/network-guard.js';
import type { AttemptOutcome, OutboundRequest, Transport } from './transport.js';
import { createDeadlineSweep, type Expiring } from './http-deadlines.js';
import { TryHandler, type TryOwner } from './http-handler.js';
import {
  classifyError,
  errorMessage,
  isConnectionHiccup,
  isTimeoutError,
  judgeStatus,
  retryAfterOf,
  statusLine,
  utf8Excerpt,
} from './http-outcome.js';
import { createOriginPools } from './http-pools.js';
import { createTargets, type Target } from './http-targets.js';

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
/** How often deadlines are checked: an attempt may run over its timeout by about this much. */
const SWEEP_PERIOD_MS = 50;

export interface HttpTransportOptions {
  guard: NetworkGuard;
  /** Sockets kept per origin (scheme, host, port). */
  connectionsPerOrigin?: number;
  /** Sent as `user-agent` unless the request has its own. */
  userAgent?: string;
}

class DeadlineError extends Error {
  readonly code = 'TIMEOUT';
  constructor(timeoutMs: number) {
    super(`no answer within ${timeoutMs} ms`);
    this.name = 'DeadlineError';
  }
}

/** The request's headers as undici's flat list, with the default user-agent unless it has one. */
function headerList(headers: Record<string, string>, userAgent: string | undefined): string[] {
  const list: string[] = [];
  let hasAgent = userAgent === undefined;
  for (const name of Object.keys(headers)) {
    list.push(name, headers[name]);
    if (!hasAgent && name.length === 10 && name.toLowerCase() === 'user-agent') hasAgent = true;
  }
  if (!hasAgent) list.push('user-agent', userAgent!);
  return list;
}

export function createHttpTransport({ guard, connectionsPerOrigin = 32, userAgent }: HttpTransportOptions): Transport {
  const pools = createOriginPools({
    connections: connectionsPerOrigin,
    pipelining: 1,
    // The guard's connector checks the very addresses the socket connects to (no DNS rebinding)
    // and the port with them (never the relay's own).
    connect: guard.connect,
    // The sweep bounds every attempt as a whole; undici's own timers per request would only repeat it.
    headersTimeout: 0,
    bodyTimeout: 0,
  });
  const sweep = createDeadlineSweep(SWEEP_PERIOD_MS);
  const targets = createTargets(guard);
  // Per-origin slots are the dispatcher's admission gate's; this only refuses work after close.
  let closed = false;

  /*
   * Retrying a reset is only safe on a pooled keep-alive socket the receiver closed while it
   * sat idle: the request most likely never reached its handler. A reset on a fresh socket, or
   * once any answer byte came, means the receiver may have acted on it: that stays a failed attempt.
   * undici does not tell a handler which socket its request went out on, so: the handler is
   * noted as `writing` in onRequestStart, and undici then publishes `sendHeaders` with the socket
   * synchronously in the same call (writeH1), where the probe learns whether that socket has
   * carried a request before. With pipelining 1 a socket carries one request at a time.
   */
  const carried = new WeakSet<Socket>();
  let writing: TryHandler | null = null;
  const onSendHeaders = (message: unknown): void => {
    const handler = writing;
    if (handler === null) return;
    writing = null;
    const { socket } = message as { socket: Socket };
    if (carried.has(socket)) handler.reusedSocket = true;
    else carried.add(socket);
  };
  diagnosticsChannel.subscribe('undici:client:sendHeaders', onSendHeaders);

  /** One send: its tries (a second only after a stale pooled socket), its deadline, its outcome. */
  class Attempt implements TryOwner, Expiring {
    readonly deadline: number;
    readonly outcome: Promise<AttemptOutcome>;
    private resolve!: (outcome: AttemptOutcome) => void;
    private current!: TryHandler;

    constructor(
      private readonly options: Dispatcher.DispatchOptions & { origin: string },
      private readonly started: number,
      private readonly timeoutMs: number,
    ) {
      this.deadline = started + timeoutMs;
      this.outcome = new Promise((resolve) => (this.resolve = resolve));
      sweep.watch(this);
      this.tryOnce();
    }

    private tryOnce(): void {
      const handler = new TryHandler(this);
      this.current = handler;
      // A request undici refuses (a bad header value) ends the try before dispatch returns.
      pools.dispatch(this.options, handler);
    }

    tryWriting(handler: TryHandler): void {
      writing = handler;
    }

    tryEnded(handler: TryHandler, error: Error | null): void {
      const now = performance.now();
      // Whatever came after the deadline came too late, as if the sweep had already run.
      if (now >= this.deadline) return this.timedOut(handler, now);
      if (error === null) return this.finish(handler, now, judgeStatus(handler.statusCode!, handler.headers!));
      const retry =
        handler.statusCode === null &&
        !handler.responseStarted &&
        handler.reusedSocket &&
        isConnectionHiccup(error) &&
        !closed &&
        this.deadline - now >= MIN_RETRY_BUDGET_MS;
      if (retry) return this.tryOnce();
      // undici's own limits (the connect timeout) say which one ran out.
      if (isTimeoutError(error)) return this.finish(handler, now, { error: 'TIMEOUT', message: errorMessage(error) });
      this.finish(handler, now, classifyError(error));
    }

    expire(now: number): void {
      const handler = this.current;
      this.timedOut(handler, now);
      handler.cancel(new DeadlineError(this.timeoutMs));
    }

    private timedOut(handler: TryHandler, now: number): void {
      const message =
        handler.statusCode === null
          ? `no answer within ${this.timeoutMs} ms`
          : `${statusLine(handler.statusCode)}, but the body was not complete within ${this.timeoutMs} ms`;
      this.finish(handler, now, { error: 'TIMEOUT', message });
    }

    private finish(handler: TryHandler, now: number, fields: Partial<AttemptOutcome>): void {
      sweep.unwatch(this);
      const status = handler.statusCode;
      this.resolve({
        ok: false,
        statusCode: status,
        durationMs: Math.round(now - this.started),
        error: null,
        message: null,
        responseExcerpt: handler.head === null ? null : utf8Excerpt(handler.head.bytes()),
        retryAfterMs: status === null ? null : retryAfterOf(status, handler.headers!),
        gone: status === 410,
        ...fields,
      });
    }
  }

  function send(req: OutboundRequest): Promise<AttemptOutcome> {
    const started = performance.now();
    let target: Target;
    try {
      target = targets.resolve(req.url, started);
    } catch (err) {
      return Promise.resolve({ ...NO_ANSWER, ...classifyError(err) });
    }
    if (closed) return Promise.resolve({ ...NO_ANSWER, error: 'TRANSPORT_CLOSED', message: 'the transport was closed' });
    const method = req.method.toUpperCase() as Dispatcher.HttpMethod;
    const options = {
      origin: target.origin,
      path: target.path,
      method,
      headers: headerList(req.headers, userAgent),
      body: req.body === '' && (method === 'GET' || method === 'DELETE' || method === 'HEAD') ? null : req.body,
    };
    return new Attempt(options, started, req.timeoutMs).outcome;
  }

  let closing: Promise<void> | null = null;
  function close(): Promise<void> {
    // Called once the dispatcher has waited out its grace and given back what is unfinished:
    // whatever is still in flight is abandoned (undici ends it as TRANSPORT_CLOSED), not waited for.
    closed = true;
    closing ??= pools.destroy().finally(() => {
      diagnosticsChannel.unsubscribe('undici:client:sendHeaders', onSendHeaders);
    });
    return closing;
  }

  return { send, close };
}

export { classifyError, RESPONSE_EXCERPT_BYTES, utf8Excerpt } from './http-outcome.js';
