-- Operation notifications (execution.cancel|pause.start → end/error, task.rerun.start →
-- end/error): an operation that waits for actions in flight is remembered on its row, so the
-- outcome of the last one (or recovery after a restart) can complete it.
ALTER TABLE executions ADD COLUMN pending_operation TEXT CHECK (pending_operation IN ('cancel', 'pause'));
ALTER TABLE task_executions ADD COLUMN rerun INTEGER NOT NULL DEFAULT 0;
