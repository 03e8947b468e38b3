-- Reverts V4__running_needs_lease.sql (the leases it backfilled stay: they
-- are valid data under V3 too).
ALTER TABLE task_executions DROP CONSTRAINT task_executions_running_has_lease;
