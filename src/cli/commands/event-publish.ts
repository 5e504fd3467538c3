import type { Command } from 'commander';
import { action, type CliIo, type CommandContext } from '../context.js';
import { ApiError, UnreachableError, UsageError, type ProblemDetails } from '../errors.js';
import { intInRange } from '../options.js';
import { helpExamples as examples } from '../output.js';
import { openInput, readEvents, type InputEvent } from './event-input.js';

/** POST /v1/events takes at most this many events per request (DESIGN: REST API). */
export const MAX_EVENTS_PER_REQUEST = 1000;
/** Under the 16 MiB body limit of POST /v1/events, with room for the wrapper. */
export const MAX_REQUEST_BYTES = 15 * 1024 * 1024;
/** Table mode reports progress on stderr: on a terminal at most once a second, else after every this many requests. */
const PROGRESS_EVERY = 10;
const PROGRESS_EVERY_MS = 1000;

interface PublishResult {
  items: Array<{ id: string; duplicate: boolean }>;
}

interface Batch {
  events: unknown[];
  lines: Array<number | undefined>;
  bytes: number;
  /** Position of its first event in the whole input (0-based, as in `events.<i>`). */
  offset: number;
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** The API names a bad event `events.<i>` within its request; name it by its place in the whole input. */
function translateProblem(problem: ProblemDetails, batch: Batch): ProblemDetails {
  const shift = (text: string) => text.replace(/\bevents\.(\d+)\b/g, (_, i: string) => `events.${batch.offset + Number(i)}`);
  return {
    ...problem,
    ...(problem.detail !== undefined && { detail: shift(problem.detail) }),
    ...(problem.errors && {
      errors: problem.errors.map((e) => {
        const index = /^events\.(\d+)\b/.exec(e.field)?.[1];
        const line = index === undefined ? undefined : batch.lines[Number(index)];
        return { ...e, field: shift(e.field), ...(line !== undefined && e.line === undefined && { line }) };
      }),
    }),
  };
}

/** What happened before a failed request, and where to start again. */
function partialNote(published: number, requests: number, batch: Batch, stored: 'no' | 'unknown'): string {
  const last = batch.offset + batch.events.length - 1;
  const range = batch.events.length === 1 ? `events.${batch.offset}` : `events.${batch.offset}–events.${last}`;
  const line = batch.lines[0] === undefined ? '' : ` (line ${batch.lines[0]})`;
  if (!published && stored === 'no') return 'nothing was published (a request is stored all or nothing)';
  const before = published
    ? `${plural(published, 'event')} ${published === 1 ? 'was' : 'were'} published in ${plural(requests, 'request')} before this one`
    : 'nothing was published before this request';
  const fate =
    stored === 'no'
      ? `none of ${range} ${batch.events.length === 1 ? 'was' : 'were'} stored (a request is all or nothing)`
      : `${range} may or may not have been stored; events with an "id" are not stored twice when sent again`;
  return `${before}; ${fate}. Publish the rest again from events.${batch.offset}${line}.`;
}

async function publish(ctx: CommandContext, io: CliIo, file: string | undefined, perRequest: number): Promise<void> {
  const { stream, name } = await openInput(file, io.cwd, io.stdin);
  const items: PublishResult['items'] = [];
  let published = 0;
  let duplicates = 0;
  let requests = 0;
  let batch: Batch = { events: [], lines: [], bytes: 0, offset: 0 };
  const clock = io.now ?? Date.now;
  let lastProgress = clock();
  // Someone watching a terminal sees it move every second; a log gets a line every few requests.
  const progressDue = io.terminal?.stderr
    ? () => clock() - lastProgress >= PROGRESS_EVERY_MS
    : () => requests % PROGRESS_EVERY === 0;

  async function send() {
    if (!batch.events.length) return;
    let result: PublishResult;
    try {
      result = await ctx.client.request<PublishResult>('POST', '/v1/events', { body: { events: batch.events } });
    } catch (err) {
      if (err instanceof ApiError) {
        const note = partialNote(published, requests, batch, 'no');
        throw new ApiError(err.status, translateProblem(err.problem, batch), err.hint ? `${err.hint}\nhint: ${note}` : note);
      }
      if (err instanceof UnreachableError) {
        // Refused: nothing was sent. Otherwise the relay may have stored the batch before the failure.
        const stored = err.code === 'ECONNREFUSED' || err.code === 'EAI_AGAIN' ? 'no' : 'unknown';
        if (!published && stored === 'no') throw err;
        throw new UnreachableError(err.url, err.code, `${err.message}\n${partialNote(published, requests, batch, stored)}`);
      }
      throw err;
    }
    requests++;
    published += result.items.length;
    for (const item of result.items) if (item.duplicate) duplicates++;
    if (ctx.output !== 'table') items.push(...result.items);
    else if (progressDue()) {
      io.stderr(`… ${plural(published, 'event')} published (${plural(requests, 'request')})\n`);
      lastProgress = clock();
    }
    batch = { events: [], lines: [], bytes: 0, offset: batch.offset + batch.events.length };
  }

  let count = 0;
  try {
    for await (const { value, line } of readEvents(stream, name) as AsyncGenerator<InputEvent>) {
      const bytes = Buffer.byteLength(JSON.stringify(value) ?? 'null') + 1;
      if (batch.events.length >= perRequest || (batch.events.length && batch.bytes + bytes > MAX_REQUEST_BYTES)) await send();
      batch.events.push(value);
      batch.lines.push(line);
      batch.bytes += bytes;
      count++;
    }
  } catch (err) {
    // Bad input after some requests went out: say what was published and what was not.
    if (err instanceof UsageError && published) {
      throw new UsageError(
        `${err.message}\n${plural(published, 'event')} (events.0–events.${published - 1}) ${published === 1 ? 'was' : 'were'} published ` +
          `in ${plural(requests, 'request')} before it; nothing after events.${published - 1} was sent`,
      );
    }
    throw err;
  }
  if (!count) throw new UsageError(`no events in ${name}: give one event object, an array, {"events": [...]} or one event per line`);
  await send();

  if (ctx.output !== 'table') return ctx.print.data({ items });
  ctx.print.line(`published ${plural(published, 'event')} (${plural(duplicates, 'duplicate')}) in ${plural(requests, 'request')}`);
}

export function registerEventPublish(program: Command, io: CliIo): void {
  program
    .command('event-publish')
    .summary('publish events from a file or stdin')
    .description(
      'Publish events (POST /v1/events) from FILE, or from stdin when FILE is "-" or absent. The input is one event ' +
        'object, an array of events, {"events": [...]}, or JSON lines (one event per line, read as it arrives). ' +
        `Events are sent in order, at most ${MAX_EVENTS_PER_REQUEST} per request (--batch: fewer); each request is stored all or ` +
        'nothing. Events that carry an "id" are stored once: sending them again counts them as duplicates. ' +
        'A request the relay refuses stops the publish (exit 1) and says how many events were published before it; ' +
        'input that is not JSON stops it too (exit 2), after the requests already sent. ' +
        'Table mode prints a summary and progress on stderr: every second on a terminal, else every ' +
        `${PROGRESS_EVERY} requests; -f json prints the ids ({"items": [{"id", "duplicate"}]}), -f csv and value one line each.`,
    )
    .argument('[file]', 'events file; "-" or absent: stdin')
    .option(
      '--batch <n>',
      `events per request, 1 to ${MAX_EVENTS_PER_REQUEST}: fewer when the relay answers that a request's events would make too many deliveries, or cost too much matching (422)`,
      intInRange(1, MAX_EVENTS_PER_REQUEST),
      MAX_EVENTS_PER_REQUEST,
    )
    .addHelpText(
      'after',
      examples([
        `echo '{"type":"TASK_SUCCEEDED","workbook":"demo","execution_id":"e1","task_name":"charge"}' | callback-relay event-publish`,
        'callback-relay event-publish events.ndjson',
        'callback-relay event-publish batch.json -f json',
        'callback-relay event-publish events.ndjson --batch 100',
      ]),
    )
    .action(
      action<[string | undefined], { batch: number }>(io, async (ctx, [file], opts) => {
        await publish(ctx, io, file, opts.batch);
      }),
    );
}
