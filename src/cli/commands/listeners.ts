import { Option, type Command } from 'commander';
import { EVENT_CATEGORIES } from '../../records/event.js';
import { HTTP_METHODS, LISTENER_ORDERINGS, type ListenerView } from '../../records/listener.js';
import { action, addColumnOption, type CliIo } from '../context.js';
import { UsageError } from '../errors.js';
import { collect, collectChoices, collectHeader, collectList, intInRange, retrySchedule, upperChoice } from '../options.js';
import { helpExamples as examples } from '../output.js';
import { addPageOptions, fetchPages, moreLine, type PageOptions } from '../paging.js';
import {
  CALLBACK_FORMATS,
  configureListenerAdd,
  EVENT_HELP,
  EVENT_TYPE_HELP,
  FORMAT_HELP,
  HEADER_HELP,
  jsonValue,
  MAX_IN_FLIGHT_HELP,
  ORDERING_HELP,
  RATE_LIMIT_HELP,
  rateLimitOrNone,
  RETRY_SCHEDULE_HELP,
  TEMPLATE_HELP,
} from './listener-add.js';
import { LISTENER_COLUMNS, SECRET_NOTE, showListener, type ListenerWithSecret } from './listener-view.js';

const listenerPath = (id: string) => `/v1/listeners/${encodeURIComponent(id)}`;

interface ListOptions extends PageOptions {
  workbook?: string;
}

interface UpdateOptions {
  workbook?: string;
  callbackUrl?: string;
  method?: string;
  header?: Record<string, string>;
  removeHeader?: string[];
  format?: string;
  eventType?: string[];
  event?: string[];
  allEvents?: boolean;
  enable?: boolean;
  disable?: boolean;
  retrySchedule?: number[];
  description?: string;
  template?: unknown;
  ordering?: string;
  maxInFlight?: number;
  rateLimit?: number | null;
}

/** The merge patch for listener-update: only what was asked for; null removes. */
export function listenerUpdatePatch(o: UpdateOptions): Record<string, unknown> {
  const headers: Record<string, string | null> = { ...o.header };
  for (const name of o.removeHeader ?? []) headers[name] = null;
  const callback = {
    ...(o.callbackUrl !== undefined && { url: o.callbackUrl }),
    ...(o.method && { method: o.method }),
    ...(o.template !== undefined ? { format: 'template', template: o.template } : o.format && { format: o.format }),
    ...(Object.keys(headers).length && { headers }),
  };
  if (o.template !== undefined && o.format !== undefined && o.format !== 'template') {
    throw new UsageError(`--template goes with --format template, not ${o.format}`);
  }
  const patch = {
    ...(o.workbook !== undefined && { workbook: o.workbook }),
    ...(o.eventType && { event_types: o.eventType }),
    ...(o.event && { events: o.event }),
    ...(o.allEvents && { events: null }),
    ...(Object.keys(callback).length && { callback }),
    ...(o.enable && { enabled: true }),
    ...(o.disable && { enabled: false }),
    ...(o.retrySchedule && { retry: { schedule_ms: o.retrySchedule } }),
    ...(o.description !== undefined && { description: o.description === '' ? null : o.description }),
    ...(o.ordering !== undefined && { ordering: o.ordering }),
    ...(o.maxInFlight !== undefined && { max_in_flight: o.maxInFlight }),
    ...(o.rateLimit !== undefined && { rate_limit_per_s: o.rateLimit }),
  };
  if (!Object.keys(patch).length) throw new UsageError('nothing to change: give at least one option (see listener-update --help)');
  return patch;
}

export function registerListenerCommands(program: Command, io: CliIo): void {
  configureListenerAdd(program.command('listener-add'), io, 'callback-relay listener-add');

  addPageOptions(
    program
      .command('listener-list')
      .summary('list listeners')
      .description('List listeners (GET /v1/listeners), oldest first, one page at a time unless --all.')
      .option('--workbook <name>', 'only listeners of this workbook ("*" for the all-workbook ones)'),
    'listeners',
  )
    .addHelpText(
      'after',
      examples([
        'callback-relay listener-list --workbook billing',
        'callback-relay listener-list --all -f json',
        'callback-relay listener-list -f value -c id -c url --sort-column workbook',
      ]),
    )
    .action(
      action<[], ListOptions>(io, async (ctx, _args, opts) => {
        const out = ctx.print.list(LISTENER_COLUMNS);
        const page = await fetchPages<ListenerView>(ctx, '/v1/listeners', { workbook: opts.workbook }, opts);
        const more = page.next_cursor
          ? moreLine('listener-list', [['--workbook', opts.workbook], ['--limit', opts.limit]], page.next_cursor)
          : undefined;
        out.print(page, { empty: 'no listeners', more });
      }),
    );

  addColumnOption(
    program
      .command('listener-show')
      .summary('show one listener')
      .description('Show one listener (GET /v1/listeners/{id}); header values are masked as "***".')
      .argument('<id>', 'listener id'),
  )
    .addHelpText(
      'after',
      examples(['callback-relay listener-show 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q -f json', 'callback-relay listener-show 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q -f value -c callback.url']),
    )
    .action(
      action<[string], object>(io, async (ctx, [id]) => {
        showListener(ctx, await ctx.client.request<ListenerView>('GET', listenerPath(id)));
      }),
    );

  addColumnOption(program.command('listener-update'))
    .summary('change a listener (merge patch)')
    .description(
      'Change a listener with a JSON merge patch (PATCH /v1/listeners/{id}): only the options given change. ' +
        'Lists given replace the old lists; --header adds or replaces single headers and keeps the others.',
    )
    .argument('<id>', 'listener id')
    .option('--callback-url <url>', 'new callback URL (checked again by the relay; --url is the relay address)')
    .option('--method <method>', `callback method: ${HTTP_METHODS.join(', ')}`, upperChoice(HTTP_METHODS))
    .option('--header <header>', `${HEADER_HELP}; the value "***" keeps the stored one`, collectHeader)
    .option('--remove-header <name>', 'drop a callback header; repeatable', collect)
    .addOption(new Option('--format <format>', FORMAT_HELP).choices(CALLBACK_FORMATS))
    .option('--event-type <type>', EVENT_TYPE_HELP, collectChoices(EVENT_CATEGORIES))
    .addOption(new Option('--event <event>', EVENT_HELP).argParser(collectList).conflicts('allEvents'))
    .option('--all-events', 'drop the --event narrowing: all events of the event types')
    .option('--workbook <name>', 'move the listener to another workbook ("*" for all)')
    .addOption(new Option('--enable', 'enable the listener (also after the relay disabled it)').conflicts('disable'))
    .option('--disable', 'disable the listener; its events are no longer delivered')
    .option('--retry-schedule <ms,...>', RETRY_SCHEDULE_HELP, retrySchedule)
    .option('--description <text>', 'free text ("" removes it)')
    .option('--template <json>', TEMPLATE_HELP, jsonValue)
    .addOption(new Option('--ordering <ordering>', ORDERING_HELP).choices(LISTENER_ORDERINGS))
    .option('--max-in-flight <n>', MAX_IN_FLIGHT_HELP, intInRange(1, 10_000))
    .option('--rate-limit <per-second>', `${RATE_LIMIT_HELP}; "none" removes the limit`, rateLimitOrNone)
    .addHelpText(
      'after',
      examples([
        'callback-relay listener-update 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q --disable',
        "callback-relay listener-update 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q --header 'X-Api-Key: k-456' --event-type TASK",
        'callback-relay listener-update 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q --ordering execution --rate-limit 20',
      ]),
    )
    .action(
      action<[string], UpdateOptions>(io, async (ctx, [id], opts) => {
        const body = listenerUpdatePatch(opts);
        const updated = await ctx.client.request<ListenerView>('PATCH', listenerPath(id), {
          body,
          contentType: 'application/merge-patch+json',
        });
        showListener(ctx, updated, undefined, `listener ${updated.id} was changed`);
      }),
    );

  program
    .command('listener-delete')
    .summary('remove a listener')
    .description('Remove a listener (DELETE /v1/listeners/{id}); its pending deliveries are cancelled.')
    .argument('<id>', 'listener id')
    .addHelpText('after', examples(['callback-relay listener-delete 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q']))
    .action(
      action<[string], object>(io, async (ctx, [id]) => {
        await ctx.client.request('DELETE', listenerPath(id));
        if (ctx.output !== 'table') ctx.print.data({ id, deleted: true });
        else ctx.print.line(`deleted listener ${id}`);
      }),
    );

  addColumnOption(program.command('listener-rotate-secret'))
    .summary('give a listener a new signing secret')
    .description(
      'Give a listener a new signing secret (POST /v1/listeners/{id}/rotate-secret); the old one keeps signing beside it for 24 h.',
    )
    .argument('<id>', 'listener id')
    .option('--secret <whsec>', 'use this secret (whsec_ + base64) instead of a generated one')
    .addHelpText('after', examples(['callback-relay listener-rotate-secret 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q']))
    .action(
      action<[string], { secret?: string }>(io, async (ctx, [id], opts) => {
        const body = opts.secret === undefined ? undefined : { secret: opts.secret };
        const rotated = await ctx.client.request<ListenerWithSecret>('POST', `${listenerPath(id)}/rotate-secret`, { body });
        showListener(ctx, rotated, SECRET_NOTE, `listener ${rotated.id} has its new secret`);
      }),
    );
}
