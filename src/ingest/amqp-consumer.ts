import { hostname } from 'node:os';
import * as amqp from 'amqplib';
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import { backoffDelay, delay, type BackoffOptions } from '../backoff.js';
import { FilterBudgetError } from '../fanout/filter-budget.js';
import { StoreConflictError, StoreUnavailableError, type AppendedEvent } from '../store/store.js';
import { maskAmqpUrl, parseBrokerUrl } from '../records/amqp-url.js';
import { classifyAmqpError, scrubSecret } from '../transports/amqp-outcome.js';
import { declareRoute } from '../transports/amqp-topology.js';
import type { IngestItem } from './ingest.js';
import { OSLO_REJECT_REASONS, parseOsloNotification } from './oslo.js';

/*
 * Consumes OpenStack notifications from RabbitMQ queues and stores each as an event
 * (DESIGN.md, "Notifications from RabbitMQ"). A message is acknowledged only after its event
 * and deliveries commit; until then the broker keeps it, and gives it again to this or
 * another consumer if the connection goes. A message given twice has the same id and body,
 * and the store keeps one event.
 */

export const AMQP_INGEST_SOURCE = 'amqp';

/**
 * The parser's reasons; `id_conflict`: the store has another body under that id;
 * `filter_budget`: matching it against the project's listeners took more than FILTER_BUDGET_MS.
 */
export const AMQP_REJECT_REASONS = [...OSLO_REJECT_REASONS, 'id_conflict', 'filter_budget'] as const;
export type AmqpRejectReason = (typeof AMQP_REJECT_REASONS)[number];

export interface AmqpConsumerMetrics {
  /** A message acknowledged after its event committed (a redelivery stored once included). */
  messageConsumed(queue: string): void;
  messageRejected(reason: AmqpRejectReason): void;
}

export interface AmqpConsumerOptions {
  url: string;
  queues: string[];
  exchange: string;
  /** The project that owns the events. */
  project: string;
  ingest: { ingest(project: string, items: IngestItem[], defaultSource?: string): Promise<AppendedEvent[]> };
  log: Logger;
  metrics?: AmqpConsumerMetrics;
  /** Messages each queue may have delivered and not yet acknowledged. */
  prefetch?: number;
  /** The AMQP `connection_name`, as `rabbitmqctl list_connections` shows it. */
  connectionName?: string;
  connectTimeoutMs?: number;
  /** Waits between connection attempts after a loss or a failed connect. */
  reconnect?: BackoffOptions;
  /** Waits before a message the database could not take goes back to the queue. */
  storeBackoff?: BackoffOptions;
  /** How long stop() waits for messages being stored. */
  stopGraceMs?: number;
}

export interface ConsumerStatus {
  ready: boolean;
  detail: string;
}

export interface AmqpConsumer {
  /** Connects and consumes in the background; a broker that is down is tried again with backoff. */
  start(): void;
  /** Cancels the consumers, waits (bounded) for messages being stored, closes. Safe to call twice. */
  stop(): Promise<void>;
  status(): ConsumerStatus;
}

interface Session {
  model: ChannelModel;
  channel: Channel;
  consumerTags: string[];
  /** Resolves with the cause when the connection or channel closes, or the broker cancels a consumer. */
  lost: Promise<Error>;
}

const CLOSE_TIMEOUT_MS = 2_000;
const EXCERPT_CHARS = 200;

/** Resolves with `work`'s outcome, or with undefined after `ms`. */
const within = <T>(work: Promise<T>, ms: number): Promise<T | undefined> =>
  Promise.race([work, delay(ms).then(() => undefined)]);

export function createAmqpConsumer(options: AmqpConsumerOptions): AmqpConsumer {
  const {
    url,
    queues,
    exchange,
    project,
    ingest,
    log,
    metrics,
    prefetch = 64,
    connectionName = `callback-relay ingest ${hostname()}:${process.pid}`,
    connectTimeoutMs = 10_000,
    reconnect = { baseMs: 1_000, maxMs: 30_000 },
    storeBackoff = { baseMs: 250, maxMs: 10_000 },
    stopGraceMs = 10_000,
  } = options;
  const maskedUrl = maskAmqpUrl(url);
  let password: string | undefined;
  try {
    password = parseBrokerUrl(url).password;
  } catch {
    password = undefined;
  }

  let session: Session | null = null;
  let lastError: string | null = null;
  let started = false;
  let stopping = false;
  let loop: Promise<void> = Promise.resolve();
  let stopped: Promise<void> | null = null;
  let wakeOnStop: () => void = () => undefined;
  const stopSignal = new Promise<void>((resolve) => (wakeOnStop = resolve));
  const inFlight = new Set<Promise<void>>();
  // Consecutive writes the database refused, across messages: the wait before a requeue grows.
  let storeFailures = 0;

  const describe = (err: unknown): string => {
    const { error, message } = classifyAmqpError(err);
    return `${error}: ${scrubSecret(message, password)}`;
  };

  async function closeModel(model: ChannelModel): Promise<void> {
    // amqplib's close waits for the broker's close-ok, which never comes if the socket drops meanwhile.
    const done = await within(model.close().then(() => true, () => true), CLOSE_TIMEOUT_MS);
    if (done === undefined) (model.connection as unknown as { stream?: { destroy?: () => void } }).stream?.destroy?.();
  }

  async function closeSession(s: Session): Promise<void> {
    // The channel first: its close-ok comes after the broker has taken the acks sent on it,
    // which a connection close written meanwhile on channel 0 could overtake.
    await within(s.channel.close().catch(() => undefined), CLOSE_TIMEOUT_MS);
    await closeModel(s.model);
  }

  async function openSession(): Promise<Session> {
    const model = await amqp.connect(url, { timeout: connectTimeoutMs, clientProperties: { connection_name: connectionName } });
    let cause: Error | null = null;
    let markLost: (err: Error) => void = () => undefined;
    const lost = new Promise<Error>((resolve) => (markLost = resolve));
    model.on('error', (err: Error) => (cause = err));
    model.on('close', (err?: Error) => markLost(err ?? cause ?? new Error('connection closed')));
    try {
      // Declared as oslo.messaging declares them: a notifier that starts later finds the same queues.
      for (const queue of queues) await declareRoute(model, exchange, queue);
      const channel = await model.createChannel();
      channel.on('error', (err: Error) => (cause = err));
      channel.on('close', () => markLost(cause ?? new Error('channel closed')));
      // Bounds what this consumer holds unacknowledged: the broker keeps the rest.
      await channel.prefetch(prefetch);
      const consumerTags: string[] = [];
      for (const queue of queues) {
        const { consumerTag } = await channel.consume(queue, (msg) => {
          if (msg === null) markLost(new Error(`the broker cancelled the consumer of queue ${queue} (deleted?)`));
          else track(handle(channel, queue, msg));
        });
        consumerTags.push(consumerTag);
      }
      return { model, channel, consumerTags, lost };
    } catch (err) {
      await closeModel(model);
      throw err;
    }
  }

  async function run(): Promise<void> {
    let failures = 0;
    while (!stopping) {
      try {
        const s = await openSession();
        if (stopping) {
          await closeSession(s);
          return;
        }
        session = s;
        if (failures > 0) log.info({ broker: maskedUrl, queues }, 'amqp notification consumer connected again');
        else log.info({ broker: maskedUrl, exchange, queues, prefetch }, 'amqp notification consumer connected');
        failures = 0;
        lastError = null;
        const cause = await s.lost;
        session = null;
        if (stopping) return;
        lastError = describe(cause);
        log.warn({ broker: maskedUrl, error: lastError }, 'amqp notification consumer lost its connection');
        await closeSession(s);
      } catch (err) {
        if (stopping) return;
        lastError = describe(err);
        log.warn({ broker: maskedUrl, error: lastError }, 'amqp notification consumer cannot connect');
      }
      failures += 1;
      await Promise.race([delay(backoffDelay(failures, reconnect)), stopSignal]);
    }
  }

  function track(handling: Promise<void>): void {
    // handle() answers every message itself; what escapes it is a defect, logged, and the
    // message stays unacknowledged until the channel closes.
    const work = handling.catch((err: unknown) => log.error({ err }, 'handling a notification failed'));
    inFlight.add(work);
    void work.finally(() => inFlight.delete(work));
  }

  /** Acknowledges or rejects on the message's own channel; false when that channel has closed. */
  function answer(fn: () => void): boolean {
    try {
      fn();
      return true;
    } catch {
      // The channel closed: the broker gives the message again, and it is stored once.
      return false;
    }
  }

  function reject(channel: Channel, queue: string, msg: ConsumeMessage, reason: AmqpRejectReason, detail: string): void {
    if (!answer(() => channel.nack(msg, false, false))) return;
    metrics?.messageRejected(reason);
    log.warn(
      { queue, reason, detail, excerpt: msg.content.subarray(0, EXCERPT_CHARS * 4).toString('utf8').slice(0, EXCERPT_CHARS) },
      'notification rejected: not stored and not requeued',
    );
  }

  async function handle(channel: Channel, queue: string, msg: ConsumeMessage): Promise<void> {
    const parsed = parseOsloNotification(msg.content);
    if (parsed.kind === 'rejected') return reject(channel, queue, msg, parsed.reason, parsed.detail);
    try {
      const [result] = await ingest.ingest(project, [{ input: parsed.input, original: parsed.original }], AMQP_INGEST_SOURCE);
      storeFailures = 0;
      if (!answer(() => channel.ack(msg))) return;
      metrics?.messageConsumed(queue);
      if (result.duplicate) log.debug({ queue, id: result.id }, 'notification was stored before: acknowledged again');
    } catch (err) {
      if (err instanceof StoreConflictError) return reject(channel, queue, msg, 'id_conflict', err.message);
      // Matching it against the project's listeners would hold the relay: the same message would again.
      if (err instanceof FilterBudgetError) return reject(channel, queue, msg, 'filter_budget', err.message);
      storeFailures += 1;
      const waitMs = backoffDelay(storeFailures, storeBackoff);
      const fields = { queue, id: parsed.input.id, err, requeueInMs: waitMs };
      if (err instanceof StoreUnavailableError) log.warn(fields, 'database cannot take the notification now: it goes back to the queue');
      else log.error(fields, 'storing the notification failed: it goes back to the queue');
      // Not acknowledged: after the wait the broker has it again. On stop the closing channel does that.
      await Promise.race([delay(waitMs), stopSignal]);
      if (!stopping) answer(() => channel.nack(msg, false, true));
    }
  }

  return {
    start() {
      if (started || stopping) return;
      started = true;
      loop = run();
    },

    stop() {
      stopped ??= (async () => {
        stopping = true;
        wakeOnStop();
        const s = session;
        if (s !== null) {
          // No new deliveries; those already here are stored and acknowledged below.
          await within(Promise.allSettled(s.consumerTags.map((tag) => s.channel.cancel(tag))), CLOSE_TIMEOUT_MS);
        }
        await within(Promise.allSettled([...inFlight]), stopGraceMs);
        if (inFlight.size > 0) {
          log.warn({ unfinished: inFlight.size }, 'amqp notification consumer stopped waiting: the broker gives those messages again');
        }
        if (s !== null) await closeSession(s);
        // A connect under way ends on its own (it sees `stopping` and closes what it opened).
        await within(loop, CLOSE_TIMEOUT_MS);
        log.info({ broker: maskedUrl }, 'amqp notification consumer stopped');
      })();
      return stopped;
    },

    status() {
      if (session !== null) return { ready: true, detail: `the amqp notification consumer reads ${queues.join(', ')} from ${maskedUrl}` };
      const why = lastError ?? (stopping ? 'stopped' : 'connecting');
      return { ready: false, detail: `the amqp notification consumer is not connected to ${maskedUrl} (${why})` };
    },
  };
}
