import { Router } from 'express';
import { setImmediate as turnOfTheLoop } from 'node:timers/promises';
import { newId } from '../../ids.js';
import {
  ListenerInput,
  MASKED,
  specOf,
  toListenerView,
  type StoredListener,
} from '../../records/listener.js';
import type { ListenerHealth } from '../../records/listener-health.js';
import { healthSince, listenerHealth, newListenerHealth } from '../../records/health.js';
import { callbackOrigin, unmaskBrokerUrl, type Callback } from '../../records/callback.js';
import { generateSecret, isValidSecret } from '../../dispatch/signing.js';
import { z, type ZodError } from 'zod';
import { compileListenerRule } from '../../fanout/match.js';
import type { Ingest } from '../../ingest/ingest.js';
import type { TransportRegistry } from '../../transports/registry.js';
import { PING_EVENT_TYPE, toEnvelope, type EventEnvelope } from '../../records/event.js';
import { DEFAULT_MAX_LISTENERS_PER_PROJECT, type ReplayAnswer, type Store } from '../../store/store.js';
import { bodyOrEmpty } from '../json-body.js';
import { applyMergePatch } from '../merge-patch.js';
import { badRequest, conflict, fieldErrors, fieldProblems, invalidField, notFound, validationProblem, type FieldError, type Problem } from '../problem.js';
import { page, pageParams } from '../paging.js';
import { FilterBudgetError, matchCharged, meteredRoute, newFilterMeter, REPLAY_FILTER_BUDGET_MS } from '../../fanout/filter-budget.js';

/** How long a rotated-out secret keeps signing beside the new one. */
export const SECRET_OVERLAP_MS = 24 * 3600 * 1000;

const READ_ONLY = "is read-only: the relay computes it from the listener's attempts";

/** At most this many deliveries one replay call creates. */
export const MAX_REPLAY = 100_000;
/**
 * At most this many deliveries one transaction of a replay call makes, and events (failed
 * deliveries) it looks at: a call runs as many as its own limits allow, one after the other, and
 * the process serves its other requests between them.
 */
export const REPLAY_CHUNK = 1_000;

/** Where a replay's next transaction goes on: the answer of the one before. */
type ReplayFrom = Pick<ReplayAnswer, 'after' | 'fromSequence'>;

/**
 * One replay call as transactions of at most REPLAY_CHUNK deliveries and events looked at each,
 * one after the other until the call's limits or the end, the event loop turning between them:
 * however large the call, the process goes on serving. Each transaction commits what it made
 * (`made` is told), so a call that gets no answer (the process died) may have made part of its
 * deliveries. The answer is the call's: its count, and where the next call goes on.
 */
async function replayInChunks(
  run: (chunk: { limit: number; scanLimit: number }, from: ReplayFrom | null) => Promise<ReplayAnswer>,
  limits: { limit: number; scanLimit: number },
  made: (count: number) => void,
): Promise<ReplayAnswer> {
  let count = 0;
  let scanLeft = limits.scanLimit;
  let last: ReplayAnswer | null = null;
  for (;;) {
    // With both limits the same, a transaction that stopped at one looked at exactly `size` events.
    const size = Math.min(REPLAY_CHUNK, limits.limit - count, scanLeft);
    let answer: ReplayAnswer;
    try {
      answer = await run({ limit: size, scanLimit: size }, last);
    } catch (err) {
      // The call's matching budget ran out on the first event of a later transaction: it stops after the one before.
      if (err instanceof FilterBudgetError && last !== null) return { ...last, count, truncated: true };
      throw err;
    }
    count += answer.count;
    scanLeft -= size;
    made(answer.count);
    last = answer;
    const goesOn = answer.truncated && (answer.after !== undefined || answer.fromSequence !== undefined);
    if (!goesOn || count >= limits.limit || scanLeft <= 0) return { ...answer, count };
    await turnOfTheLoop();
  }
}

export interface ListenerRouteDeps {
  store: Store;
  /** The enabled transports: a listener may name only these, and one that is not enabled shows in its health. */
  transports: TransportRegistry;
  ingest: Ingest;
  wakeDispatcher: () => void;
  /** At most this many events (or, re-queueing failed deliveries, failed deliveries) one replay call looks at, matching or not: its work is bounded. */
  replayScanLimit?: number;
  /** Listeners one project may have: creating one more is a 409. */
  maxListenersPerProject?: number;
}

/** A time window of the relay's receive time, or one execution from a sequence on: not both. */
const ReplayInput = z
  .strictObject({
    since: z.iso.datetime({ offset: true }).optional(),
    until: z.iso.datetime({ offset: true }).optional(),
    only_failed: z.boolean().optional(),
    execution_id: z.string().min(1).max(200).optional(),
    from_sequence: z.number().int().min(1).optional(),
    after: z.string().max(40).optional(),
  })
  .superRefine((r, ctx) => {
    if (r.execution_id !== undefined) {
      for (const field of ['since', 'until', 'only_failed', 'after'] as const) {
        if (r[field] !== undefined) ctx.addIssue({ code: 'custom', path: [field], message: 'replays a time window: give it without execution_id' });
      }
      return;
    }
    if (r.from_sequence !== undefined) ctx.addIssue({ code: 'custom', path: ['from_sequence'], message: 'goes with execution_id' });
    if (r.since === undefined) ctx.addIssue({ code: 'custom', path: ['since'], message: 'required: the start of the window (or give execution_id to replay one execution)' });
    else if (r.until && Date.parse(r.until) <= Date.parse(r.since)) ctx.addIssue({ code: 'custom', path: ['until'], message: 'must be after since' });
  });

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Header values are credentials for the receiver they were given for. A URL that moves to
 * another origin (scheme, host, port) takes along only the values sent again in the same patch:
 * a stored value, kept by "***" or by leaving it out, would otherwise go to whoever runs the
 * new origin. `null` removes a header (or `"headers": null` all of them).
 */
function refuseHeadersFollowingToNewOrigin(before: Callback, after: Callback, patch: Record<string, unknown>): void {
  const from = callbackOrigin(before);
  const to = callbackOrigin(after);
  const headers = (after as { headers?: Record<string, string> }).headers;
  if (from === null || to === null || from === to || !headers) return;
  const patchCallback = patch.callback;
  const sent = isPlainObject(patchCallback) && isPlainObject(patchCallback.headers) ? patchCallback.headers : undefined;
  const carried = Object.keys(headers).filter((name) => typeof sent?.[name] !== 'string' || sent[name] === MASKED);
  if (carried.length === 0) return;
  const move = `callback.url moves from ${from} to ${to}`;
  if (!isPlainObject(patchCallback) || !('headers' in patchCallback)) {
    const message = `${move}: send the header values again (${carried.join(', ')}), or "headers": null to drop them`;
    throw invalidField('callback.headers', message);
  }
  const errors = carried.map((name) => ({
    field: `callback.headers.${name}`,
    message:
      sent?.[name] === MASKED
        ? `is masked ("***"), but ${move}: send the value again, or null to drop the header`
        : `has a stored value, but ${move}: send the value again, or null to drop the header`,
  }));
  throw fieldProblems(errors);
}

/**
 * A masked value sent back in a PATCH keeps the stored one: a header value `"***"`, and an
 * amqp URL's password `***` while scheme, user, host, port and vhost stay the same.
 */
function unmaskCallback(merged: Record<string, unknown>, stored: Callback): void {
  const storedHeaders = (stored as { headers?: Record<string, string> }).headers ?? {};
  if (isPlainObject(merged.headers)) {
    for (const [name, value] of Object.entries(merged.headers)) {
      if (value !== MASKED) continue;
      if (!(name in storedHeaders)) throw invalidField(`callback.headers.${name}`, 'is masked ("***") but has no stored value to keep');
      merged.headers[name] = storedHeaders[name];
    }
  }
  if (merged.transport === 'amqp' && stored.transport === 'amqp' && typeof merged.url === 'string' && merged.url !== (stored as { url: string }).url) {
    const url = unmaskBrokerUrl(merged.url, (stored as { url: string }).url);
    if (url === null) {
      throw invalidField('callback.url', 'the password is masked (***) but the broker changed (scheme, user, host, port or vhost): send the URL with its password');
    }
    merged.url = url;
  }
}

export function listenerRoutes({
  store,
  ingest,
  wakeDispatcher,
  transports,
  replayScanLimit = 100_000,
  maxListenersPerProject = DEFAULT_MAX_LISTENERS_PER_PROJECT,
}: ListenerRouteDeps): Router {
  const router = Router();

  const transportEnabled = (l: StoredListener) => transports.get(l.callback.transport) !== undefined;

  /**
   * The listeners' health, in the order given: their last outcomes in one read for all of them;
   * their rollups one read each, as the store answers for one listener or the whole project.
   */
  async function healthOf(project: string, listeners: StoredListener[]): Promise<ListenerHealth[]> {
    if (!listeners.length) return [];
    const since = healthSince(Date.now());
    const ids = listeners.map((l) => l.id);
    // Three reads for a whole page, however many listeners it holds.
    const [outcomes, totals, gates] = await Promise.all([
      store.listenerOutcomes(project, ids),
      store.rollupTotals(project, ids, since),
      store.listenerGates(project, ids),
    ]);
    return listeners.map((l) => {
      const total = totals.get(l.id);
      const breaker = gates.get(l.id)?.breaker;
      return listenerHealth({
        enabled: l.enabled,
        transportEnabled: transportEnabled(l),
        rollups: total ? [total] : [],
        outcomes: outcomes.get(l.id),
        breaker: breaker === 'closed' ? undefined : breaker,
      });
    });
  }

  async function viewOf(listener: StoredListener) {
    const [health] = await healthOf(listener.project, [listener]);
    return toListenerView(listener, health);
  }

  const notEnabled = (name: string): FieldError => ({
    field: 'callback.transport',
    message: `${name} is not enabled in this relay (enabled: ${transports.names.join(', ') || 'none'}); the operator enables transports with RELAY_TRANSPORTS and RELAY_TRANSPORT_MODULES`,
  });

  /**
   * The schema's problems with a listener, led by `callback.transport` when the callback names
   * a transport that is not enabled here: that one has to be solved whatever else is wrong.
   */
  function refusal(error: ZodError, callback: unknown): Problem {
    const name = isPlainObject(callback) ? callback.transport : undefined;
    if (typeof name !== 'string' || transports.get(name)) return validationProblem(error);
    return fieldProblems([notEnabled(name), ...fieldErrors(error).filter((e) => e.field !== 'callback.transport')]);
  }

  /** The API's side of the transport contract: enabled, the module's own fields, its I/O checks. */
  async function checkCallback(callback: Callback) {
    const transport = transports.get(callback.transport);
    if (!transport) throw fieldProblems([notEnabled(callback.transport)]);
    const problems = [...safely(() => transport.validate(callback))];
    if (problems.length === 0 && transport.check) problems.push(...(await transport.check(callback)));
    // A guard's reason already names its field.
    if (problems.length) throw badRequest(problems.map((p) => (p.message.startsWith(p.field) ? p.message : `${p.field}: ${p.message}`)).join('; '), problems);
  }

  /** An operator's validate may break the contract by throwing: that is a problem with the callback, not a 500. */
  function safely(fn: () => Array<{ field: string; message: string }>) {
    try {
      const out = fn();
      return Array.isArray(out) ? out : [];
    } catch (err) {
      return [{ field: 'callback', message: `the transport refused it: ${(err as Error).message}` }];
    }
  }

  async function load(project: string, id: string): Promise<StoredListener> {
    const listener = await store.getListener(project, id);
    if (!listener) throw notFound(`listener ${id}`);
    return listener;
  }

  router.post('/', async (req, res) => {
    if (isPlainObject(req.body) && 'health' in req.body) throw invalidField('health', READ_ONLY);
    const parsed = ListenerInput.safeParse(bodyOrEmpty(req));
    if (!parsed.success) throw refusal(parsed.error, isPlainObject(req.body) ? req.body.callback : undefined);
    const { secret, ...spec } = parsed.data;
    await checkCallback(spec.callback);
    const now = new Date().toISOString();
    const listener: StoredListener = {
      ...spec,
      id: newId(),
      project: res.locals.project,
      secret: secret ?? generateSecret(),
      previous_secret: null,
      previous_secret_expires_at: null,
      disabled_reason: null,
      created_at: now,
      updated_at: now,
    };
    await store.createListener(listener, maxListenersPerProject);
    const health = newListenerHealth({ enabled: listener.enabled, transportEnabled: true });
    res
      .status(201)
      .location(`/v1/listeners/${listener.id}`)
      .json({ ...toListenerView(listener, health), secret: listener.secret });
  });

  router.get('/', async (req, res) => {
    const { limit, after } = pageParams(req.query, 'listeners', ['workbook']);
    const workbook = req.query.workbook;
    if (workbook !== undefined && (typeof workbook !== 'string' || !workbook)) {
      throw invalidField('workbook', 'give one workbook name');
    }
    const rows = await store.listListeners(res.locals.project, { workbook, after, limit: limit + 1 });
    const health = await healthOf(res.locals.project, rows.slice(0, limit));
    const listed = page('listeners', rows, limit, (l) => l.id, (l) => l);
    res.json({ ...listed, items: listed.items.map((l, i) => toListenerView(l, health[i])) });
  });

  router.get('/:id', async (req, res) => {
    res.json(await viewOf(await load(res.locals.project, req.params.id)));
  });

  router.patch('/:id', async (req, res) => {
    const patch: unknown = req.body;
    if (!isPlainObject(patch)) throw badRequest('a merge patch must be a JSON object', [{ field: '(body)', message: 'expected an object' }]);
    if ('secret' in patch) throw invalidField('secret', 'use POST /v1/listeners/{id}/rotate-secret to change the secret');
    if ('health' in patch) throw invalidField('health', READ_ONLY);
    const current = await load(res.locals.project, req.params.id);
    const base = specOf(current);
    const merged = applyMergePatch(base, patch) as Record<string, unknown>;
    // Another transport is another callback: the patch's callback replaces the stored one whole.
    const patchCallback = patch.callback;
    if (isPlainObject(patchCallback) && patchCallback.transport != null && patchCallback.transport !== base.callback.transport) {
      merged.callback = patchCallback;
    }
    if (isPlainObject(merged.callback)) unmaskCallback(merged.callback, base.callback);
    const parsed = ListenerInput.safeParse(merged);
    if (!parsed.success) throw refusal(parsed.error, isPlainObject(patch.callback) ? merged.callback : undefined);
    const { secret: _none, ...spec } = parsed.data;
    if (JSON.stringify(spec.callback) !== JSON.stringify(base.callback)) await checkCallback(spec.callback);
    refuseHeadersFollowingToNewOrigin(base.callback, spec.callback, patch);
    const updated = await store.updateListener(res.locals.project, current.id, spec, new Date().toISOString());
    if (!updated) throw notFound(`listener ${current.id}`);
    // What it held (disabled, or behind its executions' heads) is due again.
    if (updated.enabled && (!current.enabled || (current.ordering === 'execution' && updated.ordering === 'none'))) wakeDispatcher();
    res.json(await viewOf(updated));
  });

  router.delete('/:id', async (req, res) => {
    if (!(await store.deleteListener(res.locals.project, req.params.id))) throw notFound(`listener ${req.params.id}`);
    res.status(204).end();
  });

  router.post('/:id/rotate-secret', async (req, res) => {
    const body = bodyOrEmpty(req);
    if (!isPlainObject(body)) throw badRequest('the body must be a JSON object', [{ field: '(body)', message: 'expected an object' }]);
    const unknown = Object.keys(body).filter((k) => k !== 'secret');
    if (unknown.length) throw invalidField(unknown[0], 'unknown field');
    if (body.secret !== undefined && (typeof body.secret !== 'string' || !isValidSecret(body.secret))) {
      throw invalidField('secret', 'must be whsec_ followed by base64 of 24 to 64 bytes');
    }
    const current = await load(res.locals.project, req.params.id);
    const now = Date.now();
    const updated = await store.rotateListenerSecret(
      res.locals.project,
      current.id,
      {
        secret: (body.secret as string | undefined) ?? generateSecret(),
        previousSecret: current.secret,
        previousSecretExpiresAt: new Date(now + SECRET_OVERLAP_MS).toISOString(),
      },
      new Date(now).toISOString(),
    );
    if (!updated) throw notFound(`listener ${current.id}`);
    res.json({
      ...(await viewOf(updated)),
      secret: updated.secret,
      previous_secret_expires_at: updated.previous_secret_expires_at,
    });
  });

  router.post('/:id/ping', async (req, res) => {
    const listener = await load(res.locals.project, req.params.id);
    if (!listener.enabled) throw conflict(`listener ${listener.id} is disabled; enable it first (PATCH {"enabled": true})`);
    const envelope = toEnvelope(
      { type: PING_EVENT_TYPE, workbook: listener.workbook === '*' ? null : listener.workbook, data: { listener_id: listener.id } },
      Date.now(),
      'relay',
    );
    await ingest.sendTo(listener.project, envelope, [listener.id]);
    res.status(202).json({ event_id: envelope.id });
  });

  router.post('/:id/replay', async (req, res) => {
    const parsed = ReplayInput.safeParse(bodyOrEmpty(req));
    if (!parsed.success) throw validationProblem(parsed.error);
    const r = parsed.data;
    if (r.after !== undefined && !store.isReplayCursor(r.after, r.only_failed === true)) {
      throw invalidField(
        'after',
        store.isReplayCursor(r.after, r.only_failed !== true)
          ? `goes on with a ${r.only_failed === true ? 'replay of new deliveries' : 're-queue of failed deliveries'}: give only_failed as the answer's next does`
          : 'not a position a replay answer gave (its next.after)',
      );
    }
    const listener = await load(res.locals.project, req.params.id);
    // "Match the listener now": its current rule, whether or not it is enabled at this moment.
    const matches = compileListenerRule({ ...listener, enabled: true });
    const now = Date.now();
    const route = meteredRoute(
      Object.assign((envelope: EventEnvelope) => (matchCharged(matches, envelope) ? [listener.id] : []), {
        ordered: new Set(listener.ordering === 'execution' ? [listener.id] : []),
      }),
      newFilterMeter(REPLAY_FILTER_BUDGET_MS, undefined, Infinity),
    );
    const window = r.execution_id === undefined ? { since: Date.parse(r.since!), until: r.until ? Date.parse(r.until) : now + 1 } : null;
    const result = await replayInChunks(
      (chunk, from) =>
        store.replay(
          listener.project,
          listener.id,
          window === null
            ? { executionId: r.execution_id!, fromSequence: from?.fromSequence ?? r.from_sequence ?? 1, ...chunk }
            : { ...window, onlyFailed: r.only_failed ?? false, after: from ? from.after! : (r.after ?? null), ...chunk },
          // An ordered listener's window replay is ordered too. Its matching is bounded as an
          // ingest request's is (filter-budget.ts), over the whole call; its deliveries, one listener's, by the scan limit.
          route,
          Date.now(),
        ),
      { limit: MAX_REPLAY, scanLimit: replayScanLimit },
      (made) => {
        if (made) wakeDispatcher();
      },
    );
    // A call that stopped at a limit says what to send to go on: the same window (its end fixed)
    // from where it stopped. A re-queue of failed deliveries goes on in the order they were made,
    // so those it re-queued are not looked at again if they fail once more.
    let next: Record<string, unknown> | undefined;
    if (result.truncated && window === null) next = { execution_id: r.execution_id, from_sequence: result.fromSequence };
    else if (result.truncated && result.after !== undefined) {
      next = { since: r.since, until: new Date(window!.until).toISOString(), ...(r.only_failed === true && { only_failed: true }), after: result.after };
    }
    res.status(202).json({ count: result.count, truncated: result.truncated, ...(next && { next }) });
  });

  return router;
}
