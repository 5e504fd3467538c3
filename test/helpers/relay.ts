import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { loadConfig, type DatabaseConfig } from '../../src/config.js';
import { startRelay, type Relay } from '../../src/relay.js';
import { relayDatabaseEnv, type TestBackend } from './backend.js';
import { isJsonMediaType, mediaTypeOf, validateResponse } from './openapi.js';

export const TOKEN_A = 'token-project-a-0123456789';
export const TOKEN_B = 'token-project-b-0123456789';

export function tempDir(prefix = 'relay-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export interface TestRelay extends Relay {
  dataDir: string;
  /** The SQLite file; unused when `backend` is postgres. */
  databasePath: string;
  /** Which database this relay ran on (RELAY_TEST_BACKEND, or the caller's RELAY_DATABASE_URL). */
  backend: TestBackend;
  database: DatabaseConfig;
  /**
   * fetch against the relay with project A's token unless `token` says otherwise; the answer is
   * checked against openapi.yaml unless `validate` is false.
   */
  api(
    method: string,
    pathname: string,
    body?: unknown,
    opts?: { token?: string | null; headers?: Record<string, string>; raw?: string | Uint8Array; validate?: boolean },
  ): Promise<ApiResponse>;
}

export interface ApiResponse {
  status: number;
  headers: Headers;
  body: any;
  text: string;
}

/**
 * Starts a real relay in this process on port 0 with its own database: a SQLite file in
 * `dataDir`, or on the postgres run the PostgreSQL schema of `dataDir` (the same one again when
 * a test restarts a relay on the same folder).
 */
export async function startTestRelay(env: Record<string, string> = {}, dataDir = tempDir()): Promise<TestRelay> {
  const base = {
    RELAY_PORT: '0',
    RELAY_DATA_DIR: dataDir,
    RELAY_TOKENS: `${TOKEN_A}=project-a,${TOKEN_B}=project-b`,
    RELAY_LOG_LEVEL: 'silent',
    ...env,
  };
  const config = loadConfig({ ...base, ...(await relayDatabaseEnv(base)) });
  const relay = await startRelay(config, pino({ level: 'silent' }));
  return {
    ...relay,
    dataDir,
    databasePath: config.databasePath,
    backend: config.database.kind,
    database: config.database,
    api: (method, pathname, body, opts = {}) => request(relay.url, method, pathname, body, opts),
  };
}

export async function request(
  base: string,
  method: string,
  pathname: string,
  body?: unknown,
  /** `validate: false` skips the openapi.yaml check, for deliberately odd requests. */
  opts: { token?: string | null; headers?: Record<string, string>; raw?: string | Uint8Array; validate?: boolean } = {},
): Promise<ApiResponse> {
  const headers: Record<string, string> = { ...opts.headers };
  const token = opts.token === undefined ? TOKEN_A : opts.token;
  if (token) headers.authorization = `Bearer ${token}`;
  let payload: string | Uint8Array | undefined = opts.raw;
  if (body !== undefined && payload === undefined) {
    payload = JSON.stringify(body);
    headers['content-type'] ??= 'application/json';
  }
  const res = await fetch(base + pathname, { method, headers, body: payload });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    /* not JSON */
  }
  // Every answer the tests see is checked against openapi.yaml, so the document cannot drift.
  if (opts.validate !== false) {
    const contentType = res.headers.get('content-type');
    validateResponse({
      method,
      path: pathname,
      status: res.status,
      contentType,
      headers: res.headers,
      body: isJsonMediaType(mediaTypeOf(contentType)) ? parsed : text || undefined,
    });
  }
  return { status: res.status, headers: res.headers, body: parsed, text };
}

/** One parsed log line. */
export interface LogLine {
  level: number;
  msg: string;
  [key: string]: any;
}

/** A pino logger at `level` whose lines land, parsed, in `lines` (for a relay started with startRelay). */
export function captureLog(level = 'info'): { lines: LogLine[]; log: Logger } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, log: pino({ level }, sink) };
}
