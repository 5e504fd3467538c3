import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { createHttpServer } from '../src/api/server.js';

const servers: http.Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
});

async function serve(app: express.Express): Promise<{ server: http.Server; url: string }> {
  const server = createHttpServer(app);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe('the HTTP server of an express app', () => {
  it('makes requests and responses with the prototypes express gives them, so express changes neither', async () => {
    const app = express();
    const inRoute: object[] = [];
    app.get('/x', (req, res) => {
      inRoute.push(Object.getPrototypeOf(req) as object, Object.getPrototypeOf(res) as object);
      res.json({ ok: true });
    });
    const { server, url } = await serve(app);
    const atArrival: object[] = [];
    // Runs before the app does: the objects as Node made them.
    server.prependListener('request', (req, res) => atArrival.push(Object.getPrototypeOf(req) as object, Object.getPrototypeOf(res) as object));
    const res = await request(`${url}/x`);
    expect(await res.body.json()).toEqual({ ok: true });
    expect(atArrival).toHaveLength(2);
    // Compared, not printed: express's getters on these prototypes need a request to read.
    expect(inRoute[0] === atArrival[0], 'the request kept its prototype').toBe(true);
    expect(inRoute[1] === atArrival[1], 'the response kept its prototype').toBe(true);
    expect(atArrival[0] instanceof http.IncomingMessage && atArrival[0] !== http.IncomingMessage.prototype).toBe(true);
    expect(atArrival[1] instanceof http.ServerResponse && atArrival[1] !== http.ServerResponse.prototype).toBe(true);
  });

  it("keeps express's request and response API, each app its own", async () => {
    const apps = [express(), express()];
    apps.forEach((app, n) => {
      const router = express.Router();
      router.post('/items/:id', express.json(), (req, res) => {
        res.locals.seen = true;
        res
          .status(201)
          .set('x-app', String(n))
          .json({
            app: req.app === app,
            path: req.path,
            baseUrl: req.baseUrl,
            originalUrl: req.originalUrl,
            id: req.params.id,
            query: req.query,
            header: req.get('x-given'),
            isJson: req.is('application/json'),
            body: req.body as unknown,
            ip: req.ip,
            locals: res.locals.seen === true,
          });
      });
      app.set('query parser', 'simple');
      app.use('/v1', router);
      app.use((_req: express.Request, res: express.Response) => res.status(404).type('text').send('none here'));
    });
    const [a, b] = await Promise.all(apps.map(serve));
    for (const [n, { url }] of [a, b].entries()) {
      const res = await request(`${url}/v1/items/42?q=1`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-given': 'yes' },
        body: JSON.stringify({ n }),
      });
      expect(res.statusCode).toBe(201);
      expect(res.headers['x-app']).toBe(String(n));
      expect(await res.body.json()).toEqual({
        app: true,
        path: '/items/42',
        baseUrl: '/v1',
        originalUrl: '/v1/items/42?q=1',
        id: '42',
        query: { q: '1' },
        header: 'yes',
        isJson: 'application/json',
        body: { n },
        ip: '127.0.0.1',
        locals: true,
      });
      const missing = await request(`${url}/elsewhere`);
      expect(missing.statusCode).toBe(404);
      expect(missing.headers['content-type']).toMatch(/^text\/plain/);
      expect(await missing.body.text()).toBe('none here');
    }
  });
});
