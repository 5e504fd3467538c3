import { Agent, request } from 'undici';
import type { NetworkGuard } from '../net/network-guard.js';
import { tooLargeMessage } from './limits.js';
import type { Outcome } from './transitions.js';
import { redactCredentials, redactUrl } from './url-credentials.js';
import { MAX_HTTP_TIMEOUT_S, secondsProblem } from './workbook-actions.js';
import type { ActionName } from './workbook.js';

/*
 * The actions a task runs. They run outside any transaction; what they return is committed
 * afterwards. std.sleep is not here: its wait is a database row (see the runner).
 */

export const DEFAULT_HTTP_TIMEOUT_S = 30;

export interface ActionDeps {
  guard: NetworkGuard;
  /** Shared by every std.http call; its connector is the guard's, so each connect is checked. */
  agent: Agent;
  /** RELAY_MAX_RESULT_BYTES: std.http stops reading a response body past it. */
  maxResultBytes: number;
}

export function createActionAgent(guard: NetworkGuard): Agent {
  return new Agent({ connect: guard.connect });
}

const fail = (error: string, retryable = true): Outcome => ({ ok: false, error, retryable });
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

export async function runAction(action: Exclude<ActionName, 'std.sleep'>, input: Record<string, unknown>, deps: ActionDeps): Promise<Outcome> {
  switch (action) {
    case 'std.noop':
      return { ok: true, result: null };
    case 'std.echo':
      return { ok: true, result: input.output ?? null };
    case 'std.fail':
      return fail(str(input.error_message) ?? 'std.fail');
    case 'std.http':
      return httpAction(input, deps);
  }
}

class ResponseTooLargeError extends Error {
  readonly code = 'ETOOLARGE';
}

async function httpAction(input: Record<string, unknown>, { guard, agent, maxResultBytes }: ActionDeps): Promise<Outcome> {
  const url = str(input.url);
  if (!url) return fail('input.url must be an http or https URL', false);
  // Every message about this call names the URL without its credentials.
  const shown = redactUrl(url);
  if (input.timeout !== undefined && input.timeout !== null) {
    const problem = secondsProblem(input.timeout, 'positive', MAX_HTTP_TIMEOUT_S);
    if (problem) return fail(`input.timeout ${problem}`, false);
  }
  const timeoutS = typeof input.timeout === 'number' ? input.timeout : DEFAULT_HTTP_TIMEOUT_S;
  const timeoutMs = Math.round(timeoutS * 1000);
  const headers: Record<string, string> = {};
  if (input.headers && typeof input.headers === 'object') {
    for (const [k, v] of Object.entries(input.headers)) if (typeof v === 'string') headers[k.toLowerCase()] = v;
  }
  let body: string | undefined;
  if (input.body !== undefined && input.body !== null) {
    body = typeof input.body === 'string' ? input.body : JSON.stringify(input.body);
    if (typeof input.body !== 'string') headers['content-type'] ??= 'application/json';
  }
  const method = str(input.method)?.toUpperCase() ?? (body === undefined ? 'GET' : 'POST');
  try {
    // net.connect skips `lookup` for IP literals, so those are checked here first.
    guard.assertLiteralHostAllowed(url);
    const res = await request(url, {
      method: method as 'GET',
      headers,
      body,
      dispatcher: agent,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await readLimited(res.body, maxResultBytes);
    let parsed: unknown = text;
    try {
      parsed = text === '' ? null : JSON.parse(text);
    } catch {
      /* not JSON: keep the text */
    }
    if (res.statusCode < 200 || res.statusCode > 299) return fail(`HTTP ${res.statusCode} from ${method} ${shown}`);
    return { ok: true, result: { status: res.statusCode, body: parsed } };
  } catch (err) {
    // The same response would be as large again: not worth another try.
    if (err instanceof ResponseTooLargeError) return fail(`${tooLargeMessage('the response body', null, maxResultBytes)}: ${method} ${shown}`, false);
    const e = err as { code?: string; name?: string; message?: string };
    const code = e.name === 'TimeoutError' || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT' ? 'TIMEOUT' : e.code;
    // undici's and the guard's messages may quote the URL.
    const what = code === 'TIMEOUT' ? `no answer within ${timeoutS} s` : redactCredentials(e.message ?? String(err), url);
    return fail(`${code ?? 'ERROR'}: ${method} ${shown}: ${what}`, code !== 'EADDRBLOCKED');
  }
}

async function readLimited(body: AsyncIterable<Buffer> & { destroy(): unknown }, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > limit) {
      body.destroy();
      throw new ResponseTooLargeError(`the response is larger than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
