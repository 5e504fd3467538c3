import type { Command } from 'commander';
import { action, addColumnOption, type CliIo } from '../context.js';
import { dateTime, nonEmpty } from '../options.js';
import { helpExamples as examples } from '../output.js';
import { addOrderedPageOptions, fetchPages, moreLine, orderFlag, type OrderedPageOptions } from '../paging.js';
import { EVENT_COLUMNS, EVENT_DELIVERY_COLUMNS, eventFields, type EventItem, type EventWithDeliveries } from './delivery-view.js';
import { registerEventPublish } from './event-publish.js';

interface ListOptions extends OrderedPageOptions {
  workbook?: string;
  executionId?: string;
  type?: string;
  since?: string;
}

export function registerEventCommands(program: Command, io: CliIo): void {
  registerEventPublish(program, io);

  addOrderedPageOptions(
    program
      .command('event-list')
      .summary('list events')
      .description('List the event log (GET /v1/events), newest first unless --order asc, one page at a time unless --all.')
      .option('--workbook <name>', 'only events of this workbook', nonEmpty)
      .option('--execution-id <id>', 'only events of this execution, in their sequence order', nonEmpty)
      .option('--type <type>', 'only events of this type (e.g. TASK_FAILED, PING)', nonEmpty)
      .option('--since <date-time>', 'only events the relay received at or after this time (e.g. 2026-11-23T10:00:00Z)', dateTime),
    'events',
  )
    .addHelpText(
      'after',
      examples([
        'callback-relay event-list --workbook billing --type TASK_FAILED',
        'callback-relay event-list --execution-id 5f0c7a2e --since 2026-11-23T10:00:00Z --order asc --all -f json',
        'callback-relay event-list --type PING -f csv -c id -c received_at',
      ]),
    )
    .action(
      action<[], ListOptions>(io, async (ctx, _args, opts) => {
        const out = ctx.print.list(EVENT_COLUMNS);
        const query = { workbook: opts.workbook, execution_id: opts.executionId, type: opts.type, since: opts.since, order: opts.order };
        const page = await fetchPages<EventItem>(ctx, '/v1/events', query, opts);
        const flags: Array<[string, string | number | undefined]> = [
          ['--workbook', opts.workbook],
          ['--execution-id', opts.executionId],
          ['--type', opts.type],
          ['--since', opts.since],
          orderFlag(opts),
          ['--limit', opts.limit],
        ];
        out.print(page, { empty: 'no events', more: page.next_cursor ? moreLine('event-list', flags, page.next_cursor) : undefined });
      }),
    );

  addColumnOption(
    program
      .command('event-show')
      .summary('show one event and its deliveries')
      .description('Show one event (GET /v1/events/{id}) with its deliveries, one per listener it reached (replays add more).')
      .argument('<id>', 'event id', nonEmpty),
  )
    .addHelpText('after', examples(['callback-relay event-show 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q', 'callback-relay event-show order-1234 -f json']))
    .action(
      action<[string], object>(io, async (ctx, [id]) => {
        const event = await ctx.client.request<EventWithDeliveries>('GET', `/v1/events/${encodeURIComponent(id)}`);
        if (!ctx.print.show(event, eventFields(event, ctx.now))) return;
        ctx.print.line();
        if (!event.deliveries.length) return ctx.print.line('deliveries: none (no listener matched this event)');
        const more = event.deliveries_next_cursor;
        ctx.print.line(more ? `deliveries (the first ${event.deliveries.length}; more: callback-relay delivery-list --event-id ${id} --order asc --cursor ${more}):` : `deliveries (${event.deliveries.length}):`);
        ctx.print.rows(EVENT_DELIVERY_COLUMNS, event.deliveries);
      }),
    );
}
