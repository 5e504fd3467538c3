import type { EventEnvelope, OriginalMessage } from '../records/event.js';
import type { ListenerSpec, StoredListener } from '../records/listener.js';
import type { EngineStore } from './engine-store.js';

/** Keyset pagination: rows after `after` (an id), at most `limit`. */
export interface PageQuery {
  after?: string | null;
  limit: number;
}

/** `asc` walks a list oldest first, `desc` newest first; `after` is then the row before in that order. */
export type ListOrder = 'asc' | 'desc';
export const LIST_ORDERS: readonly ListOrder[] = ['asc', 'desc'];

export interface OrderedPageQuery extends PageQuery {
  /** asc unless given */
  order?: ListOrder;
}

export interface ListenerQuery extends PageQuery {
  workbook?: string;
}

export interface SecretRotation {
  secret: string;
  previousSecret: string;
  previousSecretExpiresAt: string;
}

/** An event ready for the outbox; the store assigns `sequence` and serialises the envelope. */
export interface NewEvent {
  envelope: EventEnvelope;
  /** The message the event was made from (Mistral or oslo), kept for the format that forwards it. */
  original: OriginalMessage | null;
  /** Digest of the event as the client sent it: the same id with another digest is a conflict. */
  bodyHash: string;
}

/** Chooses the listeners an event goes to; runs inside the write transaction, so it must not do I/O. */
export type FanOut = (envelope: EventEnvelope) => readonly string[];

export interface AppendedEvent {
  id: string;
  duplicate: boolean;
  deliveries: number;
}

export interface StoredEvent {
  envelope: EventEnvelope;
  received_at: number;
}

export interface EventQuery extends OrderedPageQuery {
  workbook?: string;
  execution_id?: string;
  type?: string;
  /** unix ms, on the relay's receive time */
  since?: number;
}

export const DELIVERY_STATUSES = ['pending', 'succeeded', 'failed', 'cancelled'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

export interface DeliveryRecord {
  id: string;
  event_id: string;
  /** The event's type and workbook, read with the delivery so a list needs no lookups per row. */
  event_type: string;
  workbook: string | null;
  listener_id: string;
  status: DeliveryStatus;
  attempt_count: number;
  /** unix ms; null while the listener is disabled or once the delivery is finished */
  next_attempt_at: number | null;
  in_flight: boolean;
  last_error: string | null;
  created_at: number;
  updated_at: number;
}

export interface AttemptRecord {
  number: number;
  started_at: number;
  duration_ms: number;
  status_code: number | null;
  error: string | null;
  response_excerpt: string | null;
}

export interface DeliveryQuery extends OrderedPageQuery {
  listener_id?: string;
  event_id?: string;
  status?: DeliveryStatus;
}

/** A delivery claimed under a lease, with everything needed to send it. */
export interface ClaimedDelivery {
  id: string;
  project: string;
  listenerId: string;
  /** number of this attempt (1 for the first) */
  attemptNumber: number;
  envelopeJson: string;
  original: OriginalMessage | null;
  listener: Pick<StoredListener, 'callback' | 'retry' | 'secret' | 'previous_secret' | 'previous_secret_expires_at' | 'updated_at'>;
}

/** What one attempt came to, recorded with the others of its batch in one write. */
export interface AttemptResult {
  deliveryId: string;
  listenerId: string;
  project: string;
  attempt: AttemptRecord;
  /** pending with nextAttemptAt: retry later; succeeded/failed: finished */
  status: 'pending' | 'succeeded' | 'failed';
  nextAttemptAt: number | null;
  lastError: string | null;
  /** set when the receiver answered 410 Gone: the listener is turned off with this reason */
  disableListener: string | null;
}

export interface ClaimOptions {
  owner: string;
  now: number;
  leaseMs: number;
  /** The transports this process has enabled: deliveries of other transports are left for others. */
  transports: readonly string[];
  /**
   * The admission gate's allotment: called inside the claim's transaction with the projects
   * that have due work, answers how many deliveries of each to claim. Synchronous, no I/O.
   */
  allot(dueProjects: readonly string[]): ReadonlyMap<string, number>;
}

export interface QueueDepth {
  due: number;
  scheduled: number;
  oldestDueAt: number | null;
}

export interface ReplayWindow {
  since: number;
  until: number;
  onlyFailed: boolean;
  limit: number;
}

/**
 * The storage interface. Everything above it (routes, engine, dispatcher) talks to this and
 * never to a database; each backend keeps all of its SQL in its own module.
 */
export interface Store extends EngineStore {
  readonly backend: 'sqlite';
  /** Resolves when the database answers a trivial query (readiness). */
  ping(): Promise<void>;
  close(): Promise<void>;

  createListener(listener: StoredListener): Promise<void>;
  getListener(project: string, id: string): Promise<StoredListener | null>;
  listListeners(project: string, query: ListenerQuery): Promise<StoredListener[]>;
  /** Replaces the spec; returns the updated record, or null when there is no such listener. */
  updateListener(project: string, id: string, spec: ListenerSpec, updatedAt: string): Promise<StoredListener | null>;
  rotateListenerSecret(project: string, id: string, rotation: SecretRotation, updatedAt: string): Promise<StoredListener | null>;
  /** Removes the listener and cancels its pending deliveries, in one transaction. */
  deleteListener(project: string, id: string): Promise<boolean>;
  /** Every enabled listener of a project (fan-out compiles and caches them). */
  listEnabledListeners(project: string): Promise<StoredListener[]>;

  /**
   * Writes events, their sequence numbers and their deliveries in one transaction: all of them
   * or none (a conflict rejects the whole call). Resolves only after commit.
   */
  appendEvents(project: string, events: NewEvent[], fanOut: FanOut, now: number): Promise<AppendedEvent[]>;
  listEvents(project: string, query: EventQuery): Promise<Array<StoredEvent & { cursor: string }>>;
  getEvent(project: string, id: string): Promise<StoredEvent | null>;

  listDeliveries(project: string, query: DeliveryQuery): Promise<DeliveryRecord[]>;
  getDelivery(project: string, id: string): Promise<DeliveryRecord | null>;
  listAttempts(project: string, deliveryId: string): Promise<AttemptRecord[]>;
  /** Re-queues one delivery now (same id). */
  retryDelivery(project: string, id: string, now: number): Promise<'queued' | 'in_flight' | 'no_listener' | 'not_found'>;
  /** New deliveries for a listener of the window's events that `matches` (or re-queues its failed ones). */
  replay(project: string, listenerId: string, window: ReplayWindow, matches: FanOut, now: number): Promise<{ count: number; truncated: boolean }>;

  /**
   * The dispatcher's one write per cycle: records finished attempts (resolving to the listeners
   * a 410 turned off) and, when `claim` is given, claims the next due deliveries under a lease
   * that ends at now + leaseMs + the listener's timeout; one transaction, one fsync.
   */
  recordAndClaim(
    owner: string,
    results: AttemptResult[],
    claim: ClaimOptions | null,
    now: number,
  ): Promise<{ disabledListeners: string[]; claimed: ClaimedDelivery[]; asked: number }>;
  /** Gives back leases of unsent deliveries (shutdown), due at `now`. */
  releaseLeases(owner: string, deliveryIds: string[], now: number): Promise<void>;
  /** The earliest next_attempt_at of a pending delivery, for the dispatcher's sleep. */
  nextDueAt(): Promise<number | null>;
  queueDepth(now: number): Promise<QueueDepth>;
  /** Deletes up to `batch` finished deliveries (with attempts) and unreferenced events older than `before`. */
  pruneFinished(before: number, batch: number): Promise<{ deliveries: number; events: number }>;
}

/** Raised by a store when the database cannot take a write now (busy past its timeout, disk full). */
export class StoreUnavailableError extends Error {
  readonly code = 'STORE_UNAVAILABLE';
  constructor(
    message: string,
    readonly retryAfterSeconds = 1,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}

/** Raised when a write collides with an existing record (a unique name, a changed event body). */
export class StoreConflictError extends Error {
  readonly code = 'STORE_CONFLICT';
  constructor(message: string) {
    super(message);
    this.name = 'StoreConflictError';
  }
}
