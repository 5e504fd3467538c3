import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Webhook } from 'standardwebhooks';
import { backendOf, relayDatabaseEnv, type TestBackend } from './backend.js';

/*
 * Real relay processes (`node dist/main.js`) and a webhook receiver for crash and restart
 * tests. Run `npm run build` first: the children run the compiled code.
 */

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const MAIN_JS = path.join(ROOT, 'dist', 'main.js');

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** The parent's environment without any RELAY_ variable, plus `extra`. */
/**
 * A receiver's server: `handle` gets each request with its whole body as text. Aborted requests
 * and answers are ignored, and connections stay open longer than the relay's keep-alive.
 */
export function bodyServer(handle: (req: http.IncomingMessage, res: http.ServerResponse, body: string) => unknown): http.Server {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => void handle(req, res, Buffer.concat(chunks).toString('utf8')));
    req.on('error', () => {});
    res.on('error', () => {});
  });
  server.keepAliveTimeout = 65_000;
  return server;
}

export function relayEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RELAY_')) env[k] = v;
  return { ...env, ...extra };
}

const children = new Set<RelayProcess>();

export interface SpawnOptions {
  /** A command line that runs `node dist/main.js` for it (e.g. `unshare …`); it must exec into node, so that the pid is the relay's own. */
  via?: string[];
  /** In a process group of its own. */
  detached?: boolean;
}

export class RelayProcess {
  readonly child: ChildProcess;
  readonly logs: LogLine[] = [];
  /** Every stdout line as printed, JSON or not. */
  readonly stdoutLines: string[] = [];
  stderr = '';
  exit: Exit | null = null;
  readonly exited: Promise<Exit>;
  url = '';
  private waiters: Array<() => void> = [];

  constructor(
    readonly env: Record<string, string>,
    { via = [], detached = false }: SpawnOptions = {},
  ) {
    const [command, ...args] = [...via, process.execPath, MAIN_JS];
    this.child = spawn(command, args, { cwd: ROOT, env: relayEnv(env), stdio: ['ignore', 'pipe', 'pipe'], detached });
    children.add(this);
    readline.createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.stdoutLines.push(line);
      try {
        const parsed = JSON.parse(line) as LogLine;
        if (parsed && typeof parsed === 'object' && typeof parsed.msg === 'string') this.logs.push(parsed);
      } catch {
        /* not a log line */
      }
      this.notify();
    });
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    this.exited = new Promise<Exit>((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        children.delete(this);
        this.notify();
        resolve(this.exit);
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Which database it runs on (RELAY_TEST_BACKEND, or the caller's RELAY_DATABASE_URL). */
  get backend(): TestBackend {
    return backendOf(this.env);
  }

  /** stdout and stderr as one text, for "does this secret appear anywhere" checks. */
  get output(): string {
    return this.stdoutLines.join('\n') + '\n' + this.stderr;
  }

  private notify() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** How many of its last stdout lines a failure message shows. */
  protected readonly stdoutLinesInFailures: number = Infinity;

  private outputForFailure(): string {
    return `stdout:\n${this.stdoutLines.slice(-this.stdoutLinesInFailures).join('\n')}\nstderr:\n${this.stderr}`;
  }

  /** Resolves with the first log line `match` accepts; rejects on timeout or exit. */
  waitForLog(match: (l: LogLine) => boolean, timeoutMs = 15_000): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`relay ${this.pid}: no matching log line within ${timeoutMs} ms; ${this.outputForFailure()}`)),
        timeoutMs,
      );
      const check = () => {
        const found = this.logs.find(match);
        if (found) {
          clearTimeout(timer);
          resolve(found);
        } else if (this.exit) {
          clearTimeout(timer);
          reject(new Error(`relay ${this.pid} exited (${JSON.stringify(this.exit)}) before the log line; ${this.outputForFailure()}`));
        } else {
          this.waiters.push(check);
        }
      };
      check();
    });
  }

  /** Signals this test sent, to tell them from a signal that came from elsewhere. */
  readonly sent = new Set<NodeJS.Signals>();

  signal(sig: NodeJS.Signals) {
    if (this.exit) return;
    this.sent.add(sig);
    this.child.kill(sig);
  }

  /** SIGKILL, then wait for the exit. */
  async kill9(): Promise<Exit> {
    this.signal('SIGKILL');
    return this.exited;
  }

  /** SIGTERM and wait (SIGKILL after `timeoutMs`). */
  async terminate(timeoutMs = 15_000): Promise<Exit> {
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), timeoutMs);
    const exit = await this.exited;
    clearTimeout(timer);
    return exit;
  }

  /** SIGTERM and wait (at most `timeoutMs`, then SIGKILL and throw). */
  async stop(timeoutMs = 15_000): Promise<Exit> {
    const exit = await this.terminate(timeoutMs);
    if (exit.signal === 'SIGKILL') throw new Error(`relay ${this.pid} did not stop within ${timeoutMs} ms of SIGTERM`);
    return exit;
  }
}

/**
 * `env` with the database of this run: on the postgres run, the PostgreSQL schema of the relay's
 * RELAY_DATA_DIR (the same one for every process started on that folder), unless `env` names
 * a database itself. `new RelayProcess(env)` takes `env` as it is.
 */
export async function withTestDatabase(env: Record<string, string>): Promise<Record<string, string>> {
  return { ...env, ...(await relayDatabaseEnv(env)) };
}

/** Waits for the relay's "listening" line and reads its `url` from it. */
export async function untilListening<R extends RelayProcess>(relay: R, timeoutMs?: number): Promise<R> {
  const line = await relay.waitForLog((l) => l.msg.startsWith('callback-relay listening on'), timeoutMs);
  relay.url = String(line.url);
  return relay;
}

/** Spawns a relay and waits for its "listening" line; `url` is read from that line. */
export async function startRelayProcess(env: Record<string, string>, timeoutMs = 20_000): Promise<RelayProcess> {
  env = await withTestDatabase(env);
  for (let tries = 1; ; tries++) {
    const relay = new RelayProcess(env);
    try {
      return await untilListening(relay, timeoutMs);
    } catch (err) {
      // A relay never signals itself: a signal this test did not send came from another
      // process on the machine (a stray pkill). Start once more rather than fail on that.
      const signal = relay.exit?.signal;
      if (tries >= 2 || !signal || relay.sent.has(signal)) throw err;
      console.warn(`relay ${relay.pid} was killed by ${signal} from outside the test while starting; starting it again`);
    }
  }
}

/** Spawns a relay expected to refuse to start; resolves with its exit and output. */
export async function runToExit(env: Record<string, string>, timeoutMs = 15_000): Promise<RelayProcess> {
  const relay = new RelayProcess(await withTestDatabase(env));
  const timer = setTimeout(() => relay.signal('SIGKILL'), timeoutMs);
  await relay.exited;
  clearTimeout(timer);
  return relay;
}

/** SIGKILLs every relay child still running (for afterAll, also after failures). */
export async function killAllRelays(): Promise<void> {
  await Promise.all([...children].map((c) => c.kill9()));
}

// ---- receiver ------------------------------------------------------------------------------

export interface Received {
  webhookId: string;
  eventId: string;
  attempt: number;
}

export interface ReceiverOptions {
  /** Milliseconds before answering each request. */
  delayMs?: () => number;
}

/**
 * A webhook receiver on 127.0.0.1: verifies each signature with `standardwebhooks` and
 * records every webhook-id and event id it sees (on arrival, before answering 200).
 */
export class Receiver {
  readonly server: http.Server;
  url = '';
  secret = '';
  readonly received: Received[] = [];
  /** webhook-id → times seen. */
  readonly byWebhookId = new Map<string, number>();
  /** event id → the webhook-ids it came with. */
  readonly byEventId = new Map<string, Set<string>>();
  readonly badSignatures: string[] = [];
  inFlight = 0;
  maxInFlight = 0;
  /** Requests wait for this before answering (a closed gate holds them). */
  gate: Promise<void> = Promise.resolve();
  /** Called on every arrival, after it is recorded. */
  onReceive: ((r: Received) => void) | null = null;
  /** Milliseconds before answering; may be changed between phases of a test. */
  delayMs: () => number;

  constructor(options: ReceiverOptions = {}) {
    this.delayMs = options.delayMs ?? (() => Math.random() * 5);
    this.server = bodyServer((req, res, body) => this.handle(req, res, body));
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hook`;
    return this;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse, body: string) {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
      const webhookId = headers['webhook-id'] ?? '';
      let eventId = '';
      try {
        new Webhook(this.secret).verify(body, headers);
      } catch (err) {
        this.badSignatures.push(`${webhookId}: ${(err as Error).message}`);
      }
      try {
        eventId = String((JSON.parse(body) as { id?: unknown }).id ?? '');
      } catch {
        this.badSignatures.push(`${webhookId}: body is not JSON`);
      }
      const r: Received = { webhookId, eventId, attempt: Number(headers['webhook-attempt']) };
      this.received.push(r);
      this.byWebhookId.set(webhookId, (this.byWebhookId.get(webhookId) ?? 0) + 1);
      let ids = this.byEventId.get(eventId);
      if (!ids) this.byEventId.set(eventId, (ids = new Set()));
      ids.add(webhookId);
      this.onReceive?.(r);
      await this.gate;
      const delay = this.delayMs();
      if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    } finally {
      this.inFlight--;
    }
  }

  /** How many webhook-ids arrived more than once. */
  get duplicateWebhookIds(): number {
    let n = 0;
    for (const count of this.byWebhookId.values()) if (count > 1) n++;
    return n;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Polls `check` until it returns a truthy value; throws `describe()` on timeout. */
export async function waitUntil<T>(check: () => T | Promise<T>, timeoutMs: number, describe: () => string, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${describe()}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
