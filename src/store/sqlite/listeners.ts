import type { Database, Statement } from 'better-sqlite3';
import type { ListenerSpec, StoredListener } from '../../records/listener.js';
import { parseSpec, specColumn, toStoredListener, type ListenerColumns } from '../rows.js';
import { StoreConflictError, tooManyListeners, type EnabledListener, type KeptListeners, type ListenerQuery, type SecretRotation } from '../store.js';
import type { BacklogQueries } from './backlogs.js';
import type { ExecutionOrder } from './execution-order.js';
import type { GateQueries } from './gates.js';
import type { ListenerVersions } from './listener-versions.js';
import type { RollupQueries } from './rollups.js';

interface ListenerRow extends ListenerColumns {
  enabled: number;
}

const toRecord = (row: ListenerRow): StoredListener => toStoredListener(row, row.enabled === 1);

/**
 * Every listener statement of the SQLite backend, prepared once. Each change bumps the
 * project's listener version in its own transaction, so the next event routes by it.
 */
export function listenerQueries(
  db: Database,
  {
    versions,
    rollups,
    gates,
    executionOrder,
    backlogs,
  }: { versions: ListenerVersions; rollups: RollupQueries; gates: GateQueries; executionOrder: ExecutionOrder; backlogs: BacklogQueries },
) {
  const insert = db.prepare(`INSERT INTO listeners
    (id, project, workbook, spec, enabled, disabled_reason, secret, previous_secret,
     previous_secret_expires_at, created_at, updated_at)
    VALUES (@id, @project, @workbook, @spec, @enabled, @disabled_reason, @secret, @previous_secret,
     @previous_secret_expires_at, @created_at, @updated_at)`);
  const byId = db.prepare('SELECT * FROM listeners WHERE project = ? AND id = ?') as Statement<[string, string], ListenerRow>;
  /** The project's listeners, counted up to the limit only. */
  const countOfProject = db.prepare('SELECT count(*) AS n FROM (SELECT 1 FROM listeners WHERE project = ? LIMIT ?)') as Statement<[string, number], { n: number }>;
  const page = db.prepare(`SELECT * FROM listeners
    WHERE project = @project AND id > @after AND (@workbook IS NULL OR workbook = @workbook)
    ORDER BY id LIMIT @limit`) as Statement<Record<string, unknown>, ListenerRow>;
  // Turning a listener back on clears the reason the relay had turned it off.
  const update = db.prepare(`UPDATE listeners SET workbook = @workbook, spec = @spec, enabled = @enabled,
      disabled_reason = CASE WHEN @enabled = 1 THEN NULL ELSE disabled_reason END, updated_at = @updated_at,
      revision = revision + 1
    WHERE project = @project AND id = @id`);
  const rotate = db.prepare(`UPDATE listeners SET secret = @secret, previous_secret = @previous_secret,
      previous_secret_expires_at = @previous_secret_expires_at, updated_at = @updated_at, revision = revision + 1
    WHERE project = @project AND id = @id`);
  const remove = db.prepare('DELETE FROM listeners WHERE project = ? AND id = ?');
  const enabledOnes = db.prepare('SELECT * FROM listeners WHERE project = ? AND enabled = 1') as Statement<[string], ListenerRow>;
  const enabledHeads = db.prepare('SELECT id, revision FROM listeners WHERE project = ? AND enabled = 1') as Statement<[string], { id: string; revision: number }>;
  const someOf = db.prepare('SELECT * FROM listeners WHERE project = ? AND id IN (SELECT value FROM json_each(?))') as Statement<[string, string], ListenerRow>;

  return {
    /** Call inside a transaction; StoreConflictError when the project has `maxPerProject` listeners already. */
    create(l: StoredListener, maxPerProject = Infinity): void {
      if (Number.isFinite(maxPerProject) && countOfProject.get(l.project, maxPerProject)!.n >= maxPerProject) {
        throw new StoreConflictError(tooManyListeners(maxPerProject));
      }
      insert.run({
        id: l.id,
        project: l.project,
        workbook: l.workbook,
        spec: specColumn(l),
        enabled: l.enabled ? 1 : 0,
        disabled_reason: l.disabled_reason,
        secret: l.secret,
        previous_secret: l.previous_secret,
        previous_secret_expires_at: l.previous_secret_expires_at,
        created_at: l.created_at,
        updated_at: l.updated_at,
      });
      versions.bump(l.project);
    },
    get(project: string, id: string): StoredListener | null {
      const row = byId.get(project, id);
      return row ? toRecord(row) : null;
    },
    list(project: string, q: ListenerQuery): StoredListener[] {
      return page
        .all({ project, after: q.after ?? '', workbook: q.workbook ?? null, limit: q.limit })
        .map(toRecord);
    },
    /** Call inside a transaction. */
    update(project: string, id: string, spec: ListenerSpec, updatedAt: string): StoredListener | null {
      const before = byId.get(project, id);
      if (!before) return null;
      const r = update.run({
        project,
        id,
        workbook: spec.workbook,
        spec: specColumn(spec),
        enabled: spec.enabled ? 1 : 0,
        updated_at: updatedAt,
      });
      if (!r.changes) return null;
      versions.bump(project);
      const now = Date.parse(updatedAt);
      const wasEnabled = before.enabled === 1;
      // Its waiting deliveries follow it (backlogs.ts); with its ordering turned off, those it
      // held behind their executions' heads go too, and its keys at once.
      const unorder = parseSpec(before.spec).ordering === 'execution' && spec.ordering === 'none';
      if (unorder) executionOrder.forget(id);
      if (wasEnabled !== spec.enabled || unorder) backlogs.start(project, id, spec.enabled ? 'release' : 'hold', now, unorder);
      // Enabled again, it starts afresh: the failures that turned it off no longer count.
      if (!wasEnabled && spec.enabled) gates.forget(id);
      return this.get(project, id);
    },
    /** Call inside a transaction. */
    rotate(project: string, id: string, rot: SecretRotation, updatedAt: string): StoredListener | null {
      const r = rotate.run({
        project,
        id,
        secret: rot.secret,
        previous_secret: rot.previousSecret,
        previous_secret_expires_at: rot.previousSecretExpiresAt,
        updated_at: updatedAt,
      });
      if (!r.changes) return null;
      versions.bump(project);
      return this.get(project, id);
    },
    /** Call inside a transaction. */
    remove(project: string, id: string, now: number): boolean {
      if (remove.run(project, id).changes === 0) return false;
      backlogs.start(project, id, 'cancel', now);
      executionOrder.forget(id);
      gates.forget(id);
      rollups.forget(id);
      versions.bump(project);
      return true;
    },
    listEnabled(project: string): StoredListener[] {
      return enabledOnes.all(project).map(toRecord);
    },
    /**
     * The project's enabled listeners for routing, with the rows only of those `kept` does not
     * hold at their revision. Call inside the write transaction that routes with them.
     */
    enabledFor(project: string, kept: KeptListeners): EnabledListener[] {
      const heads = enabledHeads.all(project);
      const stale = heads.filter((h) => kept.get(h.id)?.revision !== h.revision).map((h) => h.id);
      const rows = new Map(stale.length ? someOf.all(project, JSON.stringify(stale)).map((r) => [r.id, toRecord(r)]) : []);
      return heads.map((h) => ({ id: h.id, revision: h.revision, row: rows.get(h.id) ?? null }));
    },
  };
}
