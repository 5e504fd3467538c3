import { initialGateState, type JudgedAttempt, type ListenerGateState } from '../dispatch/listener-gate.js';
import { FilterBudgetError } from '../fanout/filter-budget.js';
import type { EventEnvelope, SourceFormat } from '../records/event.js';
import { LISTENER_OPTION_DEFAULTS, type ListenerSpec, type StoredListener } from '../records/listener.js';
import type { ExecutionQuery } from './engine-store.js';
import type { AttemptResult, ClaimedDelivery, DeliveryQuery, DeliveryRecord, EventQuery, FanOut, PageQuery, RecordJudge, ReplayAnswer, ReplayExecution, ReplayWindow, StoredEvent } from './store.js';

/*
 * Rows as both backends read them, and the records they become. The columns and their names are
 * the same in SQLite and PostgreSQL; what differs (booleans, JSON arrays) each backend converts
 * before calling these. No SQL here: every statement stays in its backend's module.
 */

/** A delivery with its event's type and workbook. */
export interface DeliveryRow {
  id: string;
  event_id: string;
  event_type: string;
  workbook: string | null;
  listener_id: string;
  status: DeliveryRecord['status'];
  attempt_count: number;
  next_attempt_at: number | null;
  lease_owner: string | null;
  held: string | null;
  last_error: string | null;
  created_at: number;
  updated_at: number;
}

export function toDeliveryRecord(row: DeliveryRow, now: number): DeliveryRecord {
  return {
    id: row.id,
    event_id: row.event_id,
    event_type: row.event_type,
    workbook: row.workbook,
    listener_id: row.listener_id,
    status: row.status,
    attempt_count: row.attempt_count,
    next_attempt_at: row.next_attempt_at,
    in_flight: row.status === 'pending' && row.lease_owner !== null && (row.next_attempt_at ?? 0) > now,
    last_error: row.last_error,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

/** A listener's columns but `enabled`, which each driver answers in its own type. */
export interface ListenerColumns {
  id: string;
  project: string;
  workbook: string;
  spec: string;
  disabled_reason: string | null;
  secret: string;
  previous_secret: string | null;
  previous_secret_expires_at: string | null;
  created_at: string;
  updated_at: string;
}

export type SpecColumn = Omit<ListenerSpec, 'workbook' | 'enabled'>;

/** The spec column, with the delivery options of listeners stored before they existed. */
export function parseSpec(json: string): SpecColumn {
  return { ...LISTENER_OPTION_DEFAULTS, ...(JSON.parse(json) as Partial<SpecColumn>) } as SpecColumn;
}

/** What the spec column keeps of a spec: all but the workbook and enabled, which have columns. */
export function specColumn(s: ListenerSpec): string {
  const { workbook: _w, enabled: _e, ...rest } = s;
  return JSON.stringify(rest satisfies SpecColumn);
}

export function toStoredListener(row: ListenerColumns, enabled: boolean): StoredListener {
  const spec = parseSpec(row.spec);
  return {
    id: row.id,
    project: row.project,
    workbook: row.workbook,
    ...spec,
    enabled,
    disabled_reason: row.disabled_reason,
    secret: row.secret,
    previous_secret: row.previous_secret,
    previous_secret_expires_at: row.previous_secret_expires_at,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

/** Parsed listener specs by id and version, so a claim does not parse one listener's JSON twice. */
export function specCache(): (id: string, version: string, json: string) => SpecColumn {
  const cache = new Map<string, { version: string; spec: SpecColumn }>();
  return (id, version, json) => {
    const cached = cache.get(id);
    if (cached && cached.version === version) return cached.spec;
    if (cache.size > 10_000) cache.clear();
    const spec = parseSpec(json);
    cache.set(id, { version, spec });
    return spec;
  };
}

/** What a claim reads of a due delivery and its listener. */
export interface ClaimRow {
  id: string;
  project: string;
  listener_id: string;
  attempt_count: number;
  secret: string | null;
  previous_secret: string | null;
  previous_secret_expires_at: string | null;
  listener_updated_at: string | null;
}

/** The event a claimed delivery sends. */
export interface ClaimEvent {
  envelope: string;
  original_body: string | null;
  original_format: SourceFormat | null;
}

/** A leased delivery with what sending it needs; its listener exists (`secret`, `listener_updated_at` are set). */
export function toClaimedDelivery(row: ClaimRow, event: ClaimEvent, spec: SpecColumn, gap: number[] | null): ClaimedDelivery {
  return {
    id: row.id,
    project: row.project,
    listenerId: row.listener_id,
    attemptNumber: row.attempt_count + 1,
    envelopeJson: event.envelope,
    original: event.original_body !== null && event.original_format !== null ? { format: event.original_format, body: event.original_body } : null,
    listener: {
      callback: spec.callback,
      retry: spec.retry,
      secret: row.secret!,
      previous_secret: row.previous_secret,
      previous_secret_expires_at: row.previous_secret_expires_at,
      updated_at: row.listener_updated_at!,
      max_in_flight: spec.max_in_flight,
      ordering: spec.ordering,
    },
    gap,
  };
}

/**
 * The relay's events about the listeners a recorded batch turned off, one each: those its
 * 410s turned off (`gone`, with the first 410's reason), then those the judgement turned off
 * (`judgedOff`). Both hold only listeners the store found still on, so a listener that was
 * off already (another 410 in flight, a user's PATCH) is not announced again.
 */
export function turnedOffEvents(
  judge: RecordJudge,
  results: readonly AttemptResult[],
  gone: readonly string[],
  judgedOff: ReadonlyMap<string, string>,
  now: number,
): Array<{ project: string; envelope: EventEnvelope }> {
  const off = new Map<string, AttemptResult>();
  for (const id of gone) off.set(id, results.find((r) => r.listenerId === id && r.disableListener !== null)!);
  const events = [...off].map(([id, r]) => ({ project: r.project, envelope: judge.turnedOff(r.project, id, r.disableListener!, now) }));
  for (const [id, reason] of judgedOff) {
    if (off.has(id)) continue;
    const { project } = results.find((r) => r.listenerId === id)!;
    events.push({ project, envelope: judge.turnedOff(project, id, reason, now) });
  }
  return events;
}

/**
 * The judge's verdict on the attempts just recorded, each listener judged from its state in
 * `statesOf` (initialGateState if it has none); nothing to change when none was recorded.
 */
export function judgeRecorded(
  judge: RecordJudge,
  recorded: readonly AttemptResult[],
  statesOf: (listenerIds: string[]) => ReadonlyMap<string, ListenerGateState>,
  now: number,
): ReturnType<RecordJudge['judge']> {
  if (recorded.length === 0) return { changed: new Map(), disable: new Map(), events: [] };
  const attempts = recorded.map(toJudgedAttempt);
  const ids = [...new Set(attempts.map((a) => a.listenerId))];
  const states = statesOf(ids);
  return judge.judge(attempts, new Map(ids.map((id) => [id, states.get(id) ?? initialGateState(now)])), now);
}

/** A recorded attempt as the listener gate judges it. */
export function toJudgedAttempt(r: AttemptResult): JudgedAttempt {
  return {
    listenerId: r.listenerId,
    project: r.project,
    deliveryId: r.deliveryId,
    eventId: r.eventId,
    eventType: r.eventType,
    ok: r.status === 'succeeded',
    finalFailure: r.status === 'failed',
    attempts: r.attempt.number,
    lastError: r.lastError,
    disabledReason: r.disableListener,
  };
}

export interface EventRow {
  seq: number;
  envelope: string;
  received_at: number;
}

/** An event as a page of the log reads it, with its place in its execution (see eventCursor). */
export interface ListedEventRow extends EventRow {
  sequence: number | null;
}

/** The filters of an execution list, all checked on each row its walk (the project's, by id) reads. */
export function executionSieve(q: ExecutionQuery): Array<'workbook' | 'workflow' | 'state'> {
  return (['workbook', 'workflow', 'state'] as const).filter((k) => q[k] !== undefined);
}

/** What a page of events checks on each row it walks, on the walk's columns (named w). */
export const EVENT_SIEVE = { workbook: 'w.workbook = @workbook', type: 'w.type = @type', since: 'w.received_at >= @since' } as const;

/** An event a replay walks through. */
export interface ReplayRow {
  seq: number;
  id: string;
  envelope: string;
}

/** An event a window replay walks through: in the order received (receive time, then seq). */
export interface WindowRow extends ReplayRow {
  received_at: number;
}

/** Where a window replay goes on: after this event (its receive time and seq). */
export function replayCursor(row: WindowRow): string {
  return `${row.received_at}.${row.seq}`;
}

/** The receive time and seq a window replay's `after` names, or null when it is not one. */
export function parseReplayCursor(text: string): { receivedAt: number; seq: number } | null {
  const m = /^(0|[1-9][0-9]{0,15})\.([1-9][0-9]{0,15})$/.exec(text);
  if (!m) return null;
  const receivedAt = Number(m[1]);
  const seq = Number(m[2]);
  return Number.isSafeInteger(receivedAt) && Number.isSafeInteger(seq) ? { receivedAt, seq } : null;
}

/**
 * A re-queue of failed deliveries walks the project's failed deliveries in id order (a ULID, so
 * the order made); its `after` is the id of the last one looked at, marked so that no window
 * replay takes it.
 */
export function failedWalkCursor(deliveryId: string): string {
  return `f${deliveryId}`;
}

/** The delivery id a re-queue's `after` names, or null when it is not one. */
export function parseFailedWalkCursor(text: string): string | null {
  const m = /^f([0-9A-HJKMNP-TV-Z]{26})$/.exec(text);
  return m ? m[1] : null;
}

/** Whether `text` is an `after` that a replay of this kind (a re-queue of failed deliveries, or not) handed out. */
export function isReplayCursor(text: string, onlyFailed = false): boolean {
  return onlyFailed ? parseFailedWalkCursor(text) !== null : parseReplayCursor(text) !== null;
}

/**
 * A re-queue's answer from the positions its walk found: `capId`, the limit-th match (it
 * stopped there); `endId`, the last delivery of a stretch cut at scanLimit. Either stop says
 * where the next call goes on.
 */
export function requeueAnswer(count: number, capId: string | null, endId: string | null): ReplayAnswer {
  const stop = capId ?? endId;
  return stop === null ? { count, truncated: false } : { count, truncated: true, after: failedWalkCursor(stop) };
}

/** A position after every delivery id (ULIDs are upper-case letters and digits). */
export const LAST_DELIVERY_ID = '~';

/**
 * Where a window replay's next page starts: after the last row looked at, else after the
 * call's `after`, else at the window's start; never before the window's start.
 */
export function windowFrom(w: ReplayWindow, last: WindowRow | null): { receivedAt: number; seq: number } {
  const from = last
    ? { receivedAt: Number(last.received_at), seq: Number(last.seq) }
    : ((w.after !== null && parseReplayCursor(w.after)) || { receivedAt: w.since, seq: 0 });
  return from.receivedAt < w.since ? { receivedAt: w.since, seq: 0 } : from;
}

/** A window replay's answer: where the next call goes on when this one was cut short. */
export function windowAnswer(w: ReplayWindow, r: { count: number; truncated: boolean; last: WindowRow | null }): ReplayAnswer {
  const after = r.last ? replayCursor(r.last) : w.after;
  return { count: r.count, truncated: r.truncated, ...(r.truncated && after !== null && { after }) };
}

/** An execution replay's answer: the sequence the next call starts at when this one was cut short. */
export function executionAnswer(w: ReplayExecution, r: { count: number; truncated: boolean; last: { sequence: number } | null }): ReplayAnswer {
  return { count: r.count, truncated: r.truncated, ...(r.truncated && { fromSequence: (r.last?.sequence ?? w.fromSequence - 1) + 1 }) };
}

/**
 * One page of a replay's walk, as both backends take it: the rows that match and are within the
 * limits, in the order stored (an ordered listener's first delivery of an execution is its
 * head), and where the walk stopped. `state` carries the counts across pages. A row past a
 * limit is left for the next call, which goes on after the last row looked at. The call's
 * `$regex` budget (filter-budget.ts) is a limit too, once something has been looked at; an
 * event that alone costs more than the budget refuses the call.
 */
export function replayPage<Row extends ReplayRow>(
  rows: readonly Row[],
  state: { count: number; scanned: number; last: Row | null; truncated: boolean },
  matches: FanOut,
  limits: { limit: number; scanLimit: number },
): Array<{ row: Row; envelope: EventEnvelope }> {
  const taken: Array<{ row: Row; envelope: EventEnvelope }> = [];
  for (const row of rows) {
    if (state.scanned === limits.scanLimit) {
      state.truncated = true;
      break;
    }
    const envelope = JSON.parse(row.envelope) as EventEnvelope;
    let match: boolean;
    try {
      match = matches(envelope).length > 0;
    } catch (err) {
      if (!(err instanceof FilterBudgetError) || state.scanned === 0) throw err;
      state.truncated = true;
      break;
    }
    if (match) {
      if (state.count === limits.limit) {
        state.truncated = true;
        break;
      }
      taken.push({ row, envelope });
      state.count++;
    }
    state.scanned++;
    state.last = row;
  }
  return taken.sort((a, b) => a.row.seq - b.row.seq);
}

export function toStoredEvent(row: EventRow): StoredEvent {
  return { envelope: JSON.parse(row.envelope) as EventEnvelope, received_at: row.received_at };
}

/**
 * A position in the event log: after this event in the order received (its receive time and
 * seq), or, in a list of the events of execution `executionId`, in that execution's order (`x`,
 * its sequence and the execution's id, so that no other execution's list takes it).
 */
export function eventCursor(row: { received_at: number; seq: number; sequence: number | null }, executionId: string | undefined): string {
  return executionId !== undefined ? `x${row.sequence}:${executionId}` : `${row.received_at}.${row.seq}`;
}

function executionPosition(text: string): { sequence: number; executionId: string } | null {
  const m = /^x([1-9][0-9]{0,15}):(.+)$/s.exec(text);
  return m && Number.isSafeInteger(Number(m[1])) ? { sequence: Number(m[1]), executionId: m[2] } : null;
}

/**
 * Which list an event cursor continues: the log (`execution_id` null) or one execution's events;
 * null when it is not a cursor an event list hands out.
 */
export function eventCursorScope(text: string): { execution_id: string | null } | null {
  const position = executionPosition(text);
  if (position) return { execution_id: position.executionId };
  return parseReplayCursor(text) ? { execution_id: null } : null;
}

/**
 * Where a page of events starts: after the cursor's position, else at the end its order starts
 * from. The log is walked in the order received, (received_at, seq), from `since` on; one
 * execution's events in their `sequence` order.
 */
export function eventPageFrom(q: EventQuery): { receivedAt: number; seq: number; sequence: number } {
  const top = Number.MAX_SAFE_INTEGER;
  const start = q.order === 'desc' ? { receivedAt: top, seq: top, sequence: top } : { receivedAt: q.since ?? 0, seq: 0, sequence: 0 };
  if (!q.after) return start;
  if (q.execution_id !== undefined) return { ...start, sequence: executionPosition(q.after)?.sequence ?? start.sequence };
  return { ...start, ...parseReplayCursor(q.after) };
}

/** The filters of an event list its walk does not serve, checked on each row it walks. */
export function eventSieve(q: EventQuery): Array<'workbook' | 'type' | 'since'> {
  const served = q.execution_id === undefined ? ['since'] : [];
  return (['workbook', 'type', 'since'] as const).filter((k) => q[k] !== undefined && !served.includes(k));
}

/**
 * Which index a page of deliveries walks (in id order, within the project): an event's, a
 * status's (where the backend's index holds that status; a listener's first when the status is
 * succeeded), a listener's, or the project's; the other filters given are checked on each row
 * walked.
 */
export function deliveryWalk(q: DeliveryQuery, statusWalks: (status: string) => boolean): {
  walk: 'listener' | 'status' | 'event' | 'project';
  sieve: Array<'listener_id' | 'status' | 'event_id'>;
} {
  // Deliveries that have not succeeded are few beside those that have: their status walks first.
  const byStatus = q.status !== undefined && statusWalks(q.status);
  const walk =
    q.event_id !== undefined ? 'event'
    : byStatus && (q.status !== 'succeeded' || q.listener_id === undefined) ? 'status'
    : q.listener_id !== undefined ? 'listener'
    : 'project';
  const served = { event: 'event_id', listener: 'listener_id', status: 'status', project: null } as const;
  return { walk, sieve: (['listener_id', 'status', 'event_id'] as const).filter((k) => q[k] !== undefined && served[walk] !== k) };
}

/**
 * Whether a page's walk may have stopped short: it checked filters on the rows it walked
 * (`sieved`) and found fewer rows than the page holds. The store then asks where the first
 * `scanLimit` rows of the walk end (none: the walk held fewer, and the list ends here), in the
 * same snapshot as the page: a row that changed in between would otherwise be passed over
 * unchecked.
 */
export function walkMayGoOn(found: number, q: PageQuery, sieved: boolean): boolean {
  return sieved && found < q.limit;
}
