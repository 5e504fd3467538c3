-- Listener records. The spec (workbook aside) is one JSON document: it is read whole, and
-- fan-out works on the parsed, cached form rather than on columns.
CREATE TABLE listeners (
  id TEXT PRIMARY KEY,
  project TEXT NOT NULL,
  workbook TEXT NOT NULL,
  spec TEXT NOT NULL,
  enabled INTEGER NOT NULL DEFAULT 1,
  disabled_reason TEXT,
  secret TEXT NOT NULL,
  previous_secret TEXT,
  previous_secret_expires_at TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
) STRICT;

CREATE INDEX listeners_project_id ON listeners (project, id);
CREATE INDEX listeners_project_workbook ON listeners (project, workbook, id);
