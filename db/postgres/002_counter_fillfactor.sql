-- Every append moves the sequence counters of its executions on. With pages half empty the new
-- version of a counter fits on its page beside the old one: a heap-only update, with no new
-- entry in the primary key and no row lock logged for a move to another page. (Pages written
-- before this keep their layout until rewritten.)
ALTER TABLE execution_sequences SET (fillfactor = 50);
