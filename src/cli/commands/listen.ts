import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Command } from 'commander';
import { EVENT_CATEGORIES } from '../../records/event.js';
import { action, type CliIo, type CommandContext } from '../context.js';
import { ApiError, CommandFailedError } from '../errors.js';
import { collectChoices, collectList, intInRange } from '../options.js';
import { helpExamples as examples } from '../output.js';
import { DEFAULT_TOLERANCE_SECONDS, verifyWebhook, type Verification } from '../webhook-signature.js';
import { EVENT_HELP, EVENT_TYPE_HELP } from './listener-add.js';

interface ListenOptions {
  workbook?: string;
  eventType?: string[];
  event?: string[];
}

/** Larger than any delivery the relay sends (events are at most 1 MiB of JSON, batches are split). */
const MAX_BODY_BYTES = 16 * 1024 * 1024;
/** A few quick tries: the receiver is a terminal that may be gone, not a service to wait hours for. */
const RETRY_SCHEDULE_MS = [1000, 5000, 30_000];

/** What one arriving request came to: its signature verdict and the event it carried. */
export interface ReceivedDelivery {
  received_at: string;
  webhook_id: string | null;
  attempt: number | null;
  signature: 'valid' | 'invalid';
  reason?: string;
  event: Record<string, unknown> | null;
}

function parseEvent(body: Buffer): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(body.toString('utf8'));
    return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

export function describeDelivery(headers: http.IncomingHttpHeaders, body: Buffer, verdict: Verification, now: Date): ReceivedDelivery {
  const one = (name: string) => {
    const v = headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
  const attempt = Number(one('webhook-attempt'));
  return {
    received_at: now.toISOString(),
    webhook_id: one('webhook-id') ?? null,
    attempt: Number.isSafeInteger(attempt) && attempt > 0 ? attempt : null,
    signature: verdict.valid ? 'valid' : 'invalid',
    ...(!verdict.valid && { reason: verdict.message }),
    event: parseEvent(body),
  };
}

const shown = (v: unknown) => (v === null || v === undefined || v === '' ? '-' : String(v));

/** One line per delivery: time, type, sequence, execution, task, attempt, verdict. */
export function deliveryLine(d: ReceivedDelivery): string {
  const e = d.event ?? {};
  const task = e.task_name ? `${String(e.task_name)}${e.task_id ? ` (${String(e.task_id)})` : ''}` : e.task_id;
  return [
    d.received_at,
    shown(e.type ?? (d.event ? null : 'not an event')),
    `seq ${shown(e.sequence)}`,
    `execution ${shown(e.execution_id)}`,
    `task ${shown(task)}`,
    `attempt ${shown(d.attempt)}`,
    d.signature === 'valid' ? 'valid' : `INVALID signature (${d.reason})`,
  ].join('  ');
}

async function startReceiver(port: number, onDelivery: (req: http.IncomingMessage, body: Buffer) => Promise<boolean>): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () => {
      if (size > MAX_BODY_BYTES) return void res.writeHead(413).end();
      void onDelivery(req, Buffer.concat(chunks)).then((valid) =>
        res.writeHead(valid ? 200 : 400, { 'content-type': 'text/plain' }).end(valid ? 'ok\n' : 'invalid signature\n'),
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EADDRINUSE') return reject(err);
      reject(
        new CommandFailedError(
          `port ${port} is in use on 127.0.0.1`,
          `leave PORT out to take a free one, or find what holds it with \`lsof -iTCP:${port} -sTCP:LISTEN\` (or \`ss -ltnp\`)`,
        ),
      );
    });
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return server;
}

function closeServer(server: http.Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Resolves at the first SIGINT or SIGTERM; a second one is left to its default (the process ends at once). */
function untilStopped(): { stopped: Promise<string>; release(): void } {
  let release!: () => void;
  const stopped = new Promise<string>((resolve) => {
    const onSignal = (signal: string) => {
      release();
      resolve(signal);
    };
    release = () => {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  return { stopped, release };
}

function loopbackRefused(err: unknown): err is ApiError {
  return err instanceof ApiError && err.status === 400 && (err.problem.errors ?? []).some((e) => e.field === 'callback.url');
}

async function listen(ctx: CommandContext, io: CliIo, port: number, opts: ListenOptions): Promise<void> {
  const signals = untilStopped();
  let server: http.Server | undefined;
  try {
    // A delivery may arrive before the answer that holds the secret has been read: it waits for it.
    let knowSecret!: (secret: string) => void;
    const secretKnown = new Promise<string>((resolve) => (knowSecret = resolve));
    server = await startReceiver(port, async (req, body) => {
      const verdict = verifyWebhook({
        secret: await secretKnown,
        headers: {
          'webhook-id': req.headers['webhook-id'] as string | undefined,
          'webhook-timestamp': req.headers['webhook-timestamp'] as string | undefined,
          'webhook-signature': req.headers['webhook-signature'] as string | undefined,
        },
        body,
        nowSeconds: Math.floor(Date.now() / 1000),
        toleranceSeconds: DEFAULT_TOLERANCE_SECONDS,
      });
      const delivery = describeDelivery(req.headers, body, verdict, new Date());
      if (ctx.output === 'json') io.stdout(`${JSON.stringify(delivery)}\n`);
      else ctx.print.line(deliveryLine(delivery));
      return verdict.valid;
    });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const eventTypes = opts.eventType ?? [...EVENT_CATEGORIES];
    const workbook = opts.workbook ?? '*';
    let created: { id: string; secret: string };
    try {
      created = await ctx.client.request<{ id: string; secret: string }>('POST', '/v1/listeners', {
        body: {
          workbook,
          event_types: eventTypes,
          ...(opts.event && { events: opts.event }),
          callback: { url },
          retry: { schedule_ms: RETRY_SCHEDULE_MS },
          description: `callback-relay listen on ${url} (pid ${process.pid}); removed when it stops`,
        },
      });
    } catch (err) {
      if (!loopbackRefused(err)) throw err;
      throw new CommandFailedError(
        `the relay refuses to call back ${url}: ${err.problem.detail ?? err.message}`,
        'listen needs a relay on this machine that allows loopback callbacks: RELAY_ALLOW_LOOPBACK=auto (the default) allows them ' +
          'while the relay binds a loopback address (RELAY_HOST); restart it with RELAY_ALLOW_LOOPBACK=true, or with ' +
          'RELAY_ALLOW_NETWORKS=127.0.0.1/32',
      );
    }
    knowSecret(created.secret);
    io.stderr(
      `listening on ${url} as listener ${created.id} (workbook ${workbook}; ${(opts.event ?? eventTypes).join(', ')}); ` +
        'Ctrl-C stops and removes it\n',
    );
    const signal = await signals.stopped;
    await closeServer(server);
    server = undefined;
    try {
      await ctx.client.request('DELETE', `/v1/listeners/${encodeURIComponent(created.id)}`);
    } catch (err) {
      // Already removed by someone else: what stopping was for is done.
      if (!(err instanceof ApiError && err.status === 404)) {
        throw new CommandFailedError(
          `stopped on ${signal}, but listener ${created.id} could not be removed: ${(err as Error).message}`,
          `remove it with: callback-relay listener-delete ${created.id}`,
        );
      }
    }
    io.stderr(`stopped on ${signal}; removed listener ${created.id}\n`);
  } finally {
    signals.release();
    if (server) await closeServer(server);
  }
}

export function registerListenCommand(program: Command, io: CliIo): void {
  program
    .command('listen')
    .summary('receive deliveries on this machine and print them as they arrive')
    .description(
      'Start an HTTP receiver on 127.0.0.1 (PORT, or a free port), register a temporary listener for it (POST /v1/listeners) ' +
        'and print every delivery as it arrives, with its Standard Webhooks signature checked against the listener\'s secret. ' +
        'A valid delivery is answered 200, an invalid one 400. Ctrl-C (or SIGTERM) removes the listener and exits 0. ' +
        'The relay must be able to call 127.0.0.1 here: it runs on this machine and allows loopback callbacks. ' +
        `The listener retries after ${RETRY_SCHEDULE_MS.map((ms) => `${ms / 1000} s`).join(', ')}. ` +
        'With -f json, one JSON object per delivery and line.',
    )
    .argument('[port]', 'port to listen on (default: a free one)', intInRange(0, 65535))
    .option('--workbook <name>', 'only events of this workbook (default: "*", all)')
    .option('--event-type <type>', `${EVENT_TYPE_HELP} (default: all three)`, collectChoices(EVENT_CATEGORIES))
    .option('--event <event>', EVENT_HELP, collectList)
    .addHelpText(
      'after',
      examples([
        'callback-relay listen',
        'callback-relay listen 9000 --workbook billing --event on-execution-complete',
        'callback-relay listen --event-type TASK -f json | jq .event.type',
      ]),
    )
    .action(
      // commander has already turned PORT into a number.
      action<[string | undefined], ListenOptions>(io, async (ctx, [port], opts) => {
        await listen(ctx, io, port === undefined ? 0 : Number(port), opts);
      }),
    );
}
