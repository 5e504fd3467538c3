import express from 'express';
import type { Logger } from 'pino';
import type { MetricsSource } from '../metrics.js';
import type { Engine } from '../engine/engine.js';
import type { FanOutCache } from '../fanout/fanout.js';
import type { Ingest } from '../ingest/ingest.js';
import type { TransportRegistry } from '../transports/registry.js';
import type { Store } from '../store/store.js';
import { BODY_LIMIT } from './limits.js';
import { jsonBody } from './json-body.js';
import { requireToken, type TokenRegistry } from './auth.js';
import { requestLog } from './request-log.js';
import { requireMediaType } from './media-type.js';
import { notFound, problemHandler } from './problem.js';
import { deliveryRoutes } from './routes/deliveries.js';
import { eventRoutes, postEvents } from './routes/events.js';
import { executionRoutes } from './routes/executions.js';
import { listenerRoutes } from './routes/listeners.js';
import { mistralRoutes } from './routes/mistral.js';
import { operationRoutes, type ReadinessCheck } from './routes/operations.js';
import { statsRoutes } from './routes/stats.js';
import { taskRoutes } from './routes/tasks.js';
import { workbookRoutes } from './routes/workbooks.js';
import { dashboardRoutes } from './ui.js';


export interface AppDeps {
  store: Store;
  tokens: TokenRegistry;
  /** The enabled transports, which listeners may name. */
  transports: TransportRegistry;
  log: Logger;
  metrics: MetricsSource;
  ingest: Ingest;
  fanOut: FanOutCache;
  /** Wakes the dispatcher after something became due. */
  wakeDispatcher: () => void;
  /** The embedded engine: executions and tasks. */
  engine: Engine;
  /** Events one replay call looks at (RELAY_REPLAY_SCAN_LIMIT). */
  replayScanLimit?: number;
  /** Listeners one project may have (RELAY_MAX_LISTENERS_PER_PROJECT). */
  maxListenersPerProject?: number;
  /** Rows a page of events, deliveries or executions looks at when its filters are checked row by row (RELAY_LIST_SCAN_LIMIT). */
  listScanLimit?: number;
  /** false: only the operations routes (a dispatcher-only process). */
  serveApi?: boolean;
  /** What `/readyz` checks besides the database. */
  readiness?: ReadinessCheck[];
}


export function createApp(deps: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');

  app.use(requestLog(deps.log));

  // Ingest, mounted ahead of the routers: a single-event request passes one route match, the
  // token check and its own body parsing, not the operations and /v1 routers' layers.
  const requireApiToken = requireToken(deps.tokens);
  if (deps.serveApi !== false) app.post('/v1/events', requireApiToken, ...postEvents({ ingest: deps.ingest }));

  app.use(operationRoutes({ store: deps.store, metrics: deps.metrics, readiness: deps.readiness, servesApi: deps.serveApi !== false }));

  const v1 = express.Router();
  v1.use(requireApiToken);
  // Routes with bodies of their own kind and size parse them themselves, before the JSON default.
  v1.use('/ingest/mistral', mistralRoutes({ ingest: deps.ingest }));
  v1.use('/events', eventRoutes({ store: deps.store, listScanLimit: deps.listScanLimit }));
  v1.use('/workbooks', workbookRoutes({ store: deps.store }));
  v1.use(requireMediaType());
  v1.use(jsonBody(BODY_LIMIT));
  v1.use('/listeners', listenerRoutes(deps));
  v1.use(statsRoutes({ store: deps.store }));
  v1.use('/deliveries', deliveryRoutes({ store: deps.store, onRequeued: deps.wakeDispatcher, listScanLimit: deps.listScanLimit }));
  v1.use('/executions', executionRoutes({ store: deps.store, engine: deps.engine, listScanLimit: deps.listScanLimit }));
  v1.use('/tasks', taskRoutes({ store: deps.store, engine: deps.engine }));
  if (deps.serveApi !== false) {
    app.use('/v1', v1);
    // The dashboard is a client of /v1, so it lives where the API does.
    app.use('/ui', dashboardRoutes());
  }

  app.use((req) => {
    throw notFound(`${req.method} ${req.path}`);
  });
  app.use(problemHandler(deps.log));
  return app;
}
