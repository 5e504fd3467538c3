import fs from 'node:fs';
import { Router } from 'express';
import type { MetricsSource } from '../../metrics.js';
import type { OperationsStore } from '../../store/store.js';
import { Problem } from '../problem.js';

export const OPENAPI_FILE = new URL('../../../openapi.yaml', import.meta.url);

/** A part the relay needs besides the database (a notification consumer): ready, or why not. */
export type ReadinessCheck = () => { ready: boolean; detail: string };

/** Routes for operators and load balancers; no token. `/openapi.yaml` where the API is served. */
export function operationRoutes({
  store,
  metrics,
  readiness = [],
  servesApi = true,
}: {
  store: OperationsStore;
  metrics: MetricsSource;
  readiness?: ReadinessCheck[];
  servesApi?: boolean;
}): Router {
  const router = Router();

  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  router.get('/readyz', async (_req, res) => {
    try {
      await store.ping();
    } catch (err) {
      throw new Problem(503, 'unavailable', 'Service unavailable', `the database does not answer: ${(err as Error).message}`, undefined, {
        'Retry-After': '1',
      });
    }
    const notReady = readiness.map((check) => check()).filter((r) => !r.ready);
    if (notReady.length > 0) {
      throw new Problem(503, 'unavailable', 'Service unavailable', notReady.map((r) => r.detail).join('; '), undefined, { 'Retry-After': '1' });
    }
    res.json({ status: 'ready', database: store.backend });
  });

  if (servesApi) {
    const openapi = fs.readFileSync(OPENAPI_FILE, 'utf8');
    router.get('/openapi.yaml', (_req, res) => {
      res.type('application/yaml').send(openapi);
    });
  }

  router.get('/metrics', async (_req, res) => {
    res.type(metrics.contentType).send(await metrics.metrics());
  });

  return router;
}
