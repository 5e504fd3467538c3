import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { createApp } from './api/app.js';
import { ensureDataFolder } from './data-folder.js';
import { createHttpServer } from './api/server.js';
import type { ReadinessCheck } from './api/routes/operations.js';
import { ensureAdminToken, tokenRegistry } from './api/auth.js';
import { createDispatcher, type Dispatcher } from './dispatch/dispatcher.js';
import { handoffThrough, newHandoffBuffer } from './dispatch/handoff-room.js';
import { startDispatchThread, type DispatchThread } from './dispatch/thread.js';
import { createEngine } from './engine/engine.js';
import type { RunnerHooks } from './engine/runner.js';
import { createFanOut } from './fanout/fanout.js';
import { createAmqpConsumer } from './ingest/amqp-consumer.js';
import { createIngest } from './ingest/ingest.js';
import { createMetrics, withThreadMetrics, type MetricsJson } from './metrics.js';
import { createNetworkGuard, describeLoopbackPolicy, loopbackAllowed, type NetworkGuard } from './net/network-guard.js';
import type { SchemaTooNewError } from './store/migrations.js';
import { startPruner } from './store/pruner.js';
import { startBacklogMover } from './store/backlog-mover.js';
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
  /** Tells this process's dispatcher that deliveries were committed (none where it does not dispatch). */
  wakeDispatcher(): void;
  /** The dispatcher's metrics, for the main thread when this relay is its dispatch thread. */
  dispatchMetrics(): Promise<MetricsJson>;
  /** Where this process dispatches: how its appends hand fresh deliveries over (see Dispatcher.handoff, accept). */
  dispatcher: Pick<Dispatcher, 'handoff' | 'accept'> | null;
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
  /**
   * Role `all` only: the dispatcher runs in a worker thread with its own database connection
   * (src/dispatch/thread.ts), so that the API and the dispatcher each have a core. Needs the
   * compiled code (`dist/`) and a configuration from the environment, as `node dist/main.js`
   * has; a thread that dies stops the process (exit 70), as an uncaught error does.
   */
  dispatchThread?: boolean;
  /** This relay is that thread: no HTTP server, no API token, no pruner (the main thread has them). */
  inDispatchThread?: boolean;
  /** The dispatch thread's room for hand-overs, made by the main thread (handoff-room.ts). */
  handoffRoom?: SharedArrayBuffer;
  /**
   * A later release migrated the database while this relay runs (see the store's
   * watchMigrations): its fatal line is logged, and the caller stops the relay (main.ts: as on
   * SIGTERM, then exit code 2). Without it the relay closes itself. Called at most once, not
   * before the relay listens (though perhaps before startRelay's promise resolves).
   */
  onSuperseded?: (err: SchemaTooNewError) => void;
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
    const threaded = role === 'all' && options.dispatchThread === true;
    const serves = {
      api: role === 'all' || role === 'api',
      engine: role === 'all' || role === 'engine',
      dispatcher: (role === 'all' && !threaded) || role === 'dispatcher',
      http: options.inDispatchThread !== true,
    };
    // The API's token goes in the data folder when RELAY_TOKENS gives none; roles without the API need none.
    const keepsAdminToken = config.tokens.size === 0 && serves.api;
    if (serves.http) {
      if (config.database.kind === 'sqlite') {
        const namedBy = config.database.path === path.join(config.dataDir, 'relay.db') ? 'RELAY_DATA_DIR' : 'RELAY_DATABASE_URL';
        ensureDataFolder(path.dirname(config.database.path), namedBy);
      }
      if (keepsAdminToken) ensureDataFolder(config.dataDir, 'RELAY_DATA_DIR');
    }
    const store = await openStore(config, log, options.inDispatchThread ? 'dispatch-thread' : threaded ? 'beside-dispatch-thread' : 'process');
    cleanups.push(() => store.close());
    // The dispatch thread's lines would repeat the main thread's.
    if (serves.http) {
      log.info(
        {
          backend: store.backend,
          database: store.location,
          migrations: store.appliedMigrations,
          ...(store.backend === 'sqlite' ? { synchronous: config.durability } : {}),
        },
        store.appliedMigrations.length ? 'database migrated' : 'database up to date',
      );
    }

    // A process of an earlier release must not go on beside a later one (a migration may change
    // how the queue is shared): once the relay is up it stops; before that, as soon as it is.
    let supersededBy: SchemaTooNewError | null = null;
    let onSuperseded: (err: SchemaTooNewError) => void = (err) => void (supersededBy = err);
    if (serves.http) {
      cleanups.push(
        store.watchMigrations((err) => {
          log.fatal({ migrations: err.unknown, latest_known: err.latestKnown }, `${err.message} This process stops.`);
          onSuperseded(err);
        }),
      );
    }

    let tokens = config.tokens;
    if (keepsAdminToken) {
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
    if (serves.http) {
      log.info(
        { allow_loopback: config.allowLoopback, loopback_allowed: allowLoopback },
        describeLoopbackPolicy(config.allowLoopback, config.host, guard),
      );
    }
    const metrics = createMetrics(store);
    const fanOut = createFanOut({
      onUncompilable: (listener, err) =>
        log.warn({ listener: listener.id, project: listener.project, err: err.message }, 'a listener rule no longer compiles: the listener receives nothing until it is updated'),
    });

    // The API checks a listener's transport against the enabled ones; the engine needs none.
    const transports = serves.api || serves.dispatcher ? await openTransports(config, guard, log) : createTransportRegistry([]);
    cleanups.push(() => transports.close());
    if ((serves.api || serves.dispatcher) && serves.http) {
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
          onHandedOver: metrics.handedOver,
          breaker: config.breaker,
          routing: fanOut,
          handoffRoom: options.handoffRoom,
        })
      : null;
    if (dispatcher) {
      dispatcher.start();
      cleanups.push(() => dispatcher.stop());
      // What this process appends goes to its dispatcher as it commits (the thread's relay
      // appends only the relay's own events, recorded with attempts, which are never handed over).
      if (!options.inDispatchThread) store.handOffTo(handoffThrough(dispatcher.handoff, (d) => dispatcher.accept(d)));
    }
    // The dispatch thread starts once the server listens (it must know the port to refuse
    // callbacks to it); it stops here, after the server has closed and before the store.
    let thread: DispatchThread | null = null;
    if (threaded) cleanups.push(() => thread?.stop());
    // Deliveries committed here start at once where this process dispatches; elsewhere the
    // dispatchers hear of them from the database (PostgreSQL) or their next poll.
    const wakeDispatcher = () => {
      if (dispatcher) dispatcher.wake();
      else thread?.wake();
    };

    // Once per database at a time, whichever process holds the lock.
    if (serves.http) {
      const pruner = startPruner({ store, log: log.child({ component: 'pruner' }), retentionDays: config.retentionDays });
      cleanups.push(() => pruner.stop());
      // What a listener change left of its backlog (every process that serves the API moves some).
      const mover = startBacklogMover({ store, log: log.child({ component: 'backlogs' }) });
      cleanups.push(() => mover.stop());
    }

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
    let closing: Promise<void> | undefined;
    const closeRelay = () => (closing ??= runCleanups());
    const dispatchMetrics = async () => (await metrics.dispatchRegistry.getMetricsAsJSON()) as MetricsJson;
    if (!serves.http) return { url: '', port: 0, close: closeRelay, wakeDispatcher, dispatchMetrics, dispatcher };

    const app = createApp({
      store,
      tokens: tokenRegistry(tokens),
      transports,
      log,
      metrics: withThreadMetrics(metrics.registry, async () => (thread ? [await thread.metrics()] : [])),
      ingest,
      fanOut,
      wakeDispatcher,
      engine,
      replayScanLimit: config.replayScanLimit,
      maxListenersPerProject: config.maxListenersPerProject,
      listScanLimit: config.listScanLimit,
      serveApi: serves.api,
      readiness,
    });

    const server = createHttpServer(app);
    server.keepAliveTimeout = 65_000;
    // Each connection holds a file descriptor until it ends: without a bound, clients that open
    // connections and send nothing could take them all, and the database and the deliveries
    // would then fail for want of one. Past the bound a new connection is closed as it comes.
    server.maxConnections = config.maxConnections;
    let dropped = 0;
    let droppedSince = 0;
    server.on('drop', () => {
      dropped++;
      const now = Date.now();
      if (now - droppedSince < 10_000) return;
      log.warn({ dropped, open: config.maxConnections }, 'connections refused: RELAY_MAX_CONNECTIONS are open');
      dropped = 0;
      droppedSince = now;
    });
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
    if (threaded) {
      const room = newHandoffBuffer();
      thread = await startDispatchThread({
        data: { port, logFormat: config.logFormat, handoffRoom: room },
        log,
        shutdownGraceMs: config.shutdownGraceMs,
        maxInFlight: config.maxInFlight,
        onDied: (err) => {
          log.fatal({ err }, 'the dispatch thread stopped: the relay stops rather than run without its dispatcher');
          process.exit(70);
        },
      });
      store.handOffTo(handoffThrough({ ...thread.handoff, room }, thread.handOver));
      log.info('the dispatcher runs in its own thread');
    }
    log.info({ url, port, role }, `callback-relay listening on ${url}`);
    onSuperseded = options.onSuperseded ?? (() => void closeRelay());
    if (supersededBy) onSuperseded(supersededBy);
    return { url, port, close: closeRelay, wakeDispatcher, dispatchMetrics, dispatcher };
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
