import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { addGlobalOptions, type CliIo } from './context.js';
import { ApiError, CommandFailedError, UnreachableError, UsageError } from './errors.js';
import { terminalSafe } from './output.js';
import { configureListenerAdd } from './commands/listener-add.js';
import { registerListenerCommands } from './commands/listeners.js';
import { registerListenerActionCommands } from './commands/listener-actions.js';
import { registerListenerStatsCommand } from './commands/listener-stats.js';
import { registerEventCommands } from './commands/events.js';
import { registerDeliveryCommands } from './commands/deliveries.js';
import { registerWorkbookCommands } from './commands/workbooks.js';
import { registerExecutionCommands } from './commands/executions.js';
import { registerTaskCommands } from './commands/tasks.js';
import { registerImportCommands } from './commands/import-esi-config.js';
import { registerListenCommand } from './commands/listen.js';
import { registerVerifyCommand } from './commands/verify.js';

/** Command groups in help order. */
const COMMAND_GROUPS: Array<(program: Command, io: CliIo) => void> = [
  registerListenerCommands,
  registerListenerActionCommands,
  registerListenerStatsCommand,
  registerEventCommands,
  registerDeliveryCommands,
  registerWorkbookCommands,
  registerExecutionCommands,
  registerTaskCommands,
  registerImportCommands,
  registerListenCommand,
  registerVerifyCommand,
];

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

export function processIo(): CliIo {
  // `callback-relay listener-list | head` closes the pipe early; that is not an error.
  if (!process.stdout.listenerCount('error')) {
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      process.exit(process.exitCode ?? 0);
    });
  }
  return {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    env: process.env,
    cwd: process.cwd(),
    version,
    stdin: process.stdin,
    terminal: { stdout: process.stdout.isTTY === true, stderr: process.stderr.isTTY === true },
    now: Date.now,
  };
}

// Usage errors exit 2 (DESIGN), not commander's 1; help and version exit 0. Set before any
// subcommand is added so that each one inherits it.
function configureCommon(cmd: Command, io: CliIo): Command {
  return cmd
    .version(io.version, '-V, --version')
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .showHelpAfterError('(add --help for usage)');
}

export function buildProgram(io: CliIo = processIo()): Command {
  const program = configureCommon(new Command('callback-relay'), io)
    .description('Command-line client of a callback-relay: manage listeners that receive workflow events as webhooks, publish events and follow their deliveries, and run workflows in the embedded engine.')
    .addHelpText(
      'after',
      '\nThe relay is found through --url, $RELAY_URL or http://127.0.0.1:8990, the token through --token, $RELAY_TOKEN\n' +
        'or the admin.token file in $RELAY_DATA_DIR (default ./data), so on the relay\'s machine no flags are needed.\n' +
        'Exit codes: 0 ok, 1 the relay said no or could not be reached, 2 usage.\n',
    );
  addGlobalOptions(program);
  for (const register of COMMAND_GROUPS) register(program, io);
  return program;
}

/** The `listener-add` bin: the same command as `callback-relay listener-add`, at the top. */
export function buildListenerAddProgram(io: CliIo = processIo()): Command {
  const program = configureListenerAdd(configureCommon(new Command('listener-add'), io), io, 'listener-add');
  return addGlobalOptions(program);
}

function reportError(err: unknown, io: CliIo): number {
  if (err instanceof CommanderError) {
    // commander has already printed its message, or the help or version (the only exit code 0).
    return err.exitCode === 0 ? 0 : 2;
  }
  if (err instanceof UsageError) {
    io.stderr(`error: ${err.message}\n`);
    return 2;
  }
  if (err instanceof ApiError) {
    const { detail, errors = [] } = err.problem;
    io.stderr(`error: ${err.message}\n`);
    const lines = errors.map((e) => `${e.field}${e.line === undefined ? '' : ` (line ${e.line})`}: ${e.message}`);
    if (lines.length > 1 || (lines.length === 1 && detail !== lines[0])) io.stderr(lines.map((l) => `  ${l}\n`).join(''));
    if (err.hint) io.stderr(`hint: ${err.hint}\n`);
    return 1;
  }
  if (err instanceof CommandFailedError) {
    io.stderr(`error: ${err.message}\n`);
    if (err.hint) io.stderr(`hint: ${err.hint}\n`);
    return 1;
  }
  if (err instanceof UnreachableError) {
    io.stderr(`error: ${err.message}\n`);
    if (err.code !== 'TIMEOUT') {
      io.stderr('hint: is the relay running? Start it with `npm start` in its folder, or point --url or RELAY_URL at it.\n');
    }
    return 1;
  }
  io.stderr(`error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return 1;
}

/** Runs one command line (without node and the script) and returns the exit code. */
export async function runCli(
  argv: string[],
  opts: { entry?: 'callback-relay' | 'listener-add'; io?: CliIo } = {},
): Promise<number> {
  const given = opts.io ?? processIo();
  // Whatever the relay answers is shown, never obeyed: no control sequence reaches the terminal.
  const io: CliIo = { ...given, stdout: (t) => given.stdout(terminalSafe(t)), stderr: (t) => given.stderr(terminalSafe(t)) };
  const program = opts.entry === 'listener-add' ? buildListenerAddProgram(io) : buildProgram(io);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    return reportError(err, io);
  }
}
