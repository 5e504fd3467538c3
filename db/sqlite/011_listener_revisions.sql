-- Every write of a listener's row moves its revision. A transaction that routes events after a
-- listener change reads the enabled listeners' ids and revisions, and the whole rows only of
-- those whose compiled matcher the process does not keep at that revision: a change to one of
-- a project's many listeners costs one row read and parsed, not all of them.
ALTER TABLE listeners ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
-- The ids and revisions come from this index alone: a listener's row, with its spec, may
-- span many pages.
CREATE INDEX listeners_enabled_revisions ON listeners (project, enabled, id, revision);
