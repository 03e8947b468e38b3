-- Reverts V2__execution_queue.sql.
DROP TRIGGER task_executions_notify ON task_executions;
DROP FUNCTION voidrunner_notify_execution();
DROP INDEX task_executions_updated_at_id_idx;
DROP INDEX task_executions_prune_idx;
DROP INDEX task_executions_lease_idx;
DROP INDEX task_executions_claim_idx;
DROP TRIGGER task_executions_set_updated_at ON task_executions;
ALTER TABLE task_executions
    DROP CONSTRAINT task_executions_worker_id_not_blank,
    DROP CONSTRAINT task_executions_attempt_nonnegative,
    DROP CONSTRAINT task_executions_priority_range,
    DROP COLUMN updated_at,
    DROP COLUMN heartbeat_at,
    DROP COLUMN lease_expires_at,
    DROP COLUMN worker_id,
    DROP COLUMN attempt,
    DROP COLUMN run_after,
    DROP COLUMN priority;
