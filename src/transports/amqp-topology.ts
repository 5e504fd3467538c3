import type { Channel, ChannelModel } from 'amqplib';

/*
 * What a publisher sets up on the broker before it publishes, as an oslo notifier does, and
 * the memory of what is set up on one connection.
 */

// RabbitMQ answers 404 to a passive declare of something missing, and closes the channel.
const isNotFound = (err: unknown) => (err as { code?: unknown }).code === 404;
const isPreconditionFailed = (err: unknown) => (err as { code?: unknown }).code === 406;

/** oslo.messaging's defaults for notification exchanges and queues. */
const OSLO_FLAGS = { durable: false, autoDelete: false };

/** Runs `work` on a channel of its own, so that a failed declare closes only that channel. */
async function onThrowawayChannel<T>(model: ChannelModel, work: (channel: Channel) => Promise<T>): Promise<T> {
  const channel = await model.createChannel();
  channel.on('error', () => undefined);
  try {
    return await work(channel);
  } finally {
    await channel.close().catch(() => undefined);
  }
}

/**
 * The exchange checked passively and declared as a topic exchange with oslo's defaults if
 * missing (an existing one is used as it is), and a queue named after the routing key, bound
 * to it with that key, so that a consumer that starts later still finds the messages.
 */
export async function declareRoute(model: ChannelModel, exchange: string, routingKey: string): Promise<void> {
  const exchangeExists = await onThrowawayChannel(model, (ch) => ch.checkExchange(exchange)).then(
    () => true,
    (err: unknown) => {
      if (isNotFound(err)) return false;
      throw err;
    },
  );
  await onThrowawayChannel(model, async (ch) => {
    if (!exchangeExists) await ch.assertExchange(exchange, 'topic', OSLO_FLAGS);
    await ch.assertQueue(routingKey, OSLO_FLAGS);
  }).catch((err: unknown) => {
    // A queue of that name declared with other flags (durable, say) is used as it is.
    if (!isPreconditionFailed(err)) throw err;
    return onThrowawayChannel(model, (ch) => ch.checkQueue(routingKey));
  });
  await onThrowawayChannel(model, (ch) => ch.bindQueue(routingKey, exchange, routingKey));
}

/** Routes set up on one connection: each declared once, however many attempts wait for it. */
export interface RouteCache {
  ensure(exchange: string, routingKey: string): Promise<void>;
  /** The broker lost it (a queue deleted, say): the next attempt sets it up again. */
  forget(exchange: string, routingKey: string): void;
  clear(): void;
}

export function createRouteCache(model: ChannelModel): RouteCache {
  const routes = new Map<string, Promise<void>>();
  const keyOf = (exchange: string, routingKey: string) => `${exchange}\u0000${routingKey}`;
  return {
    ensure(exchange, routingKey) {
      const key = keyOf(exchange, routingKey);
      let ready = routes.get(key);
      if (ready === undefined) {
        const declaring = declareRoute(model, exchange, routingKey);
        declaring.catch(() => {
          if (routes.get(key) === declaring) routes.delete(key);
        });
        routes.set(key, declaring);
        ready = declaring;
      }
      return ready;
    },
    forget(exchange, routingKey) {
      routes.delete(keyOf(exchange, routingKey));
    },
    clear() {
      routes.clear();
    },
  };
}
