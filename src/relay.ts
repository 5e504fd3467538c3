import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { createApp } from './api/app.js';
import type { ReadinessCheck } from './api/routes/operations.js';
import { ensureAdminToken, tokenRegistry } from './api/auth.js';
import { createDispatcher } from './dispatch/dispatcher.js';
import { createEngine } from './engine/engine.js';
import type { RunnerHooks } from './engine/runner.js';
import { createFanOut } from './fanout/fanout.js';
import { createAmqpConsumer } from './ingest/amqp-consumer.js';
import { createIngest } from './ingest/ingest.js';
import { createMetrics } from './metrics.js';
import { createNetworkGuard, describeLoopbackPolicy, loopbackAllowed, type NetworkGuard } from './net/network-guard.js';
import { startPruner } from './store/pruner.js';
import { openSqliteStore } from './store/sqlite/index.js';
import { createAmqpTransport } from './transports/amqp.js';
import type { TransportModule } from './transports/contract.js';
import { createExecTransport } from './transports/exec.js';
import { createHttpTransportModule } from './transports/http-module.js';
import { createTransportRegistry, loadTransportModules, type TransportRegistry } from './transports/registry.js';

export interface Relay {
  url: string;
  port: number;
  /** Stops accepting, lets work in flight finish, closes the database. Safe to call twice. */
  close(): Promise<void>;
}

export const ROLES = ['all', 'api', 'dispatcher'] as const;
export type Role = (typeof ROLES)[number];

export interface RelayOptions {
  /**
   * `all` (default) serves the API and dispatches; `api` serves the API only; `dispatcher`
   * dispatches and serves only the operations routes.
   */
  role?: Role;
  /** Test hooks of the engine's runner (a failure injected between an action's result and its commit). */
  engineHooks?: RunnerHooks;
}

/**
 * Wires one relay process: store, fan-out, ingest, API, dispatcher and pruner. Clean-up
 * callbacks are kept on a stack and run in reverse on close.
 */
export async function startRelay(config: Config, log: Logger, options: RelayOptions = {}): Promise<Relay> {
  const cleanups: Array<() => Promise<void> | void> = [];
  const runCleanups = async () => {
    while (cleanups.length) {
      try {
        await cleanups.pop()!();
      } catch (err) {
        log.error({ err }, 'shutdown step failed');
      }
    }
  };

  try {
    const store = openSqliteStore({
      path: config.databasePath,
      durability: config.durability,
      busyTimeoutMs: config.busyTimeoutMs,
      commitIntervalMs: config.commitIntervalMs,
    });
    cleanups.push(() => store.close());
    log.info(
      { database: config.databasePath, migrations: store.appliedMigrations, synchronous: config.durability },
      store.appliedMigrations.length ? 'database migrated' : 'database up to date',
    );

    let tokens = config.tokens;
    if (tokens.size === 0) {
      const admin = ensureAdminToken(config.dataDir);
      tokens = new Map([[admin.token, 'default']]);
      log.info({ file: admin.file, project: 'default', created: admin.created }, 'no RELAY_TOKENS set: the API token is in this file');
    }

    const allowLoopback = loopbackAllowed(config.allowLoopback, config.host);
    const guard = createNetworkGuard({
      allowNetworks: config.allowNetworks,
      allowLoopback,
      ownPort: config.port === 0 ? undefined : config.port,
    });
    log.info(
      { allow_loopback: config.allowLoopback, loopback_allowed: allowLoopback },
      describeLoopbackPolicy(config.allowLoopback, config.host, guard),
    );
    const metrics = createMetrics(store);
    const fanOut = createFanOut(store, {
      onUncompilable: (listener, err) =>
        log.warn({ listener: listener.id, project: listener.project, err: err.message }, 'a listener rule no longer compiles: the listener receives nothing until it is updated'),
    });

    const transports = await openTransports(config, guard, log);
    cleanups.push(() => transports.close());
    log.info({ transports: transports.names }, `transports enabled: ${transports.names.join(', ') || 'none'}`);
    const dispatcher = createDispatcher({
      store,
      transports,
      log: log.child({ component: 'dispatcher' }),
      shutdownGraceMs: config.shutdownGraceMs,
      maxInFlight: config.maxInFlight,
      slotsPerOrigin: config.connectionsPerOrigin,
      onAttempt: metrics.attemptRecorded,
      onListenersDisabled: () => fanOut.invalidate(),
    });
    const role = options.role ?? 'all';
    if (role !== 'api') {
      dispatcher.start();
      cleanups.push(() => dispatcher.stop());
    }

    const pruner = startPruner({ store, log: log.child({ component: 'pruner' }), retentionDays: config.retentionDays });
    cleanups.push(() => pruner.stop());

    // One engine runner per database: it runs where the API does, since API calls wake it. Its
    // start recovers tasks a crash left in flight, before the API takes requests.
    const engine = createEngine({
      store,
      fanOut,
      wakeDispatcher: dispatcher.wake,
      onEventsStored: metrics.eventStored,
      guard,
      log: log.child({ component: 'engine' }),
      hooks: options.engineHooks,
      shutdownGraceMs: config.shutdownGraceMs,
      maxResultBytes: config.maxResultBytes,
      maxTasksPerExecution: config.maxTasksPerExecution,
    });
    if (role !== 'dispatcher') {
      await engine.start();
      cleanups.push(() => engine.stop());
    }

    const ingest = createIngest({
      store,
      fanOut,
      onDeliveriesCommitted: dispatcher.wake,
      onEventsStored: metrics.eventStored,
    });
    // Notifications from RabbitMQ become events where the API runs. Pushed after the store, so
    // it stops (and its last messages commit) before the store closes.
    const readiness: ReadinessCheck[] = [];
    if (config.amqpIngest !== null && role !== 'dispatcher') {
      const consumer = createAmqpConsumer({
        ...config.amqpIngest,
        ingest,
        log: log.child({ component: 'amqp-ingest' }),
        metrics: metrics.amqpIngest,
        stopGraceMs: config.shutdownGraceMs,
      });
      consumer.start();
      cleanups.push(() => consumer.stop());
      readiness.push(consumer.status);
    }
    const app = createApp({
      store,
      tokens: tokenRegistry(tokens),
      transports,
      log,
      metrics: metrics.registry,
      ingest,
      fanOut,
      wakeDispatcher: dispatcher.wake,
      engine,
      serveApi: role !== 'dispatcher',
      readiness,
    });

    const server = http.createServer(app);
    server.keepAliveTimeout = 65_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // The server closes first (pushed last): no new work arrives while the dispatcher drains.
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
        }),
    );
    const port = (server.address() as AddressInfo).port;
    guard.setOwnPort(port);
    const host = config.host.includes(':') ? `[${config.host}]` : config.host;
    const url = `http://${host}:${port}`;
    log.info({ url, port, role }, `callback-relay listening on ${url}`);

    let closing: Promise<void> | undefined;
    return { url, port, close: () => (closing ??= runCleanups()) };
  } catch (err) {
    await runCleanups();
    throw err;
  }
}

/** The built-ins RELAY_TRANSPORTS enables, then the operator's modules (a broken one stops the start). */
async function openTransports(config: Config, guard: NetworkGuard, log: Logger): Promise<TransportRegistry> {
  const builtIns: TransportModule[] = config.transports.map((name) => {
    if (name === 'http') return createHttpTransportModule({ guard, connectionsPerOrigin: config.connectionsPerOrigin });
    if (name === 'amqp') return createAmqpTransport({ guard, log: log.child({ component: 'amqp' }) });
    // loadConfig refuses exec without RELAY_EXEC_DIR.
    const exec = config.exec!;
    return createExecTransport({ execDir: exec.dir, concurrency: exec.concurrency, envNames: exec.envNames, log: log.child({ component: 'exec' }) });
  });
  try {
    const loaded = await loadTransportModules(config.transportModules, new Set(['http', 'amqp', 'exec']));
    return createTransportRegistry([...builtIns, ...loaded]);
  } catch (err) {
    await Promise.allSettled(builtIns.map((t) => t.close()));
    throw err;
  }
}
