-- The embedded engine. Every state change of an execution or task commits in the same
-- transaction as its event rows and their deliveries (see src/store/sqlite/engine.ts).

CREATE TABLE workbooks (
  project TEXT NOT NULL,
  name TEXT NOT NULL,
  source TEXT NOT NULL,               -- the definition as the client sent it
  spec TEXT NOT NULL,                 -- the parsed WorkbookSpec (JSON)
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (project, name)
) STRICT, WITHOUT ROWID;

CREATE TABLE executions (
  id TEXT PRIMARY KEY,
  project TEXT NOT NULL,
  workbook TEXT NOT NULL,
  workflow TEXT NOT NULL,
  -- The workflow as it was at launch: a later PUT or DELETE of the workbook does not change
  -- the graph of an execution that is running or may be re-run.
  spec TEXT NOT NULL,
  input TEXT NOT NULL,
  state TEXT NOT NULL,
  state_info TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;

CREATE INDEX executions_project_id ON executions (project, id);
CREATE INDEX executions_project_workbook ON executions (project, workbook, state);

CREATE TABLE task_executions (
  id TEXT PRIMARY KEY,
  project TEXT NOT NULL,
  execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  action TEXT NOT NULL,
  state TEXT NOT NULL,
  state_info TEXT,
  result TEXT,                        -- JSON
  tries INTEGER NOT NULL DEFAULT 0,   -- action attempts started
  -- When the runner next looks at this RUNNING task: start its action (a fresh launch or a
  -- retry after its delay) or end a std.sleep wait. NULL while the action is in flight.
  next_run_at INTEGER,
  -- Set when the current attempt's action started (committed before it runs). Set with a NULL
  -- next_run_at after a crash means side effects may have happened: "interrupted by restart".
  action_started_at INTEGER,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;

CREATE INDEX task_executions_execution ON task_executions (execution_id, id);
-- Serves the runner's claim: RUNNING tasks in due order, nothing else in the index.
CREATE INDEX task_executions_runnable ON task_executions (next_run_at) WHERE state = 'RUNNING';
-- Serves recovery at start: actions that started and never committed an outcome.
CREATE INDEX task_executions_in_flight ON task_executions (action_started_at)
  WHERE state = 'RUNNING' AND next_run_at IS NULL;
