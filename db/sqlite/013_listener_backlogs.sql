-- A listener's waiting deliveries follow it when it is disabled (held), enabled (due again) or
-- deleted (cancelled), a window of them per transaction: the change itself moves the first
-- window, and a row here says where the rest goes on (`after_id`: the last delivery id looked
-- at, in the listener's id order), until the last window is done. A change of the same
-- listener meanwhile starts its row again with its own action.
CREATE TABLE listener_backlogs (
  listener_id TEXT PRIMARY KEY,
  project TEXT NOT NULL,
  action TEXT NOT NULL CHECK (action IN ('hold', 'release', 'cancel')),
  after_id TEXT NOT NULL,
  since INTEGER NOT NULL              -- unix ms: when the change was made
);
