import type { Database, Statement } from 'better-sqlite3';
import type { ListenerSpec, StoredListener } from '../../records/listener.js';
import type { ListenerQuery, SecretRotation } from '../store.js';

interface ListenerRow {
  id: string;
  project: string;
  workbook: string;
  spec: string;
  enabled: number;
  disabled_reason: string | null;
  secret: string;
  previous_secret: string | null;
  previous_secret_expires_at: string | null;
  created_at: string;
  updated_at: string;
}

type SpecColumn = Omit<ListenerSpec, 'workbook' | 'enabled'>;

function toRecord(row: ListenerRow): StoredListener {
  const spec = JSON.parse(row.spec) as SpecColumn;
  return {
    id: row.id,
    project: row.project,
    workbook: row.workbook,
    ...spec,
    enabled: row.enabled === 1,
    disabled_reason: row.disabled_reason,
    secret: row.secret,
    previous_secret: row.previous_secret,
    previous_secret_expires_at: row.previous_secret_expires_at,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

function specColumn(s: ListenerSpec): string {
  const { workbook: _w, enabled: _e, ...rest } = s;
  return JSON.stringify(rest satisfies SpecColumn);
}

/** Every listener statement of the SQLite backend, prepared once. */
export function listenerQueries(db: Database) {
  const insert = db.prepare(`INSERT INTO listeners
    (id, project, workbook, spec, enabled, disabled_reason, secret, previous_secret,
     previous_secret_expires_at, created_at, updated_at)
    VALUES (@id, @project, @workbook, @spec, @enabled, @disabled_reason, @secret, @previous_secret,
     @previous_secret_expires_at, @created_at, @updated_at)`);
  const byId = db.prepare('SELECT * FROM listeners WHERE project = ? AND id = ?') as Statement<[string, string], ListenerRow>;
  const page = db.prepare(`SELECT * FROM listeners
    WHERE project = @project AND id > @after AND (@workbook IS NULL OR workbook = @workbook)
    ORDER BY id LIMIT @limit`) as Statement<Record<string, unknown>, ListenerRow>;
  // Turning a listener back on clears the reason the relay had turned it off.
  const update = db.prepare(`UPDATE listeners SET workbook = @workbook, spec = @spec, enabled = @enabled,
      disabled_reason = CASE WHEN @enabled = 1 THEN NULL ELSE disabled_reason END, updated_at = @updated_at
    WHERE project = @project AND id = @id`);
  const rotate = db.prepare(`UPDATE listeners SET secret = @secret, previous_secret = @previous_secret,
      previous_secret_expires_at = @previous_secret_expires_at, updated_at = @updated_at
    WHERE project = @project AND id = @id`);
  const remove = db.prepare('DELETE FROM listeners WHERE project = ? AND id = ?');
  const enabledOnes = db.prepare('SELECT * FROM listeners WHERE project = ? AND enabled = 1') as Statement<[string], ListenerRow>;
  const cancelPending = db.prepare(`UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL, lease_owner = NULL,
      last_error = 'listener deleted', updated_at = ?
    WHERE project = ? AND listener_id = ? AND status = 'pending'`);
  // Disabling holds what waits (deliveries in flight finish and are held when they come back);
  // enabling makes every held delivery due now.
  const holdPending = db.prepare(`UPDATE deliveries SET next_attempt_at = NULL
    WHERE project = ? AND listener_id = ? AND status = 'pending' AND lease_owner IS NULL`);
  const releaseHeld = db.prepare(`UPDATE deliveries SET next_attempt_at = ?
    WHERE project = ? AND listener_id = ? AND status = 'pending' AND next_attempt_at IS NULL`);

  return {
    create(l: StoredListener): void {
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
      const wasEnabled = before.enabled === 1;
      if (wasEnabled && !spec.enabled) holdPending.run(project, id);
      if (!wasEnabled && spec.enabled) releaseHeld.run(Date.parse(updatedAt), project, id);
      return this.get(project, id);
    },
    rotate(project: string, id: string, rot: SecretRotation, updatedAt: string): StoredListener | null {
      const r = rotate.run({
        project,
        id,
        secret: rot.secret,
        previous_secret: rot.previousSecret,
        previous_secret_expires_at: rot.previousSecretExpiresAt,
        updated_at: updatedAt,
      });
      return r.changes ? this.get(project, id) : null;
    },
    /** Call inside a transaction. */
    remove(project: string, id: string, now: number): boolean {
      if (remove.run(project, id).changes === 0) return false;
      cancelPending.run(now, project, id);
      return true;
    },
    listEnabled(project: string): StoredListener[] {
      return enabledOnes.all(project).map(toRecord);
    },
  };
}
