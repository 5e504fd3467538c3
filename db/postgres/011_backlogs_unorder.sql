-- A listener whose ordering is turned off lets go of the deliveries it held behind their
-- execution's head a window at a time too, beside whatever its backlog does (held, due again):
-- `unorder` says the windows also clear `held`. It stays set through later changes of the same
-- listener until its last window is done.
ALTER TABLE listener_backlogs ADD COLUMN unorder boolean NOT NULL DEFAULT false;
