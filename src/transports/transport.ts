/** One try of one delivery, as the dispatcher hands it to a transport. */
export interface OutboundRequest {
  url: string;
  method: string;
  headers: Record<string, string>;
  /** Sent as is; an empty body on GET or DELETE sends no body at all. */
  body: string;
  /** Bounds the whole attempt: connect, request, response headers and body. */
  timeoutMs: number;
}

/**
 * Stable codes of `AttemptOutcome.error`, recorded as an attempt's `error`:
 * - `REDIRECT`: a 3xx answer; redirects are never followed.
 * - `HTTP_ERROR`: any other non-2xx answer (`statusCode` says which).
 * - `TIMEOUT`: no complete answer within `timeoutMs` (connect, headers or body).
 * - `ECONNREFUSED`, `ECONNRESET`, `ENOTFOUND`, `EAI_AGAIN`, and other system codes such as
 *   `EHOSTUNREACH`, `ENETUNREACH` or `EPIPE`, passed through as the OS reported them.
 * - `EADDRBLOCKED`: the network guard refused the address (literal or resolved); nothing was sent.
 * - `TLS_ERROR`: handshake or certificate failure.
 * - `SOCKET_ERROR`: the connection closed or failed before a complete response.
 * - `BAD_RESPONSE`: the receiver's answer was not valid HTTP/1.1.
 * - `BAD_URL`: not a valid http or https URL.
 * - `INVALID_REQUEST`: the request itself was refused before sending (e.g. a bad header value).
 * - `TRANSPORT_CLOSED`: the transport was closed.
 * - `REQUEST_ERROR`: anything not listed above (the message says what).
 */
export type AttemptErrorCode =
  | 'REDIRECT'
  | 'HTTP_ERROR'
  | 'TIMEOUT'
  | 'ECONNREFUSED'
  | 'ECONNRESET'
  | 'EADDRBLOCKED'
  | 'ENOTFOUND'
  | 'EAI_AGAIN'
  | 'TLS_ERROR'
  | 'SOCKET_ERROR'
  | 'BAD_RESPONSE'
  | 'BAD_URL'
  | 'INVALID_REQUEST'
  | 'TRANSPORT_CLOSED'
  | 'REQUEST_ERROR'
  | (string & {});

export interface AttemptOutcome {
  /** A 2xx answer that arrived completely within the timeout. */
  ok: boolean;
  /** Null when no response arrived; kept when the body then failed (e.g. TIMEOUT after the headers). */
  statusCode: number | null;
  durationMs: number;
  /** Null on success, otherwise one of the codes of `AttemptErrorCode`. */
  error: AttemptErrorCode | null;
  /** Human text for `last_error`, e.g. `HTTP 500 Internal Server Error`; null on success. */
  message: string | null;
  /** At most 4 KiB (UTF-8, cut at a character boundary) of the response body; null when no response arrived. */
  responseExcerpt: string | null;
  /** `Retry-After` in ms for 429, 502, 503 and 504; null otherwise or when absent or malformed. */
  retryAfterMs: number | null;
  /** 410 Gone: the receiver asks the relay to stop sending. */
  gone: boolean;
}

export interface Transport {
  /** Never throws for network or HTTP failures: it classifies them in the outcome. */
  send(req: OutboundRequest): Promise<AttemptOutcome>;
  /** Waits for attempts in flight, then releases every connection. */
  close(): Promise<void>;
}
