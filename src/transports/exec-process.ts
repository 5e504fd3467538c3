import { spawn, type ChildProcess } from 'node:child_process';
import type { TransportOutcome } from './contract.js';
import { BodyHead, utf8Excerpt } from './http-outcome.js';

/*
 * One run of a script: spawned without a shell, in a process group of its own so that a
 * timeout (or the relay stopping) kills everything it started, not just the script. Its
 * stdout and stderr are read to the end as they arrive, keeping only the first 4 KiB.
 */

export interface ProcessSpec {
  /** The resolved executable. */
  file: string;
  /** How messages name it (the listener's `command`). */
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  stdin: string;
  timeoutMs: number;
}

export interface RunningProcess {
  readonly done: Promise<TransportOutcome>;
  /** Kills the process group; the run ends with TRANSPORT_CLOSED. */
  abort(): void;
}

/** How the process ended, as the outcome needs it. */
export interface ProcessEnd {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  aborted: boolean;
}

/** After the script exits, how long pipes a background child still holds are read before they are closed. */
const PIPE_GRACE_MS = 200;

/** What a run came to: exit 0 → ok; else EXIT_<n>, TIMEOUT, SIGNAL, or TRANSPORT_CLOSED. */
export function processOutcome(end: ProcessEnd, spec: Pick<ProcessSpec, 'command' | 'timeoutMs'>, output: Buffer): TransportOutcome {
  const responseExcerpt = output.length > 0 ? utf8Excerpt(output) : null;
  if (end.aborted) {
    return { ok: false, error: 'TRANSPORT_CLOSED', message: `the relay stopped while ${spec.command} ran; its process group was killed`, responseExcerpt };
  }
  if (end.timedOut) {
    return { ok: false, error: 'TIMEOUT', message: `${spec.command} ran longer than ${spec.timeoutMs} ms; its process group was killed`, responseExcerpt };
  }
  if (end.code === 0) return { ok: true, responseExcerpt };
  if (end.code !== null) return { ok: false, error: `EXIT_${end.code}`, message: `${spec.command} exited with code ${end.code}`, responseExcerpt };
  return { ok: false, error: 'SIGNAL', message: `${spec.command} was killed by ${end.signal ?? 'a signal'}`, responseExcerpt };
}

function spawnFailure(command: string, err: unknown): TransportOutcome {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  const reason = (err as Error | null)?.message ?? String(err);
  if (code === 'ENOENT') return { ok: false, error: 'EXEC_NOT_FOUND', message: `${command} could not be started: it is gone` };
  if (code === 'EACCES' || code === 'EPERM') return { ok: false, error: 'EXEC_REFUSED', message: `${command} could not be started: permission denied` };
  if (code === 'ENOEXEC') return { ok: false, error: 'EXEC_REFUSED', message: `${command} could not be started: not an executable format` };
  if (code === 'E2BIG') return { ok: false, error: 'E2BIG', message: `${command} could not be started: its arguments and environment are too large` };
  return { ok: false, error: 'SPAWN_ERROR', message: `${command} could not be started: ${reason}` };
}

/** Sends `signal` to the whole group of `child` (its pid is the group id: it was spawned detached). */
function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // The group is gone already; the leader itself may still be there to reap.
    child.kill(signal);
  }
}

export function runProcess(spec: ProcessSpec): RunningProcess {
  let child: ChildProcess;
  try {
    child = spawn(spec.file, spec.args, {
      cwd: spec.cwd,
      env: spec.env,
      shell: false,
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
      windowsHide: true,
    });
  } catch (err) {
    // Arguments Node refuses before any process exists (a NUL byte, say).
    return { done: Promise.resolve(spawnFailure(spec.command, err)), abort: () => {} };
  }

  const output = new BodyHead();
  let timedOut = false;
  let aborted = false;
  let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  let timer: NodeJS.Timeout | undefined;
  let pipeTimer: NodeJS.Timeout | undefined;
  let settle!: (outcome: TransportOutcome) => void;
  const done = new Promise<TransportOutcome>((resolve) => (settle = resolve));
  let settled = false;

  const finish = (outcome: TransportOutcome) => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    clearTimeout(pipeTimer);
    child.stdout?.destroy();
    child.stderr?.destroy();
    settle(outcome);
  };
  const ended = () => finish(processOutcome({ ...exit!, timedOut, aborted }, spec, output.bytes()));

  child.stdout!.on('data', (chunk: Buffer) => output.add(chunk));
  child.stderr!.on('data', (chunk: Buffer) => output.add(chunk));
  child.stdout!.on('error', () => {});
  child.stderr!.on('error', () => {});
  // A script that does not read its stdin and exits first breaks the pipe: not its failure.
  child.stdin!.on('error', () => {});

  child.once('error', (err) => {
    if (child.pid === undefined) finish(spawnFailure(spec.command, err));
  });
  child.once('spawn', () => {
    child.stdin!.end(spec.stdin);
    // The timeout starts once the process runs, not while the attempt waited for its turn.
    timer = setTimeout(() => {
      timedOut = true;
      killGroup(child, 'SIGKILL');
    }, spec.timeoutMs);
  });
  child.once('exit', (code, signal) => {
    exit = { code, signal };
    clearTimeout(timer);
    // A child the script left in the background may hold the pipes open: read what is already
    // there, then stop listening rather than wait for it.
    pipeTimer = setTimeout(ended, PIPE_GRACE_MS);
  });
  child.once('close', () => {
    if (exit !== null) ended();
  });

  return {
    done,
    abort() {
      if (settled || exit !== null) return;
      aborted = true;
      killGroup(child, 'SIGKILL');
    },
  };
}
