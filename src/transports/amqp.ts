import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { BackoffOptions } from '../backoff.js';
import type { NetworkGuard } from '../net/network-guard.js';
import { attemptTimeoutMs, type FieldProblem, type TransportAttempt, type TransportModule, type TransportOutcome } from './contract.js';
import { DEFAULT_AMQP_EXCHANGE, maskAmqpUrl, parseBrokerUrl, validateAmqpCallback } from './amqp-callback.js';
import { createBrokerLink, type BrokerLink } from './amqp-connection.js';
import { routingKeyFor } from './amqp-routing.js';

/*
 * The `amqp` transport (DESIGN.md, "AMQP transport"): each attempt is one persistent message,
 * published with `mandatory` on a confirm channel; the broker's ack is the success, as a 2xx
 * is for HTTP. Failures are outcomes with the stable codes listed in amqp-outcome.ts.
 */

export { AmqpCallbackSchema, maskAmqpUrl, validateAmqpCallback } from './amqp-callback.js';
export type { AmqpCallback, AmqpCallbackInput } from './amqp-callback.js';

export interface AmqpTransportOptions {
  guard: NetworkGuard;
  log?: Logger;
  /** The AMQP `connection_name`, as `rabbitmqctl list_connections` shows it. */
  connectionName?: string;
  /** Bounds TCP connect and the AMQP handshake. */
  connectTimeoutMs?: number;
  /** Delay before connecting again after a failed connect (the relay's one backoff policy). */
  reconnect?: BackoffOptions;
  /** How long `close` waits for publishes in flight. */
  closeGraceMs?: number;
  /** A broker unused this long has its connection closed (a listener moved elsewhere, say). */
  idleCloseMs?: number;
}

interface LinkEntry {
  link: BrokerLink;
  inFlight: number;
  lastUsed: number;
}

const AMQP_PROPERTY_HEADERS = new Set(['content-type']);

/** The attempt's headers as AMQP headers; the content type travels as the message property instead. */
function amqpHeaders(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!AMQP_PROPERTY_HEADERS.has(name.toLowerCase())) out[name] = value;
  }
  return out;
}

const text = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);

export function createAmqpTransport(options: AmqpTransportOptions): TransportModule {
  const {
    guard,
    log,
    connectionName = `callback-relay ${hostname()}:${process.pid}`,
    connectTimeoutMs = 10_000,
    reconnect = { baseMs: 1_000, maxMs: 30_000 },
    closeGraceMs = 2_000,
    idleCloseMs = 10 * 60_000,
  } = options;
  const links = new Map<string, LinkEntry>();
  const inFlight = new Set<Promise<TransportOutcome>>();
  let closing = false;

  const sweeper = setInterval(() => {
    const now = Date.now();
    for (const [url, entry] of links) {
      if (entry.inFlight > 0 || now - entry.lastUsed < idleCloseMs) continue;
      links.delete(url);
      void entry.link.close();
    }
  }, Math.min(idleCloseMs, 60_000));
  sweeper.unref();

  function linkFor(url: string): LinkEntry {
    let entry = links.get(url);
    if (entry === undefined) {
      const link = createBrokerLink({ url, guard, connectionName, connectTimeoutMs, backoff: reconnect, log });
      entry = { link, inFlight: 0, lastUsed: Date.now() };
      links.set(url, entry);
    }
    return entry;
  }

  function validate(callback: Record<string, unknown>): FieldProblem[] {
    return validateAmqpCallback(callback);
  }

  async function check(callback: Record<string, unknown>): Promise<FieldProblem[]> {
    const url = text(callback.url);
    if (url === undefined) return [];
    let guardUrl: string;
    try {
      guardUrl = parseBrokerUrl(url).guardUrl;
    } catch {
      return []; // validate says what is wrong with it
    }
    const verdict = await guard.checkUrl(guardUrl, 'callback.url');
    return verdict.ok ? [] : [{ field: 'callback.url', message: verdict.reason }];
  }

  async function publish(attempt: TransportAttempt): Promise<TransportOutcome> {
    const { callback } = attempt;
    const url = text(callback.url) ?? '';
    try {
      parseBrokerUrl(url);
    } catch (err) {
      return { ok: false, error: 'BAD_URL', message: `${maskAmqpUrl(url)}: ${(err as Error).message}` };
    }
    const topic = text(callback.topic) ?? '';
    const routingKey = routingKeyFor({ topic, routing_key: text(callback.routing_key) ?? null }, attempt.envelope);
    const entry = linkFor(url);
    entry.inFlight += 1;
    entry.lastUsed = Date.now();
    try {
      return await entry.link.publish({
        exchange: text(callback.exchange) ?? DEFAULT_AMQP_EXCHANGE,
        routingKey,
        body: Buffer.from(attempt.body, 'utf8'),
        properties: {
          persistent: true,
          mandatory: true,
          messageId: attempt.deliveryId,
          contentType: attempt.contentType,
          timestamp: Math.floor(Date.now() / 1000),
          headers: amqpHeaders(attempt.headers),
        },
        timeoutMs: attemptTimeoutMs(attempt),
      });
    } finally {
      entry.inFlight -= 1;
      entry.lastUsed = Date.now();
    }
  }

  async function send(attempt: TransportAttempt): Promise<TransportOutcome> {
    if (closing) return { ok: false, error: 'TRANSPORT_CLOSED', message: 'the transport was closed' };
    const outcome = publish(attempt).catch((err: unknown): TransportOutcome => {
      const broker = maskAmqpUrl(text(attempt.callback.url) ?? '');
      return { ok: false, error: 'AMQP_ERROR', message: `${broker}: ${err instanceof Error ? err.message : String(err)}` };
    });
    inFlight.add(outcome);
    try {
      return await outcome;
    } finally {
      inFlight.delete(outcome);
    }
  }

  async function close(): Promise<void> {
    closing = true;
    clearInterval(sweeper);
    if (inFlight.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, closeGraceMs)));
      await Promise.race([Promise.allSettled([...inFlight]), grace]);
      clearTimeout(timer);
    }
    const closingLinks = [...links.values()].map((entry) => entry.link.close());
    links.clear();
    await Promise.all(closingLinks);
  }

  return { name: 'amqp', validate, check, send, close };
}
