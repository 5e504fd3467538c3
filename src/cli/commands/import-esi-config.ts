import type { Command } from 'commander';
import type { ListenerView } from '../../records/listener.js';
import { action, type CliIo, type CommandContext } from '../context.js';
import { ApiError, CommandFailedError } from '../errors.js';
import { ConfigSyntaxError, parseConfig } from '../esi-config.js';
import { keyForField, planImport, problemText, type ImportPlan, type ImportProblem, type PlannedAction } from '../esi-actions.js';
import { intInRange } from '../options.js';
import { helpExamples as examples } from '../output.js';
import { fetchPages } from '../paging.js';
import { readText } from './text-input.js';

interface ImportOptions {
  dryRun?: boolean;
  timeoutMs?: number;
}

type Result = 'created' | 'exists' | 'would_create';

interface ActionReport {
  section: string;
  result: Result;
  id: string | null;
  /** The section's script as written. */
  script: string;
  /** The listener as the relay answered (created, exists) or the body it would get (dry run). */
  listener: Record<string, unknown>;
}

const EXCHANGE_NOTE =
  'RELAY_AMQP_INGEST_EXCHANGE defaults to openstack, the control_exchange esi-leap publishes to; set it if yours differs.';
const PASSWORD_NOTE = 'The password is shown as ***: write the [DEFAULT] password (percent-encoded) into RELAY_AMQP_INGEST_URL.';

/** Settings for the relay that consumes the same queues and runs the scripts. */
function settingsOf(plan: ImportPlan): Record<string, string | null> {
  return {
    RELAY_TRANSPORTS: 'http,amqp,exec',
    RELAY_EXEC_DIR: null,
    RELAY_AMQP_INGEST_URL: plan.ingestUrl,
    RELAY_AMQP_INGEST_QUEUES: plan.queues.length ? plan.queues.join(',') : null,
  };
}

const sameAction = (view: ListenerView, body: PlannedAction['body']): boolean => {
  const c = view.callback as { transport: string; command?: string; args?: string[] };
  const shape = (x: unknown) => JSON.stringify(x ?? null);
  return (
    view.description === body.description &&
    c.transport === 'exec' &&
    c.command === body.callback.command &&
    shape(c.args) === shape(body.callback.args) &&
    shape(view.events) === shape(body.events) &&
    shape(view.filter) === shape(body.filter)
  );
};

/** The relay refused a section's listener: its problems, named by the section's keys. */
function refusals(action: PlannedAction, err: ApiError): ImportProblem[] {
  const { section } = action;
  const errors = err.problem.errors ?? [];
  if (errors.length === 0) return [{ section, key: '(relay)', message: err.message }];
  return errors.map((e) => {
    const key = keyForField(e.field);
    return { section, key, line: action.lines[key], message: e.message.startsWith(e.field) ? e.message : `${e.field}: ${e.message}` };
  });
}

async function createListeners(ctx: CommandContext, plan: ImportPlan, problems: ImportProblem[]): Promise<ActionReport[]> {
  const reports: ActionReport[] = [];
  if (plan.actions.length === 0) return reports;
  // An earlier import of the same file made these already: running it twice must not run every script twice.
  const existing = (await fetchPages<ListenerView>(ctx, '/v1/listeners', { workbook: '*' }, { all: true })).items;
  for (const action of plan.actions) {
    const found = existing.find((l) => sameAction(l, action.body));
    if (found) {
      reports.push({ section: action.section, result: 'exists', id: found.id, script: action.script, listener: found });
      continue;
    }
    try {
      const created = await ctx.client.request<ListenerView & { secret?: string }>('POST', '/v1/listeners', { body: action.body });
      // The signing secret signs webhooks; a script is given no signature, so it is not shown.
      const { secret: _secret, ...view } = created;
      reports.push({ section: action.section, result: 'created', id: created.id, script: action.script, listener: view });
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 400) throw err;
      if ((err.problem.errors ?? []).some((e) => e.field === 'callback.transport')) {
        throw new CommandFailedError(
          'the relay does not run scripts: the exec transport is not enabled there',
          'start the relay with RELAY_TRANSPORTS=http,amqp,exec and RELAY_EXEC_DIR set (see --dry-run for all the settings), then run the import again',
        );
      }
      problems.push(...refusals(action, err));
    }
  }
  return reports;
}

function printText(ctx: CommandContext, file: string, dryRun: boolean, reports: ActionReport[], plan: ImportPlan): void {
  const p = ctx.print;
  p.line(dryRun ? `${file}: dry run, nothing was created; these listeners would be:` : `${file}:`);
  for (const r of reports) {
    const body = r.listener as { events?: string[]; filter?: unknown; callback: { command: string; args: string[]; timeout_ms?: number } };
    const heading = r.result === 'created' ? `created listener ${r.id}` : r.result === 'exists' ? `exists already as listener ${r.id}` : 'would create an exec listener';
    p.line(`\n[${r.section}] ${heading}`);
    p.fields([
      ['events', (body.events ?? []).join(', ')],
      ['command', [body.callback.command, ...body.callback.args].join(' ')],
      ['filter', body.filter ? JSON.stringify(body.filter) : '-'],
      ...(body.callback.timeout_ms !== undefined ? [['timeout_ms', String(body.callback.timeout_ms)] as [string, string]] : []),
    ]);
  }
  if (reports.length === 0) p.line('\nno listener was created');
  const scripts = [...new Map(reports.map((r) => [(r.listener as { callback: { command: string } }).callback.command, r.script])).entries()];
  if (scripts.length > 0) {
    p.line("\nPut each script in RELAY_EXEC_DIR, the only folder the relay runs scripts from, executable by the relay's user:");
    for (const [command, script] of scripts) p.line(`  ${command}${script !== command ? `   (esi-event-actions ran ${script})` : ''}`);
  }
  p.line('\nRelay settings (environment; they take effect when the relay starts):');
  for (const [name, value] of Object.entries(settingsOf(plan))) {
    p.line(`  ${name}=${value ?? (name === 'RELAY_EXEC_DIR' ? '<the folder holding the scripts>' : '<see the errors>')}`);
  }
  if (plan.ingestUrl?.includes(':***@')) p.line(PASSWORD_NOTE);
  p.line(EXCHANGE_NOTE);
}

export function registerImportCommands(program: Command, io: CliIo): void {
  program
    .command('import-esi-config')
    .summary('create script listeners from an esi-event-actions configuration')
    .description(
      'Read an esi-event-actions configuration (esi-event-action-listener.conf) with Python configparser\'s rules ' +
        '([DEFAULT] values inherited, comments only on lines of their own, keys in any case, indented lines continue a value) ' +
        'and create one exec listener per action section. Print where each script must be placed (RELAY_EXEC_DIR) and the ' +
        'relay settings that consume the [DEFAULT] broker\'s queues, its password masked.',
    )
    .argument('<file>', 'the esi-event-actions configuration; "-" reads stdin')
    .option('--dry-run', 'print the listeners and settings without contacting the relay')
    .option('--timeout-ms <ms>', 'bound on each script run, 100 to 3600000 (default: 60000)', intInRange(100, 3_600_000))
    .addHelpText(
      'after',
      [
        '',
        'How a section becomes a listener (workbook "*", event type NOTIFICATION):',
        '  events          its events: the exact event types',
        '  script          callback.command: the base name, run from RELAY_EXEC_DIR without a shell',
        '  script_params   callback.args under data. (node_name becomes data.node_name)',
        '  filter_params   filter: {"purpose": "test"} becomes {"data.purpose": {"$regex": "^(?:test)"}},',
        '                  anchored at the start as Python\'s re.match is',
        '',
        'Steps: run it with --dry-run; put the scripts in RELAY_EXEC_DIR and start the relay with the settings shown;',
        'then run it without --dry-run (the relay checks that each script is there and executable). Run again, it',
        'recognises the listeners it made and keeps them, so no script runs twice.',
        '',
        'A section that cannot be read, or that the relay refuses, is reported with its key and line; the other',
        'sections are still imported.',
        'Exit codes: 0 every section imported; 1 a section was not (the others were), the file is not configparser',
        'syntax (nothing is created) or the relay said no; 2 usage.',
      ].join('\n') +
        '\n' +
        examples([
          'callback-relay import-esi-config esi-event-action-listener.conf --dry-run',
          'callback-relay import-esi-config esi-event-action-listener.conf',
          'callback-relay import-esi-config esi-event-action-listener.conf --timeout-ms 600000 -f json',
        ]),
    )
    .action(
      action<[string], ImportOptions>(io, async (ctx, [file], opts) => {
        const { text, name } = await readText(file, io);
        let doc;
        try {
          doc = parseConfig(text);
        } catch (err) {
          if (!(err instanceof ConfigSyntaxError)) throw err;
          const lines = err.problems.map((p) => `\n  line ${p.line}: ${p.message}`).join('');
          throw new CommandFailedError(`${name} is not a configparser file esi-event-actions could read; nothing was created:${lines}`);
        }
        const plan = planImport(doc, { fileName: name, timeoutMs: opts.timeoutMs });
        const problems = [...plan.problems];
        const dryRun = opts.dryRun === true;
        const reports: ActionReport[] = dryRun
          ? plan.actions.map((a) => ({ section: a.section, result: 'would_create', id: null, script: a.script, listener: a.body }))
          : await createListeners(ctx, plan, problems);

        if (ctx.output !== 'table') {
          ctx.print.data({
            file: name,
            dry_run: dryRun,
            listeners: reports,
            problems,
            warnings: plan.warnings,
            settings: settingsOf(plan),
            notes: [...(plan.ingestUrl?.includes(':***@') ? [PASSWORD_NOTE] : []), EXCHANGE_NOTE],
          });
        } else {
          printText(ctx, name, dryRun, reports, plan);
        }
        for (const w of plan.warnings) io.stderr(`warning: ${problemText(w)}\n`);
        for (const p of problems) io.stderr(`error: ${problemText(p)}\n`);
        if (problems.length > 0) {
          const failed = new Set(problems.map((p) => p.section)).size;
          const rest = reports.length === 0 ? '' : dryRun ? '; the other sections would be created' : "; the other sections' listeners are in place";
          throw new CommandFailedError(
            `${failed === 1 ? '1 part' : `${failed} parts`} of ${name} could not be imported${rest}`,
            dryRun ? undefined : 'fix the file and run the import again: listeners it already created are recognised and kept',
          );
        }
        if (doc.sections.length === 0) throw new CommandFailedError(`${name} has no action section: nothing to import`);
      }),
    );
}
