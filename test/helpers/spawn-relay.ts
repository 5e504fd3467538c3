import { expect } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { backendOf, relayDatabaseEnv, type TestBackend } from './backend.js';

/*
 * The built relay (`node dist/main.js`) as a child process and the built CLI bins, for tests
 * that drive the CLI as a user would. Run `npm run build` first.
 */

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BINS = {
  'callback-relay': path.join(ROOT, 'bin/callback-relay.js'),
  'listener-add': path.join(ROOT, 'bin/listener-add.js'),
};

/** process.env without any RELAY_ variable, so the developer's shell cannot leak in. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RELAY_')));
  return { ...env, ...extra };
}

export interface SpawnedRelay {
  child: ChildProcess;
  url: string;
  token: string;
  dataDir: string;
  /** Which database it runs on (RELAY_TEST_BACKEND, or the caller's RELAY_DATABASE_URL). */
  backend: TestBackend;
  /** The last stdout lines, for failure messages. */
  recent: string[];
  /** SIGTERM and wait for the exit (SIGKILL after `timeoutMs`). */
  stop(timeoutMs?: number): Promise<void>;
}

/**
 * Starts a relay on 127.0.0.1, port 0, with its data in `dataDir` (on the postgres run, its
 * database in the PostgreSQL schema of `dataDir`); resolves once it listens.
 */
export async function spawnRelay(dataDir: string, env: Record<string, string> = {}): Promise<SpawnedRelay> {
  const base = { RELAY_PORT: '0', RELAY_DATA_DIR: dataDir, RELAY_LOG_LEVEL: 'info', ...env };
  const relayVars = { ...base, ...(await relayDatabaseEnv(base)) };
  const child = spawn(process.execPath, [path.join(ROOT, 'dist/main.js')], {
    env: cleanEnv(relayVars),
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group: in runs beside other sessions a group-wide SIGINT stopped it mid-test.
    detached: true,
  });
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let stopping = false;
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const recent: string[] = [];
  child.on('exit', (code, signal) => {
    process.removeListener('exit', killOnExit);
    if (!stopping) process.stderr.write(`relay exited early (${code ?? signal}):\n${recent.join('\n')}\n${stderr}\n`);
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay did not start: ${stderr}`)), 20_000);
    child.once('exit', (code) => reject(new Error(`relay exited with ${code}: ${stderr}`)));
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      recent.push(line);
      if (recent.length > 50) recent.shift();
      let entry: { url?: string; msg?: string };
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      if (entry.url && entry.msg?.startsWith('callback-relay listening on')) {
        clearTimeout(timer);
        resolve(entry.url);
      }
    });
  });
  const token = fs.readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
  return {
    child,
    url,
    token,
    dataDir,
    backend: backendOf(relayVars),
    recent,
    async stop(timeoutMs = 15_000) {
      stopping = true;
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  bin?: keyof typeof BINS;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Written to the CLI's stdin, which is then closed (closed at once without it). */
  input?: string | Buffer;
}

/** Runs a CLI bin to its end. */
export function runBin(args: string[], opts: CliOptions & { env: NodeJS.ProcessEnv; cwd: string }): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BINS[opts.bin ?? 'callback-relay'], ...args], {
      env: opts.env,
      cwd: opts.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    // The CLI may stop reading early (a failed batch): that is not the test's error.
    child.stdin!.on('error', () => {});
    child.stdin!.end(opts.input);
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? -1 : 0), stdout, stderr }));
  });
}

/** A CLI runner for one test file: RELAY_URL and RELAY_TOKEN of its relay, run in its folder. */
export function boundCli(target: () => { relay: { url: string; token: string }; workDir: string }) {
  return (args: string[], opts: CliOptions = {}): Promise<CliResult> => {
    const { relay, workDir } = target();
    return runBin(args, {
      ...opts,
      env: opts.env ?? cleanEnv({ RELAY_URL: relay.url, RELAY_TOKEN: relay.token }),
      cwd: opts.cwd ?? workDir,
    });
  };
}

/** The JSON a command printed, after checking it succeeded quietly. */
export function okJson(r: CliResult): any {
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
  return JSON.parse(r.stdout);
}

/** `key: value` lines of a table-mode record. */
export const fieldsOf = (stdout: string): Record<string, string> =>
  Object.fromEntries(
    stdout
      .split('\n')
      .map((l) => /^([a-z_.]+):\s+(.*)$/.exec(l))
      .filter((m) => m !== null)
      .map((m) => [m[1], m[2]]),
  );

/** Polls `check` until it returns a truthy value. */
export async function eventually<T>(check: () => Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    const value = await check();
    if (value) return value;
    last = value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
