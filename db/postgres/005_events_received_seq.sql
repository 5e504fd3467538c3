-- Walks of the event log in the order received (pages of GET /v1/events, a replay's window)
-- go by (received_at, seq): with seq in the index a page starts at its position, where before
-- it read again, and sorted, every event received in the same millisecond before it (a batch of
-- a thousand shares one). Same name, so plans and tests that name it keep it.
DROP INDEX events_project_received;
CREATE INDEX events_project_received ON events (project, received_at, seq);
