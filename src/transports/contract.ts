import type { EventEnvelope } from '../records/event.js';

/*
 * The transport contract (DESIGN.md, "Transports"). The dispatcher hands every attempt to the
 * transport its listener's `callback.transport` names; built-ins (http, amqp, exec) and an
 * operator's modules (RELAY_TRANSPORT_MODULES) implement the same small interface.
 */

/** One problem with a callback, as the API reports it (`field` is a dot path under the listener). */
export interface FieldProblem {
  field: string;
  message: string;
}

/** One try of one delivery. */
export interface TransportAttempt {
  deliveryId: string;
  attemptNumber: number;
  listenerId: string;
  project: string;
  /** The listener's whole `callback` object (transport-specific fields included). */
  callback: Record<string, unknown> & { transport: string; timeout_ms: number };
  envelope: EventEnvelope;
  /** The rendered body in the listener's format. */
  body: string;
  /** An HTTP GET or DELETE carries its payload here instead (a query string to append to the URL); null otherwise. */
  query: string | null;
  contentType: string;
  /** Signature headers (webhook-*), the format's headers and the listener's own headers. */
  headers: Record<string, string>;
  /** Sequences skipped by an ordered listener since its last success, or null. */
  gap: number[] | null;
  /** unix ms by which the attempt must be over. */
  deadline: number;
}

/** What one attempt came to. `error` is a stable code (`ECONNREFUSED`, `TIMEOUT`, `NACK`, …). */
export interface TransportOutcome {
  ok: boolean;
  statusCode?: number | null;
  error?: string | null;
  message?: string | null;
  responseExcerpt?: string | null;
  retryAfterMs?: number | null;
  gone?: boolean;
}

export interface TransportModule {
  readonly name: string;
  /** Checks the transport's own callback fields; the relay checks transport, format, timeout_ms and headers. */
  validate(callback: Record<string, unknown>): FieldProblem[];
  /** Checks that need I/O at create (the network guard). */
  check?(callback: Record<string, unknown>): Promise<FieldProblem[]>;
  /** Never throws: every failure is an outcome with a stable code. */
  send(attempt: TransportAttempt): Promise<TransportOutcome>;
  close(): Promise<void>;
}

/**
 * How long an attempt may still take. Its deadline was set when it got its slot, a moment
 * before the transport sees it: within a few milliseconds of that, the listener's own
 * `timeout_ms` is the bound (and what messages name, "no answer within 15000 ms").
 */
export function attemptTimeoutMs(attempt: Pick<TransportAttempt, 'deadline' | 'callback'>, now = Date.now()): number {
  const configured = Number(attempt.callback.timeout_ms);
  const remaining = attempt.deadline - now;
  return Number.isFinite(configured) && remaining >= configured - 20 ? configured : Math.max(0, remaining);
}
