import { Argument, InvalidArgumentError, Option, type Command } from 'commander';
import { EVENT_CATEGORIES } from '../../records/event.js';
import { AMQP_FORMATS } from '../../records/callback.js';
import { HTTP_METHODS, LISTENER_ORDERINGS, PAYLOAD_FORMATS, RATE_LIMIT_MAX, RATE_LIMIT_MIN } from '../../records/listener.js';
import { action, addColumnOption, type CliIo } from '../context.js';
import { UsageError } from '../errors.js';
import { collectChoices, collectHeader, collectList, intInRange, jsonObject, retrySchedule, upperChoice } from '../options.js';
import { parseStorableJson, UnstorableJsonError } from '../../json-text.js';
import { helpExamples as examples } from '../output.js';
import { SECRET_NOTE, showListener, type ListenerWithSecret } from './listener-view.js';

const TARGET_KINDS = ['task', 'execution', 'workbook'] as const;

interface AddOptions {
  workbook?: string;
  eventType?: string[];
  event?: string[];
  method?: string;
  header?: Record<string, string>;
  format?: string;
  template?: unknown;
  filter?: Record<string, unknown>;
  retrySchedule?: number[];
  description?: string;
  secret?: string;
  transport?: string;
  exchange?: string;
  topic?: string;
  routingKey?: string;
  timeoutMs?: number;
  ordering?: string;
  maxInFlight?: number;
  rateLimit?: number;
}

const AMQP_ONLY = ['exchange', 'topic', 'routingKey'] as const;
/** What --format offers: the http and the amqp formats (the relay checks which transport takes which). */
export const CALLBACK_FORMATS = [...new Set([...PAYLOAD_FORMATS, ...AMQP_FORMATS])];
export const FORMAT_HELP = 'payload format: json, mistral, cloudevents or template for http; oslo, json, cloudevents or template for amqp';

export const TEMPLATE_HELP =
  'the body as a JSON value whose strings may read the event with <% $.path %> (sets --format template; with GET or DELETE an object, sent as the query string)';
export const ORDERING_HELP = 'execution: one execution\'s events arrive strictly in sequence order; none (default): as they come';
export const MAX_IN_FLIGHT_HELP = 'attempts in flight at once to this listener from each relay process (default 32); a process holds about a second of its receiver\'s pace, the rest wait in the queue';
export const RATE_LIMIT_HELP = `attempts per second at most (${RATE_LIMIT_MIN} to ${RATE_LIMIT_MAX}), over every relay process`;

/** --rate-limit: a number of attempts per second within the listener's bounds, or "none" (no limit). */
export const rateLimitOrNone = (value: string): number | null => {
  if (value === 'none') return null;
  const n = Number(value);
  if (!Number.isFinite(n) || n < RATE_LIMIT_MIN || n > RATE_LIMIT_MAX) {
    throw new InvalidArgumentError(`a number of attempts per second from ${RATE_LIMIT_MIN} (one in ${1 / RATE_LIMIT_MIN} seconds) to ${RATE_LIMIT_MAX}, or "none"`);
  }
  return n;
};

/** --template: any JSON value (an object, a string, ...), sent as the callback's template. */
export const jsonValue = (value: string): unknown => {
  try {
    return parseStorableJson(value);
  } catch (err) {
    if (err instanceof UnstorableJsonError) throw new InvalidArgumentError(`${err.message}.`);
    throw new InvalidArgumentError(`not valid JSON (${(err as Error).message}); quote a string template as JSON too: '"Task <% $.task_name %> done"'.`);
  }
};
const FLAG: Record<(typeof AMQP_ONLY)[number], string> = { exchange: '--exchange', topic: '--topic', routingKey: '--routing-key' };

/** The callback object for the chosen transport: http takes a method, amqp an exchange, topic and routing key. */
function callbackOf(url: string, o: AddOptions): Record<string, unknown> {
  const transport = o.transport ?? 'http';
  if (o.template !== undefined && o.format !== undefined && o.format !== 'template') {
    throw new UsageError(`--template goes with --format template, not ${o.format}`);
  }
  // A template alone says which format it is for.
  const format = o.template !== undefined ? 'template' : o.format;
  const common = {
    ...(o.header && { headers: o.header }),
    ...(format && { format }),
    ...(o.template !== undefined && { template: o.template }),
    ...(o.timeoutMs !== undefined && { timeout_ms: o.timeoutMs }),
  };
  if (transport === 'amqp') {
    if (o.method) throw new UsageError('--method is for http callbacks; an amqp callback publishes a message');
    if (!o.topic) throw new UsageError('--transport amqp needs --topic (e.g. notifications: messages go to <topic>.<priority>)');
    return {
      transport,
      url,
      ...(o.exchange && { exchange: o.exchange }),
      topic: o.topic,
      ...(o.routingKey && { routing_key: o.routingKey }),
      ...common,
    };
  }
  for (const key of AMQP_ONLY) {
    if (o[key] !== undefined) throw new UsageError(`${FLAG[key]} is for --transport amqp`);
  }
  return { ...(transport !== 'http' && { transport }), url, ...(o.method && { method: o.method }), ...common };
}

/** The create body: a workbook-wide listener, or one narrowed to a single execution or task. */
export function listenerAddBody(kind: string, id: string, url: string, o: AddOptions): Record<string, unknown> {
  if (!id.trim()) throw new UsageError(`the ${kind === 'workbook' ? 'workbook name' : `${kind} id`} is empty`);
  if (kind === 'workbook' && o.workbook !== undefined && o.workbook !== id) {
    throw new UsageError(`--workbook ${o.workbook} contradicts "workbook ${id}"; give the name once`);
  }
  return {
    workbook: kind === 'workbook' ? id : (o.workbook ?? '*'),
    event_types: o.eventType ?? (kind === 'task' ? ['TASK'] : ['EXECUTION', 'TASK']),
    ...(o.event && { events: o.event }),
    ...(kind !== 'workbook' && { target: { kind, id } }),
    ...(o.filter && { filter: o.filter }),
    callback: callbackOf(url, o),
    ...(o.retrySchedule && { retry: { schedule_ms: o.retrySchedule } }),
    ...(o.description !== undefined && { description: o.description }),
    ...(o.ordering !== undefined && { ordering: o.ordering }),
    ...(o.maxInFlight !== undefined && { max_in_flight: o.maxInFlight }),
    ...(o.rateLimit !== undefined && { rate_limit_per_s: o.rateLimit }),
    ...(o.secret !== undefined && { secret: o.secret }),
  };
}

export const EVENT_TYPE_HELP = `event category: ${EVENT_CATEGORIES.join(', ')}; repeatable or comma-separated`;
export const EVENT_HELP = 'only these events (e.g. TASK_FAILED, on-task-complete, on-execution-complete); repeatable or comma-separated';
export const HEADER_HELP = "callback header 'Name: value'; repeatable";
export const RETRY_SCHEDULE_HELP = 'delays in ms between tries, comma-separated (n delays: up to n+1 attempts; "none": one try)';

/** Shared by `callback-relay listener-add` and the `listener-add` bin, which is the same command at the top. */
export function configureListenerAdd(cmd: Command, io: CliIo, invocation: string): Command {
  return addColumnOption(cmd)
    .summary('register a listener for a workbook, an execution or a task')
    .description('Register a listener (POST /v1/listeners) and print it with its signing secret, shown only this once.')
    .addArgument(new Argument('<kind>', 'what to listen to').choices(TARGET_KINDS))
    .argument('<id>', 'the execution or task id, or for kind "workbook" the workbook name')
    .argument('<url>', 'callback URL (http or https), or with --transport amqp the broker URL (amqp://user:pass@host:5672/vhost)')
    .option('--workbook <name>', 'workbook the events come from (default: "*", all; for kind "workbook", <id>)')
    .option('--event-type <type>', `${EVENT_TYPE_HELP} (default: EXECUTION,TASK; TASK for kind "task")`, collectChoices(EVENT_CATEGORIES))
    .option('--event <event>', EVENT_HELP, collectList)
    .option('--method <method>', `callback method: ${HTTP_METHODS.join(', ')} (default: POST)`, upperChoice(HTTP_METHODS))
    .option('--header <header>', HEADER_HELP, collectHeader)
    .option('--transport <name>', 'how deliveries go out: http, amqp, or an operator\'s transport (default: http)')
    .option('--exchange <name>', 'amqp: the topic exchange to publish to (default: openstack)')
    .option('--topic <topic>', 'amqp: the notification topic; messages are routed as <topic>.<priority>, e.g. notifications.info')
    .option('--routing-key <key>', 'amqp: a fixed routing key instead of <topic>.<priority>')
    .addOption(new Option('--format <format>', `${FORMAT_HELP} (default: json for http, oslo for amqp)`).choices(CALLBACK_FORMATS))
    .option('--template <json>', TEMPLATE_HELP, jsonValue)
    .addOption(new Option('--ordering <ordering>', ORDERING_HELP).choices(LISTENER_ORDERINGS))
    .option('--max-in-flight <n>', MAX_IN_FLIGHT_HELP, intInRange(1, 10_000))
    .option('--rate-limit <per-second>', RATE_LIMIT_HELP, rateLimitOrNone)
    .option('--timeout-ms <ms>', 'bound on each attempt in milliseconds (default: 15000)', intInRange(100, 3_600_000))
    .option('--filter <json>', 'payload filter, a JSON object of dot paths into the event (see the README)', jsonObject)
    .option('--retry-schedule <ms,...>', `${RETRY_SCHEDULE_HELP} (default: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h)`, retrySchedule)
    .option('--description <text>', 'free text')
    .option('--secret <whsec>', 'bring your own signing secret (whsec_ + base64)')
    .addHelpText(
      'after',
      examples([
        `${invocation} execution 5f0c7a2e https://hooks.example.com/wf`,
        `${invocation} workbook billing https://hooks.example.com/wf --event on-execution-complete`,
        `${invocation} task 9a1b https://hooks.example.com/t --header 'X-Api-Key: k-123' --format cloudevents -f json`,
        `${invocation} workbook billing http://127.0.0.1:9000/hook --retry-schedule 1000,1000`,
        `${invocation} workbook billing amqp://guest:guest@127.0.0.1:5672/ --transport amqp --topic notifications`,
        `${invocation} workbook billing https://hooks.example.com/t --method GET --template '{"execution_id": "<% $.execution_id %>", "task_id": "<% $.task_id %>", "event": "<% $.type %>"}'`,
        `SECRET=$(${invocation} workbook billing https://hooks.example.com/wf -f value -c secret)`,
      ]),
    )
    .action(
      action<[string, string, string], AddOptions>(io, async (ctx, [kind, id, url], opts) => {
        const body = listenerAddBody(kind, id, url, opts);
        const created = await ctx.client.request<ListenerWithSecret>('POST', '/v1/listeners', { body });
        showListener(ctx, created, SECRET_NOTE, `listener ${created.id} was created`);
      }),
    );
}
