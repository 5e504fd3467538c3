import type { Logger } from 'pino';
import type { FieldProblem, TransportAttempt, TransportModule, TransportOutcome } from './contract.js';
import { argumentPathProblems, execArguments, execEnvironment, unpassableArgument } from './exec-args.js';
import { resolveCommand } from './exec-command.js';
import { runProcess, type RunningProcess } from './exec-process.js';

/*
 * The `exec` transport (DESIGN.md, "Script actions"): each attempt runs one executable from
 * RELAY_EXEC_DIR with an argument vector read from the envelope, the envelope JSON on stdin and
 * an environment the relay chooses. Exit 0 is the success; every other ending is a failed
 * attempt with a stable code, retried on the listener's schedule like any delivery.
 *
 * Scripts inherit the relay's umask (077, set in main.ts): what they create is private to the
 * relay's user unless the script sets its own umask. Widening it for children would widen it,
 * for that moment, for the files the relay itself creates.
 */

export interface ExecTransportOptions {
  /** RELAY_EXEC_DIR: the only folder scripts run from, and their working directory. */
  execDir: string;
  /** RELAY_EXEC_CONCURRENCY: processes at once; further attempts wait their turn. */
  concurrency: number;
  /** RELAY_EXEC_ENV: variables passed through from the relay's environment, by name. */
  envNames: readonly string[];
  /** Where PATH and the passed variables are read; process.env unless given. */
  env?: NodeJS.ProcessEnv;
  log?: Logger;
  /** How long `close` lets running scripts finish before it kills them. */
  closeGraceMs?: number;
}

const closedOutcome = (): TransportOutcome => ({ ok: false, error: 'TRANSPORT_CLOSED', message: 'the exec transport is closed: the relay is stopping' });

export function createExecTransport(options: ExecTransportOptions): TransportModule {
  const { execDir, concurrency, envNames, env = process.env, log, closeGraceMs = 2_000 } = options;
  const running = new Set<RunningProcess>();
  const waiting: Array<(admitted: boolean) => void> = [];
  let closed = false;

  // Turns held: an attempt holds one from resolving its command until its process has ended.
  let turns = 0;

  /** Resolves true when a process may start, false when the transport closed meanwhile. */
  function turn(): Promise<boolean> {
    if (closed) return Promise.resolve(false);
    if (turns < concurrency) {
      turns++;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => waiting.push(resolve));
  }

  /** Hands the turn to the next attempt waiting, in arrival order. */
  function release(): void {
    const next = waiting.shift();
    if (next) next(true);
    else turns--;
  }

  async function run(attempt: TransportAttempt): Promise<TransportOutcome> {
    const { command } = attempt.callback;
    const resolved = await resolveCommand(execDir, command);
    if (!resolved.ok) return { ok: false, error: resolved.error, message: resolved.message };
    const paths = Array.isArray(attempt.callback.args) ? attempt.callback.args.map(String) : [];
    const args = execArguments(attempt.envelope, paths);
    const bad = unpassableArgument(args);
    if (bad >= 0) {
      return { ok: false, error: 'EXEC_BAD_ARGUMENT', message: `argument ${bad + 1} (${paths[bad]}) holds a NUL character, which no program argument can carry` };
    }
    if (closed) return closedOutcome();
    const proc = runProcess({
      file: resolved.file,
      command: String(command),
      args,
      env: execEnvironment(attempt, envNames, env),
      cwd: execDir,
      stdin: attempt.body,
      timeoutMs: Number(attempt.callback.timeout_ms),
    });
    running.add(proc);
    try {
      const outcome = await proc.done;
      if (!outcome.ok) log?.debug({ delivery: attempt.deliveryId, command, error: outcome.error }, 'script action failed');
      return outcome;
    } finally {
      running.delete(proc);
    }
  }

  return {
    name: 'exec',
    validate: (callback): FieldProblem[] => argumentPathProblems(callback.args),
    async check(callback) {
      const resolved = await resolveCommand(execDir, callback.command);
      return resolved.ok ? [] : [{ field: 'callback.command', message: resolved.message }];
    },
    async send(attempt) {
      try {
        if (!(await turn())) return closedOutcome();
        try {
          return await run(attempt);
        } finally {
          release();
        }
      } catch (err) {
        return { ok: false, error: 'SPAWN_ERROR', message: `the script could not be run: ${(err as Error)?.message ?? String(err)}` };
      }
    },
    async close() {
      if (closed && running.size === 0) return;
      closed = true;
      for (const resolve of waiting.splice(0)) resolve(false);
      const deadline = Date.now() + closeGraceMs;
      while (running.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      const left = [...running];
      if (left.length > 0) log?.warn({ scripts: left.length }, 'scripts still running at shutdown: killing their process groups');
      for (const proc of left) proc.abort();
      await Promise.allSettled(left.map((p) => p.done));
    },
  };
}
