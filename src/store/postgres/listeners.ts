import type { ListenerSpec, StoredListener } from '../../records/listener.js';
import { parseSpec, specColumn, toStoredListener, type ListenerColumns } from '../rows.js';
import { StoreConflictError, tooManyListeners, type EnabledListener, type FanOut, type ListenerQuery, type ListenerRouting, type SecretRotation } from '../store.js';
import type { BacklogQueries } from './backlogs.js';
import { statement, type Conn, type Database } from './database.js';
import { isUniqueViolation } from './errors.js';
import { filteredPage } from './filtered-page.js';
import { blankGate, blankGateAgain } from './gates.js';
import { forgetOrder } from './order.js';

interface ListenerRow extends ListenerColumns {
  enabled: boolean;
}

const COLUMNS = `id, project, workbook, spec, enabled, disabled_reason, secret, previous_secret,
  previous_secret_expires_at, created_at, updated_at`;

const toListener = (row: ListenerRow): StoredListener => toStoredListener(row, row.enabled);

// Every listener change runs this in its own transaction: the next event routes by the change.
const bumpVersion = statement(`INSERT INTO listener_versions (project, version) VALUES ($1, 1)
  ON CONFLICT (project) DO UPDATE SET version = listener_versions.version + 1`);

// Version and enabled listeners in one statement, so both are read from one snapshot: the
// matcher compiled from these rows is the one of this version. A project without listeners
// still answers one row (with nulls) for its version. The columns of a listener the routing
// keeps at its revision ($2, $3) come back null: its spec is not read out of its TOAST pages.
const whole = (c: string) => `CASE WHEN k.id IS NULL THEN l.${c} END AS ${c}`;
const enabledAtVersion = statement(`SELECT v.version, l.id, l.revision, k.id IS NOT NULL AS kept,
    ${COLUMNS.split(',').map((c) => c.trim()).filter((c) => c !== 'id').map(whole).join(', ')}
  FROM (SELECT coalesce((SELECT version FROM listener_versions WHERE project = $1), 0) AS version) v
  LEFT JOIN listeners l ON l.project = $1 AND l.enabled
  LEFT JOIN unnest($2::text[], $3::int[]) AS k(id, revision) ON k.id = l.id AND k.revision = l.revision
  ORDER BY l.id`);

/**
 * The matcher for a project's listeners as the calling transaction sees them: the one compiled
 * at `version` (read by the caller in this transaction), or one compiled now from the enabled
 * listeners read here, at the version read with them (the rows only of those the routing does
 * not keep at their revision).
 */
export async function fanOutAt(c: Conn, project: string, version: number, routing: ListenerRouting): Promise<FanOut> {
  const route = routing.at(project, version);
  if (route) return route;
  const kept = routing.kept(project);
  const ids = [...kept.keys()];
  const rows = await c.rows<ListenerRow & { version: number; revision: number; kept: boolean }>(enabledAtVersion, [
    project,
    ids,
    ids.map((id) => kept.get(id)!.revision),
  ]);
  const enabled: EnabledListener[] = rows
    .filter((r) => r.id !== null)
    .map((r) => ({ id: r.id, revision: r.revision, row: r.kept ? null : toListener(r) }));
  return routing.compile(project, rows[0].version, enabled, kept);
}

const insert = statement(`INSERT INTO listeners (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`);
/** The project's listeners, counted up to the limit only. */
const countOfProject = statement('SELECT count(*)::int AS n FROM (SELECT 1 FROM listeners WHERE project = $1 LIMIT $2) x');
const byId = statement(`SELECT ${COLUMNS} FROM listeners WHERE project = $1 AND id = $2`);
const lockById = statement(`SELECT enabled, spec FROM listeners WHERE project = $1 AND id = $2 FOR UPDATE`);
// Turning a listener back on clears the reason the relay had turned it off.
const update = statement(`UPDATE listeners SET workbook = $3, spec = $4, enabled = $5,
    disabled_reason = CASE WHEN $5 THEN NULL ELSE disabled_reason END, updated_at = $6, revision = revision + 1
  WHERE project = $1 AND id = $2 RETURNING ${COLUMNS}`);
const rotate = statement(`UPDATE listeners SET secret = $3, previous_secret = $4, previous_secret_expires_at = $5, updated_at = $6,
    revision = revision + 1
  WHERE project = $1 AND id = $2 RETURNING ${COLUMNS}`);
const remove = statement('DELETE FROM listeners WHERE project = $1 AND id = $2');
// A deleted listener's outcomes go with it. Its minutes stay, part of the project's history
// (GET /v1/stats), until the pruner's cutoff passes them; nothing is added to them after.
const forgetOutcomes = statement('DELETE FROM listener_outcomes WHERE listener_id = $1');
const forgetGate = statement('DELETE FROM listener_gates WHERE listener_id = $1');
const page = filteredPage(
  (clauses, limit) => `SELECT ${COLUMNS} FROM listeners WHERE project = $1 ${clauses.map((c) => `AND ${c}`).join(' ')}
    ORDER BY id LIMIT ${limit}`,
  {
    after: (p) => `id > ${p}`,
    workbook: (p) => `workbook = ${p}`,
  },
);
const enabledOnes = statement(`SELECT ${COLUMNS} FROM listeners WHERE project = $1 AND enabled ORDER BY id`);

/** Every listener statement of the PostgreSQL backend. */
export function listenerQueries(db: Database, backlogs: BacklogQueries) {
  return {
    async create(l: StoredListener, maxPerProject = Infinity): Promise<void> {
      try {
        await db.transaction(async (c) => {
          // The version row first: it is locked until the commit, so the count that follows
          // sees every creation of the project that committed before this one.
          await c.count(bumpVersion, [l.project]);
          if (Number.isFinite(maxPerProject)) {
            const [{ n }] = await c.rows<{ n: number }>(countOfProject, [l.project, maxPerProject]);
            if (n >= maxPerProject) throw new StoreConflictError(tooManyListeners(maxPerProject));
          }
          await c.count(insert, [
            l.id, l.project, l.workbook, specColumn(l), l.enabled, l.disabled_reason, l.secret,
            l.previous_secret, l.previous_secret_expires_at, l.created_at, l.updated_at,
          ]);
          await c.count(blankGate, [l.id, l.project]);
        });
      } catch (err) {
        if (isUniqueViolation(err, 'listeners_pkey')) throw new StoreConflictError(`listener ${l.id} already exists`);
        throw err;
      }
    },
    async get(project: string, id: string): Promise<StoredListener | null> {
      const [row] = await db.rows<ListenerRow>(byId, [project, id]);
      return row ? toListener(row) : null;
    },
    async list(project: string, q: ListenerQuery): Promise<StoredListener[]> {
      const { statement: s, values } = page([project], { after: q.after ?? '', workbook: q.workbook }, q.limit);
      return (await db.rows<ListenerRow>(s, values)).map(toListener);
    },
    async update(project: string, id: string, spec: ListenerSpec, updatedAt: string): Promise<StoredListener | null> {
      return db.transaction(async (c) => {
        const [before] = await c.rows<{ enabled: boolean; spec: string }>(lockById, [project, id]);
        if (!before) return null;
        const [row] = await c.rows<ListenerRow>(update, [project, id, spec.workbook, specColumn(spec), spec.enabled, updatedAt]);
        await c.count(bumpVersion, [project]);
        const now = Date.parse(updatedAt);
        // Its waiting deliveries follow it (backlogs.ts; a release notifies by itself); with its
        // ordering turned off, those it held behind their executions' heads go too, and its keys at once.
        const unorder = parseSpec(before.spec).ordering === 'execution' && spec.ordering === 'none';
        if (unorder) await forgetOrder(c, id);
        if (before.enabled !== spec.enabled || unorder) await backlogs.start(c, project, id, spec.enabled ? 'release' : 'hold', now, unorder);
        // Enabled again, it starts afresh: the failures that turned it off no longer count.
        if (!before.enabled && spec.enabled) await c.count(blankGateAgain, [id]);
        return toListener(row);
      });
    },
    async rotate(project: string, id: string, rot: SecretRotation, updatedAt: string): Promise<StoredListener | null> {
      return db.transaction(async (c) => {
        const [row] = await c.rows<ListenerRow>(rotate, [project, id, rot.secret, rot.previousSecret, rot.previousSecretExpiresAt, updatedAt]);
        if (!row) return null;
        await c.count(bumpVersion, [project]);
        return toListener(row);
      });
    },
    async remove(project: string, id: string, now: number): Promise<boolean> {
      return db.transaction(async (c) => {
        if ((await c.count(remove, [project, id])) === 0) return false;
        await backlogs.start(c, project, id, 'cancel', now);
        await forgetOrder(c, id);
        await c.count(forgetGate, [id]);
        await c.count(forgetOutcomes, [id]);
        await c.count(bumpVersion, [project]);
        return true;
      });
    },
    async listEnabled(project: string): Promise<StoredListener[]> {
      return (await db.rows<ListenerRow>(enabledOnes, [project])).map(toListener);
    },
  };
}
