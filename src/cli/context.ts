import { Option, type Command } from 'commander';
import { createRelayClient, resolveConnection, type RelayClient } from './client.js';
import { createPrinter, OUTPUT_FORMATS, type OutputFormat, type Printer } from './output.js';

/** What the CLI touches outside itself; tests and the bins pass their own. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  env: NodeJS.ProcessEnv;
  cwd: string;
  version: string;
  /** Where `event-publish` reads events without a FILE; process.stdin unless given. */
  stdin?: NodeJS.ReadableStream & { isTTY?: boolean };
}

export interface GlobalOptions {
  url?: string;
  token?: string;
  output: OutputFormat;
}

export interface CommandContext {
  output: OutputFormat;
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

export function contextOf(cmd: Command, io: CliIo): CommandContext {
  const globals = cmd.optsWithGlobals<GlobalOptions>();
  let client: RelayClient | undefined;
  return {
    output: globals.output,
    print: createPrinter(io.stdout),
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
