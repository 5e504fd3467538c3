import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { request, type ApiResponse } from './relay.js';
import { bodyServer, RelayProcess, untilListening, type Exit, type LogLine } from './relay-process.js';

/*
 * Several relay processes (`node dist/main.js`; run `npm run build` first) on one PostgreSQL
 * schema, and a receiver that knows which of them sent each request. A process may run on a
 * "host" of its own (a UTS namespace with its own hostname): the engine then cannot tell from
 * the process table that it died, as with a relay on another machine, and only its leases say.
 */

export const MULTI_TOKEN = 'multiprocess-token-0123456789';

const live = new Set<RelayChild>();
// A vitest worker that ends early must not leave relays writing into a dropped schema.
process.once('exit', () => {
  for (const relay of live) relay.child.kill('SIGKILL');
});

export class RelayChild extends RelayProcess {
  /** `host`: run in a UTS namespace of its own with this hostname (needs root, as the test machine has). */
  constructor(
    env: Record<string, string>,
    readonly host?: string,
  ) {
    // unshare and sh exec into node: the pid is the relay's own.
    super(env, { via: host ? ['unshare', '--uts', 'sh', '-c', 'hostname "$0" && exec "$@"', host] : [], detached: true });
    live.add(this);
    void this.exited.then((exit) => {
      // Only an exit this test did not signal is reported.
      if (this.sent.size === 0 && !this.exitExpected) process.stderr.write(`relay ${this.pid} exited unexpectedly (${exit.code ?? exit.signal}):\n${this.stdoutLines.slice(-20).join('\n')}\n${this.stderr}\n`);
      live.delete(this);
    });
  }

  protected override readonly stdoutLinesInFailures = 40;

  /** The test expects this relay to stop by itself: its exit is not reported. */
  exitExpected = false;

  override waitForLog(match: (l: LogLine) => boolean, timeoutMs = 20_000): Promise<LogLine> {
    return super.waitForLog(match, timeoutMs);
  }

  /** Its warnings and errors, counted by message (with the error's text), for failure messages. */
  troubles(): Record<string, number> {
    const describe = (l: LogLine) => {
      const err = (l.err as { message?: string } | undefined)?.message;
      return `${l.msg}${err ? `: ${err}` : ''}${l.lastError ? ` (last error: ${String(l.lastError)})` : ''}`;
    };
    return countBy(this.logs.filter((l) => l.level >= 40), describe);
  }

  /** fetch against this relay with MULTI_TOKEN; every answer is checked against openapi.yaml. */
  api(method: string, pathname: string, body?: unknown, opts: { headers?: Record<string, string>; raw?: string } = {}): Promise<ApiResponse> {
    return request(this.url, method, pathname, body, { token: MULTI_TOKEN, ...opts });
  }

  /** SIGTERM and wait (SIGKILL after `timeoutMs`); a relay that needed the SIGKILL is no error here. */
  override stop(timeoutMs = 15_000): Promise<Exit> {
    return this.terminate(timeoutMs);
  }
}

/**
 * Starts a relay on port 0 with the test token and `env` (the schema's variables among them)
 * and waits until it listens.
 */
export async function startRelayChild(env: Record<string, string>, opts: { host?: string } = {}): Promise<RelayChild> {
  const relay = new RelayChild(
    {
      RELAY_PORT: '0',
      RELAY_TOKENS: `${MULTI_TOKEN}=mp`,
      RELAY_LOG_LEVEL: 'info',
      RELAY_LOG_FORMAT: 'json',
      RELAY_SHUTDOWN_GRACE_MS: '0',
      ...env,
    },
    opts.host,
  );
  return untilListening(relay);
}

/** SIGKILLs every relay this file started that still runs (for afterAll, also after failures). */
export async function killAllRelayChildren(): Promise<void> {
  await Promise.all([...live].map((r) => r.kill9()));
}

// ---- which process sent a request -----------------------------------------------------------

/** Inodes of the TCP sockets whose local port is `localPort` and remote port `remotePort`. */
function socketInodes(localPort: number, remotePort: number): string[] {
  const inodes: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const port = (address: string) => Number.parseInt(address.slice(address.lastIndexOf(':') + 1), 16);
      if (port(f[1]) === localPort && port(f[2]) === remotePort) inodes.push(f[9]);
    }
  }
  return inodes;
}

/**
 * The pid among `pids` holding the client end of the connection that reached our server port
 * `serverPort` from `clientPort` (read from /proc while the sender lives), or null.
 */
export function senderPid(clientPort: number, serverPort: number, pids: number[]): number | null {
  const wanted = new Set(socketInodes(clientPort, serverPort).map((inode) => `socket:[${inode}]`));
  if (wanted.size === 0) return null;
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (wanted.has(fs.readlinkSync(`/proc/${pid}/fd/${fd}`))) return pid;
      } catch {
        /* closed meanwhile */
      }
    }
  }
  return null;
}

// ---- receiver -------------------------------------------------------------------------------

export interface Hit {
  /** 1-based arrival order. */
  n: number;
  path: string;
  /** Empty for requests without one (an engine's std.http call). */
  webhookId: string;
  attempt: number;
  /** The body's `id` (the event id of a json delivery), or ''. */
  eventId: string;
  body: any;
  /** Epoch ms when the body had arrived. */
  at: number;
  /** The relay process whose socket sent it (see senderPid), or null when none of them. */
  sender: number | null;
  answered: boolean;
  /** The sender's end went away before the answer (it was killed). */
  dropped: boolean;
}

/**
 * A receiver on 127.0.0.1, port 0, that records every request with the relay process that sent
 * it, verifies webhook signatures once `secret` is set, and answers 200 `{"ok":true}` after
 * `delayMs()` — or, while held, only after release().
 */
export class HookReceiver {
  readonly hits: Hit[] = [];
  /** The event ids among the hits. */
  readonly eventIds = new Set<string>();
  readonly badSignatures: string[] = [];
  secret = '';
  delayMs: () => number = () => 0;
  /** Called on every arrival, after it is recorded. */
  onHit: ((hit: Hit) => void) | null = null;
  private server: http.Server;
  private port = 0;
  private holding: Promise<void> | null = null;
  private releaseHeld: () => void = () => {};
  private readonly senderOfSocket = new WeakMap<Socket, number | null>();

  /** `pids()`: the relay processes a request may come from. */
  constructor(private readonly pids: () => number[]) {
    this.server = bodyServer((req, res, body) => this.handle(req, res, body));
    // Looked up as the connection is accepted, the earliest moment: a sender that gives up on
    // a slow answer closes its end, and then /proc no longer tells whose it was.
    this.server.on('connection', (socket: Socket) => {
      this.senderOfSocket.set(socket, senderPid(socket.remotePort!, this.port, this.pids()));
    });
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** Requests from now on wait until release(). */
  hold(): void {
    this.holding ??= new Promise((resolve) => (this.releaseHeld = resolve));
  }

  release(): void {
    this.releaseHeld();
    this.holding = null;
  }

  /** Those of `ids` that never arrived. */
  missing(ids: Iterable<string>): string[] {
    return [...ids].filter((id) => !this.eventIds.has(id));
  }

  /** Arrived, not answered, and the sender still waits. */
  inFlight(): Hit[] {
    return this.hits.filter((h) => !h.answered && !h.dropped);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse, text: string) {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
    let body: any = null;
    try {
      body = text === '' ? null : JSON.parse(text);
    } catch {
      body = text;
    }
    const webhookId = headers['webhook-id'] ?? '';
    if (webhookId && this.secret) {
      try {
        new Webhook(this.secret).verify(text, headers);
      } catch (err) {
        this.badSignatures.push(`${webhookId}: ${(err as Error).message}`);
      }
    }
    const hit: Hit = {
      n: this.hits.length + 1,
      path: new URL(req.url ?? '/', 'http://receiver.invalid').pathname,
      webhookId,
      attempt: Number(headers['webhook-attempt'] ?? 0),
      eventId: typeof body?.id === 'string' ? body.id : '',
      body,
      at: Date.now(),
      sender: this.senderOfSocket.get(req.socket) ?? null,
      answered: false,
      dropped: false,
    };
    res.on('close', () => {
      if (!res.writableFinished) hit.dropped = true;
    });
    this.hits.push(hit);
    this.eventIds.add(hit.eventId);
    this.onHit?.(hit);
    if (this.holding) await this.holding;
    const delay = this.delayMs();
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    if (hit.dropped) {
      res.destroy();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    hit.answered = true;
  }

  async close(): Promise<void> {
    this.release();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

// ---- API helpers ----------------------------------------------------------------------------

export interface DeliveryItem {
  id: string;
  event_id: string;
  listener_id: string;
  status: string;
  attempt_count: number;
}

/** Every delivery of a listener, paged through the API. */
export async function deliveriesOf(relay: RelayChild, listenerId: string): Promise<DeliveryItem[]> {
  const all: DeliveryItem[] = [];
  let cursor: string | null = null;
  do {
    const res: ApiResponse = await relay.api('GET', `/v1/deliveries?listener_id=${listenerId}&limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    if (res.status !== 200) throw new Error(`listing deliveries: ${res.status} ${res.text}`);
    all.push(...res.body.items);
    cursor = res.body.next_cursor;
  } while (cursor);
  return all;
}

export const countBy = <T>(items: T[], key: (t: T) => string): Record<string, number> =>
  items.reduce<Record<string, number>>((acc, t) => ((acc[key(t)] = (acc[key(t)] ?? 0) + 1), acc), {});

export function groupBy<T>(items: T[], key: (t: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
