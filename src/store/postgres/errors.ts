import { StoreUnavailableError } from '../store.js';

// Node socket errors: the server is down, restarting, or out of reach.
const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

// SQLSTATEs that say "not now" rather than "this request is wrong": the server shutting down or
// starting (57P01-57P03), too many connections or out of disk or memory (class 53), a standby
// that cannot write (25006), a statement cancelled by a timeout (57014), a lock not available.
const UNAVAILABLE_STATES = new Set(['57P01', '57P02', '57P03', '57014', '25006', '55P03']);

// What pg says when a connection ends under a query or a client is used after it broke.
const ENDED = /Connection terminated|Client has encountered a connection error|not queryable|timeout exceeded when trying to connect|connection timeout/i;

const codeOf = (err: unknown): string | undefined => {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
};

/** Whether the connection an error came from is gone, so the client must not go back to the pool. */
export function isConnectionLost(err: unknown): boolean {
  const code = codeOf(err);
  if (code && (SOCKET_CODES.has(code) || code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03')) return true;
  return err instanceof Error && ENDED.test(err.message);
}

/** Whether the database cannot take the request now, for a reason outside the request. */
function isUnavailable(err: unknown): boolean {
  if (err instanceof StoreUnavailableError) return true;
  const code = codeOf(err);
  if (code && (UNAVAILABLE_STATES.has(code) || code.startsWith('53'))) return true;
  return isConnectionLost(err);
}

/** SQLSTATE of raise_retry() (db/postgres/001_schema.sql): a statement found that a concurrent transaction got in first. */
const RETRY_STATE = 'RR001';

/**
 * The unique keys of rows a statement inserts only when it found them new (a plain insert: ON
 * CONFLICT's speculative insertion costs every row an index probe and a WAL record more). A
 * concurrent transaction that stored one meanwhile fails the statement on the key.
 */
const INSERTED_WHEN_NEW = ['events_project_id_key', 'attempts_pkey'];

/** Deadlocks, serialization failures, a concurrent transaction that got in first: the transaction may simply run again. */
export function isTransient(err: unknown): boolean {
  const code = codeOf(err);
  if (code === '23505') return INSERTED_WHEN_NEW.some((key) => isUniqueViolation(err, key));
  return err instanceof RetryTransaction || code === '40P01' || code === '40001' || code === RETRY_STATE;
}

export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  if (codeOf(err) !== '23505') return false;
  return constraint === undefined || (err as { constraint?: string }).constraint === constraint;
}

/** "Cannot take the request now" becomes StoreUnavailableError (a 503 with Retry-After); anything else stays as it is. */
export function toStoreError(err: unknown): unknown {
  if (err instanceof StoreUnavailableError) return err;
  if (isUnavailable(err) || isTransient(err)) {
    const reason = codeOf(err) ?? (err instanceof Error ? err.message : String(err));
    return new StoreUnavailableError(`the database cannot take the request now (${reason})`, 1, { cause: err });
  }
  return err;
}

/**
 * Thrown inside a transaction when a concurrent one got in first (an ordered key started
 * meanwhile): the transaction rolls back and runs again from the start. (Where the check fits
 * in a statement, raise_retry does the same from inside it.)
 */
export class RetryTransaction extends Error {
  constructor(reason: string) {
    super(`transaction must run again: ${reason}`);
    this.name = 'RetryTransaction';
  }
}
