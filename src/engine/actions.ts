import { Agent, request } from 'undici';
import type { NetworkGuard } from '../net/network-guard.js';
import type { Outcome } from './transitions.js';
import type { ActionName } from './workbook.js';

/*
 * The actions a task runs. They run outside any transaction; what they return is committed
 * afterwards. std.sleep is not here: its wait is a database row (see the runner).
 */

export const DEFAULT_HTTP_TIMEOUT_S = 30;
/** std.http reads at most this much of a response into the task's result. */
export const MAX_HTTP_RESULT_BYTES = 1024 * 1024;

export interface ActionDeps {
  guard: NetworkGuard;
  /** Shared by every std.http call; its lookup is the guard's, so each connect is checked. */
  agent: Agent;
}

export function createActionAgent(guard: NetworkGuard): Agent {
  return new Agent({ connect: { lookup: guard.lookup } });
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

async function httpAction(input: Record<string, unknown>, { guard, agent }: ActionDeps): Promise<Outcome> {
  const url = str(input.url);
  if (!url) return fail('input.url must be an http or https URL', false);
  const timeoutS = typeof input.timeout === 'number' && input.timeout > 0 ? input.timeout : DEFAULT_HTTP_TIMEOUT_S;
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
    const text = await readLimited(res.body, MAX_HTTP_RESULT_BYTES);
    let parsed: unknown = text;
    try {
      parsed = text === '' ? null : JSON.parse(text);
    } catch {
      /* not JSON: keep the text */
    }
    if (res.statusCode < 200 || res.statusCode > 299) return fail(`HTTP ${res.statusCode} from ${method} ${url}`);
    return { ok: true, result: { status: res.statusCode, body: parsed } };
  } catch (err) {
    const e = err as { code?: string; name?: string; message?: string };
    const code = e.name === 'TimeoutError' || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT' ? 'TIMEOUT' : e.code;
    const what = code === 'TIMEOUT' ? `no answer within ${timeoutS} s` : e.message ?? String(err);
    return fail(`${code ?? 'ERROR'}: ${method} ${url}: ${what}`, code !== 'EADDRBLOCKED');
  }
}

async function readLimited(body: AsyncIterable<Buffer> & { destroy(): unknown }, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > limit) {
      body.destroy();
      throw Object.assign(new Error(`the response is larger than ${limit} bytes`), { code: 'ETOOLARGE' });
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
