-- Listener delivery options: per-execution ordering and the listener's gate.

-- Ordering (see DeliveryQueue in src/store/store.ts). `held` names the execution whose head a
-- delivery waits behind; a held delivery is pending with a NULL next_attempt_at and is kept out
-- of the due index, so a blocked execution's backlog costs no claim anything. `gap`: the
-- sequences (a JSON array) skipped by final failures since its key's last success, sent with it.
ALTER TABLE deliveries ADD COLUMN held TEXT;
ALTER TABLE deliveries ADD COLUMN gap TEXT;

DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (project, next_attempt_at) WHERE status = 'pending' AND held IS NULL;
-- Promotion takes a key's held delivery with the lowest event row: within one execution (of one
-- project, as a listener's are) rows are numbered in sequence order.
CREATE INDEX deliveries_held ON deliveries (listener_id, held, event_seq) WHERE held IS NOT NULL;

-- One row per (listener, execution) key: its head. After a final failure with nothing held the
-- key stays without a head, keeping the gap its next delivery carries (pruned with retention).
CREATE TABLE delivery_heads (
  listener_id TEXT NOT NULL,
  execution_id TEXT NOT NULL,
  delivery_id TEXT,
  gap TEXT,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (listener_id, execution_id)
) STRICT, WITHOUT ROWID;

CREATE UNIQUE INDEX delivery_heads_delivery ON delivery_heads (delivery_id) WHERE delivery_id IS NOT NULL;
CREATE INDEX delivery_heads_headless ON delivery_heads (updated_at) WHERE delivery_id IS NULL;

-- Each listener's gate state (ListenerGateState in src/dispatch/listener-gate.ts): its circuit
-- breaker, its rate limit bucket and its failing streak, read and written in the transactions
-- that claim and record, so every dispatcher of the file shares them.
CREATE TABLE listener_gates (
  listener_id TEXT PRIMARY KEY,
  project TEXT NOT NULL,
  breaker TEXT NOT NULL CHECK (breaker IN ('closed', 'open', 'half_open')),
  probe_at INTEGER,
  window_start INTEGER NOT NULL,
  window_attempts INTEGER NOT NULL,
  window_failures INTEGER NOT NULL,
  failing_since INTEGER,
  tokens REAL,
  tokens_at INTEGER
) STRICT, WITHOUT ROWID;
