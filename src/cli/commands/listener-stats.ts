import { InvalidArgumentError, type Command } from 'commander';
import { DEFAULT_STATS_WINDOW, defaultBucketMs, formatSpan, parseSpan, type StatsView } from '../../records/health.js';
import type { ListenerView } from '../../records/listener.js';
import { action, addColumnOption, type CliIo } from '../context.js';
import { nonEmpty } from '../options.js';
import { fieldValue, helpExamples as examples, selectColumns } from '../output.js';
import { healthFields, STATS_COLUMNS } from './health-view.js';

/** A table is read on a terminal: without --bucket, about this many rows. */
const TABLE_ROWS = 24;

const span = (what: string) => (value: string): string => {
  if (parseSpan(value.trim()) === null) {
    throw new InvalidArgumentError(`expected ${what} as a whole number and a unit, m, h or d (such as 90m, 24h, 7d), got '${value}'.`);
  }
  return value.trim();
};

interface StatsOptions {
  window: string;
  bucket?: string;
}

export function registerListenerStatsCommand(program: Command, io: CliIo): void {
  addColumnOption(program.command('listener-stats'))
    .summary("a listener's health and its attempts over time")
    .description(
      "Show a listener's health (GET /v1/listeners/{id}: state, success rate and p95 latency of the last 24 h, last " +
        'success and failure), then its attempts in a window by bucket (GET /v1/listeners/{id}/stats): succeeded, ' +
        'failed (for good: the last try) and retried (failed, tried again), with latency percentiles. Buckets are aligned to the epoch, oldest ' +
        'first; the last one is still filling. -c picks columns of the series; -f json and yaml print ' +
        '{listener_id, health, window, bucket, series}, -f csv and value the series alone.',
    )
    .argument('<id>', 'listener id', nonEmpty)
    .option('--window <span>', 'how far back, up to 30d', span('the window'), DEFAULT_STATS_WINDOW)
    .option('--bucket <span>', `one row's time span, whole minutes (default: about ${TABLE_ROWS} rows, 1h for 24h)`, span('the bucket'))
    .addHelpText(
      'after',
      examples([
        'callback-relay listener-stats 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q',
        'callback-relay listener-stats 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q --window 7d --bucket 6h',
        'callback-relay listener-stats 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q --window 90m --bucket 5m -f csv -c at -c failed',
      ]),
    )
    .action(
      action<[string], StatsOptions>(io, async (ctx, [id], opts) => {
        const out = ctx.print.list(STATS_COLUMNS);
        const path = `/v1/listeners/${encodeURIComponent(id)}`;
        const bucket = opts.bucket ?? formatSpan(defaultBucketMs(parseSpan(opts.window)!, TABLE_ROWS));
        const [listener, stats] = await Promise.all([
          ctx.client.request<ListenerView>('GET', path),
          ctx.client.request<StatsView>('GET', `${path}/stats`, { query: { window: opts.window, bucket } }),
        ]);
        if (ctx.output === 'table') {
          ctx.print.fields([...healthFields(listener.health, ctx.now), ['window', stats.window], ['bucket', stats.bucket]]);
          ctx.print.line();
          return out.print({ items: stats.series }, { empty: 'no buckets' });
        }
        if (ctx.output === 'csv' || ctx.output === 'value') return out.print({ items: stats.series }, { empty: '' });
        const chosen = selectColumns(STATS_COLUMNS, ctx.view.columns);
        const series = ctx.view.columns?.length
          ? stats.series.map((p) => Object.fromEntries(chosen.map((c) => [c.field, fieldValue(p, c.field)])))
          : stats.series;
        ctx.print.data({ listener_id: listener.id, health: listener.health, window: stats.window, bucket: stats.bucket, series });
      }),
    );
}
