import type { Command } from 'commander';
import { action, type CliIo } from '../context.js';
import { dateTime, nonEmpty } from '../options.js';
import { helpExamples as examples } from '../output.js';
import { addPageOptions, fetchPages, moreLine, type PageOptions } from '../paging.js';
import { deliveryTable, EVENT_COLUMNS, eventFields, eventRow, type EventItem, type EventWithDeliveries } from './delivery-view.js';
import { registerEventPublish } from './event-publish.js';

interface ListOptions extends PageOptions {
  workbook?: string;
  executionId?: string;
  type?: string;
  since?: string;
}

export function registerEventCommands(program: Command, io: CliIo): void {
  registerEventPublish(program, io);

  addPageOptions(
    program
      .command('event-list')
      .summary('list events')
      .description('List the event log (GET /v1/events), oldest first, one page at a time unless --all.')
      .option('--workbook <name>', 'only events of this workbook', nonEmpty)
      .option('--execution-id <id>', 'only events of this execution', nonEmpty)
      .option('--type <type>', 'only events of this type (e.g. TASK_FAILED, PING)', nonEmpty)
      .option('--since <date-time>', 'only events the relay received at or after this time (e.g. 2026-11-23T10:00:00Z)', dateTime),
    'events',
  )
    .addHelpText(
      'after',
      examples([
        'callback-relay event-list --workbook billing --type TASK_FAILED',
        'callback-relay event-list --execution-id 5f0c7a2e --since 2026-11-23T10:00:00Z --all -f json',
      ]),
    )
    .action(
      action<[], ListOptions>(io, async (ctx, _args, opts) => {
        const query = { workbook: opts.workbook, execution_id: opts.executionId, type: opts.type, since: opts.since };
        const page = await fetchPages<EventItem>(ctx, '/v1/events', query, opts);
        if (ctx.output === 'json') return ctx.print.json(page);
        if (!page.items.length) ctx.print.line('no events');
        else ctx.print.table(EVENT_COLUMNS, page.items.map(eventRow));
        if (page.next_cursor) {
          ctx.print.line(
            moreLine(
              'event-list',
              [
                ['--workbook', opts.workbook],
                ['--execution-id', opts.executionId],
                ['--type', opts.type],
                ['--since', opts.since],
                ['--limit', opts.limit],
              ],
              page.next_cursor,
            ),
          );
        }
      }),
    );

  program
    .command('event-show')
    .summary('show one event and its deliveries')
    .description('Show one event (GET /v1/events/{id}) with its deliveries, one per listener it reached (replays add more).')
    .argument('<id>', 'event id', nonEmpty)
    .addHelpText('after', examples(['callback-relay event-show 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q', 'callback-relay event-show order-1234 -f json']))
    .action(
      action<[string], object>(io, async (ctx, [id]) => {
        const event = await ctx.client.request<EventWithDeliveries>('GET', `/v1/events/${encodeURIComponent(id)}`);
        if (ctx.output === 'json') return ctx.print.json(event);
        ctx.print.fields(eventFields(event));
        ctx.print.line();
        if (!event.deliveries.length) return ctx.print.line('deliveries: none (no listener matched this event)');
        ctx.print.line(`deliveries (${event.deliveries.length}):`);
        const { headers, rows } = deliveryTable(event.deliveries, 'event');
        ctx.print.table(headers, rows);
      }),
    );
}
