import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { Router } from 'express';
import { notFound, Problem } from './problem.js';

/** Where `npm run build` puts the dashboard (scripts/build-ui.mjs); the same folder seen from src/ and dist/. */
export const DASHBOARD_DIR = fileURLToPath(new URL('../../dist/ui/', import.meta.url));

/**
 * Only this origin's own files, nothing inline, no frames, no forms posted anywhere: a page
 * that holds a bearer token gives an injected script nowhere to run and nowhere to send it.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');

/**
 * The dashboard at /ui: static files, no token (the page asks for one and sends it to /v1
 * only). Hashed assets are cached for a year; index.html is answered for /ui, /ui/ and every
 * client route below, revalidated each time so a new build is picked up.
 */
export function dashboardRoutes(dir = DASHBOARD_DIR): Router {
  const router = Router();
  const index = path.join(dir, 'index.html');

  router.use((_req, res, next) => {
    res.setHeader('Content-Security-Policy', DASHBOARD_CSP);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    next();
  });

  // File names carry a hash of their content, so a name never changes meaning.
  router.use('/assets', express.static(path.join(dir, 'assets'), { index: false, immutable: true, maxAge: '365d', redirect: false }));
  router.use('/assets', (req) => {
    throw notFound(`dashboard asset ${req.path}`);
  });

  // Middleware, like the static files, not a route: the dashboard is no API operation.
  router.use((req, res, next) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return next();
    res.setHeader('Cache-Control', 'no-cache');
    res.sendFile(index, (err) => {
      if (!err) return;
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return next(new Problem(404, 'not-found', 'Not found', 'the dashboard is not built: run `npm run build`, then reload'));
      }
      next(err);
    });
  });

  return router;
}
