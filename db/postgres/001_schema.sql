-- The whole schema as SQLite's migrations 001–008 leave it, in one step. Times are unix ms in
-- bigint columns. Ids, names and types compare byte by byte (COLLATE "C") whatever the
-- database's collation, so keyset pages walk the same order as on SQLite.

-- Listener records. The spec (workbook aside) is one JSON document, kept as the text it was
-- written as: fan-out works on the parsed, cached form rather than on columns.
CREATE TABLE listeners (
  id text COLLATE "C" PRIMARY KEY,
  project text COLLATE "C" NOT NULL,
  workbook text COLLATE "C" NOT NULL,
  spec text NOT NULL,
  enabled boolean NOT NULL DEFAULT true,
  disabled_reason text,
  secret text NOT NULL,
  previous_secret text,
  previous_secret_expires_at text,
  created_at text NOT NULL,
  updated_at text NOT NULL,
  -- A process claims only deliveries of the transports it has enabled; the claim reads the
  -- listener's transport from its spec through this column.
  transport text GENERATED ALWAYS AS (coalesce((spec::jsonb) #>> '{callback,transport}', 'http')) STORED
);

CREATE INDEX listeners_project_id ON listeners (project, id);
CREATE INDEX listeners_project_workbook ON listeners (project, workbook, id);

-- Bumped in the transaction of every listener change, read inside every transaction that
-- appends events, so the very next event is routed by the change. No row means version 0.
CREATE TABLE listener_versions (
  project text COLLATE "C" PRIMARY KEY,
  version bigint NOT NULL
);

-- The outbox. An event row, its sequence number and its deliveries are written in one
-- transaction; the dispatcher only ever sees committed rows.
CREATE TABLE events (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- insertion order; pages, cursors and replays walk it
  project text COLLATE "C" NOT NULL,
  id text COLLATE "C" NOT NULL,
  type text COLLATE "C" NOT NULL,
  category text NOT NULL,
  workbook text COLLATE "C",
  execution_id text COLLATE "C",
  sequence bigint,
  envelope text NOT NULL,             -- the JSON every receiver gets, serialised once
  original_body text,                 -- the message the event was made from, byte for byte
  original_format text CHECK (original_format IN ('mistral', 'oslo')),
  body_hash text NOT NULL,            -- tells a resent event from a different one with the same id
  received_at bigint NOT NULL,        -- replay windows and retention use it
  UNIQUE (project, id)
);

CREATE INDEX events_project_received ON events (project, received_at);
CREATE INDEX events_project_execution ON events (project, execution_id, sequence) WHERE execution_id IS NOT NULL;
-- Retention looks for old events of every project; receive times grow with seq, which a
-- block range index serves at almost no cost per insert.
CREATE INDEX events_received ON events USING brin (received_at);

-- No foreign keys between events, deliveries and attempts: each would check (and share-lock,
-- a write to the referenced row) per inserted row, on the hottest paths. The rows are only
-- made together (an event with its deliveries, an attempt by the lease holder of its
-- delivery) and pruning deletes attempts with their deliveries and only unreferenced events.

-- Next `sequence` per execution: no gaps, in commit order (writers hold the row's lock to commit).
CREATE TABLE execution_sequences (
  project text COLLATE "C" NOT NULL,
  execution_id text COLLATE "C" NOT NULL,
  last_sequence bigint NOT NULL,
  PRIMARY KEY (project, execution_id)
);

CREATE TABLE deliveries (
  id text COLLATE "C" PRIMARY KEY,    -- a ULID, sent as webhook-id; the same on every retry; pruning walks it by age
  project text COLLATE "C" NOT NULL,
  event_seq bigint NOT NULL,           -- the event's row (see "No foreign keys" above)
  event_id text COLLATE "C" NOT NULL,
  listener_id text COLLATE "C" NOT NULL,
  status text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled')),
  attempt_count integer NOT NULL DEFAULT 0,
  -- When the next try is due. A claim moves it to the lease's end, so an expired lease makes
  -- the row due again by itself. NULL while the listener is disabled.
  next_attempt_at bigint,
  lease_owner text,
  last_error text,
  -- Ordering (see DeliveryQueue in src/store/store.ts): the execution whose head a delivery
  -- waits behind; a held delivery is pending with a NULL next_attempt_at, out of the due index,
  -- so a blocked execution's backlog costs no claim anything. `gap`: the sequences skipped by
  -- final failures since its key's last success, sent with it.
  held text COLLATE "C",
  gap bigint[],
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL
);

-- The claim takes due deliveries project by project (the admission gate gives each project
-- its share): pending, unheld rows only, by project, in due order. The projects with pending
-- work are found by skipping through its leading column.
CREATE INDEX deliveries_due ON deliveries (project, next_attempt_at) WHERE status = 'pending' AND held IS NULL;
-- Promotion takes a key's held delivery with the lowest event row: within one execution (of one
-- project, as a listener's are) rows are numbered in sequence order.
CREATE INDEX deliveries_held ON deliveries (listener_id, held, event_seq) WHERE held IS NOT NULL;
CREATE INDEX deliveries_project_listener ON deliveries (project, listener_id, id);
-- Lists by status. Succeeded deliveries, nearly all of them, are left out: recording a success
-- then adds no entry here, and a list of succeeded ones walks the primary key, where they are
-- nearly every row.
CREATE INDEX deliveries_project_status ON deliveries (project, status, id) WHERE status <> 'succeeded';
CREATE INDEX deliveries_event_seq ON deliveries (event_seq);

CREATE TABLE attempts (
  delivery_id text COLLATE "C" NOT NULL,  -- its delivery (see "No foreign keys" above)
  number integer NOT NULL,
  started_at bigint NOT NULL,
  duration_ms bigint NOT NULL,
  status_code integer,
  error text,
  response_excerpt text,
  PRIMARY KEY (delivery_id, number)
);

-- One row per (listener, execution) key of ordered deliveries: its head. After a final failure
-- with nothing held the key stays without a head, keeping the gap its next delivery carries
-- (pruned with retention).
CREATE TABLE delivery_heads (
  listener_id text COLLATE "C" NOT NULL,
  execution_id text COLLATE "C" NOT NULL,
  delivery_id text COLLATE "C",
  gap bigint[],
  updated_at bigint NOT NULL,
  PRIMARY KEY (listener_id, execution_id)
);

CREATE UNIQUE INDEX delivery_heads_delivery ON delivery_heads (delivery_id) WHERE delivery_id IS NOT NULL;
CREATE INDEX delivery_heads_headless ON delivery_heads (updated_at) WHERE delivery_id IS NULL;

-- Each listener's gate state (ListenerGateState in src/dispatch/listener-gate.ts): its circuit
-- breaker, its rate limit bucket and its failing streak, read (row-locked) and written in the
-- transactions that claim and record, so every dispatcher process shares them.
CREATE TABLE listener_gates (
  listener_id text COLLATE "C" PRIMARY KEY,
  project text COLLATE "C" NOT NULL,
  breaker text NOT NULL CHECK (breaker IN ('closed', 'open', 'half_open')),
  probe_at bigint,
  window_start bigint NOT NULL,
  window_attempts integer NOT NULL,
  window_failures integer NOT NULL,
  failing_since bigint,
  tokens double precision,
  tokens_at bigint
);

-- Per-listener, per-minute counts of attempts, added to in the transaction that records them;
-- health, stats and the dashboard read these, never the attempts table. latency_N counts the
-- attempts of the Nth bucket of LATENCY_BOUNDS_MS (src/store/store.ts); the last one counts
-- everything slower.
CREATE TABLE listener_rollups (
  listener_id text COLLATE "C" NOT NULL,
  project text COLLATE "C" NOT NULL,
  minute bigint NOT NULL,             -- a whole minute
  succeeded integer NOT NULL DEFAULT 0,
  failed integer NOT NULL DEFAULT 0,
  retried integer NOT NULL DEFAULT 0,
  latency_0 integer NOT NULL DEFAULT 0,
  latency_1 integer NOT NULL DEFAULT 0,
  latency_2 integer NOT NULL DEFAULT 0,
  latency_3 integer NOT NULL DEFAULT 0,
  latency_4 integer NOT NULL DEFAULT 0,
  latency_5 integer NOT NULL DEFAULT 0,
  latency_6 integer NOT NULL DEFAULT 0,
  latency_7 integer NOT NULL DEFAULT 0,
  latency_8 integer NOT NULL DEFAULT 0,
  latency_9 integer NOT NULL DEFAULT 0,
  latency_10 integer NOT NULL DEFAULT 0,
  latency_11 integer NOT NULL DEFAULT 0,
  PRIMARY KEY (listener_id, minute)   -- one listener's series, in time order
);

-- A project's series sums its listeners' rows minute by minute, read in minute order.
CREATE INDEX listener_rollups_project_minute ON listener_rollups (project, minute);
-- Pruning walks the oldest minutes of every listener.
CREATE INDEX listener_rollups_minute ON listener_rollups (minute);

-- Each listener's last success and last failure, kept with the attempts that produce them.
CREATE TABLE listener_outcomes (
  listener_id text COLLATE "C" PRIMARY KEY,
  project text COLLATE "C" NOT NULL,
  last_success_at bigint,
  last_failure_at bigint,
  last_failure_error text,
  last_failure_status_code integer
);

-- The embedded engine. Every state change of an execution or task commits in the same
-- transaction as its event rows and their deliveries (see src/store/postgres/engine-tx.ts).
CREATE TABLE workbooks (
  project text COLLATE "C" NOT NULL,
  name text COLLATE "C" NOT NULL,
  source text NOT NULL,               -- the definition as the client sent it
  spec text NOT NULL,                 -- the parsed WorkbookSpec (JSON)
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL,
  PRIMARY KEY (project, name)
);

CREATE TABLE executions (
  id text COLLATE "C" PRIMARY KEY,
  project text COLLATE "C" NOT NULL,
  workbook text COLLATE "C" NOT NULL,
  workflow text COLLATE "C" NOT NULL,
  -- The workflow as it was at launch: a later PUT or DELETE of the workbook does not change
  -- the graph of an execution that is running or may be re-run.
  spec text NOT NULL,
  input text NOT NULL,
  state text NOT NULL,
  state_info text,
  -- A cancel or pause that waits for actions in flight, completed by the last one's outcome.
  pending_operation text CHECK (pending_operation IN ('cancel', 'pause')),
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL,
  -- Counted up by every transaction that changes the execution or its tasks, so one that
  -- waited for the row's lock can tell its earlier reads are stale (src/store/postgres/engine-load.ts).
  changes bigint NOT NULL DEFAULT 0
);

CREATE INDEX executions_project_id ON executions (project, id);
CREATE INDEX executions_project_workbook ON executions (project, workbook, state);

CREATE TABLE task_executions (
  id text COLLATE "C" PRIMARY KEY,
  project text COLLATE "C" NOT NULL,
  execution_id text COLLATE "C" NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
  name text COLLATE "C" NOT NULL,
  action text NOT NULL,
  state text NOT NULL,
  state_info text,
  result text,                        -- JSON
  tries integer NOT NULL DEFAULT 0,   -- action attempts started
  -- When the runner next looks at this RUNNING task: start its action (a fresh launch or a
  -- retry after its delay) or end a std.sleep wait. NULL while the action is in flight.
  next_run_at bigint,
  -- Set when the current attempt's action started (committed before it runs). Set with a NULL
  -- next_run_at after its owner died means side effects may have happened.
  action_started_at bigint,
  rerun boolean NOT NULL DEFAULT false,
  -- The runner that claimed the task and until when it is known to be alive (it renews this).
  owner text,
  lease_until bigint,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL
);

CREATE INDEX task_executions_execution ON task_executions (execution_id, id);
-- Serves the runner's claim: RUNNING tasks in due order, nothing else in the index.
CREATE INDEX task_executions_runnable ON task_executions (next_run_at) WHERE state = 'RUNNING';
-- Serves recovery and lease renewal: actions that started and never committed an outcome.
CREATE INDEX task_executions_in_flight ON task_executions (action_started_at)
  WHERE state = 'RUNNING' AND next_run_at IS NULL;

-- Raised inside a statement that found a concurrent transaction got in first (a sequence
-- counter created meanwhile): the transaction rolls back and runs again. Raising it in the
-- statement itself lets a transaction send its COMMIT along with its last statement: a COMMIT
-- after a failed statement only rolls back.
CREATE FUNCTION raise_retry(reason text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'RR001', MESSAGE = reason;
END
$$;
