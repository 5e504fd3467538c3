import fs from 'node:fs';
import path from 'node:path';
import { STATUS_CODES } from 'node:http';
import type { Dispatcher } from 'undici';
import { ADMIN_TOKEN_FILE } from '../api/auth.js';
import { ApiError, UnreachableError, UsageError, type ProblemDetails } from './errors.js';

export const DEFAULT_RELAY_URL = 'http://127.0.0.1:8990';
const REQUEST_TIMEOUT_MS = 30_000;

export interface Connection {
  baseUrl: string;
  token: string;
  /** Where the token came from, for the hint after a 401. */
  tokenSource: string;
}

/** `--url`/`--token`, then RELAY_URL/RELAY_TOKEN, then the local defaults (DESIGN: processes and commands). */
export function resolveConnection(
  flags: { url?: string; token?: string },
  env: NodeJS.ProcessEnv,
  cwd: string,
): Connection {
  const url = flags.url ?? (env.RELAY_URL || DEFAULT_RELAY_URL);
  const from = flags.url !== undefined ? '--url' : 'RELAY_URL';
  if (!URL.canParse(url) || !['http:', 'https:'].includes(new URL(url).protocol)) {
    throw new UsageError(`${from}: "${url}" is not an http:// or https:// URL`);
  }
  const baseUrl = url.replace(/\/+$/, '');
  if (flags.token !== undefined) {
    if (!flags.token.trim()) throw new UsageError('--token is empty');
    return { baseUrl, token: flags.token.trim(), tokenSource: 'the --token option' };
  }
  if (env.RELAY_TOKEN) return { baseUrl, token: env.RELAY_TOKEN.trim(), tokenSource: 'RELAY_TOKEN' };

  const file = path.resolve(cwd, env.RELAY_DATA_DIR || './data', ADMIN_TOKEN_FILE);
  let token = '';
  try {
    token = fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw new UsageError(`cannot read the token file ${file} (${code}); pass --token or set RELAY_TOKEN`);
  }
  if (!token) {
    throw new UsageError(
      `no API token: looked for ${file} (the relay writes it there on first start; its folder is RELAY_DATA_DIR, default ./data). ` +
        'Pass --token <token> or set RELAY_TOKEN, or run the CLI from the folder where the relay runs.',
    );
  }
  return { baseUrl, token, tokenSource: file };
}

export interface RequestOptions {
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  /** A body sent as is (a workbook's YAML), instead of `body` as JSON; give its contentType. */
  rawBody?: string;
  contentType?: string;
}

export interface RelayClient {
  readonly baseUrl: string;
  /** The parsed JSON answer (undefined for 204); a non-2xx answer throws ApiError. */
  request<T>(method: string, pathname: string, opts?: RequestOptions): Promise<T>;
}

export interface ClientOptions {
  userAgent: string;
  /** Tries after the first for connection failures; HTTP answers are never retried. */
  retries?: number;
  retryMinDelayMs?: number;
}

// Refused means nothing was sent, so any request may be tried again. After a reset the
// relay may have acted on the request, so only a request that is safe to repeat is.
const ALWAYS_RETRYABLE = new Set(['ECONNREFUSED', 'EAI_AGAIN']);
const RETRYABLE_IF_IDEMPOTENT = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'ETIMEDOUT']);

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

function failureCode(err: unknown): string {
  const e = err as { code?: string; message?: string; errors?: Array<{ code?: string }> };
  const code = e?.code ?? e?.errors?.find((x) => x.code)?.code ?? e?.message ?? 'ERROR';
  return TIMEOUT_CODES.has(code) ? 'TIMEOUT' : code;
}

export function createRelayClient(conn: Connection, opts: ClientOptions): RelayClient {
  const retries = opts.retries ?? 2;
  const minTimeout = opts.retryMinDelayMs ?? 500;

  async function send(method: string, url: string, headers: Record<string, string>, body?: string) {
    const idempotent = method !== 'POST';
    // Loaded here, not at start, so that --help and usage errors stay quick.
    const [{ default: pRetry }, { request: undiciRequest }] = await Promise.all([import('p-retry'), import('undici')]);
    return pRetry(
      async () => {
        try {
          return await undiciRequest(url, {
            method: method as Dispatcher.HttpMethod,
            headers,
            body,
            headersTimeout: REQUEST_TIMEOUT_MS,
            bodyTimeout: REQUEST_TIMEOUT_MS,
          });
        } catch (err) {
          const code = failureCode(err);
          const retryable = ALWAYS_RETRYABLE.has(code) || (idempotent && RETRYABLE_IF_IDEMPOTENT.has(code));
          throw Object.assign(unreachable(code), { retryable });
        }
      },
      {
        retries,
        minTimeout,
        factor: 2,
        randomize: false,
        shouldRetry: ({ error }) => (error as { retryable?: boolean }).retryable === true,
      },
    );
  }

  function unreachable(code: string): UnreachableError {
    const message =
      code === 'TIMEOUT'
        ? `the relay at ${conn.baseUrl} did not answer within ${REQUEST_TIMEOUT_MS / 1000} s`
        : `cannot reach the relay at ${conn.baseUrl} (${code})`;
    return new UnreachableError(conn.baseUrl, code, message);
  }

  async function request<T>(method: string, pathname: string, ropts: RequestOptions = {}): Promise<T> {
    const url = new URL(conn.baseUrl + pathname);
    for (const [k, v] of Object.entries(ropts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = {
      authorization: `Bearer ${conn.token}`,
      accept: 'application/json, application/problem+json',
      'user-agent': opts.userAgent,
    };
    let body: string | undefined;
    if (ropts.rawBody !== undefined || ropts.body !== undefined) {
      body = ropts.rawBody ?? JSON.stringify(ropts.body);
      headers['content-type'] = ropts.contentType ?? 'application/json';
    }
    const res = await send(method, url.href, headers, body);
    let text: string;
    try {
      text = await res.body.text();
    } catch (err) {
      throw unreachable(failureCode(err));
    }
    const contentType = String(res.headers['content-type'] ?? '');
    let parsed: unknown;
    if (text && /[/+]json\b/.test(contentType)) {
      try {
        parsed = JSON.parse(text);
      } catch {
        /* reported below as an unreadable answer */
      }
    }
    const ok = res.statusCode >= 200 && res.statusCode < 300;
    if (!ok) {
      const problem: ProblemDetails =
        parsed && typeof parsed === 'object'
          ? (parsed as ProblemDetails)
          : { title: STATUS_CODES[res.statusCode] ?? 'error', detail: text.trim().slice(0, 300) || undefined };
      const hint = res.statusCode === 401 ? `the token came from ${conn.tokenSource}` : undefined;
      throw new ApiError(res.statusCode, problem, hint);
    }
    if (text && parsed === undefined) {
      throw new ApiError(res.statusCode, { title: 'Unexpected answer', detail: `expected JSON from ${url.pathname}, got ${contentType || 'no content type'}` });
    }
    return parsed as T;
  }

  return { baseUrl: conn.baseUrl, request };
}
