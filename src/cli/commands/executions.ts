import { Argument, type Command } from 'commander';
import { ExecutionStateInput, ExecutionView, type TaskView } from '../../records/engine.js';
import { action, addColumnOption, type CliIo, type CommandContext } from '../context.js';
import { ApiError, UsageError } from '../errors.js';
import { jsonObject, nonEmpty, upperChoice } from '../options.js';
import { helpExamples as examples } from '../output.js';
import { addOrderedPageOptions, fetchPages, moreLine, orderFlag, type OrderedPageOptions } from '../paging.js';
import { COMPACT_TASK_COLUMNS, compactTaskRow, EXECUTION_COLUMNS, executionFields, type ExecutionWithTasks } from './engine-view.js';
import { readJsonObject } from './text-input.js';

/** IDLE, RUNNING, PAUSED, SUCCESS, ERROR, CANCELLED: as the API has them. */
export const EXECUTION_STATES = ExecutionView.shape.state.options;
/** What a client may ask an execution to become: PAUSED, RUNNING, CANCELLED. */
export const CLIENT_EXECUTION_STATES = ExecutionStateInput.shape.state.options;

export const executionPath = (id: string) => `/v1/executions/${encodeURIComponent(id)}`;

/** Checked as the argument is read (a usage error), parsed again in the action. */
const jsonObjectText = (value: string): string => (jsonObject(value), value);

interface CreateOptions {
  inputFile?: string;
}

interface ListOptions extends OrderedPageOptions {
  workbook?: string;
  workflow?: string;
  state?: string;
}

/** Every task of an execution, in the order they were created. */
export async function tasksOf(ctx: CommandContext, executionId: string): Promise<TaskView[]> {
  return (await fetchPages<TaskView>(ctx, `${executionPath(executionId)}/tasks`, {}, { all: true })).items;
}

function showExecution(ctx: CommandContext, execution: ExecutionView, note?: string, made?: string): void {
  if (ctx.print.show(execution, executionFields(execution, ctx.now), made) && note) ctx.print.line(`\n${note}`);
}

export function registerExecutionCommands(program: Command, io: CliIo): void {
  addColumnOption(program.command('execution-create'))
    .summary('start a workflow')
    .description(
      'Start an execution of WORKFLOW in WORKBOOK (POST /v1/executions) with INPUT_JSON, a JSON object of the ' +
        "workflow's inputs (or --input-file). It runs in the relay; follow it with execution-get, or with a " +
        'listener on the workbook (listener-add workbook WORKBOOK URL).',
    )
    .argument('<workbook>', 'workbook name', nonEmpty)
    .argument('<workflow>', 'workflow name in that workbook', nonEmpty)
    .addArgument(new Argument('[input_json]', 'the inputs as a JSON object, e.g. \'{"amount": 42}\' (default: {})').argParser(jsonObjectText))
    .option('--input-file <file>', 'read the inputs (a JSON object) from this file; "-" reads stdin')
    .addHelpText(
      'after',
      examples([
        `callback-relay execution-create billing charge '{"amount": 42}'`,
        'callback-relay execution-create billing charge --input-file order.json -f json',
      ]),
    )
    .action(
      action<[string, string, string | undefined], CreateOptions>(io, async (ctx, [workbook, workflow, inline], opts) => {
        if (inline !== undefined && opts.inputFile !== undefined) throw new UsageError('give the input once: INPUT_JSON or --input-file, not both');
        const input = opts.inputFile !== undefined ? await readJsonObject(opts.inputFile, io) : inline === undefined ? {} : jsonObject(inline);
        const execution = await ctx.client.request<ExecutionView>('POST', '/v1/executions', { body: { workbook, workflow, input } });
        showExecution(ctx, execution, `follow it with: callback-relay execution-get ${execution.id}`, `execution ${execution.id} was started`);
      }),
    );

  addOrderedPageOptions(
    program
      .command('execution-list')
      .summary('list executions')
      .description('List executions (GET /v1/executions), newest first unless --order asc, one page at a time unless --all.')
      .option('--workbook <name>', 'only executions of this workbook', nonEmpty)
      .option('--workflow <name>', 'only executions of this workflow', nonEmpty)
      .option('--state <state>', `only executions in this state: ${EXECUTION_STATES.join(', ')}`, upperChoice(EXECUTION_STATES)),
    'executions',
  )
    .addHelpText(
      'after',
      examples([
        'callback-relay execution-list --workbook billing --state ERROR',
        'callback-relay execution-list --workflow charge --order asc --all -f json',
        'callback-relay execution-list -f csv -c id -c state -c created_at',
      ]),
    )
    .action(
      action<[], ListOptions>(io, async (ctx, _args, opts) => {
        const out = ctx.print.list(EXECUTION_COLUMNS);
        const query = { workbook: opts.workbook, workflow: opts.workflow, state: opts.state, order: opts.order };
        const page = await fetchPages<ExecutionView>(ctx, '/v1/executions', query, opts);
        const flags: Array<[string, string | number | undefined]> = [
          ['--workbook', opts.workbook],
          ['--workflow', opts.workflow],
          ['--state', opts.state],
          orderFlag(opts),
          ['--limit', opts.limit],
        ];
        out.print(page, { empty: 'no executions', more: page.next_cursor ? moreLine('execution-list', flags, page.next_cursor) : undefined });
      }),
    );

  addColumnOption(program.command('execution-get'))
    .summary('show one execution and its tasks')
    .description(
      'Show one execution (GET /v1/executions/{id}) and its tasks: each one\'s state, tries, id and result or error. ' +
        '-f json prints the execution with a "tasks" list.',
    )
    .argument('<id>', 'execution id', nonEmpty)
    .addHelpText('after', examples(['callback-relay execution-get 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q', 'callback-relay execution-get 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q -f json']))
    .action(
      action<[string], object>(io, async (ctx, [id]) => {
        const execution = await ctx.client.request<ExecutionView>('GET', executionPath(id));
        const tasks = await tasksOf(ctx, execution.id);
        if (!ctx.print.show({ ...execution, tasks } satisfies ExecutionWithTasks, executionFields(execution, ctx.now))) return;
        ctx.print.line();
        if (!tasks.length) return ctx.print.line('tasks: none');
        ctx.print.line(`tasks (${tasks.length}):`);
        ctx.print.table(COMPACT_TASK_COLUMNS, tasks.map(compactTaskRow));
        const failed = execution.state === 'ERROR' && tasks.find((t) => t.state === 'ERROR');
        if (failed) ctx.print.line(`\nre-run ${failed.name} with: callback-relay task-rerun ${failed.id}`);
      }),
    );

  addColumnOption(program.command('execution-update'))
    .summary('pause, resume or cancel an execution')
    .description(
      'Pause (PAUSED), resume (RUNNING) or cancel (CANCELLED) an execution (PUT /v1/executions/{id}). ' +
        'A finished execution cannot move (exit 1); a failed one goes on when a failed task is re-run (task-rerun).',
    )
    .argument('<id>', 'execution id', nonEmpty)
    .requiredOption('--state <state>', `the state to move to: ${CLIENT_EXECUTION_STATES.join(', ')}`, upperChoice(CLIENT_EXECUTION_STATES))
    .addHelpText(
      'after',
      examples([
        'callback-relay execution-update 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q --state PAUSED',
        'callback-relay execution-update 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q --state RUNNING',
        'callback-relay execution-update 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q --state CANCELLED -f json',
      ]),
    )
    .action(
      action<[string], { state: string }>(io, async (ctx, [id], opts) => {
        let execution: ExecutionView;
        try {
          execution = await ctx.client.request<ExecutionView>('PUT', executionPath(id), { body: { state: opts.state } });
        } catch (err) {
          if (err instanceof ApiError && err.status === 409 && opts.state === 'RUNNING' && /\(ERROR\)/.test(err.problem.detail ?? '')) {
            throw new ApiError(err.status, err.problem, `callback-relay execution-get ${id} shows its failed task; callback-relay task-rerun TASK_ID re-runs it`);
          }
          throw err;
        }
        showExecution(ctx, execution, undefined, `execution ${execution.id} was changed`);
      }),
    );
}
