-- The outbox. An event row, its sequence number and its deliveries are written in one
-- transaction; the dispatcher only ever sees committed rows.
CREATE TABLE events (
  seq INTEGER PRIMARY KEY,            -- insertion order; pages and replays walk it
  project TEXT NOT NULL,
  id TEXT NOT NULL,
  type TEXT NOT NULL,
  category TEXT NOT NULL,
  workbook TEXT,
  execution_id TEXT,
  sequence INTEGER,
  envelope TEXT NOT NULL,             -- the JSON every receiver gets, serialised once
  original_body TEXT,                 -- the body as a Mistral sent it, for the mistral format
  body_hash TEXT NOT NULL,            -- tells a resent event from a different one with the same id
  received_at INTEGER NOT NULL,       -- unix ms; replay windows use it
  UNIQUE (project, id)
) STRICT;

CREATE INDEX events_project_received ON events (project, received_at);
CREATE INDEX events_project_execution ON events (project, execution_id, sequence) WHERE execution_id IS NOT NULL;

-- Next `sequence` per execution: no gaps, in commit order.
CREATE TABLE execution_sequences (
  project TEXT NOT NULL,
  execution_id TEXT NOT NULL,
  last_sequence INTEGER NOT NULL,
  PRIMARY KEY (project, execution_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE deliveries (
  id TEXT PRIMARY KEY,                -- a ULID, sent as webhook-id; the same on every retry; pruning walks it by age
  project TEXT NOT NULL,
  event_seq INTEGER NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
  event_id TEXT NOT NULL,
  listener_id TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled')),
  attempt_count INTEGER NOT NULL DEFAULT 0,
  -- Unix ms when the next try is due. A claim moves it to the lease's end, so an expired
  -- lease makes the row due again by itself. NULL while the listener is disabled.
  next_attempt_at INTEGER,
  lease_owner TEXT,
  last_error TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;

-- Serves the claim query exactly: pending rows in due order, nothing else in the index.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_project_listener ON deliveries (project, listener_id, id);
CREATE INDEX deliveries_project_status ON deliveries (project, status, id);
CREATE INDEX deliveries_event_seq ON deliveries (event_seq);

CREATE TABLE attempts (
  delivery_id TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
  number INTEGER NOT NULL,
  started_at INTEGER NOT NULL,
  duration_ms INTEGER NOT NULL,
  status_code INTEGER,
  error TEXT,
  response_excerpt TEXT,
  PRIMARY KEY (delivery_id, number)
) STRICT, WITHOUT ROWID;
