import * as amqp from 'amqplib';
import type { ChannelModel, ConfirmChannel, Message, Options } from 'amqplib';
import type { Logger } from 'pino';
import { backoffDelay, type BackoffOptions } from '../backoff.js';
import type { NetworkGuard } from '../net/network-guard.js';
import type { TransportOutcome } from './contract.js';
import { maskAmqpUrl, parseBrokerUrl, type BrokerAddress } from './amqp-callback.js';
import { classifyAmqpError, scrubSecret, type AmqpFailure } from './amqp-outcome.js';
import { createRouteCache, type RouteCache } from './amqp-topology.js';

/*
 * One broker URL's connection: one AMQP connection and one confirm channel, opened on first
 * use and shared by every attempt to that URL. A lost connection is opened again by the next
 * attempt; after a failed connect, attempts fail at once with its error until the backoff
 * delay has passed, so a broker that is down is not hammered by every due delivery.
 */

export interface BrokerLinkOptions {
  url: string;
  guard: NetworkGuard;
  connectionName: string;
  connectTimeoutMs: number;
  backoff: BackoffOptions;
  log?: Logger;
}

export interface Publication {
  exchange: string;
  routingKey: string;
  body: Buffer;
  properties: Options.Publish & { messageId: string };
  /** How long the publish may take, from now (see attemptTimeoutMs). */
  timeoutMs: number;
}

export interface BrokerLink {
  readonly maskedUrl: string;
  publish(publication: Publication): Promise<TransportOutcome>;
  close(): Promise<void>;
}

interface Session {
  model: ChannelModel;
  confirm: ConfirmChannel | null;
  opening: Promise<ConfirmChannel> | null;
  /** Exchanges and queues set up on this connection. */
  routes: RouteCache;
  /** Why the connection or the confirm channel last closed, to name the cause of failed confirms. */
  closeCause: Error | null;
  blockedReason: string | null;
  closed: boolean;
}

/** Where an attempt is, for a TIMEOUT's message. */
type Phase = 'connect' | 'declare' | 'confirm';

/** A message waiting for its confirm; a basic.return for it arrives before the ack. */
interface Pending {
  returned: Message | null;
}

class BackoffError extends Error {
  constructor(
    readonly failure: AmqpFailure,
    readonly waitMs: number,
  ) {
    super(failure.message);
  }
}

class ClosedError extends Error {
  constructor() {
    super('the transport was closed');
  }
}

const CLOSE_TIMEOUT_MS = 2_000;

export function createBrokerLink(options: BrokerLinkOptions): BrokerLink {
  const { url, guard, log } = options;
  const maskedUrl = maskAmqpUrl(url);
  let address: BrokerAddress | null = null;
  let session: Session | null = null;
  let connecting: Promise<Session> | null = null;
  let failures = 0;
  let retryAt = 0;
  let lastFailure: AmqpFailure | null = null;
  let closed = false;
  const pending = new Map<string, Set<Pending>>();

  const describe = (failure: AmqpFailure): AmqpFailure => ({
    error: failure.error,
    message: `${maskedUrl}: ${scrubSecret(failure.message, address?.password)}`,
  });

  async function openSession(): Promise<Session> {
    address ??= parseBrokerUrl(url);
    // net.connect skips `lookup` for IP literals, so those are checked here; names in the lookup.
    guard.assertLiteralHostAllowed(address.guardUrl);
    const model = await amqp.connect(
      {
        protocol: address.protocol,
        hostname: address.hostname,
        port: address.port,
        username: address.username,
        password: address.password,
        vhost: address.vhost,
        heartbeat: address.heartbeat,
        frameMax: address.frameMax,
        channelMax: address.channelMax,
      },
      {
        lookup: guard.lookup,
        timeout: options.connectTimeoutMs,
        clientProperties: { connection_name: options.connectionName },
      },
    );
    const s: Session = {
      model,
      confirm: null,
      opening: null,
      routes: createRouteCache(model),
      closeCause: null,
      blockedReason: null,
      closed: false,
    };
    model.on('error', (err: Error) => {
      s.closeCause = err;
    });
    model.on('close', (err?: Error) => {
      s.closed = true;
      if (err) s.closeCause = err;
      if (session === s) session = null;
      if (!closed) log?.warn({ broker: maskedUrl, error: err ? classifyAmqpError(err).error : null }, 'amqp connection closed');
    });
    model.on('blocked', (reason: string) => {
      s.blockedReason = reason;
      log?.warn({ broker: maskedUrl, reason }, 'amqp broker blocked the connection');
    });
    model.on('unblocked', () => {
      s.blockedReason = null;
    });
    if (closed) {
      await model.close().catch(() => undefined);
      throw new ClosedError();
    }
    return s;
  }

  function currentSession(): Promise<Session> {
    if (closed) return Promise.reject(new ClosedError());
    if (session !== null && !session.closed) return Promise.resolve(session);
    if (connecting !== null) return connecting;
    const wait = retryAt - Date.now();
    if (lastFailure !== null && wait > 0) return Promise.reject(new BackoffError(lastFailure, wait));
    connecting = openSession()
      .then(
        (s) => {
          if (failures > 0) log?.info({ broker: maskedUrl }, 'amqp connection open again');
          failures = 0;
          lastFailure = null;
          session = s;
          return s;
        },
        (err: unknown) => {
          if (err instanceof ClosedError) throw err;
          failures += 1;
          const delayMs = backoffDelay(failures, options.backoff);
          retryAt = Date.now() + delayMs;
          lastFailure = describe(classifyAmqpError(err));
          log?.warn({ broker: maskedUrl, error: lastFailure.error, retryInMs: delayMs }, 'amqp connection failed');
          throw err;
        },
      )
      .finally(() => {
        connecting = null;
      });
    return connecting;
  }

  function onReturn(message: Message): void {
    const id = message.properties.messageId;
    if (typeof id !== 'string') return;
    for (const p of pending.get(id) ?? []) p.returned = message;
  }

  function confirmChannel(s: Session): Promise<ConfirmChannel> {
    if (s.confirm !== null) return Promise.resolve(s.confirm);
    s.opening ??= s.model
      .createConfirmChannel()
      .then((channel) => {
        channel.on('error', (err: Error) => {
          s.closeCause = err;
        });
        channel.on('close', () => {
          if (s.confirm === channel) s.confirm = null;
          // What failed on this channel (an exchange deleted under it, say) is set up again.
          s.routes.clear();
        });
        channel.on('return', onReturn);
        s.confirm = channel;
        return channel;
      })
      .finally(() => {
        s.opening = null;
      });
    return s.opening;
  }

  function confirmOf(s: Session, channel: ConfirmChannel, publication: Publication): Promise<TransportOutcome> {
    const { exchange, routingKey, body, properties } = publication;
    const entry: Pending = { returned: null };
    const id = properties.messageId;
    let set = pending.get(id);
    if (set === undefined) pending.set(id, (set = new Set()));
    set.add(entry);
    const forget = () => {
      set.delete(entry);
      if (set.size === 0 && pending.get(id) === set) pending.delete(id);
    };
    return new Promise<TransportOutcome>((resolve) => {
      const settle = (err: unknown) => {
        forget();
        if (err == null) {
          if (entry.returned === null) return resolve({ ok: true });
          // Someone removed the queue or its binding: the next attempt declares them again.
          s.routes.forget(exchange, routingKey);
          const { replyCode, replyText } = entry.returned.fields as unknown as { replyCode: number; replyText: string };
          return resolve({
            ok: false,
            error: 'UNROUTABLE',
            message: `${maskedUrl}: the broker returned the message (${replyCode} ${replyText}): no queue is bound to exchange "${exchange}" for routing key "${routingKey}"`,
          });
        }
        const text = err instanceof Error ? err.message : String(err);
        if (text === 'message nacked') {
          return resolve({ ok: false, error: 'NACK', message: `${maskedUrl}: the broker did not accept the message (basic.nack)` });
        }
        // The channel's or connection's close is emitted just after the confirms fail: name that cause.
        setImmediate(() => resolve({ ok: false, ...describe(classifyAmqpError(s.closeCause ?? err)) }));
      };
      try {
        channel.publish(exchange, routingKey, body, properties, settle);
      } catch (err) {
        settle(err);
      }
    });
  }

  async function attempt(publication: Publication, progress: { phase: Phase; session: Session | null }): Promise<TransportOutcome> {
    try {
      const s = await currentSession();
      progress.session = s;
      progress.phase = 'declare';
      await s.routes.ensure(publication.exchange, publication.routingKey);
      progress.phase = 'confirm';
      const channel = await confirmChannel(s);
      return await confirmOf(s, channel, publication);
    } catch (err) {
      if (err instanceof ClosedError) return { ok: false, error: 'TRANSPORT_CLOSED', message: err.message };
      if (err instanceof BackoffError) {
        return {
          ok: false,
          error: err.failure.error,
          message: `${err.failure.message} (next connection attempt in ${err.waitMs} ms)`,
        };
      }
      return { ok: false, ...describe(classifyAmqpError(err)) };
    }
  }

  async function publish(publication: Publication): Promise<TransportOutcome> {
    const budget = publication.timeoutMs;
    if (budget <= 0) return { ok: false, error: 'TIMEOUT', message: `${maskedUrl}: the attempt's deadline had passed before it started` };
    const progress: { phase: Phase; session: Session | null } = { phase: 'connect', session: null };
    let timer: NodeJS.Timeout | undefined;
    // A publish that outlives its deadline still completes on the channel; only its outcome is decided here.
    const expired = new Promise<TransportOutcome>((resolve) => {
      timer = setTimeout(() => resolve({ ok: false, error: 'TIMEOUT', message: timeoutText(progress, budget) }), budget);
    });
    try {
      return await Promise.race([attempt(publication, progress), expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  function timeoutText({ phase, session: s }: { phase: Phase; session: Session | null }, budget: number): string {
    if (phase === 'connect') return `${maskedUrl}: not connected within ${budget} ms`;
    if (phase === 'declare') return `${maskedUrl}: exchange and queue not set up within ${budget} ms`;
    const blocked = s?.blockedReason != null ? ` (the broker blocked the connection: ${s.blockedReason})` : '';
    return `${maskedUrl}: no confirm from the broker within ${budget} ms${blocked}`;
  }

  async function close(): Promise<void> {
    closed = true;
    await connecting?.catch(() => undefined);
    const s = session;
    session = null;
    if (s === null || s.closed) return;
    // amqplib's close waits for the broker's close-ok, which never comes if the socket drops meanwhile.
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), CLOSE_TIMEOUT_MS)));
    const stuck = await Promise.race([s.model.close().then(() => false, () => false), gaveUp]);
    clearTimeout(timer);
    if (stuck) (s.model.connection as unknown as { stream?: { destroy?: () => void } }).stream?.destroy?.();
  }

  return { maskedUrl, publish, close };
}
