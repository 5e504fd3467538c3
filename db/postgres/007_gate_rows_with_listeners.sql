-- Every listener has its gate row from its creation on, so that dispatchers judging or
-- admitting one take turns on that row (FOR UPDATE in id order; SKIP LOCKED in a claim).
-- Made when the gate first judged a listener, the row did not exist to be locked: two
-- dispatchers judging a new listener's first attempts at once both judged from a fresh state
-- and the later one's write replaced the earlier one's, or the two waited for each other's
-- insert and one was aborted as a deadlock. A row the gate has not judged yet is blank: its
-- breaker is NULL and the store reads it as "no state".
ALTER TABLE listener_gates
  ALTER COLUMN breaker DROP NOT NULL,
  ALTER COLUMN window_start SET DEFAULT 0,
  ALTER COLUMN window_attempts SET DEFAULT 0,
  ALTER COLUMN window_failures SET DEFAULT 0;
INSERT INTO listener_gates (listener_id, project) SELECT id, project FROM listeners ORDER BY id ON CONFLICT (listener_id) DO NOTHING;
