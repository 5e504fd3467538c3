import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/*
 * A real webhook receiver for integration tests: `node:http` on 127.0.0.1, port 0. It records
 * every request (method, url, headers, raw body, arrival time) and answers by a script set per
 * path: a list of answers taken in turn (the last one repeats), or a function of the request and
 * its 1-based number on that path. Paths without a script answer 200.
 */

export interface ReceivedRequest {
  method: string;
  /** As sent: path and query. */
  url: string;
  /** The path without the query. */
  path: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  /** The raw body bytes. */
  body: Buffer;
  /** The body as UTF-8 text. */
  text: string;
  /** Epoch ms (fractional) when the request's body had fully arrived. */
  at: number;
  /** 1-based number of this request on its path. */
  n: number;
}

export type ReceiverAction =
  | { status?: number; headers?: Record<string, string>; body?: string | Buffer }
  /** Never answer; the socket stays open until the client gives up or the receiver closes. */
  | 'hang'
  /** Read the request, then drop the connection with a TCP RST. */
  | 'reset'
  | { redirect: string; status?: number };

export type ReceiverScript = Array<number | ReceiverAction> | ((req: ReceivedRequest, n: number) => number | ReceiverAction);

export interface Receiver {
  /** `http://127.0.0.1:<port>` */
  readonly origin: string;
  readonly port: number;
  /** The absolute URL of a path on this receiver. */
  url(path: string): string;
  /** Sets how `path` answers from now on; its request count starts again from 1. */
  respond(path: string, script: ReceiverScript): void;
  /** Every request so far, in arrival order; only those to `path` when given. */
  requests(path?: string): ReceivedRequest[];
  /** Resolves with the requests once `predicate` holds for the recorded list; rejects after `timeoutMs`. */
  waitFor(predicate: (requests: ReceivedRequest[]) => boolean, timeoutMs?: number): Promise<ReceivedRequest[]>;
  /** Resolves once `path` has received at least `count` requests, with exactly those requests. */
  waitForCount(path: string, count: number, timeoutMs?: number): Promise<ReceivedRequest[]>;
  close(): Promise<void>;
}

const toAction = (a: number | ReceiverAction): ReceiverAction => (typeof a === 'number' ? { status: a } : a);

export async function startReceiver(): Promise<Receiver> {
  const received: ReceivedRequest[] = [];
  const scripts = new Map<string, { script: ReceiverScript; count: number }>();
  const sockets = new Set<Socket>();
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of [...waiters]) w();
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = req.url ?? '/';
      const parsed = new URL(url, 'http://receiver.invalid');
      const entry = scripts.get(parsed.pathname) ?? { script: [200], count: 0 };
      scripts.set(parsed.pathname, entry);
      entry.count += 1;
      const body = Buffer.concat(chunks);
      const record: ReceivedRequest = {
        method: req.method ?? '',
        url,
        path: parsed.pathname,
        query: parsed.searchParams,
        headers: req.headers,
        body,
        text: body.toString('utf8'),
        at: performance.timeOrigin + performance.now(),
        n: entry.count,
      };
      received.push(record);
      const { script } = entry;
      const action = toAction(
        typeof script === 'function' ? script(record, entry.count) : script[Math.min(entry.count, script.length) - 1] ?? 200,
      );
      notify();

      if (action === 'hang') return;
      if (action === 'reset') {
        req.socket.resetAndDestroy();
        return;
      }
      if ('redirect' in action) {
        res.writeHead(action.status ?? 302, { location: action.redirect, 'content-length': '0' });
        res.end();
        return;
      }
      const payload = action.body ?? '';
      res.writeHead(action.status ?? 200, { 'content-length': String(Buffer.byteLength(payload)), ...action.headers });
      res.end(payload);
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const origin = `http://127.0.0.1:${port}`;

  const requests = (path?: string) => (path === undefined ? [...received] : received.filter((r) => r.path === path));

  function waitFor(predicate: (requests: ReceivedRequest[]) => boolean, timeoutMs = 5_000): Promise<ReceivedRequest[]> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const snapshot = requests();
        if (!predicate(snapshot)) return false;
        done();
        resolve(snapshot);
        return true;
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`receiver: condition not met within ${timeoutMs} ms; received ${received.length} request(s): ${received.map((r) => `${r.method} ${r.url}`).join(', ')}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      if (!check()) waiters.add(check);
    });
  }

  return {
    origin,
    port,
    url: (path) => origin + path,
    respond(path, script) {
      scripts.set(path, { script, count: 0 });
    },
    requests,
    waitFor,
    async waitForCount(path, count, timeoutMs) {
      await waitFor((all) => all.filter((r) => r.path === path).length >= count, timeoutMs);
      return requests(path);
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
