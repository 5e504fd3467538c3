import { Option, type Command } from 'commander';
import { createRelayClient, resolveConnection, type RelayClient } from './client.js';
import { collect } from './options.js';
import { createPrinter, OUTPUT_FORMATS, type OutputFormat, type Printer, type ViewOptions } from './output.js';

/** What the CLI touches outside itself; tests and the bins pass their own. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  env: NodeJS.ProcessEnv;
  cwd: string;
  version: string;
  /** Where `event-publish` reads events without a FILE; process.stdin unless given. */
  stdin?: NodeJS.ReadableStream & { isTTY?: boolean };
  /** Whether stdout and stderr are terminals: progress every second is for people watching. */
  terminal?: { stdout: boolean; stderr: boolean };
  /** The clock relative times and progress read; Date.now unless given. */
  now?: () => number;
}

export interface GlobalOptions {
  url?: string;
  token?: string;
  output: OutputFormat;
}

export interface CommandContext {
  output: OutputFormat;
  /** -f with -c, --sort-column and --sort-descending where the command takes them. */
  view: ViewOptions;
  /** When the command started: relative times in tables are counted from it. */
  now: number;
  print: Printer;
  /** Resolved on first use, so `--help` and option errors need no token. */
  readonly client: RelayClient;
}

/** The options every command takes. They must not be reused by a command's own options. */
export function addGlobalOptions(cmd: Command): Command {
  return cmd
    .option('--url <url>', 'relay address (else $RELAY_URL, else http://127.0.0.1:8990)')
    .option('--token <token>', 'API token (else $RELAY_TOKEN, else admin.token in $RELAY_DATA_DIR or ./data)')
    .addOption(new Option('-f, --output <format>', 'output format').choices(OUTPUT_FORMATS).default('table'));
}

const COLUMN_HELP = 'show only this column (a table header or the JSON field name, any case); repeatable';

/** -c on a command that prints one record (cliff's show commands). */
export function addColumnOption(cmd: Command): Command {
  return cmd.option('-c, --column <column>', COLUMN_HELP, collect);
}

/** -c, --sort-column, --sort-ascending and --sort-descending on a list (cliff's list commands). */
export function addListViewOptions(cmd: Command): Command {
  return addColumnOption(cmd)
    .option('--sort-column <column>', 'sort the rows by this column (repeatable: later ones break ties)', collect)
    .addOption(new Option('--sort-ascending', 'sort ascending (the default)').conflicts('sortDescending'))
    .option('--sort-descending', 'sort descending');
}

interface ViewFlags {
  column?: string[];
  sortColumn?: string[];
  sortDescending?: boolean;
}

export function contextOf(cmd: Command, io: CliIo): CommandContext {
  const globals = cmd.optsWithGlobals<GlobalOptions>();
  const flags = cmd.opts<ViewFlags>();
  const view: ViewOptions = {
    format: globals.output,
    columns: flags.column,
    sortColumns: flags.sortColumn,
    sortDescending: flags.sortDescending === true,
  };
  const now = (io.now ?? Date.now)();
  let client: RelayClient | undefined;
  return {
    output: globals.output,
    view,
    now,
    print: createPrinter(io, view, now),
    get client() {
      client ??= createRelayClient(resolveConnection(globals, io.env, io.cwd), {
        userAgent: `callback-relay-cli/${io.version}`,
      });
      return client;
    },
  };
}

/** Wraps a command's action: commander passes (...arguments, options, command). */
export function action<Args extends Array<string | undefined>, Opts>(
  io: CliIo,
  run: (ctx: CommandContext, args: Args, opts: Opts) => Promise<void>,
): (...params: unknown[]) => Promise<void> {
  return async (...params) => {
    const cmd = params[params.length - 1] as Command;
    const opts = params[params.length - 2] as Opts;
    await run(contextOf(cmd, io), params.slice(0, -2) as Args, opts);
  };
}
