-- The breaker counts attempts over a sliding window: beside the current window's counts, the
-- window before's (see ListenerGateState in src/dispatch/listener-gate.ts).
ALTER TABLE listener_gates ADD COLUMN prev_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE listener_gates ADD COLUMN prev_failures INTEGER NOT NULL DEFAULT 0;
