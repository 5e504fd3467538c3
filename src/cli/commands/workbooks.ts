import type { Command } from 'commander';
import type { WorkbookView } from '../../records/engine.js';
import { action, addColumnOption, type CliIo, type CommandContext } from '../context.js';
import { ApiError } from '../errors.js';
import { nonEmpty } from '../options.js';
import { helpExamples as examples } from '../output.js';
import { addPageOptions, fetchPages, moreLine, type PageOptions } from '../paging.js';
import { WORKBOOK_COLUMNS, workbookFields } from './engine-view.js';
import { readText, workbookMediaType } from './text-input.js';

const workbookPath = (name: string) => `/v1/workbooks/${encodeURIComponent(name)}`;

const FILE_HELP = 'workbook definition, YAML or JSON; "-" reads stdin';

/**
 * Sends a definition (POST, or PUT for an update) as YAML or JSON. A definition the relay refuses
 * is reported as "FILE is not a valid workbook" followed by each problem with its line.
 */
async function sendDefinition(ctx: CommandContext, io: CliIo, method: 'POST' | 'PUT', pathname: string, file: string): Promise<WorkbookView> {
  const { text, name } = await readText(file, io);
  try {
    return await ctx.client.request<WorkbookView>(method, pathname, { rawBody: text, contentType: workbookMediaType(name, text) });
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    const errors = err.problem.errors ?? [];
    if (err.status === 400 && errors.length) {
      const problems = errors.length === 1 ? '1 problem' : `${errors.length} problems`;
      // One problem per line: a message over several lines (a JSON parser's excerpt) becomes one.
      const flat = errors.map((e) => ({ ...e, message: e.message.replace(/\s*\n\s*/g, ' ') }));
      throw new ApiError(err.status, { ...err.problem, detail: `${name} is not a valid workbook (${problems})`, errors: flat }, err.hint);
    }
    const existing = /^workbook (\S+) already exists/.exec(err.problem.detail ?? '')?.[1];
    if (err.status === 409 && existing) {
      throw new ApiError(err.status, err.problem, `to replace its definition: callback-relay workbook-update ${existing} ${file}`);
    }
    throw err;
  }
}

function showWorkbook(ctx: CommandContext, workbook: WorkbookView, made: string, note?: string): void {
  if (ctx.print.show(workbook, workbookFields(workbook, ctx.now), made) && note) ctx.print.line(`\n${note}`);
}

export function registerWorkbookCommands(program: Command, io: CliIo): void {
  addColumnOption(program.command('workbook-create'))
    .summary('store a workbook of workflows from a YAML or JSON file')
    .description(
      'Store a workbook (POST /v1/workbooks): its name and workflows come from the definition in FILE ' +
        '(YAML, or JSON; sent as application/yaml or application/json by the file\'s extension or, without one, ' +
        'by its content). A definition the relay refuses is reported with every problem and its line (exit 1).',
    )
    .argument('<file>', FILE_HELP)
    .addHelpText(
      'after',
      examples(['callback-relay workbook-create examples/billing.yaml', 'cat billing.json | callback-relay workbook-create - -f json']),
    )
    .action(
      action<[string], object>(io, async (ctx, [file]) => {
        const created = await sendDefinition(ctx, io, 'POST', '/v1/workbooks', file);
        const first = created.workflows[0];
        showWorkbook(ctx, created, `workbook ${created.name} was stored`, first && `start one with: callback-relay execution-create ${created.name} ${first} [INPUT_JSON]`);
      }),
    );

  addColumnOption(program.command('workbook-update'))
    .summary("replace a workbook's definition")
    .description(
      "Replace a workbook's definition (PUT /v1/workbooks/{name}) with the one in FILE, which must have the same name. " +
        'Running executions keep the workflow they started with; the new definition applies to the next ones.',
    )
    .argument('<name>', 'workbook name', nonEmpty)
    .argument('<file>', FILE_HELP)
    .addHelpText('after', examples(['callback-relay workbook-update billing examples/billing.yaml']))
    .action(
      action<[string, string], object>(io, async (ctx, [name, file]) => {
        showWorkbook(ctx, await sendDefinition(ctx, io, 'PUT', workbookPath(name), file), `workbook ${name} was replaced`);
      }),
    );

  addPageOptions(
    program
      .command('workbook-list')
      .summary('list workbooks')
      .description('List workbooks (GET /v1/workbooks) by name, one page at a time unless --all; -f json includes each definition.'),
    'workbooks',
  )
    .addHelpText('after', examples(['callback-relay workbook-list', 'callback-relay workbook-list --all -f json']))
    .action(
      action<[], PageOptions>(io, async (ctx, _args, opts) => {
        const out = ctx.print.list(WORKBOOK_COLUMNS);
        const page = await fetchPages<WorkbookView>(ctx, '/v1/workbooks', {}, opts);
        out.print(page, { empty: 'no workbooks', more: page.next_cursor ? moreLine('workbook-list', [['--limit', opts.limit]], page.next_cursor) : undefined });
      }),
    );

  addColumnOption(program.command('workbook-show'))
    .summary('show one workbook and its definition')
    .description('Show one workbook (GET /v1/workbooks/{name}) and its definition, as it was sent.')
    .argument('<name>', 'workbook name', nonEmpty)
    .addHelpText('after', examples(['callback-relay workbook-show billing', 'callback-relay workbook-show billing -f json']))
    .action(
      action<[string], object>(io, async (ctx, [name]) => {
        const workbook = await ctx.client.request<WorkbookView>('GET', workbookPath(name));
        if (!ctx.print.show(workbook, workbookFields(workbook, ctx.now))) return;
        ctx.print.line('\ndefinition:');
        ctx.print.line(workbook.definition.replace(/\s+$/, ''));
      }),
    );

  program
    .command('workbook-delete')
    .summary('remove a workbook')
    .description(
      'Remove a workbook (DELETE /v1/workbooks/{name}). Refused (exit 1) while any of its executions is RUNNING or PAUSED.',
    )
    .argument('<name>', 'workbook name', nonEmpty)
    .addHelpText('after', examples(['callback-relay workbook-delete billing']))
    .action(
      action<[string], object>(io, async (ctx, [name]) => {
        try {
          await ctx.client.request('DELETE', workbookPath(name));
        } catch (err) {
          if (err instanceof ApiError && err.status === 409) {
            throw new ApiError(err.status, err.problem, `callback-relay execution-list --workbook ${name} --state RUNNING shows them`);
          }
          throw err;
        }
        if (ctx.output !== 'table') ctx.print.data({ name, deleted: true });
        else ctx.print.line(`deleted workbook ${name}`);
      }),
    );
}
