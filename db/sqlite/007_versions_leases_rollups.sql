-- Listener versions: bumped in the transaction of every listener change, read inside every
-- transaction that appends events, so the very next event is routed by the change. A project
-- without a row is at version 0.
CREATE TABLE listener_versions (
  project TEXT PRIMARY KEY,
  version INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Engine task owners: the runner that claimed a task and how long it is known to be alive.
-- Rows from before owners keep NULLs, which recovery treats as orphans.
ALTER TABLE task_executions ADD COLUMN owner TEXT;
ALTER TABLE task_executions ADD COLUMN lease_until INTEGER;

-- Per-listener, per-minute counts of attempts, added to in the transaction that records them;
-- health, stats and the dashboard read these, never the attempts table. latency_N counts the
-- attempts of the Nth bucket of LATENCY_BOUNDS_MS (src/store/store.ts); the last one counts
-- everything slower.
CREATE TABLE listener_rollups (
  listener_id TEXT NOT NULL,
  project TEXT NOT NULL,
  minute INTEGER NOT NULL,            -- unix ms, a whole minute
  succeeded INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  retried INTEGER NOT NULL DEFAULT 0,
  latency_0 INTEGER NOT NULL DEFAULT 0,
  latency_1 INTEGER NOT NULL DEFAULT 0,
  latency_2 INTEGER NOT NULL DEFAULT 0,
  latency_3 INTEGER NOT NULL DEFAULT 0,
  latency_4 INTEGER NOT NULL DEFAULT 0,
  latency_5 INTEGER NOT NULL DEFAULT 0,
  latency_6 INTEGER NOT NULL DEFAULT 0,
  latency_7 INTEGER NOT NULL DEFAULT 0,
  latency_8 INTEGER NOT NULL DEFAULT 0,
  latency_9 INTEGER NOT NULL DEFAULT 0,
  latency_10 INTEGER NOT NULL DEFAULT 0,
  latency_11 INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (listener_id, minute)   -- one listener's series, in time order
) STRICT, WITHOUT ROWID;

-- A project's series sums its listeners' rows minute by minute, read in minute order.
CREATE INDEX listener_rollups_project_minute ON listener_rollups (project, minute);
-- Pruning walks the oldest minutes of every listener.
CREATE INDEX listener_rollups_minute ON listener_rollups (minute);

-- Each listener's last success and last failure, kept with the attempts that produce them.
CREATE TABLE listener_outcomes (
  listener_id TEXT PRIMARY KEY,
  project TEXT NOT NULL,
  last_success_at INTEGER,
  last_failure_at INTEGER,
  last_failure_error TEXT,
  last_failure_status_code INTEGER
) STRICT, WITHOUT ROWID;
