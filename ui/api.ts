/*
 * The dashboard's only way to the relay: the public /v1 API with the token the user pasted,
 * so the page can do nothing the API would refuse. The token is kept in this tab's
 * sessionStorage: it goes when the tab closes and is sent nowhere but this origin.
 */

const TOKEN_KEY = 'callback-relay.token';

export function storedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken(): void {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** An RFC 9457 problem as the API answers it. */
export interface Problem {
  title?: string;
  detail?: string;
  errors?: Array<{ field: string; message: string }>;
}

/** A non-2xx answer; the message says which status the API gave and why. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem,
  ) {
    const errors = problem.errors?.map((e) => `${e.field}: ${e.message}`).join('; ');
    super(`The API answered ${status}${problem.title ? ` (${problem.title})` : ''}: ${errors || problem.detail || 'no details given'}`);
    this.name = 'ApiError';
  }
}

/** Called on any 401 after sign-in (the token was removed from the relay's configuration). */
let unauthorized: (error: ApiError) => void = () => {};
export function onUnauthorized(handler: (error: ApiError) => void): void {
  unauthorized = handler;
}

async function problemOf(res: Response): Promise<Problem> {
  const text = await res.text();
  try {
    return JSON.parse(text) as Problem;
  } catch {
    return { detail: text.slice(0, 200) || res.statusText };
  }
}

export interface CallOptions {
  body?: unknown;
  /** Overrides the stored token (the sign-in check). */
  token?: string;
  /** PATCH bodies are merge patches. */
  contentType?: string;
}

export async function call<T>(method: string, path: string, opts: CallOptions = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  const token = opts.token ?? storedToken();
  if (token) headers.authorization = `Bearer ${token}`;
  let body: string | undefined;
  if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    headers['content-type'] = opts.contentType ?? 'application/json';
  }
  const res = await fetch(`/v1${path}`, { method, headers, body, cache: 'no-store', credentials: 'omit' });
  if (!res.ok) {
    const error = new ApiError(res.status, await problemOf(res));
    if (res.status === 401 && opts.token === undefined) unauthorized(error);
    throw error;
  }
  return (res.status === 204 ? undefined : await res.json()) as T;
}

export const get = <T>(path: string) => call<T>('GET', path);

/** A query string of the non-empty values, with its `?`, or nothing. */
export function query(params: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

export const pathId = (id: string) => encodeURIComponent(id);
