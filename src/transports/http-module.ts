import type { NetworkGuard } from '../net/network-guard.js';
import { attemptTimeoutMs, type FieldProblem, type TransportAttempt, type TransportModule, type TransportOutcome } from './contract.js';
import { createHttpTransport, type HttpTransportOptions } from './http.js';
import { appendQuery } from './http-query.js';

/**
 * The `http` transport behind the transport contract: the callback's URL and method, the
 * payload in the query string for GET and DELETE (rendered by the dispatcher), the whole attempt bounded by its deadline.
 * The callback's shape is checked by the listener schema (records/callback.ts); `check` runs
 * the network guard on the URL at create.
 */
export function createHttpTransportModule(options: HttpTransportOptions & { guard: NetworkGuard }): TransportModule {
  const http = createHttpTransport(options);
  return {
    name: 'http',
    validate: (): FieldProblem[] => [],
    async check(callback) {
      if (typeof callback.url !== 'string') return [];
      const verdict = await options.guard.checkUrl(callback.url);
      return verdict.ok ? [] : [{ field: 'callback.url', message: verdict.reason }];
    },
    async send(attempt: TransportAttempt): Promise<TransportOutcome> {
      const method = String(attempt.callback.method ?? 'POST').toUpperCase();
      const base = String(attempt.callback.url);
      let url = base;
      try {
        if (attempt.query) url = appendQuery(base, attempt.query);
      } catch {
        /* not a URL: the transport reports BAD_URL */
      }
      return http.send({ url, method, headers: attempt.headers, body: attempt.body, timeoutMs: Math.max(1, attemptTimeoutMs(attempt)) });
    },
    close: () => http.close(),
  };
}
