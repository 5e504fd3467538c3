import type { Command } from 'commander';
import type { DeliveryView } from '../../records/delivery.js';
import { action, type CliIo, type CommandContext } from '../context.js';
import { CommandFailedError, UsageError } from '../errors.js';
import { dateTime, intInRange, nonEmpty } from '../options.js';
import { helpExamples as examples } from '../output.js';
import type { Page } from '../paging.js';
import { followPending } from './deliveries.js';
import { ATTEMPT_COLUMNS, attemptRow, type DeliveryWithAttempts } from './delivery-view.js';
import { beforeReplay, progressReporter, waitForReplay, type BeforeReplay } from './replay-wait.js';

const listenerPath = (id: string) => `/v1/listeners/${encodeURIComponent(id)}`;

/** A word for a POSIX shell: as it is when that is safe, else in single quotes. */
const shellWord = (text: string) => (/^[A-Za-z0-9_.:+@%/=-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`);

/** The command that sends `body`, a replay answer's `next`. */
function goOn(id: string, body: Record<string, unknown>): string {
  const args = ['callback-relay', 'listener-replay', id];
  if (typeof body.execution_id === 'string') args.push('--execution', body.execution_id, '--from-sequence', String(body.from_sequence ?? 1));
  else {
    for (const key of ['since', 'until', 'after'] as const) if (typeof body[key] === 'string') args.push(`--${key}`, body[key] as string);
    if (body.only_failed === true) args.push('--only-failed');
  }
  return args.map(shellWord).join(' ');
}

/** Longer than the longest callback timeout (120 s), so a slow receiver still gets its answer recorded. */
const PING_WAIT_MS = 130_000;
const PING_POLL_MS = 200;

/** Polls the ping's delivery until its first attempt is recorded; null after PING_WAIT_MS. */
async function firstAttempt(ctx: CommandContext, listenerId: string, eventId: string): Promise<DeliveryWithAttempts | null> {
  const deadline = Date.now() + PING_WAIT_MS;
  while (Date.now() < deadline) {
    const page = await ctx.client.request<Page<DeliveryView>>('GET', '/v1/deliveries', {
      query: { event_id: eventId, listener_id: listenerId },
    });
    const delivery = page.items[0];
    if (delivery && delivery.attempt_count > 0 && !delivery.in_flight) {
      return ctx.client.request<DeliveryWithAttempts>('GET', `/v1/deliveries/${encodeURIComponent(delivery.id)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, PING_POLL_MS));
  }
  return null;
}

interface ReplayOptions {
  since?: string;
  until?: string;
  execution?: string;
  fromSequence?: number;
  onlyFailed?: boolean;
  after?: string;
  wait?: boolean;
}

export function registerListenerActionCommands(program: Command, io: CliIo): void {
  program
    .command('listener-ping')
    .summary('send a PING event to one listener now')
    .description(
      'Send a PING event to this listener only, now (POST /v1/listeners/{id}/ping), to test its receiver. ' +
        'With --wait, wait for the first attempt and print how the receiver answered (exit 1 if it did not take it).',
    )
    .argument('<id>', 'listener id', nonEmpty)
    .option('--wait', 'wait for the first attempt and print its outcome')
    .addHelpText(
      'after',
      examples(['callback-relay listener-ping 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q', 'callback-relay listener-ping 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q --wait']),
    )
    .action(
      action<[string], { wait?: boolean }>(io, async (ctx, [id], opts) => {
        const { event_id: eventId } = await ctx.client.request<{ event_id: string }>('POST', `${listenerPath(id)}/ping`);
        if (!opts.wait) {
          if (ctx.output !== 'table') return ctx.print.data({ event_id: eventId });
          return ctx.print.line(`sent PING event ${eventId} to listener ${id}; follow it with: callback-relay event-show ${eventId}`);
        }
        const delivery = await firstAttempt(ctx, id, eventId);
        if (!delivery) {
          throw new CommandFailedError(
            `no attempt of PING event ${eventId} was recorded within ${PING_WAIT_MS / 1000} s`,
            `callback-relay event-show ${eventId} shows where it is`,
          );
        }
        const attempt = delivery.attempts[0];
        const ok = attempt && attempt.status_code !== null && attempt.status_code >= 200 && attempt.status_code < 300;
        if (ctx.output !== 'table') ctx.print.data({ event_id: eventId, delivery });
        else {
          ctx.print.line(`sent PING event ${eventId} to listener ${id} as delivery ${delivery.id}`);
          ctx.print.table(ATTEMPT_COLUMNS, delivery.attempts.map(attemptRow));
        }
        if (!ok) {
          const why = attempt?.status_code ? `answered ${attempt.status_code}` : `failed (${attempt?.error ?? 'no answer'})`;
          throw new CommandFailedError(
            `the receiver ${why}`,
            delivery.status === 'pending'
              ? `the relay retries it on the listener's schedule; callback-relay delivery-show ${delivery.id} follows it`
              : undefined,
          );
        }
      }),
    );

  program
    .command('listener-replay')
    .summary("deliver a time window's or an execution's events to a listener again")
    .description(
      'Replay a time window to one listener (POST /v1/listeners/{id}/replay): every event the relay received in ' +
        '[--since, --until) that matches the listener as it is now gets a new delivery (a new webhook-id). ' +
        'With --only-failed, the listener\'s failed deliveries of the window are re-queued instead (same webhook-id). ' +
        'With --execution instead of a window, the events of that execution (from --from-sequence on) that match ' +
        'get new deliveries, sent one after the other in sequence order. ' +
        'The relay bounds each call (100 000 deliveries; RELAY_REPLAY_SCAN_LIMIT events, or with --only-failed failed deliveries, looked at) ' +
        'and says where to go on; this command goes on until the whole window (or execution) is done, saying on stderr how far it got after each call. ' +
        'It prints how to follow the deliveries; with --wait it polls them until they ' +
        'have all finished, printing "n of m finished" on stderr at most once a second (stdout keeps the result), ' +
        'and exits 1 if any of them did not succeed.',
    )
    .argument('<id>', 'listener id', nonEmpty)
    .option('--since <date-time>', 'start of the window, on the relay\'s receive time (e.g. 2026-11-23T10:00:00Z); required without --execution', dateTime)
    .option('--until <date-time>', 'end of the window, exclusive (default: now)', dateTime)
    .option('--only-failed', 're-queue only the failed deliveries of the window')
    .option('--after <position>', 'go on after this position of the window (a replay that stopped part-way prints the command)', nonEmpty)
    .option('--execution <id>', 'replay this execution\'s events, in sequence order, instead of a window', nonEmpty)
    .option('--from-sequence <n>', 'with --execution: start at this sequence (default 1)', intInRange(1, Number.MAX_SAFE_INTEGER))
    .option('--wait', 'wait until the replayed deliveries have finished, showing progress on stderr')
    .addHelpText(
      'after',
      examples([
        'callback-relay listener-replay 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q --since 2026-11-23T10:00:00Z',
        'callback-relay listener-replay 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q --since 2026-11-23T00:00:00Z --until 2026-11-24T00:00:00Z --only-failed',
        'callback-relay listener-replay 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q --since 2026-11-23T10:00:00Z --wait',
        'callback-relay listener-replay 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q --execution 01JD3M4A7B6C5D4E3F2G1H0J9K --from-sequence 5',
      ]),
    )
    .action(
      action<[string], ReplayOptions>(io, async (ctx, [id], opts) => {
        let body: Record<string, unknown>;
        if (opts.execution !== undefined) {
          if (opts.since !== undefined || opts.until !== undefined || opts.onlyFailed || opts.after !== undefined) {
            throw new UsageError('--execution replays an execution: give it without --since, --until, --only-failed and --after');
          }
          body = { execution_id: opts.execution, ...(opts.fromSequence !== undefined && { from_sequence: opts.fromSequence }) };
        } else {
          if (opts.fromSequence !== undefined) throw new UsageError('--from-sequence goes with --execution');
          if (opts.since === undefined) throw new UsageError('give --since (a time window) or --execution (one execution)');
          if (opts.until !== undefined && Date.parse(opts.until) <= Date.parse(opts.since)) {
            throw new UsageError(`--until ${opts.until} must be after --since ${opts.since}`);
          }
          body = {
            since: opts.since,
            ...(opts.until !== undefined && { until: opts.until }),
            only_failed: opts.onlyFailed === true,
            ...(opts.after !== undefined && { after: opts.after }),
          };
        }
        // Each call is bounded; its answer's `next` is the body that goes on from where it stopped.
        // The result as the API gives it, for the whole window.
        const result = { count: 0, truncated: false };
        let calls = 0;
        // With --wait, what the listener had before each call, to tell that call's deliveries.
        const followed: Array<{ before: BeforeReplay; count: number }> = [];
        const what = opts.onlyFailed ? 're-queued' : 'queued';
        const noun = opts.onlyFailed ? 'failed deliver' : 'new deliver';
        const deliveries = (n: number) => `${n} ${noun}${n === 1 ? 'y' : 'ies'}`;
        const soFar = () => `${what} ${deliveries(result.count)} so far (${calls} ${calls === 1 ? 'call' : 'calls'})`;
        for (let next: Record<string, unknown> | undefined = body; next !== undefined; ) {
          const before = opts.wait ? await beforeReplay(ctx, id, opts.onlyFailed === true) : null;
          let answer: { count: number; truncated: boolean; next?: Record<string, unknown> };
          try {
            answer = await ctx.client.request('POST', `${listenerPath(id)}/replay`, { body: next });
          } catch (err) {
            // What the calls before made is stored: say how to go on rather than start again.
            if (calls) io.stderr(`… ${soFar()}; to go on from there: ${goOn(id, next)}\n`);
            throw err;
          }
          result.count += answer.count;
          calls++;
          if (before) followed.push({ before, count: answer.count });
          next = answer.truncated ? answer.next : undefined;
          result.truncated = answer.truncated && next === undefined;
          if (next !== undefined) io.stderr(`… ${soFar()}; going on where the relay stopped\n`);
        }
        const table = ctx.output === 'table';
        if (table) {
          ctx.print.line(`${what} ${deliveries(result.count)} for listener ${id}${calls > 1 ? ` in ${calls} calls` : ''}`);
          if (result.count && !opts.wait) ctx.print.line(`follow ${result.count === 1 ? 'it' : 'them'} with: ${followPending(id)}`);
        }
        if (!opts.wait || !result.count) return table ? undefined : ctx.print.data(result);
        const outcome = await waitForReplay(ctx, followed, progressReporter(io.stderr, result.count));
        if (!table) ctx.print.data({ ...result, ...outcome });
        else ctx.print.line(`all ${result.count} finished: ${result.count - outcome.failed} succeeded, ${outcome.failed} did not`);
        if (outcome.failed) {
          throw new CommandFailedError(
            `${outcome.failed} of the ${result.count} replayed deliveries did not succeed`,
            `callback-relay delivery-list --listener-id ${id} --status failed shows them`,
          );
        }
      }),
    );
}
