import type { EventEnvelope, OriginalMessage } from '../records/event.js';
import type { ListenerSpec, StoredListener } from '../records/listener.js';
import type { AttemptRecord, DeliveryRecord, DeliveryStatus } from '../records/states.js';
import type { EngineStore } from './engine-store.js';
import type { GateAdmission, GateCandidate, GateListener, JudgedAttempt, ListenerGateState } from '../dispatch/listener-gate.js';
import type { SchemaTooNewError } from './migrations.js';

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

/**
 * Chooses the listeners an event goes to; runs inside the write transaction, so it must not do
 * I/O. `ordered` names the routed listeners whose `ordering` is "execution": their deliveries
 * of an event with an execution_id wait behind the execution's head (see DeliveryQueue).
 */
export type FanOut = ((envelope: EventEnvelope) => readonly string[]) & {
  readonly ordered?: ReadonlySet<string>;
  /**
   * The routed listeners whose fresh deliveries may be handed over at commit (see Handoff), with
   * what sending needs of them: those that keep no execution order and have no rate limit.
   */
  readonly handOff?: ReadonlyMap<string, ClaimedDelivery['listener']>;
};

/**
 * Fan-out as a write transaction sees it. Every project has a listener version, bumped in the
 * same transaction as every change to its listeners (create, update, delete, rotation, a
 * listener the relay turns off). A transaction that appends events reads the version, asks
 * `at` for the matcher compiled at that version and, when there is none, reads the project's
 * enabled listeners inside the same transaction (the rows of those `kept` does not hold at
 * their revision) and hands them to `compile`. So the very next event after a listener
 * change, on any process, is routed by the change.
 * All three calls are synchronous and do no I/O.
 */
export interface ListenerRouting {
  at(project: string, version: number): FanOut | null;
  /**
   * The project's listeners whose compiled form this routing keeps, each with the revision it
   * compiled: a snapshot that later compiles do not change. The store reads again only the
   * rows of listeners not in it or at another revision, and hands the snapshot back to
   * `compile`: one change costs one row read and parsed, not one per listener.
   */
  kept(project: string): KeptListeners;
  compile(project: string, version: number, enabled: EnabledListener[], kept: KeptListeners): FanOut;
}

/** What a routing keeps of a project's listeners, by id; the store reads only `revision`. */
export type KeptListeners = ReadonlyMap<string, { readonly revision: number }>;

/**
 * One of a project's enabled listeners as a transaction that routes sees it: its revision
 * (moved by every write of its row; ids are never reused) and its row, or `row: null` when
 * the routing's `kept` holds it at this very revision.
 */
export interface EnabledListener {
  id: string;
  revision: number;
  row: StoredListener | null;
}

export interface AppendedEvent {
  id: string;
  duplicate: boolean;
  deliveries: number;
  /** Of `deliveries`, those handed over to this process's dispatcher at commit (see Handoff). */
  handed: number;
}

/**
 * Fresh deliveries handed to this process's own dispatcher as they commit (DESIGN.md, "one
 * admission gate": a hand-over skips the claim query, never the gate). While appending, the
 * store offers each delivery that is due now and whose listener is in `FanOut.handOff`; `take`
 * answers whether the dispatcher has room for one more (synchronous, no I/O). A delivery taken
 * is written already leased to `owner`, until now + leaseMs + its listener's timeout, so no
 * claim picks it; after the commit `deliver` gets those of the commit. A transaction that does
 * not commit gives its slots back. A process that dies leaves them leased: they are due again
 * when the lease ends, as claimed ones are.
 */
export interface Handoff {
  readonly owner: string;
  readonly leaseMs: number;
  take(): boolean;
  giveBack(count: number): void;
  deliver(deliveries: ClaimedDelivery[]): void;
}

export interface StoredEvent {
  envelope: EventEnvelope;
  received_at: number;
}

/**
 * A page of a list whose filters an index cannot all serve: the store walks the index that serves
 * one of them and checks the others on the rows it walks, looking at no more than `scanLimit`
 * rows (DEFAULT_LIST_SCAN_LIMIT unless given), so that a filter matching little costs a page no
 * more than that.
 */
export interface ScannedPageQuery extends OrderedPageQuery {
  scanLimit?: number;
}

/**
 * Listeners one project may have unless the operator says otherwise: every event of the project
 * is matched against each of them, and each that takes it makes a delivery.
 */
export const DEFAULT_MAX_LISTENERS_PER_PROJECT = 10_000;

/** What creating a listener past a project's limit says. */
export const tooManyListeners = (max: number) =>
  `the project has ${max} listeners, the most this relay allows one project (RELAY_MAX_LISTENERS_PER_PROJECT); delete one it no longer needs first`;

/** Rows a page of events, deliveries or executions looks at unless its query says (RELAY_LIST_SCAN_LIMIT). */
export const DEFAULT_LIST_SCAN_LIMIT = 50_000;

/**
 * A page as a store reads it: up to `limit` rows, in the order asked; and `resume`, the position
 * where a walk stopped when it reached `scanLimit` rows before the end with fewer than `limit`
 * rows found (the next page starts after it; null otherwise).
 */
export interface ListPage<T> {
  rows: T[];
  resume: string | null;
}

export interface EventQuery extends ScannedPageQuery {
  workbook?: string;
  execution_id?: string;
  type?: string;
  /** unix ms, on the relay's receive time */
  since?: number;
}

export type { AttemptRecord, DeliveryRecord, DeliveryStatus } from '../records/states.js';
export { DELIVERY_STATUSES } from '../records/states.js';

export interface DeliveryQuery extends ScannedPageQuery {
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
  listener: Pick<StoredListener, 'callback' | 'retry' | 'secret' | 'previous_secret' | 'previous_secret_expires_at' | 'updated_at' | 'max_in_flight' | 'ordering'>;
  /** Sequences of its execution skipped (failed for good) since the last success of an ordered delivery; null otherwise. */
  gap: number[] | null;
  /** The end of its lease as written, for a delivery handed over at commit (a claim's runs from the claim's `now`). */
  leasedUntil?: number;
}

/** What one attempt came to, recorded with the others of its batch in one write. */
export interface AttemptResult {
  deliveryId: string;
  listenerId: string;
  project: string;
  /** The delivered event's id and type (the relay's own events say which delivery failed, never about relay.* events). */
  eventId: string;
  eventType: string;
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
  /**
   * The listener step of the gate: called inside the claim's transaction with the due
   * deliveries the allotment selected (oldest first) and the gate state of their listeners
   * (read, and on PostgreSQL row-locked, in that transaction; initialGateState for a listener
   * without one; `ratePerS` and `maxInFlight` from its spec). The store claims `take`, moves each deferred
   * delivery's next_attempt_at to its time (unleased), and writes back `changed`.
   */
  admit(candidates: readonly GateCandidate[], listeners: ReadonlyMap<string, GateListener>, now: number): GateAdmission;
}

/**
 * What recording a batch of attempts also decides (the listener gate's judgement): called in
 * the recording transaction with the attempts (built from the results) and the gate states of
 * their listeners. The store writes the changed states, turns off the listeners in `disable`
 * (as a 410 does: disabled_reason, pending deliveries held, listener version bumped; they are
 * answered in disabledListeners) and appends `events` (the relay's own, routed by `routing`)
 * in the same transaction, then `turnedOff`'s event for each listener that the batch's 410s or
 * `disable` really turned off (one that was off already gets none), once per listener.
 */
export interface RecordJudge {
  routing: ListenerRouting;
  judge(attempts: readonly JudgedAttempt[], states: ReadonlyMap<string, ListenerGateState>, now: number): {
    changed: ReadonlyMap<string, ListenerGateState>;
    disable: ReadonlyMap<string, string>;
    events: ReadonlyArray<{ project: string; envelope: EventEnvelope }>;
  };
  /** The relay's event about a listener this batch turned off, and why. */
  turnedOff(project: string, listenerId: string, reason: string, now: number): EventEnvelope;
}

export interface QueueDepth {
  due: number;
  scheduled: number;
  oldestDueAt: number | null;
}

/**
 * Replay of a time window of receive times: new deliveries of its events that match, walked in
 * the order received (receive time, then storage order), from `after` on (a `ReplayAnswer`'s
 * `after`, or null for the window's start); or, with `onlyFailed`, the listener's failed
 * deliveries of the window re-queued, walked among the project's failed deliveries in the order
 * made from `after` on.
 */
export interface ReplayWindow {
  since: number;
  until: number;
  onlyFailed: boolean;
  after: string | null;
  /** At most this many deliveries made (or re-queued). */
  limit: number;
  /** At most this many events (with `onlyFailed`: failed deliveries) looked at: a call's work is bounded whatever the filter. */
  scanLimit: number;
}

/**
 * Replay of one execution: new deliveries of its events from `fromSequence` on that match, sent
 * in sequence order (ordered behind one head per listener and execution, whatever the
 * listener's own `ordering`).
 */
export interface ReplayExecution {
  executionId: string;
  fromSequence: number;
  limit: number;
  scanLimit: number;
}

/**
 * What a replay did. `truncated`: it stopped at a limit with more to go; then the next call goes
 * on from `after` (a window) or `fromSequence` (an execution); a re-queue of failed deliveries
 * goes on by being asked again.
 */
export interface ReplayAnswer {
  count: number;
  truncated: boolean;
  after?: string;
  fromSequence?: number;
}

/**
 * Latency histogram of the per-minute rollups: the upper bounds in ms of its buckets; the last
 * bucket counts everything slower. Fixed, so rollups of any age and backend add up.
 */
export const LATENCY_BOUNDS_MS = [10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000] as const;

/**
 * One minute of one listener's attempts (or of a project's, summed over its listeners), added to
 * in the transaction that records the attempts. `succeeded`: attempts that succeeded; `failed`:
 * attempts after which the delivery failed for good; `retried`: failed attempts that will be
 * tried again. `latency` has LATENCY_BOUNDS_MS.length + 1 counts.
 */
export interface RollupMinute {
  /** unix ms, a whole minute */
  at: number;
  succeeded: number;
  failed: number;
  retried: number;
  latency: number[];
}

export interface RollupQuery {
  /** one listener, or the whole project when absent */
  listenerId?: string;
  /** unix ms, inclusive; minutes from `since` on (hours: a whole hour, hours from it on) */
  since: number;
  /**
   * Rows of a whole hour each (`at`: the hour), the minutes summed by the hour, for a series
   * whose buckets are whole hours: a 30-day series reads 720 rows a listener instead of 43,200.
   */
  hours?: boolean;
}

/** The last outcomes of a listener, kept with the attempts that produce them. */
export interface ListenerOutcomes {
  last_success_at: number | null;
  last_failure: { at: number; error: string | null; status_code: number | null } | null;
}

/** How many of a listener's deliveries (in id order) one transaction looks at when its backlog follows a change. */
export const BACKLOG_WINDOW = 1_000;

/** What a listener's waiting deliveries do when it is disabled, enabled again or deleted. */
export type BacklogAction = 'hold' | 'release' | 'cancel';

/** One window of a listener's backlog moved: how many deliveries changed, and whether it was the last. */
export interface BacklogStep {
  listenerId: string;
  project: string;
  action: BacklogAction;
  /** Its ordering was turned off: the window also let go of what it held behind its executions' heads. */
  unorder: boolean;
  moved: number;
  done: boolean;
}

/** Listener records (the API, fan-out). Every change bumps the project's listener version. */
export interface ListenerStore {
  /**
   * Stores a new listener; StoreConflictError when its project has `maxPerProject` listeners
   * already (counted in the same transaction, after the project's listener version is locked,
   * so that two creations cannot both take the last place).
   */
  createListener(listener: StoredListener, maxPerProject?: number): Promise<void>;
  getListener(project: string, id: string): Promise<StoredListener | null>;
  listListeners(project: string, query: ListenerQuery): Promise<StoredListener[]>;
  /** Replaces the spec; returns the updated record, or null when there is no such listener. */
  updateListener(project: string, id: string, spec: ListenerSpec, updatedAt: string): Promise<StoredListener | null>;
  rotateListenerSecret(project: string, id: string, rotation: SecretRotation, updatedAt: string): Promise<StoredListener | null>;
  /**
   * Removes the listener and cancels its pending deliveries: the first window of them in the
   * same transaction, the rest through moveListenerBacklogs.
   */
  deleteListener(project: string, id: string): Promise<boolean>;
  /**
   * Disabling (by a client or by the relay), enabling or deleting a listener, or turning its
   * ordering off, moves its waiting deliveries (held, due again, cancelled, no longer held
   * behind their executions' heads) a window at a time (BACKLOG_WINDOW of the listener's
   * deliveries), so that no transaction, and on SQLite no stretch of the thread, grows with
   * the backlog: the change moves the first window itself and leaves a durable mark for the
   * rest. This moves the next window of the oldest backlog still moving, in a transaction of
   * its own, and answers what it did (null: none is moving). Until its window comes, a claim holds a disabled listener's
   * delivery and cancels a deleted one's as it meets it; a re-enabled listener's delivery still
   * held waits for its window. A change of the listener meanwhile starts its backlog again.
   */
  moveListenerBacklogs(now: number): Promise<BacklogStep | null>;
  /** Every enabled listener of a project. */
  listEnabledListeners(project: string): Promise<StoredListener[]>;
  /** The last success and failure of each listener asked about (ids of other projects are absent). */
  listenerOutcomes(project: string, listenerIds: readonly string[]): Promise<Map<string, ListenerOutcomes>>;
  /** Per-minute (or per-hour) rollups from `since` on, oldest first (those with no attempts are absent). */
  rollups(project: string, query: RollupQuery): Promise<RollupMinute[]>;
  /**
   * Each listener's minutes from `since` on summed into one, in one read for a page of
   * listeners; listeners without attempts are absent. The whole hours of the span are read
   * from the hourly rows, the minutes before the first of them from the minute rows (`at`: the
   * start of the first row summed).
   */
  rollupTotals(project: string, listenerIds: readonly string[], since: number): Promise<Map<string, RollupMinute>>;
  /** The gate state (breaker, bucket, failing streak) of each listener asked about that has one. */
  listenerGates(project: string, listenerIds: readonly string[]): Promise<Map<string, ListenerGateState>>;
}

/** The outbox as sources write it (ingest, AMQP notifications) and clients read it. */
export interface OutboxStore {
  /**
   * Writes events, their sequence numbers and their deliveries in one transaction: all of them
   * or none (a conflict rejects the whole call). Resolves only after commit.
   */
  appendEvents(project: string, events: NewEvent[], routing: ListenerRouting, now: number): Promise<AppendedEvent[]>;
  /** From now on appendEvents hands fresh deliveries over to this dispatcher (null: none). */
  handOffTo(handoff: Handoff | null): void;
  /**
   * The event log in the order received (receive time, then seq). `cursor` and `resume` are
   * positions in it, opaque above the store (the API wraps them again).
   */
  listEvents(project: string, query: EventQuery): Promise<ListPage<StoredEvent & { cursor: string }>>;
  /**
   * Which list an event position this store handed out continues: the log (`execution_id`
   * null) or the events of one execution; null when the text is not one (a 400).
   */
  eventCursorScope(text: string): { execution_id: string | null } | null;
  getEvent(project: string, id: string): Promise<StoredEvent | null>;

  /** Deliveries by id (a ULID: the order made); `resume` is a delivery id. */
  listDeliveries(project: string, query: DeliveryQuery): Promise<ListPage<DeliveryRecord>>;
  getDelivery(project: string, id: string): Promise<DeliveryRecord | null>;
  listAttempts(project: string, deliveryId: string): Promise<AttemptRecord[]>;
  /** Re-queues one delivery now (same id). */
  retryDelivery(project: string, id: string, now: number): Promise<'queued' | 'in_flight' | 'no_listener' | 'not_found'>;
  /** New deliveries for a listener of the window's events that `matches` (or re-queues its failed ones). */
  replay(project: string, listenerId: string, window: ReplayWindow | ReplayExecution, matches: FanOut, now: number): Promise<ReplayAnswer>;
  /** Whether `text` is an `after` this store hands out for a window replay (`onlyFailed`: for a re-queue of failed deliveries). */
  isReplayCursor(text: string, onlyFailed?: boolean): boolean;
}

/**
 * The delivery queue as dispatchers use it; any number of them may share it.
 *
 * Ordering: a delivery to a listener in `FanOut.ordered` (or made by a replay of an execution)
 * of an event with an execution_id belongs to the (listener, execution) key. The first pending
 * one of a key is its head and is due as usual; the others are held (pending, next_attempt_at
 * null, not in the due index, so a blocked execution's backlog costs no claim anything). When
 * the head finishes (succeeded, or failed for good), the held one with the lowest sequence
 * becomes the head and is due at once; after a final failure it carries the skipped sequences
 * in `gap` (the failed head's gap plus its sequence; a success clears it). A key whose head
 * failed for good with nothing waiting keeps its gap for the execution's next delivery. A
 * manual retry of a finished delivery (or a re-queue of failed ones by a replay) is sent when
 * asked, out of order, promotes nothing and carries no gap; a retry of a held delivery keeps its
 * place in line. Enabling a listener makes its heads and unordered deliveries due, never the
 * held ones; a listener moved to ordering "none" has its held deliveries made due; deleting it
 * drops its keys. The judge sees each recorded attempt once (a result reported twice is
 * recorded, counted and judged once).
 */
export interface DeliveryQueue {
  /**
   * The dispatcher's one write per cycle: records finished attempts (with their rollups and
   * the listeners' last outcomes, promoting the next head of an ordered key, and the
   * judgement of `judge` when given; resolving to the listeners a 410 or the judgement turned
   * off) and, when `claim` is given, claims the next due deliveries the gate admits under a
   * lease that ends at now + leaseMs + the listener's timeout; one transaction, one fsync.
   * Deliveries claimed by one dispatcher are never claimed by another while the lease holds.
   * `asked`: what the allotment asked for; `contended`: candidates left due because another
   * dispatcher was recording or claiming for their listener at that moment (always 0 on a store
   * that one process alone dispatches from), worth another look as soon as that one commits.
   */
  recordAndClaim(
    owner: string,
    results: AttemptResult[],
    claim: ClaimOptions | null,
    now: number,
    judge?: RecordJudge | null,
  ): Promise<{ disabledListeners: string[]; claimed: ClaimedDelivery[]; asked: number; contended: number }>;
  /** Gives back leases of unsent deliveries (shutdown), due at `now`. */
  releaseLeases(owner: string, deliveryIds: string[], now: number): Promise<void>;
  /**
   * Gives back every live lease whose owner `isGone` says has died (a dispatcher of this host
   * whose process no longer exists, src/owner.ts), so that a relay restarted after a crash sends
   * what the dead process had claimed at once rather than when those leases end. Reads the
   * owners of every leased delivery (a walk of the pending ones), so a dispatcher does it as it
   * starts, not in every cycle. Answers the owners judged gone and the deliveries given back.
   */
  releaseLeasesOfGone(isGone: (owner: string) => boolean, now: number): Promise<{ owners: string[]; deliveries: number }>;
  /**
   * Extends the leases `owner` holds on these deliveries to `until` (never shortens one): a
   * delivery that waits in this process's gate, or whose attempt runs long, or whose outcome
   * waits to be recorded, stays this process's while it lives.
   */
  renewLeases(owner: string, deliveryIds: readonly string[], until: number): Promise<void>;
  /** The earliest next_attempt_at of a pending delivery, for the dispatcher's sleep. */
  nextDueAt(): Promise<number | null>;
  queueDepth(now: number): Promise<QueueDepth>;
  /**
   * Calls `onDue` when another process commits deliveries that are due now (PostgreSQL's
   * NOTIFY); answers the unsubscribe. A backend with one process only never calls it.
   */
  subscribeDue(onDue: () => void): () => void;
}

/** What operating the database needs: readiness, retention, once-per-database work. */
export interface OperationsStore {
  readonly backend: 'sqlite' | 'postgres';
  /** Where the data lives, for the start-up log (no password). */
  readonly location: string;
  /** Migrations this open applied (empty when the database was up to date). */
  readonly appliedMigrations: readonly string[];
  /** Resolves when the database answers a trivial query (readiness). */
  ping(): Promise<void>;
  close(): Promise<void>;
  /** Deletes up to `batch` finished deliveries (with attempts), unreferenced events and rollups older than `before`. */
  pruneFinished(before: number, batch: number): Promise<{ deliveries: number; events: number; rollups: number }>;
  /**
   * Runs `fn` unless another process of the database runs work of the same `name` now (an
   * advisory lock on PostgreSQL); answers undefined when it did not run. For recovery and the
   * pruner: once per database at a time.
   */
  exclusively<T>(name: string, fn: () => Promise<T>): Promise<T | undefined>;
  /**
   * Calls `onNewer` (once) when a later release migrates the database while this process runs:
   * PostgreSQL hears its migrator's NOTIFY and reads the migrations again after every reconnect;
   * SQLite reads them every two seconds. Answers the unsubscribe.
   */
  watchMigrations(onNewer: (err: SchemaTooNewError) => void): () => void;
}

/**
 * The storage interface, in the parts each consumer uses. Everything above it (routes, engine,
 * dispatcher) talks to these and never to a database; each backend keeps all of its SQL in its
 * own module (src/store/sqlite/, src/store/postgres/).
 */
export interface Store extends ListenerStore, OutboxStore, DeliveryQueue, EngineStore, OperationsStore {}

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
