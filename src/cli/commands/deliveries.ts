import { Option, type Command } from 'commander';
import { DeliveryView } from '../../records/delivery.js';
import { action, addColumnOption, type CliIo } from '../context.js';
import { nonEmpty } from '../options.js';
import { helpExamples as examples } from '../output.js';
import { addOrderedPageOptions, fetchPages, moreLine, orderFlag, type OrderedPageOptions } from '../paging.js';
import { ATTEMPT_COLUMNS, attemptRow, DELIVERY_COLUMNS, deliveryFields, type DeliveryWithAttempts } from './delivery-view.js';

/** pending, succeeded, failed, cancelled: as the API has them. */
export const DELIVERY_STATUSES = DeliveryView.shape.status.options;

const deliveryPath = (id: string) => `/v1/deliveries/${encodeURIComponent(id)}`;

interface ListOptions extends OrderedPageOptions {
  listenerId?: string;
  eventId?: string;
  status?: string;
}

/** How to follow a listener's deliveries that are still to be sent. */
export const followPending = (listenerId: string) => `callback-relay delivery-list --listener-id ${listenerId} --status pending`;

export function registerDeliveryCommands(program: Command, io: CliIo): void {
  addOrderedPageOptions(
    program
      .command('delivery-list')
      .summary('list deliveries')
      .description(
        'List deliveries (GET /v1/deliveries), one per event and listener, newest first unless --order asc, one page at a ' +
          'time unless --all. The table shows times relative to now (-f json, yaml, csv and value keep them absolute).',
      )
      .option('--listener-id <id>', 'only deliveries to this listener', nonEmpty)
      .option('--event-id <id>', 'only deliveries of this event', nonEmpty)
      .addOption(new Option('--status <status>', 'only deliveries in this state').choices(DELIVERY_STATUSES)),
    'deliveries',
  )
    .addHelpText(
      'after',
      examples([
        'callback-relay delivery-list --status failed',
        'callback-relay delivery-list --listener-id 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q --status pending --all -f json',
        'callback-relay delivery-list --status failed -f value -c id',
      ]),
    )
    .action(
      action<[], ListOptions>(io, async (ctx, _args, opts) => {
        const out = ctx.print.list(DELIVERY_COLUMNS);
        const query = { listener_id: opts.listenerId, event_id: opts.eventId, status: opts.status, order: opts.order };
        const page = await fetchPages<DeliveryView>(ctx, '/v1/deliveries', query, opts);
        const flags: Array<[string, string | number | undefined]> = [
          ['--listener-id', opts.listenerId],
          ['--event-id', opts.eventId],
          ['--status', opts.status],
          orderFlag(opts),
          ['--limit', opts.limit],
        ];
        out.print(page, { empty: 'no deliveries', more: page.next_cursor ? moreLine('delivery-list', flags, page.next_cursor) : undefined });
      }),
    );

  addColumnOption(program.command('delivery-show'))
    .summary('show one delivery and its attempts')
    .description(
      'Show one delivery (GET /v1/deliveries/{id}) with every attempt: when it started, how long it took, the ' +
        "receiver's status code or the error (ECONNREFUSED, TIMEOUT, REDIRECT, …) and the start of its answer " +
        '(-f json has the whole excerpt, up to 4 KiB).',
    )
    .argument('<id>', 'delivery id (the webhook-id header the receiver got)', nonEmpty)
    .addHelpText('after', examples(['callback-relay delivery-show 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q']))
    .action(
      action<[string], object>(io, async (ctx, [id]) => {
        const delivery = await ctx.client.request<DeliveryWithAttempts>('GET', deliveryPath(id));
        if (!ctx.print.show(delivery, deliveryFields(delivery, ctx.now))) return;
        ctx.print.line();
        if (!delivery.attempts.length) return ctx.print.line('attempts: none yet');
        ctx.print.line(`attempts (${delivery.attempts.length}):`);
        ctx.print.table(ATTEMPT_COLUMNS, delivery.attempts.map(attemptRow));
      }),
    );

  addColumnOption(program.command('delivery-retry'))
    .summary('send a delivery again now')
    .description(
      'Re-queue one delivery now (POST /v1/deliveries/{id}/retry), whatever its state: the same delivery, so the ' +
        'receiver sees the same webhook-id again. Refused (exit 1) while an attempt is being sent.',
    )
    .argument('<id>', 'delivery id', nonEmpty)
    .addHelpText('after', examples(['callback-relay delivery-retry 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q']))
    .action(
      action<[string], object>(io, async (ctx, [id]) => {
        const delivery = await ctx.client.request<DeliveryView>('POST', `${deliveryPath(id)}/retry`);
        if (!ctx.print.show(delivery, deliveryFields(delivery, ctx.now), `delivery ${delivery.id} was re-queued`)) return;
        ctx.print.line(`\nre-queued delivery ${delivery.id}; follow it with: callback-relay delivery-show ${delivery.id}`);
        ctx.print.line(`the listener's deliveries still to be sent: ${followPending(delivery.listener_id)}`);
      }),
    );
}
