// The two RabbitMQ scenarios: deliveries to an amqp listener, and notifications consumed from a
// queue into the outbox. Both need a broker at BENCH_AMQP_URL.
import { addListener, ingest, log, now, probe, startRelay } from './harness.mjs';

const brokerUrl = process.env.BENCH_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672/';

/**
 * Deliveries to one amqp listener (format oslo): each one a persistent message confirmed by
 * the broker. Measured at a consumer of the listener's queue, from the first message to the last.
 */
export async function amqpBench({ database, receiver, count }) {
  const { default: amqp } = await import('amqplib');
  const tag = `${process.pid}-${database.backend}`;
  const exchange = `bench-x-${tag}`;
  const topic = `bench-${tag}`;
  const queue = `${topic}.info`;
  log(`amqp: ${count} events to 1 amqp listener at ${brokerUrl.replace(/:[^:@/]*@/, ':***@')}`);
  const connection = await amqp.connect(brokerUrl);
  const channel = await connection.createChannel();
  await channel.assertExchange(exchange, 'topic', { durable: false, autoDelete: false });
  await channel.assertQueue(queue, { durable: false, autoDelete: false });
  await channel.bindQueue(queue, exchange, queue);
  const relay = await startRelay(database);
  let first = 0;
  let last = 0;
  let seen = 0;
  const done = new Promise((resolve) => {
    void channel.consume(queue, (msg) => {
      if (!msg) return;
      seen++;
      last = now();
      if (seen === 1) first = last;
      if (seen === count) resolve();
    }, { noAck: true });
  });
  try {
    await addListener(relay, receiver.url, { callback: { transport: 'amqp', url: brokerUrl, exchange, topic } });
    await ingest(relay, count, 'q');
    await Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error(`only ${seen} of ${count} messages arrived`)), 600_000))]);
    return { messages: count, deliveries_per_s: Math.round(count / ((last - first) / 1000)), peak_rss_mb: Math.round(relay.peakRss() / 2 ** 20) };
  } finally {
    await relay.stop();
    await channel.deleteQueue(queue).catch(() => {});
    await channel.deleteExchange(exchange).catch(() => {});
    await connection.close().catch(() => {});
  }
}

/**
 * OpenStack notifications consumed from a queue into the outbox: the relay consumes the queue
 * (RELAY_AMQP_INGEST_*) while the benchmark publishes N messagingv2 notifications to it as an
 * oslo notifier does; measured from the first publish until the relay has stored N events
 * (relay_events_ingested_total), with one listener so each event also gets its delivery.
 */
export async function amqpIngestBench({ database, receiver, count }) {
  const { default: amqp } = await import('amqplib');
  const tag = `${process.pid}-${database.backend}`;
  const exchange = `bench-ingest-x-${tag}`;
  const queue = `bench-ingest-${tag}.info`;
  const publisher = 'bench-notifier:host';
  log(`amqp-ingest: ${count} notifications consumed from ${queue} into the outbox, 1 listener`);
  const relay = await startRelay(database, 'all', {
    RELAY_AMQP_INGEST_URL: brokerUrl,
    RELAY_AMQP_INGEST_QUEUES: queue,
    RELAY_AMQP_INGEST_EXCHANGE: exchange,
    RELAY_AMQP_INGEST_PROJECT: 'bench',
  });
  const connection = await amqp.connect(brokerUrl);
  const channel = await connection.createConfirmChannel();
  const stored = async () => {
    const { text } = await probe(relay.url + '/metrics');
    const line = text.split('\n').find((l) => l.startsWith(`relay_events_ingested_total{source="${publisher}"}`));
    return line === undefined ? 0 : Number(line.split(' ').pop());
  };
  try {
    while ((await probe(relay.url + '/readyz')).status !== 200) await new Promise((r) => setTimeout(r, 100));
    await addListener(relay, receiver.url, { event_types: ['NOTIFICATION'] });
    const payload = (i) => ({
      'esi_leap_object.name': 'LeasePayload',
      'esi_leap_object.namespace': 'esi_leap',
      'esi_leap_object.version': '1.0',
      'esi_leap_object.data': { id: `lease-${i}`, node_name: `node-${i % 100}`, purpose: 'bench', properties: { vendor: 'dell' } },
    });
    const started = now();
    for (let i = 0; i < count; i++) {
      const message = {
        message_id: `bench-${tag}-${i}`,
        publisher_id: publisher,
        event_type: 'esi_leap.lease.fulfill.end',
        priority: 'INFO',
        payload: payload(i),
        timestamp: new Date().toISOString().replace('T', ' ').replace('Z', '000'),
      };
      const body = Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(message) }));
      if (!channel.publish(exchange, queue, body, { contentType: 'application/json' })) await new Promise((r) => channel.once('drain', r));
      if (i % 1000 === 999) await channel.waitForConfirms();
    }
    await channel.waitForConfirms();
    const publishSeconds = (now() - started) / 1000;
    const deadline = Date.now() + 600_000;
    let n = 0;
    while ((n = await stored()) < count) {
      if (Date.now() > deadline) throw new Error(`only ${n} of ${count} notifications were stored`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const seconds = (now() - started) / 1000;
    return {
      notifications: count,
      notifications_per_s: Math.round(count / seconds),
      published_per_s: Math.round(count / publishSeconds),
      peak_rss_mb: Math.round(relay.peakRss() / 2 ** 20),
    };
  } finally {
    await relay.stop();
    await channel.deleteQueue(queue).catch(() => {});
    await channel.deleteExchange(exchange).catch(() => {});
    await connection.close().catch(() => {});
  }
}
