-- The claim takes due deliveries project by project (the admission gate gives each project
-- its share), so the due index leads with the project. The earliest due time overall is the
-- least of each project's, each read from the front of its part of the index.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (project, next_attempt_at) WHERE status = 'pending';
