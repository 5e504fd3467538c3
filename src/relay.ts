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
import { openStore } from './store/open.js';
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

export const ROLES = ['all', 'api', 'dispatcher', 'engine'] as const;
export type Role = (typeof ROLES)[number];

export interface RelayOptions {
  /**
   * `all` serves the API, runs the engine and dispatches; `api` serves the API only (engine
   * state changes commit there, other processes run them); `dispatcher` dispatches, `engine`
   * runs the engine's tasks; both serve only the operations routes. Default: config.role.
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
    const role = options.role ?? config.role;
    const serves = {
      api: role === 'all' || role === 'api',
      engine: role === 'all' || role === 'engine',
      dispatcher: role === 'all' || role === 'dispatcher',
    };
    const store = await openStore(config, log);
    cleanups.push(() => store.close());
    log.info(
      {
        backend: store.backend,
        database: store.location,
        migrations: store.appliedMigrations,
        ...(store.backend === 'sqlite' ? { synchronous: config.durability } : {}),
      },
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
    const fanOut = createFanOut({
      onUncompilable: (listener, err) =>
        log.warn({ listener: listener.id, project: listener.project, err: err.message }, 'a listener rule no longer compiles: the listener receives nothing until it is updated'),
    });

    // The API checks a listener's transport against the enabled ones; the engine needs none.
    const transports = serves.api || serves.dispatcher ? await openTransports(config, guard, log) : createTransportRegistry([]);
    cleanups.push(() => transports.close());
    if (serves.api || serves.dispatcher) {
      log.info({ transports: transports.names }, `transports enabled: ${transports.names.join(', ') || 'none'}`);
    }
    const dispatcher = serves.dispatcher
      ? createDispatcher({
          store,
          transports,
          log: log.child({ component: 'dispatcher' }),
          shutdownGraceMs: config.shutdownGraceMs,
          maxInFlight: config.maxInFlight,
          slotsPerOrigin: config.connectionsPerOrigin,
          onAttempt: metrics.attemptRecorded,
          breaker: config.breaker,
          routing: fanOut,
        })
      : null;
    if (dispatcher) {
      dispatcher.start();
      cleanups.push(() => dispatcher.stop());
    }
    // Deliveries committed here start at once where this process dispatches; elsewhere the
    // dispatchers hear of them from the database (PostgreSQL) or their next poll.
    const wakeDispatcher = () => dispatcher?.wake();

    // Once per database at a time, whichever process holds the lock.
    const pruner = startPruner({ store, log: log.child({ component: 'pruner' }), retentionDays: config.retentionDays });
    cleanups.push(() => pruner.stop());

    // State changes commit wherever the API runs; the runner (and its recovery of tasks whose
    // runner died, before the API takes requests) only in the engine's roles.
    const engine = createEngine({
      store,
      fanOut,
      wakeDispatcher,
      onEventsStored: metrics.eventStored,
      guard,
      log: log.child({ component: 'engine' }),
      hooks: options.engineHooks,
      shutdownGraceMs: config.shutdownGraceMs,
      maxResultBytes: config.maxResultBytes,
      maxTasksPerExecution: config.maxTasksPerExecution,
      taskLeaseMs: config.taskLeaseMs,
      exclusively: (name, fn) => store.exclusively(name, fn),
    });
    if (serves.engine) await engine.start();
    cleanups.push(() => engine.stop());

    const ingest = createIngest({
      store,
      fanOut,
      onDeliveriesCommitted: wakeDispatcher,
      onEventsStored: metrics.eventStored,
    });
    // Notifications from RabbitMQ become events where the API runs. Pushed after the store, so
    // it stops (and its last messages commit) before the store closes.
    const readiness: ReadinessCheck[] = [];
    if (config.amqpIngest !== null && serves.api) {
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
      wakeDispatcher,
      engine,
      serveApi: serves.api,
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
