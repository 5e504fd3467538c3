import type { Command } from 'commander';
import type { TaskView } from '../../records/engine.js';
import { action, addColumnOption, type CliIo } from '../context.js';
import { nonEmpty } from '../options.js';
import { helpExamples as examples } from '../output.js';
import { addPageOptions, fetchPages, moreLine, type PageOptions } from '../paging.js';
import { TASK_COLUMNS, taskFields } from './engine-view.js';
import { executionPath } from './executions.js';

export function registerTaskCommands(program: Command, io: CliIo): void {
  addPageOptions(
    program
      .command('task-list')
      .summary("list an execution's tasks")
      .description(
        "List the tasks of one execution (GET /v1/executions/{id}/tasks) in the order they started, one page at a time unless --all. " +
          'A task being retried stays RUNNING; TRIES counts its tries and NEXT RUN AT says when the next one is due.',
      )
      .argument('<execution_id>', 'execution id', nonEmpty),
    'tasks',
  )
    .addHelpText('after', examples(['callback-relay task-list 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q', 'callback-relay task-list 01JD3M5Q8X2W9Y7Z6V5T4S3R2Q --all -f json']))
    .action(
      action<[string], PageOptions>(io, async (ctx, [executionId], opts) => {
        const out = ctx.print.list(TASK_COLUMNS);
        const page = await fetchPages<TaskView>(ctx, `${executionPath(executionId)}/tasks`, {}, opts);
        out.print(page, { empty: 'no tasks', more: page.next_cursor ? moreLine(`task-list ${executionId}`, [['--limit', opts.limit]], page.next_cursor) : undefined });
      }),
    );

  addColumnOption(program.command('task-rerun'))
    .summary('re-run a failed task')
    .description(
      'Re-run a failed task (PUT /v1/tasks/{id} {"state": "RUNNING"}): it starts again with its retries, its ' +
        'execution goes back to RUNNING if it had failed, and the tasks that succeeded before are not run again. ' +
        'Only a task in ERROR whose execution has not succeeded or been cancelled can be re-run (else exit 1).',
    )
    .argument('<id>', 'task id (task-list or execution-get shows it)', nonEmpty)
    .addHelpText('after', examples(['callback-relay task-rerun 01JD3M9B7C6D5E4F3G2H1J0K9M']))
    .action(
      action<[string], object>(io, async (ctx, [id]) => {
        const task = await ctx.client.request<TaskView>('PUT', `/v1/tasks/${encodeURIComponent(id)}`, { body: { state: 'RUNNING' } });
        if (!ctx.print.show(task, taskFields(task, ctx.now), `task ${task.id} is re-running`)) return;
        ctx.print.line(`\nre-running task ${task.name}; follow it with: callback-relay execution-get ${task.execution_id}`);
      }),
    );
}
