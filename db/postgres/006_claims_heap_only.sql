-- A claim leases a delivery in columns no index names: `leased_until` holds the lease's end
-- (with `lease_owner`), and `next_attempt_at`, which deliveries_due orders by, keeps the time
-- the delivery became due. With pages filled half at insert, the claim's new version of the
-- row fits on its page beside the old one: a heap-only update, with no new entry in any of
-- the table's indexes (before, every claim added one to each). A claim looks past leases that
-- have not ended. (Pages written before this keep their layout until rewritten.)
ALTER TABLE deliveries ADD COLUMN leased_until bigint;
ALTER TABLE deliveries SET (fillfactor = 50);
-- Deliveries leased before this: their lease's end was next_attempt_at.
UPDATE deliveries SET leased_until = next_attempt_at WHERE status = 'pending' AND lease_owner IS NOT NULL;
